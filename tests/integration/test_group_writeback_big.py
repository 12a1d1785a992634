"""A 60,000-member Microsoft 365 group written back to a real AD (bench scale: 100,000 AD users, marked slow).

Cloud users are seeded in the emulator as the AD users' cloud twins (same ImmutableId), so the Entra import joins
them ("hard match") without exporting 100,000 users first.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
import sqlalchemy as sa

from aadsync_devkit.world.samba import SambaDC
from aadsync_devkit.world.seed import DEV_WRITEBACK_OU, MAIL_DOMAIN
from airflow_provider_aadsync.engine.connectors.ad.writer import run_ad_export
from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
from airflow_provider_aadsync.engine.store import link, mv_object
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.hooks.entra import BatchRequest
from airflow_provider_aadsync.steps import run_ad_import
from tests.support.servers import entra_hook_for, hook_for, trust
from tests.support.writeback import members_in_ad, written_back

#: Group writeback is opt-in: these tests turn it on, into the dev DC's writeback OU.
WRITEBACK_ON = {"writeback_enabled": True, "writeback_ou": DEV_WRITEBACK_OU}

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MEMBERS = 60_000


@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    dc = start_dc(users=100_000, groups=5_000)
    hook_for(dc).get_conn().add(DEV_WRITEBACK_OU, "organizationalUnit")
    return dc


def test_60000_member_group_written_back_with_every_member(dc, graph_server, tenant_verifying, store):
    tenant = tenant_verifying(MAIL_DOMAIN)
    graph = entra_hook_for(graph_server, tenant)
    ad = hook_for(dc)
    assert run_ad_import(ad, store, mode="full")["result"] == "success"
    rules = load_sync_rules(**WRITEBACK_ON, writeback_size_limit=MEMBERS)
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(mv_object.c.attrs, link.c.anchor)
            .join(link, sa.and_(link.c.mv_id == mv_object.c.id, link.c.connector == "ad"))
            .where(mv_object.c.object_type == "person")
            .order_by(mv_object.c.id)
            .limit(MEMBERS)
        ).all()
    twins = [(json.loads(attrs), ad_guid) for attrs, ad_guid in rows]
    seeded: list[str] = []
    for start in range(0, MEMBERS, 5_000):
        body = [
            {"@odata.type": "#microsoft.graph.user", "accountEnabled": True,
             "displayName": attrs["displayName"][0], "mailNickname": f"twin{start + i}",
             "userPrincipalName": f"twin{start + i}@{MAIL_DOMAIN}", "onPremisesImmutableId": attrs["sourceAnchor"][0]}
            for i, (attrs, _guid) in enumerate(twins[start : start + 5_000])
        ]  # fmt: skip
        response = httpx.post(
            f"{graph_server.base_url}/_emulator/tenants/{tenant['id']}/objects",
            json=body,
            verify=trust(graph_server),
            timeout=300,
        )
        assert response.status_code == 201, response.text
        seeded += [item["id"] for item in response.json()["value"]]
    group = graph.request(
        "POST",
        "/groups",
        json={"displayName": "Everyone Big", "mailNickname": "everyonebig", "mailEnabled": True,
              "securityEnabled": False, "groupTypes": ["Unified"]},
    )  # fmt: skip
    requests = [
        BatchRequest(str(i), "PATCH", f"/groups/{group['id']}",
                     {"members@odata.bind": [graph.directory_object_url(m) for m in seeded[s : s + 20]]})
        for i, s in enumerate(range(0, MEMBERS, 20))
    ]  # fmt: skip
    for start in range(0, len(requests), 20):
        answers = graph.batch(requests[start : start + 20])
        assert all(answer.ok for answer in answers.values())

    assert import_entra(graph, store, connector="entra", mode="full").result == "success"
    entra_sync = run_sync(store, rules, connector="entra", mode="full")
    assert entra_sync.result == "success", store.run_errors(entra_sync.run_id, 3)
    started = time.monotonic()
    export = run_ad_export(store, ad)
    seconds = time.monotonic() - started
    assert export.result == "success", store.run_errors(export.run_id, 3)
    assert export.counters["member_adds"] == MEMBERS
    assert export.counters["member_modify_operations"] == MEMBERS // 5_000
    assert export.counters["ldap_writes"] == export.counters["ldap_writes_minimum"] == 1 + MEMBERS // 5_000
    guid, _attrs = written_back(ad, group["id"])
    in_ad = members_in_ad(ad, guid)  # ranged reads of 1,500 values
    assert len(in_ad) == len(set(in_ad)) == MEMBERS
    assert set(in_ad) == {ad_guid for _attrs, ad_guid in twins}
    print(f"60,000-member writeback: {seconds:.1f} s, {export.counters['ldap_writes']} LDAP writes")
