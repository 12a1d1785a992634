"""A full (initial) users delta round that mentions an object more than once: Graph's rule is "the last occurrence
wins", whether the later one is a change or an ``@removed``, and whichever write batch each occurrence lands in."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.entra import reader
from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
from airflow_provider_aadsync.engine.store import Store, cs_reference
from tests.support.fakes import FakeGraph, oid, user
from tests.support.stores import live_objects


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as opened:
        yield opened


def managers(store: Store, n: int) -> set[str]:
    with store.engine.connect() as connection:
        return set(
            connection.execute(
                sa.select(cs_reference.c.target_anchor).where(
                    cs_reference.c.anchor == oid(n), cs_reference.c.attribute == "manager"
                )
            ).scalars()
        )


def managed(n: int, manager: int, **props) -> dict:
    return {**user(n, **props), "manager@delta": [{"@odata.type": "#microsoft.graph.user", "id": oid(manager)}]}


def removed(n: int) -> dict:
    return {"id": oid(n), "@removed": {"reason": "deleted"}}


def test_user_removed_later_in_the_full_round_is_not_kept(store):
    graph = FakeGraph()
    graph.rounds["users"].append([[user(1), user(2)], [user(3), removed(2)]])
    result = import_entra(graph, store, mode="full")
    assert result.result == "success"
    assert oid(2) not in live_objects(store)  # deleted while the round was read: the later @removed wins


def test_known_user_removed_later_in_the_full_round_is_deleted(store):
    graph = FakeGraph()
    graph.rounds["users"].append([[user(1), user(2), user(3)]])
    import_entra(graph, store, mode="full")
    graph.rounds["users"].append([[user(1), user(2)], [user(3), removed(2)]])
    result = import_entra(graph, store, mode="full")
    assert oid(2) not in live_objects(store) and result.counters["deletes"] == 1


def test_user_repeated_across_write_batches_keeps_one_manager(store, monkeypatch):
    monkeypatch.setattr(reader, "_WRITE_BATCH", 2)  # production: 5,000 users per batch; Graph pages hold 200
    graph = FakeGraph()
    # user 2 is in the first batch with manager 1 and repeated in the second with manager 3 (changed meanwhile)
    graph.rounds["users"].append([[user(1), managed(2, 1)], [user(3)], [managed(2, 3, department="Sales")]])
    result = import_entra(graph, store, mode="full")
    assert result.result == "success"
    assert managers(store, 2) == {oid(3)}  # Graph's manager is single-valued: the last occurrence
    assert json.loads(live_objects(store)[oid(2)]["attrs"])["department"] == ["Sales"]
    assert result.counters["adds"] == 3


def test_user_repeated_unchanged_across_write_batches_does_not_fail_the_import(store, monkeypatch):
    monkeypatch.setattr(reader, "_WRITE_BATCH", 2)
    graph = FakeGraph()
    graph.rounds["users"].append([[user(1), managed(2, 1)], [user(3)], [managed(2, 1)]])
    result = import_entra(graph, store, mode="full")  # today: IntegrityError on cs_reference's primary key
    assert result.result == "success"
    assert managers(store, 2) == {oid(1)}


def test_known_user_changed_then_changed_back_across_batches_ends_in_the_last_state(store, monkeypatch):
    monkeypatch.setattr(reader, "_WRITE_BATCH", 2)
    graph = FakeGraph()
    graph.rounds["users"].append([[user(1), user(2), user(3)]])
    import_entra(graph, store, mode="full")
    # first occurrence: a new department; the repeat (later wins) carries the department back to none
    graph.rounds["users"].append([[user(1), user(2, department="Sales")], [user(3)], [user(2)]])
    import_entra(graph, store, mode="full")
    assert "department" not in json.loads(live_objects(store)[oid(2)]["attrs"])
