"""The cycle's write path end to end: a real AD (Samba) imported and synchronized, exported to the Graph emulator,
confirmed by an Entra import, and a second export with nothing to write."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from aadsync_devkit.world.samba import SambaDC
from aadsync_devkit.world.seed import MAIL_DOMAIN
from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.store import cs_object, link, mv_object, mv_reference, pending_export
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.steps import run_ad_import
from tests.support.servers import entra_hook_for, hook_for

pytestmark = pytest.mark.integration

USERS, GROUPS, BIG = 1600, 20, 1501
UNPACED = ExportSettings(write_budget=10**9)


@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    return start_dc(users=USERS, groups=GROUPS, group_size=BIG)


@pytest.fixture
def tenant(tenant_verifying):
    """A tenant that has verified the AD users' UPN domain."""
    return tenant_verifying(MAIL_DOMAIN)


def members_in_graph(hook, group_id: str) -> set[str]:
    return {
        item["id"]
        for page in hook.paginate(f"/groups/{group_id}/members", params={"$select": "id", "$top": "999"})
        for item in page["value"]
    }


def test_seeded_directory_exported_to_entra_and_confirmed(dc, graph_server, tenant, store):
    rules = load_sync_rules()
    hook = entra_hook_for(graph_server, tenant)
    assert run_ad_import(hook_for(dc), store, mode="full")["result"] == "success"
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    # ~1,400 of the seeded users have a manager: with their PUTs the export is over Graph's 3,000 writes per 150 s,
    # and the emulator runs unthrottled here: no pacing to the real budget (the throttling test covers that)
    result = run_entra_export(store, hook, settings=UNPACED)
    assert result.result == "success", [(e["code"], e["message"]) for e in store.run_errors(result.run_id)][:5]
    assert result.counters["user_creates"] == USERS
    assert result.counters["batch_calls"] <= 1.05 * result.counters["batch_calls_minimum"]

    # every metaverse group's members are in Entra ID, through the links sync made (independent read from Graph)
    with store.engine.connect() as connection:
        entra_anchor = dict(
            connection.execute(sa.select(link.c.mv_id, link.c.anchor).where(link.c.connector == "entra")).all()
        )
        groups = connection.execute(sa.select(mv_object.c.id).where(mv_object.c.object_type == "group")).scalars().all()
        expected = {
            group: {
                entra_anchor[target]
                for target in connection.execute(
                    sa.select(mv_reference.c.target_mv_id).where(mv_reference.c.mv_id == group)
                ).scalars()
            }
            for group in groups
        }
    assert max(len(m) for m in expected.values()) == BIG
    for group, wanted in expected.items():
        assert members_in_graph(hook, entra_anchor[group]) == wanted, group

    assert import_entra(hook, store, connector="entra", mode="delta").result == "success"
    assert run_sync(store, rules, connector="entra", mode="delta").result == "success"
    with store.engine.connect() as connection:
        left = sa.select(sa.func.count()).where(pending_export.c.connector == "entra")  # AD: ConsistencyGuid writes
        assert connection.execute(left).scalar() == 0
        entra_objects = connection.execute(
            sa.select(sa.func.count()).where(cs_object.c.connector == "entra", cs_object.c.is_deleted.is_(False))
        ).scalar()
    assert entra_objects == USERS + len(groups)
    again = run_entra_export(store, hook, settings=UNPACED)
    assert again.result == "success" and again.counters["batch_calls"] == 0
