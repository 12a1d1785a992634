"""The V2 member limit at its real size: 250,000 members sync, 250,001 are a per-object error (slow: bench scale)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.runs.cs_writer import ConnectorSpaceWriter
from airflow_provider_aadsync.engine.store import Store, pending_export_reference, run_error
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import V1_MEMBER_LIMIT, V2_MEMBER_LIMIT, load_sync_rules
from tests.support.world import ad_group, ad_user, export_for, mv_by

pytestmark = pytest.mark.slow


def limit_world(store: Store, limit: int) -> None:
    """``limit + 1`` users, a group of exactly ``limit`` members and one of ``limit + 1``."""
    users = limit + 1
    run_id = store.start_run("full-import", "ad")
    with store.transaction() as connection:
        writer = ConnectorSpaceWriter(store, connection, "ad", run_id)
        writer.begin_full()
        for start in range(1, users + 1, 10_000):
            writer.write_full_page([ad_user(n) for n in range(start, min(start + 10_000, users + 1))])
        writer.write_full_page(
            [
                ad_group(users + 1, "AtLimit", members=range(1, limit + 1)),
                ad_group(users + 2, "OverLimit", members=range(1, users + 1)),
            ]
        )
        writer.finish_full()


def limit_errors(store: Store, run_id: int) -> list:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(run_error).where(run_error.c.run_id == run_id)).all()


def test_250000_members_sync_and_250001_are_an_error(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as store:
        limit_world(store, V2_MEMBER_LIMIT)
        result = run_sync(store, load_sync_rules(mode="v2"), connector="ad", mode="full")
        assert result.result == "completed-sync-errors"
        errors = limit_errors(store, result.run_id)
        assert [error.code for error in errors] == ["flow-error"]
        assert "Maximum member count exceeded: more than 250000 members" in errors[0].message
        at_limit = export_for(store, mv_by(store, "accountName", "AtLimit")[0])
        with store.engine.connect() as connection:
            staged = connection.execute(
                sa.select(sa.func.count()).where(pending_export_reference.c.anchor == at_limit["anchor"])
            ).scalar()
        assert staged == V2_MEMBER_LIMIT


def test_v1_mode_caps_groups_at_50000_members(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as store:
        limit_world(store, V1_MEMBER_LIMIT)
        result = run_sync(store, load_sync_rules(mode="v1"), connector="ad", mode="full")
        errors = limit_errors(store, result.run_id)
        assert [error.code for error in errors] == ["flow-error"]
        assert "more than 50000 members" in errors[0].message and "OverLimit" in errors[0].dn
        assert export_for(store, mv_by(store, "accountName", "AtLimit")[0])["operation"] == "add"
