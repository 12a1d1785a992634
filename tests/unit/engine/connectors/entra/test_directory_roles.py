"""The Entra import records who holds a directory role (connector-space attribute ``directoryRoles``): a full import
in the objects it reads, a delta only the holders that changed since the list the last import saved."""

from __future__ import annotations

import json

import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
from airflow_provider_aadsync.engine.connectors.entra.roles import HOLDERS_ROW
from airflow_provider_aadsync.engine.store import Store, cs_object, watermark
from tests.support.fakes import FakeGraph, oid, user

ADMIN = "Global Administrator"


class RoleGraph(FakeGraph):
    """A fake tenant that also answers who holds a directory role, as the Entra hook does."""

    def __init__(self) -> None:
        super().__init__()
        self.holders: dict[str, tuple[str, list[str]]] = {}
        self.role_reads = 0

    def directory_role_holders(self) -> dict[str, tuple[str, list[str]]]:
        self.role_reads += 1
        return dict(self.holders)


def cs_rows(store: Store) -> dict[str, dict]:
    with store.engine.connect() as connection:
        return {row.anchor: dict(row._mapping) for row in connection.execute(sa.select(cs_object))}


def roles_of(store: Store, n: int) -> list[str]:
    return json.loads(cs_rows(store)[oid(n)]["attrs"]).get("directoryRoles", [])


def saved_row(store: Store) -> dict:
    with store.engine.connect() as connection:
        cookie = connection.execute(sa.select(watermark.c.cookie).where(watermark.c.partition == HOLDERS_ROW)).scalar()
    return json.loads(cookie)


def full_import(graph: RoleGraph, store: Store) -> None:
    graph.rounds["users"].append([[user(1), user(2), user(3)]])
    graph.rounds["groups"].append([[{"id": oid(100), "displayName": "Admins", "isAssignableToRole": True}]])
    assert import_entra(graph, store, mode="full").result == "success"


def test_a_full_import_records_each_holders_roles_and_saves_the_list():
    graph = RoleGraph()
    graph.holders = {oid(1): ("user", [ADMIN]), oid(100): ("group", ["User Administrator"])}
    with Store.open("sqlite://") as store:
        full_import(graph, store)
        assert roles_of(store, 1) == [ADMIN]
        assert roles_of(store, 100) == ["User Administrator"]
        assert roles_of(store, 2) == []
        assert saved_row(store) == {oid(1): ["user", [ADMIN]], oid(100): ["group", ["User Administrator"]]}
        # the same roles again: a second full import sees no change (the roles are in the objects it compares)
        with store.engine.begin() as connection:
            connection.execute(sa.update(cs_object).values(pending_import=None))
        full_import(graph, store)
        assert {anchor for anchor, row in cs_rows(store).items() if row["pending_import"]} == set()


def test_a_delta_writes_only_the_holders_that_changed(store):
    graph = RoleGraph()
    graph.holders = {oid(1): ("user", [ADMIN]), oid(2): ("user", ["Helpdesk Administrator"])}
    full_import(graph, store)
    with store.engine.begin() as connection:
        connection.execute(sa.update(cs_object).values(pending_import=None))
    # user 1 loses its role, user 3 gets one, user 2 keeps its own; no user changed in the delta rounds
    graph.holders = {oid(2): ("user", ["Helpdesk Administrator"]), oid(3): ("user", [ADMIN, "Global Reader"])}
    result = import_entra(graph, store, mode="delta")
    assert result.mode == "delta" and result.counters["role_holders_changed"] == 2
    assert roles_of(store, 1) == [] and roles_of(store, 3) == [ADMIN, "Global Reader"]
    assert roles_of(store, 2) == ["Helpdesk Administrator"]
    pending = {anchor for anchor, row in cs_rows(store).items() if row["pending_import"]}
    assert pending == {oid(1), oid(3)}  # the sync evaluates exactly those again
    assert saved_row(store) == {
        oid(2): ["user", ["Helpdesk Administrator"]],
        oid(3): ["user", [ADMIN, "Global Reader"]],
    }
    assert graph.role_reads == 2  # once per import


def test_a_source_that_cannot_list_roles_marks_nothing(store):
    graph = FakeGraph()
    graph.rounds["users"].append([[user(1)]])
    assert import_entra(graph, store, mode="full").result == "success"
    assert "directoryRoles" not in json.loads(cs_rows(store)[oid(1)]["attrs"])
