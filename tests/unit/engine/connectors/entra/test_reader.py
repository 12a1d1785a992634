"""The Entra ID import against an in-memory Graph delta source shaped like Graph's documented answers."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.entra.reader import graph_object, import_entra
from airflow_provider_aadsync.engine.connectors.entra.schema import DEFAULT_GROUP_PROPERTIES, WRITEBACK_ENABLED
from airflow_provider_aadsync.engine.runs.import_attributes import ATTRIBUTE_LIST_PARTITION
from airflow_provider_aadsync.engine.store import Store, as_utc, cs_object, cs_reference, utcnow, watermark
from tests.support.fakes import FakeGraph, member, oid, user


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as opened:
        yield opened


@pytest.fixture
def graph() -> FakeGraph:
    graph = FakeGraph()
    graph.rounds["users"].append([[user(1), user(2)], [user(3, department="Sales")]])
    group = {"id": oid(100), "displayName": "Team", "groupTypes": ["Unified"], "securityEnabled": False}
    graph.rounds["groups"].append(
        [
            [{**group, "members@delta": [member(1), member(2)]}],
            [{"id": oid(100), "members@delta": [member(3)]}],  # Graph repeats a big group on later pages
        ]
    )
    return graph


def rows(store: Store) -> dict[str, dict]:
    with store.engine.connect() as connection:
        return {row.anchor: dict(row._mapping) for row in connection.execute(sa.select(cs_object))}


def members(store: Store, group: int) -> set[str]:
    with store.engine.connect() as connection:
        return set(
            connection.execute(
                sa.select(cs_reference.c.target_anchor).where(
                    cs_reference.c.anchor == oid(group), cs_reference.c.attribute == "members"
                )
            ).scalars()
        )


def test_graph_object_keeps_types_and_splits_member_changes():
    obj = graph_object(
        "groups",
        {
            "id": oid(7),
            "mailEnabled": False,
            "groupTypes": ["Unified"],
            "description": None,
            "members@delta": [member(1), member(2, removed=True)],
        },
        partial=True,
    )
    assert obj.attrs == {
        "id": [oid(7)],
        "mailEnabled": [False],
        "groupTypes": ["Unified"],
        "description": [],
        "softDeleted": [],  # a group present in a delta is not soft-deleted (any more)
    }
    assert obj.reference_adds == {"members": [(oid(1), None)]}
    assert obj.reference_removes == {"members": [(oid(2), None)]}
    removed = graph_object("users", {"id": oid(8), "@removed": {"reason": "changed"}}, partial=True)
    assert removed.deleted and removed.object_type == "user"
    # a soft-deleted group (restorable: reason "changed") stays, marked; a hard-deleted one goes
    soft = graph_object("groups", {"id": oid(9), "@removed": {"reason": "changed"}}, partial=True)
    assert not soft.deleted and soft.partial and soft.attrs == {"softDeleted": [True]}
    assert graph_object("groups", {"id": oid(9), "@removed": {"reason": "deleted"}}, partial=True).deleted


def test_full_import_gathers_groups_across_pages_and_saves_both_delta_links(graph, store):
    result = import_entra(graph, store, mode="full")
    assert result.result == "success" and result.counters["adds"] == 4
    assert members(store, 100) == {oid(1), oid(2), oid(3)}
    state = rows(store)
    assert json.loads(state[oid(1)]["attrs"])["accountEnabled"] == [True]
    assert state[oid(100)]["object_type"] == "group" and state[oid(1)]["dn"] == f"users/{oid(1)}"
    with store.engine.connect() as connection:
        links = dict(connection.execute(sa.select(watermark.c.partition, watermark.c.cookie)).all())
    lists = [partition for partition in links if partition.startswith(ATTRIBUTE_LIST_PARTITION)]
    assert len(lists) == 1 and b"accountEnabled" in links.pop(lists[0])  # the $select lists, saved with the links
    assert links == {
        "users": b"https://graph.test/v1.0/users/delta?$deltatoken=d1",
        "groups": b"https://graph.test/v1.0/groups/delta?$deltatoken=d1",
    }


class SwitchingGraph(FakeGraph):
    """A FakeGraph that also lists the Microsoft 365 groups' beta writebackConfiguration, counting the listings."""

    def __init__(self, switches: dict[str, bool | None]):
        super().__init__()
        self.switches = switches
        self.listings = 0

    def writeback_configurations(self):
        self.listings += 1
        value = [{"id": anchor, "writebackConfiguration": {"isEnabled": on}} for anchor, on in self.switches.items()]
        yield {"value": value}


