"""A 60,000-member group exported through the emulator at the protocol minimum of calls, every member present."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.runs.cs_writer import ConnectorSpaceWriter
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.servers import entra_hook_for
from tests.support.world import ad_group, ad_user

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # minutes on 2 cores: bench scale, not CI

MEMBERS = 60_000


@pytest.fixture
def tenant(tenant_verifying):
    """A tenant that has verified the AD users' UPN domain."""
    return tenant_verifying("corp.example")


def test_60000_member_group_export(graph_server, tenant, store):
    run_id = store.start_run("full-import", "ad")
    with store.transaction() as connection:
        writer = ConnectorSpaceWriter(store, connection, "ad", run_id)
        writer.begin_full()
        for start in range(1, MEMBERS + 1, 10_000):
            writer.write_full_page([ad_user(n) for n in range(start, start + 10_000)])
        writer.write_full_page([ad_group(MEMBERS + 1, "Everyone", members=range(1, MEMBERS + 1))])
        writer.finish_full()
    assert run_sync(store, load_sync_rules(), connector="ad", mode="full").result == "success"
    hook = entra_hook_for(graph_server, tenant)
    # the emulator runs unthrottled here: no pacing to Graph's real write budget (the throttling test covers that)
    result = run_entra_export(store, hook, settings=ExportSettings(write_budget=10**9))
    assert result.result == "success", store.run_errors(result.run_id)[:3]
    assert result.counters["member_adds"] == MEMBERS
    # 60,001 creates → 3,001 calls; 60,000 members in 3,000 requests of 20 → 150 calls: exactly the minimum
    assert result.counters["batch_calls"] == result.counters["batch_calls_minimum"] == 3_001 + 150
    group = hook.request("GET", "/groups", params={"$filter": "displayName eq 'Everyone'"})["value"][0]
    members = {
        item["id"]
        for page in hook.paginate(f"/groups/{group['id']}/members", params={"$select": "id", "$top": "999"})
        for item in page["value"]
    }
    assert len(members) == MEMBERS
