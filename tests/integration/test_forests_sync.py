"""Two real forests through the engine's steps: CORP (127.0.0.1) and FABRIKAM (127.0.0.2) seeded as `aadsync-dev up
--forests 2` seeds them, imported each into its own connector space with its configured scope, synchronized with the
shipped rules (plus the optional same-person rule) and exported to the Graph emulator. Joined pairs become one Entra
user, a linked mailbox adds its mail to its owner, a group member from the other forest resolves, an excluded OU's
users never appear, and a user moved into the excluded OU is deleted in Entra only through the deletion guard."""

from __future__ import annotations

import uuid

import httpx
import ldap3
import pytest

from aadsync_devkit.world.fixtures import provisioned_dc
from aadsync_devkit.world.forests import FORESTS, SHARED_MAIL_DOMAIN, ensure_exchange_schema, seed_forest_pair
from aadsync_devkit.world.seed import USER_CLASSES
from airflow_provider_aadsync.engine.connectors.ad.reader import import_ad_connector
from airflow_provider_aadsync.engine.connectors.ad.schema import DEFAULT_AD_ATTRIBUTES
from airflow_provider_aadsync.engine.connectors.config import parse_connectors_config
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.rules import DEFAULT_RULES_DIR
from airflow_provider_aadsync.engine.runs.import_attributes import complete_attribute_list
from airflow_provider_aadsync.engine.runs.import_guard import STOPPED_DELETION_THRESHOLD
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.servers import GRAPH_CLIENT_ID, GRAPH_SECRET, entra_hook_for, hook_for, trust

pytestmark = pytest.mark.integration

FABRIKAM = FORESTS[1]


@pytest.fixture(scope="module")
def forests(start_dc, tmp_path_factory):
    """Both DCs running and seeded; CORP also has OU=Excluded (with a user) and a user who will move into it."""
    corp = start_dc(users=0, groups=0)
    fabrikam = provisioned_dc(
        tmp_path_factory.mktemp("fabrikam") / "home", realm=FABRIKAM.realm, domain=FABRIKAM.domain, host=FABRIKAM.host
    )
    fabrikam.start()
    try:
        account, resource = corp.connect(), fabrikam.connect()
        try:
            assert ensure_exchange_schema(account, corp.base_dn) is not None
            ensure_exchange_schema(resource, fabrikam.base_dn)
            report = seed_forest_pair(account, corp.base_dn, resource, fabrikam.base_dn)
            excluded = f"OU=Excluded,OU=AADSync,{corp.base_dn}"
            assert account.add(excluded, ["top", "organizationalUnit"]), account.result
            for sam, parent in (("hidden1", excluded), ("mover", f"OU=Accounts,OU=AADSync,{corp.base_dn}")):
                attrs = {"sAMAccountName": sam, "userPrincipalName": f"{sam}@corp.example.test", "givenName": sam}
                assert account.add(f"CN={sam},{parent}", USER_CLASSES, attrs), account.result
        finally:
            account.unbind()
            resource.unbind()
        yield corp, fabrikam, report, excluded
    finally:
        fabrikam.stop()