def test_a_full_import_without_the_rules_properties_keeps_the_writeback_switches(store):
    """A full import replaces every group whole: one run without the rules' properties (a direct engine call, whose
    ``$select`` lacks the beta switch) keeps the switches the connector space holds, without reading them, so a group
    disabled for writeback stays disabled for the next sync with the writeback rules, instead of reading as enabled
    (Graph's default when the value is absent)."""
    graph = SwitchingGraph({oid(100): False, oid(101): None})
    team = {"groupTypes": ["Unified"], "securityEnabled": False}
    for _ in range(2):
        graph.rounds["groups"].append([[{"id": oid(100), "displayName": "Off", **team}, {"id": oid(101), **team}]])
    import_entra(graph, store, mode="full", group_properties=[*DEFAULT_GROUP_PROPERTIES, WRITEBACK_ENABLED])
    assert graph.listings == 1
    import_entra(graph, store, mode="full")  # the default properties: the switch is not among them
    state = rows(store)
    assert json.loads(state[oid(100)]["attrs"])[WRITEBACK_ENABLED] == [False]
    assert WRITEBACK_ENABLED not in json.loads(state[oid(101)]["attrs"])  # null: enabled, as Graph defaults it
    assert graph.listings == 1  # kept, not read: a tenant without writeback gets no beta call
    import_entra(graph, store, mode="delta")
    assert graph.listings == 1 and json.loads(rows(store)[oid(100)]["attrs"])[WRITEBACK_ENABLED] == [False]


def test_delta_applies_changes_from_the_saved_links(graph, store):
    import_entra(graph, store, mode="full")
    graph.rounds["users"].append(
        [
            [
                {"id": oid(1), "displayName": "Renamed"},
                {"id": oid(2), "@removed": {"reason": "deleted"}},
                user(4),
            ]
        ]
    )
    graph.rounds["groups"].append([[{"id": oid(100), "members@delta": [member(4), member(1, removed=True)]}]])
    result = import_entra(graph, store, mode="delta")
    assert result.mode == "delta" and result.fallback_reason is None
    assert sorted(graph.links_used[-2:]) == [
        "https://graph.test/v1.0/groups/delta?$deltatoken=d1",
        "https://graph.test/v1.0/users/delta?$deltatoken=d1",
    ]
    counters = result.counters
    assert (counters["adds"], counters["deletes"]) == (1, 1)
    assert json.loads(rows(store)[oid(1)]["attrs"])["displayName"] == ["Renamed"]
    assert members(store, 100) == {oid(3), oid(4)}  # 2 was deleted with its user, 1 removed, 4 added


def test_expired_delta_link_falls_back_to_full(graph, store):
    import_entra(graph, store, mode="full")
    graph.expired = True
    graph.rounds["users"].append([[user(1), user(2), user(3, department="Sales")]])
    graph.rounds["groups"].append(
        [
            [
                {
                    "id": oid(100),
                    "displayName": "Team",
                    "groupTypes": ["Unified"],
                    "securityEnabled": False,
                    "members@delta": [member(1), member(2), member(3)],
                }
            ]
        ]
    )
    result = import_entra(graph, store, mode="delta")
    assert result.mode == "full" and "rejected the delta link" in result.fallback_reason
    assert (result.counters["adds"], result.counters["updates"], result.counters["deletes"]) == (0, 0, 0)


def test_delta_link_older_than_seven_days_means_full(graph, store):
    import_entra(graph, store, mode="full")
    with store.transaction() as connection:
        connection.execute(sa.update(watermark).values(updated_at=utcnow().replace(year=2020)))
    result = import_entra(graph, store, mode="delta")
    assert result.mode == "full" and "older than 7 days" in result.fallback_reason


def test_a_delta_links_age_counts_from_the_read_not_from_the_save(graph, store):
    """A watermark's age decides when a delta must become a full import, so it is stamped with the time the read
    started: a save minutes later (a long full import) must not make it look younger than the server's view."""
    reads: list = []
    pages = graph.delta_pages

    def slow_pages(*args):
        reads.append(utcnow())
        time.sleep(0.05)
        yield from pages(*args)

    graph.delta_pages = slow_pages
    import_entra(graph, store, mode="full")
    with store.engine.connect() as connection:
        stamps = connection.execute(sa.select(watermark.c.updated_at)).scalars().all()
    assert stamps and all(as_utc(stamp) <= reads[0] for stamp in stamps)


def test_item_without_id_is_a_per_object_error(graph, store):
    graph.rounds["users"][0][0].append({"displayName": "ghost"})
    result = import_entra(graph, store, mode="full")
    assert result.result == "completed-import-errors" and result.counters["adds"] == 4
    assert store.run_errors(result.run_id)[0]["code"] == "missing-anchor"
