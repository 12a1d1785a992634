"""The sync engine on PostgreSQL (multi-worker deployments): the default-rule scenarios and the sync memo, unchanged."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.store import Store, bulk, cs_object
from airflow_provider_aadsync.engine.sync import memo, preview, run_sync
from tests.support.world import seed
from tests.unit.engine.sync.conftest import rules  # noqa: F401 - the fixture the unit tests below take
from tests.unit.engine.sync.test_default_rules_sync import (  # noqa: F401 - collected here again, with `store` on PostgreSQL
    test_deleting_the_ad_user_deprovisions_its_cloud_user,
    test_entra_hard_match_joins_existing_cloud_user_instead_of_creating_one,
    test_full_sync_projects_in_scope_objects_and_stages_entra_adds,
    test_membership_delta_stages_member_add_and_remove,
    test_second_full_sync_stages_nothing,
)
from tests.unit.engine.sync.test_memo import (  # noqa: F401 - the sync memo on PostgreSQL (updated_at read as text)
    test_a_cloud_edit_is_corrected_by_the_next_full_sync_of_the_other_connector,
    test_a_second_full_sync_skips_every_settled_object_and_changes_nothing,
    test_whole_store_by_id_and_by_anchor_range_reads_give_the_same_fingerprints,
    test_with_rules_reading_member_of_a_membership_change_is_evaluated,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
def store(pg_store: Store) -> Store:
    """The unit tests' ``store``, on PostgreSQL."""
    return pg_store


def test_streamed_fingerprint_reads_lose_no_row(pg_store):
    """The memo's reads stream through a server-side cursor on PostgreSQL, read a chunk at a time: the rows the result
    fetched ahead (psycopg2 fetches one to learn the columns) are hashed too, as an unstreamed read hashes them."""
    count = 2 * memo.FETCH_ROWS + 3
    query = sa.text("SELECT g, g::text FROM generate_series(1, :n) AS g")
    with pg_store.engine.begin() as connection:
        streamed = memo._row_hashes(connection.execute(query.execution_options(stream_results=True), {"n": count}))
        whole = memo._row_hashes(connection.execute(query, {"n": count}))
    assert len(streamed) == count
    assert streamed.equals(whole)


def test_a_pass_analyzes_what_it_filled_and_syncs_the_same(pg_store, rules, monkeypatch):  # noqa: F811
    """With every table a pass writes to analyzed before it is read again (the threshold lowered to one row), the pass
    does what it does without, and what it analyzed is committed with it: the planner knows the links after."""
    monkeypatch.setattr(bulk, "STALE_ROWS", 1)
    seed(pg_store)
    first = run_sync(pg_store, rules, connector="ad", mode="full")
    again = run_sync(pg_store, rules, connector="ad", mode="full")
    assert first.result == again.result == "success"
    assert again.counters["objects_unchanged"] == first.counters["objects_memoized"] > 0
    with pg_store.engine.connect() as connection:
        planned = connection.exec_driver_sql("SELECT reltuples FROM pg_class WHERE relname = 'link'").scalar()
    assert planned > 0


def test_a_preview_analyzes_nothing(pg_store, rules, monkeypatch):  # noqa: F811
    """A preview is rolled back, and an analyze's reset of PostgreSQL's change counters would not be: it analyzes
    nothing, where a sync pass of the same store does."""
    monkeypatch.setattr(bulk, "STALE_ROWS", 1)
    analyzed: list[list[str]] = []
    real = bulk._analyze
    monkeypatch.setattr(bulk, "_analyze", lambda connection, tables: analyzed.append([t.name for t in tables]))
    seed(pg_store)
    with pg_store.engine.connect() as connection:
        anchor = (
            connection.execute(sa.select(cs_object.c.anchor).where(cs_object.c.connector == "ad")).scalars().first()
        )
    preview(pg_store, rules, connector="ad", anchor=anchor)
    assert not any(analyzed)
    monkeypatch.setattr(bulk, "_analyze", real)
    assert run_sync(pg_store, rules, connector="ad", mode="full").result == "success"
