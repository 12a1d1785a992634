"""holders_of: the same holders whether the keys are probed through the index or read in one pass over the rows."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.store import Store, cs_reference
from airflow_provider_aadsync.engine.sync import lookups
from airflow_provider_aadsync.engine.sync.lookups import holders_of, set_differences


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}", instance="test") as opened:
        rows = [
            {"connector": connector, "anchor": f"group-{g}", "attribute": "member", "target_anchor": f"user-{u}"}
            for connector in ("ad", "ad_other")
            for g in range(30)
            for u in range(g, g + 5)
        ]
        with opened.transaction() as connection:
            connection.execute(sa.insert(cs_reference), rows)
        yield opened


@pytest.mark.parametrize("probe_always", [10_000, 0], ids=["probed", "one-pass"])
def test_holders_are_the_groups_holding_a_key_of_that_connector_only(store, monkeypatch, probe_always):
    monkeypatch.setattr(lookups, "PROBE_ALWAYS", probe_always)
    monkeypatch.setattr(lookups, "SCAN_ROWS", 7)  # several partitions
    with store.engine.connect() as connection:
        found = holders_of(
            connection,
            cs_reference.c.anchor,
            cs_reference.c.target_anchor,
            {"user-0", "user-31", "user-99"},
            cs_reference.c.connector == "ad",
        )
    # user-0 is held by group-0; user-31 by groups 27 to 29 (30 only exists in no group); user-99 by none
    assert found == {"group-0", "group-27", "group-28", "group-29"}


def test_many_keys_against_many_more_rows_are_still_probed(store, monkeypatch):
    """One pass over the rows only pays when they are at most SCAN_RATIO times the keys."""
    monkeypatch.setattr(lookups, "PROBE_ALWAYS", 0)
    statements: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with store.engine.connect() as connection:
        found = holders_of(connection, cs_reference.c.anchor, cs_reference.c.target_anchor, {"user-3"})
    assert found == {"group-0", "group-1", "group-2", "group-3"}  # of both connectors: no condition given
    assert any(" IN (" in statement for statement in statements)


def test_set_differences_are_the_pairs_of_one_side_only_and_count_the_unresolved(store):
    """Desired: the references of group-0 and group-1 (of "ad"), one of them unresolved (NULL); current: group-1 and
    group-2's. Duplicates of a desired pair count once; a pair on both sides is no difference."""
    desired = sa.union_all(
        sa.select(cs_reference.c.anchor, cs_reference.c.target_anchor).where(
            cs_reference.c.connector == "ad", cs_reference.c.anchor.in_(["group-0", "group-1"])
        ),
        sa.select(sa.literal("group-0"), sa.literal("user-0")),  # a duplicate
        sa.select(sa.literal("group-1"), sa.null()),  # a member not resolvable yet
    ).subquery()
    current = sa.select(cs_reference.c.anchor, cs_reference.c.target_anchor).where(
        cs_reference.c.connector == "ad_other", cs_reference.c.anchor.in_(["group-1", "group-2"])
    )
    with store.engine.connect() as connection:
        found = set_differences(connection, sa.select(*desired.c), current)
    assert sorted(found.adds) == [("group-0", f"user-{u}") for u in range(5)]
    # group-1 holds users 1 to 5 on both sides; group-2's users 2 to 6 are held but not desired
    assert sorted(found.removes) == [("group-2", f"user-{u}") for u in range(2, 7)]
    assert found.unresolved == 1