def tenant_for(graph_server, *domains: str) -> dict:
    """A tenant of its own (the module's emulator lives across tests) that has verified ``domains``."""
    response = httpx.post(
        f"{graph_server.base_url}/_emulator/tenants",
        json={"name": f"forests{uuid.uuid4().hex[:8]}", "verifiedDomains": list(domains),
              "apps": [{"clientId": GRAPH_CLIENT_ID, "clientSecret": GRAPH_SECRET}]},
        verify=trust(graph_server),
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()


def test_two_forests_land_in_entra_once_each(forests, graph_server, store):
    corp, fabrikam, report, excluded = forests
    config = parse_connectors_config(
        f"ad:\n  - name: ad\n    conn_id: aadsync_ad\n    partitions:\n      - dn: '{corp.base_dn}'\n"
        f"        exclude_ous: ['{excluded}']\n"
        f"  - name: ad_fabrikam\n    conn_id: aadsync_ad_fabrikam\n"
    )
    rules = load_sync_rules([str(DEFAULT_RULES_DIR), str(DEFAULT_RULES_DIR.parent / "optional/join-same-person.yaml")])
    entra = entra_hook_for(
        graph_server, tenant_for(graph_server, "corp.example.test", "fabrikam.example.test", SHARED_MAIL_DOMAIN)
    )
    hooks = {"ad": hook_for(corp), "ad_fabrikam": hook_for(fabrikam)}

    def cycle(mode: str, settings: ExportSettings | None = None):
        for connector in config.ad:  # all imports, then the syncs connector by connector, then the export
            attributes, _ = complete_attribute_list(DEFAULT_AD_ATTRIBUTES, rules, connector.name)
            result = import_ad_connector(hooks[connector.name], store, connector, mode=mode, attributes=attributes)
            assert result.result == "success", result
        for connector in config.ad:
            result = run_sync(store, rules, connector=connector.name, mode=mode)
            assert result.result == "success", [(e["code"], e["message"]) for e in store.run_errors(result.run_id)]
        return run_entra_export(store, entra, settings=settings)

    exported = cycle("full")
    assert exported.result == "success", [(e["code"], e["message"]) for e in store.run_errors(exported.run_id)][:5]

    def entra_users() -> dict[str, dict]:
        select = {"$select": "id,userPrincipalName,mail"}
        return {
            u["userPrincipalName"].split("@")[0]: u
            for page in entra.paginate("/users", params=select)
            for u in page["value"]
        }

    users = entra_users()
    # Each person once: the shared people joined by mail (CORP's values win), the linked mailboxes joined their
    # owners and brought their mail; FABRIKAM's own people; nothing from OU=Excluded; no built-in account.
    assert set(users) == {"shared1", "shared2", "shared3", "owner1", "owner2", "mover", "fab.only1", "fab.only2"}
    assert users["owner1"]["mail"] == f"owner1@{SHARED_MAIL_DOMAIN}"
    assert users["shared2"]["mail"] == f"shared2@{SHARED_MAIL_DOMAIN}"
    # The FABRIKAM group's member from CORP (a foreign security principal there) is CORP's shared1 in Entra.
    groups = {g["displayName"]: g["id"] for page in entra.paginate("/groups") for g in page["value"]}
    members = {
        m["userPrincipalName"].split("@")[0]
        for page in entra.paginate(
            f"/groups/{groups['Fabrikam Staff']}/members", params={"$select": "id,userPrincipalName"}
        )
        for m in page["value"]
    }
    assert members == {"shared1", "fab.only1"}

    # Moving a user into the excluded OU: a deletion, stopped by the export's guard when it allows none...
    account = corp.connect()
    try:
        assert account.modify_dn(f"CN=mover,OU=Accounts,OU=AADSync,{corp.base_dn}", "CN=mover", new_superior=excluded)
    finally:
        account.unbind()
    stopped = cycle("delta", ExportSettings(deletion_threshold=0))
    assert stopped.result == STOPPED_DELETION_THRESHOLD
    assert "mover" in entra_users()
    # ...and applied by the next export under the default threshold.
    assert run_entra_export(store, entra).result == "success"
    assert set(entra_users()) == {"shared1", "shared2", "shared3", "owner1", "owner2", "fab.only1", "fab.only2"}


def test_a_pilot_group_limits_the_export_to_its_direct_members(forests, graph_server, store):
    corp, _fabrikam, report, _excluded = forests
    pilot = f"CN=Pilot,OU=Accounts,OU=AADSync,{corp.base_dn}"
    nested = f"CN=Pilot Nested,OU=Accounts,OU=AADSync,{corp.base_dn}"
    account = corp.connect()
    try:
        for dn, members in ((nested, [report.account_users["shared3"]]), (pilot, [report.account_users["owner1"]])):
            attrs = {"sAMAccountName": dn.split(",")[0][3:].replace(" ", ""), "groupType": -2147483646}
            assert account.add(dn, ["top", "group"], attrs), account.result
            assert account.modify(dn, {"member": [(ldap3.MODIFY_ADD, members)]}), account.result
        assert account.modify(pilot, {"member": [(ldap3.MODIFY_ADD, [report.account_users["shared1"], nested])]})
    finally:
        account.unbind()
    connector = parse_connectors_config(f"ad:\n  - name: ad\n    conn_id: aadsync_ad\n    pilot_group: '{pilot}'\n").ad[
        0
    ]
    rules = load_sync_rules()
    attributes, _ = complete_attribute_list(DEFAULT_AD_ATTRIBUTES, rules, "ad")
    assert import_ad_connector(hook_for(corp), store, connector, mode="full", attributes=attributes).result == "success"
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    entra = entra_hook_for(graph_server, tenant_for(graph_server, "corp.example.test", SHARED_MAIL_DOMAIN))
    assert run_entra_export(store, entra).result == "success"
    users = {u["userPrincipalName"].split("@")[0] for page in entra.paginate("/users") for u in page["value"]}
    groups = {g["displayName"] for page in entra.paginate("/groups") for g in page["value"]}
    # Direct members only: the nested group is one (exported, empty of out-of-scope shared3), shared3 is not.
    assert users == {"owner1", "shared1"}
    assert groups == {"Pilot Nested"}
