"""Two real forests through Airflow: the shipped ``aadsync_full`` DAG, given a connectors configuration (the Variable
``aadsync_connectors_file``) naming CORP (127.0.0.1) and FABRIKAM (127.0.0.2), imports each forest with its own task
and scope, syncs them connector by connector and exports to the Graph emulator: every person lands in Entra ID once
(joined pairs become one user) and an excluded OU's users never appear."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import yaml

from aadsync_devkit.world.airflow_runs import LocalAirflow, task_states
from aadsync_devkit.world.fixtures import provisioned_dc
from aadsync_devkit.world.forests import FORESTS, SHARED_MAIL_DOMAIN, ensure_exchange_schema, seed_forest_pair
from aadsync_devkit.world.seed import USER_CLASSES
from airflow_provider_aadsync.engine.rules import DEFAULT_RULES_DIR
from tests.support.airflow_world import REPO, main_store, succeeded
from tests.support.servers import GRAPH_CLIENT_ID, GRAPH_SECRET, entra_connection, entra_hook_for, trust

pytestmark = pytest.mark.integration

FABRIKAM = FORESTS[1]


@pytest.fixture(scope="module")
def forests(start_dc, tmp_path_factory):
    """Both DCs running and seeded as `aadsync-dev up --forests 2` seeds them; CORP also has OU=Excluded with a user."""
    corp = start_dc(users=0, groups=0)
    fabrikam = provisioned_dc(
        tmp_path_factory.mktemp("fabrikam") / "home", realm=FABRIKAM.realm, domain=FABRIKAM.domain, host=FABRIKAM.host
    )
    fabrikam.start()
    try:
        account, resource = corp.connect(), fabrikam.connect()
        try:
            ensure_exchange_schema(account, corp.base_dn)
            ensure_exchange_schema(resource, fabrikam.base_dn)
            seed_forest_pair(account, corp.base_dn, resource, fabrikam.base_dn)
            excluded = f"OU=Excluded,OU=AADSync,{corp.base_dn}"
            assert account.add(excluded, ["top", "organizationalUnit"]), account.result
            attrs = {"sAMAccountName": "hidden1", "userPrincipalName": "hidden1@corp.example.test", "givenName": "h"}
            assert account.add(f"CN=hidden1,{excluded}", USER_CLASSES, attrs), account.result
        finally:
            account.unbind()
            resource.unbind()
        yield corp, fabrikam, excluded
    finally:
        fabrikam.stop()


def _read(dc, sam: str, attribute: str) -> bytes:
    """One raw attribute value of the user ``sam``, read back from ``dc`` over LDAP."""
    conn = dc.connect()
    try:
        assert conn.search(dc.base_dn, f"(sAMAccountName={sam})", attributes=[attribute]), (sam, conn.result)
        values = conn.response[0]["raw_attributes"].get(attribute) or []
    finally:
        conn.unbind()
    assert len(values) == 1, (sam, attribute, values)
    return values[0]


@pytest.fixture(scope="module")
def tenant(graph_server) -> dict:
    response = httpx.post(
        f"{graph_server.base_url}/_emulator/tenants",
        json={"name": f"dagforests{uuid.uuid4().hex[:8]}",
              "verifiedDomains": ["corp.example.test", "fabrikam.example.test", SHARED_MAIL_DOMAIN],
              "apps": [{"clientId": GRAPH_CLIENT_ID, "clientSecret": GRAPH_SECRET}]},
        verify=trust(graph_server),
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()


def test_aadsync_full_imports_both_forests_and_each_person_lands_in_entra_once(forests, graph_server, tenant, tmp_path):
    corp, fabrikam, excluded = forests
    config = tmp_path / "connectors.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "ad": [
                    {"name": "ad", "conn_id": "aadsync_ad",
                     "partitions": [{"dn": corp.base_dn, "exclude_ous": [excluded]}]},
                    {"name": "ad_fabrikam", "conn_id": FABRIKAM.conn_id},
                ],
            }
        )
    )  # fmt: skip
    same_person = DEFAULT_RULES_DIR.parent / "optional" / "join-same-person.yaml"
    airflow = LocalAirflow(
        tmp_path / "airflow",
        dags_folder=REPO / "dags",
        connections={
            "aadsync_ad": {"conn_type": "aadsync_ad", **corp.connection_info()},
            FABRIKAM.conn_id: {"conn_type": "aadsync_ad", **fabrikam.connection_info()},
            "aadsync_entra": json.loads(entra_connection(graph_server, tenant).as_json()),
        },
        variables={
            "aadsync_instance": "main",
            "aadsync_connectors_file": str(config),
            "aadsync_rules_path": f"{DEFAULT_RULES_DIR},{same_person}",
        },
        env={"AADSYNC_HOME": str(tmp_path / "aadsync"), "PYTHONPATH": str(REPO)},
    )
    airflow.migrate()
    run = succeeded(airflow.dags_test("aadsync_full"), corp)
    assert fabrikam.admin_password not in run.output

    states = task_states(airflow.home, "aadsync_full", run.run_id)
    for task_id in ("import_ad", "import_ad_fabrikam", "import_entra", "sync_ad", "sync_ad_fabrikam", "sync_entra"):
        assert states[task_id][0] == "success", (task_id, states)
    with main_store(airflow) as store:
        runs = [(r["profile"], r["connector"], r["result"]) for r in reversed(store.list_runs(limit=20))]
    # the product's order: every import (parallel tasks: in any order), the syncs connector by connector, the exports
    imports = {("full-import", "ad", "success"), ("full-import", "ad_fabrikam", "success")}
    assert set(runs[:3]) == imports | {("full-import", "entra", "success")}
    assert runs[3:6] == [("full-sync", "ad", "success"), ("full-sync", "ad_fabrikam", "success"),
                         ("full-sync", "entra", "success")]  # fmt: skip
    # the AD exports first, each forest's to its own DC (each AD user's anchor into its empty mS-DS-ConsistencyGuid),
    # then Entra ID's
    assert runs[6:8] == [("export", "ad", "success"), ("export", "ad_fabrikam", "success")]
    assert runs[8][:2] == ("export", "entra") and runs[8][2] == "success"
    assert states["export_ad_fabrikam"][0] == "success", states
    # FABRIKAM's DC holds it: its own person's objectGUID; a person joined by mail gets CORP's anchor (one person)
    guids = {"fab.only1": _read(fabrikam, "fab.only1", "objectGUID"), "shared2": _read(corp, "shared2", "objectGUID")}
    assert _read(fabrikam, "fab.only1", "mS-DS-ConsistencyGuid") == guids["fab.only1"]
    assert _read(fabrikam, "fab.shared2", "mS-DS-ConsistencyGuid") == guids["shared2"]
    assert _read(corp, "shared2", "mS-DS-ConsistencyGuid") == guids["shared2"]

    entra = entra_hook_for(graph_server, tenant)
    users = {
        u["userPrincipalName"].split("@")[0]: u
        for page in entra.paginate("/users", params={"$select": "id,userPrincipalName,mail"})
        for u in page["value"]
    }
    # Each person once: shared people joined by mail, linked mailboxes joined their owners (bringing their mail),
    # FABRIKAM's own people; nothing from CORP's excluded OU.
    assert set(users) == {"shared1", "shared2", "shared3", "owner1", "owner2", "fab.only1", "fab.only2"}
    assert users["owner1"]["mail"] == f"owner1@{SHARED_MAIL_DOMAIN}"
    report = airflow.report(run)
    assert "full-import on `ad_fabrikam` | success" in report and "full-sync on `ad_fabrikam` | success" in report
