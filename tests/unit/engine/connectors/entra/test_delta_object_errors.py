"""A change an Entra delta read but could not apply (a per-object error) is read again by a later delta.

Graph's delta link brings the changes made since it was issued: a group whose item failed (a value that is not valid
Unicode) had its ``members@delta`` dropped with it, and a link moved on would bring the group again only with the
member changes made later, so the members of the failed item would never reach the connector space. A source that
reads one object by id (the hook) has the import move the link on and read the failed objects again whole by each
delta until they apply (runs/read_again.py); one that cannot (``ChangeLogGraph`` alone) keeps the old link of the
resource, and the next delta reads its changes again from there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
from airflow_provider_aadsync.engine.runs.read_again import retry_key
from airflow_provider_aadsync.engine.runs.source import ObjectDecodeError
from airflow_provider_aadsync.engine.store import Store, cs_object, cs_reference, watermark
from tests.support.fakes import member, oid, user

GROUP = oid(100)


class ChangeLogGraph:
    """Graph delta rounds over a change log: a link is a position in it; a round from a link returns each object
    changed since, its properties as they are now and the member changes made since (as Graph does)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"users": {}, "groups": {}}
        self.log: list[tuple[str, str, list[dict[str, Any]]]] = []  # (resource, id, member changes)
        self.links_used: list[str | None] = []

    def server_name(self) -> str:
        return "graph.test"

    def put(self, resource: str, item: dict[str, Any], members: Sequence[dict[str, Any]] = ()) -> None:
        self.objects[resource][item["id"]] = item
        self.log.append((resource, item["id"], list(members)))

    def delta_pages(self, resource: str, select: Sequence[str], delta_link: str | None) -> Iterator[dict[str, Any]]:
        self.links_used.append(delta_link)
        since = int(delta_link.rsplit("=", 1)[1]) if delta_link else 0
        items: dict[str, dict[str, Any]] = {}
        for logged, object_id, members in self.log[since:]:
            if logged == resource:
                item = items.setdefault(object_id, {**self.objects[resource][object_id], "members@delta": []})
                item["members@delta"] += members
        link = f"https://graph.test/v1.0/{resource}/delta?$deltatoken={len(self.log)}"
        yield {"value": list(items.values()), "@odata.deltaLink": link}


class ByIdGraph(ChangeLogGraph):
    """A ChangeLogGraph that also reads one object by id, as the hook does (``get_object``, ``member_ids``)."""

    def __init__(self) -> None:
        super().__init__()
        self.read_by_id: list[str] = []
        self.refused: set[str] = set()

    def get_object(
        self, resource: str, object_id: str, select: Sequence[str], expand: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        self.read_by_id.append(object_id)
        if object_id in self.refused:  # as the hook turns Graph's 403 on one object
            raise ObjectDecodeError("Graph refused to read it: 403", anchor=object_id, code="unreadable-object")
        found = self.objects[resource].get(object_id)
        return None if found is None else dict(found)

    def member_ids(self, group_id: str) -> list[str]:
        members: dict[str, None] = {}
        for resource, object_id, changes in self.log:
            if resource == "groups" and object_id == group_id:
                for change in changes:
                    if "@removed" in change:
                        members.pop(change["id"], None)
                    else:
                        members[change["id"]] = None
        return list(members)

    def delete(self, resource: str, object_id: str) -> None:
        del self.objects[resource][object_id]


class BatchedByIdGraph(ByIdGraph):
    """A ByIdGraph that also reads many objects at once, as the hook does through ``$batch`` (``get_objects``)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def get_objects(
        self, resource: str, object_ids: Sequence[str], select: Sequence[str], expand: Sequence[str] = ()
    ) -> tuple[dict[str, dict[str, Any] | None], list[ObjectDecodeError]]:
        self.batches.append(list(object_ids))
        found: dict[str, dict[str, Any] | None] = {}
        refused: list[ObjectDecodeError] = []
        for object_id in object_ids:
            try:
                found[object_id] = self.get_object(resource, object_id, select, expand)
            except ObjectDecodeError as error:
                refused.append(error)
        return found, refused


@pytest.fixture(params=["one read per object", "batched reads"])
def by_id_graph(request) -> ByIdGraph:
    """A Graph that reads objects by id one at a time, or many at once (the reader uses get_objects when it can)."""
    return ByIdGraph() if request.param == "one read per object" else BatchedByIdGraph()


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as opened:
        yield opened


def _members(store: Store) -> set[str]:
    with store.engine.connect() as connection:
        query = sa.select(cs_reference.c.target_anchor).where(cs_reference.c.anchor == GROUP)
        return set(connection.execute(query).scalars())


def _team_imported(graph: ChangeLogGraph, store: Store) -> None:
    """Users 1 to 3 and the group (user 1 its member), imported fully."""
    for n in (1, 2, 3):
        graph.put("users", user(n))
    graph.put("groups", {"id": GROUP, "displayName": "Team"}, [member(1)])
    assert import_entra(graph, store, mode="full").result == "success"
    assert _members(store) == {oid(1)}


def test_member_changes_of_a_group_item_that_failed_are_read_again_once_it_is_fixed(store):
    graph = ChangeLogGraph()
    _team_imported(graph, store)

    # members 2 and 3 join while the group's name holds an unpaired surrogate (an item the import cannot store)
    graph.put("groups", {"id": GROUP, "displayName": "Team \ud800"}, [member(2), member(3)])
    first = import_entra(graph, store, mode="delta")
    assert first.result == "completed-import-errors" and first.counters["errors"] == 1

    graph.put("groups", {"id": GROUP, "displayName": "Team"})  # the name is fixed; no member changes since
    second = import_entra(graph, store, mode="delta")
    assert second.result == "success"
    assert _members(store) == {oid(1), oid(2), oid(3)}, "the members added with the failed item were lost"
    used = {
        resource: [link for link in graph.links_used if link and f"/{resource}/" in link] for resource in graph.objects
    }
    assert used["groups"][0] == used["groups"][1]  # the second delta read the groups again from the old link
    assert used["users"][0] != used["users"][1]  # the users applied cleanly: their link moved on


def test_an_item_a_full_import_cannot_store_is_kept_as_it_was_never_deleted(store):
    """A full round that brings a user with a value that is not valid Unicode: the user stays as the connector space
    held it (not deleted as gone, which would make sync plan its account again), the others are applied."""
    graph = ChangeLogGraph()
    for n in (1, 2):
        graph.put("users", user(n))
    graph.put("groups", {"id": GROUP, "displayName": "Team"}, [member(1)])
    assert import_entra(graph, store, mode="full").result == "success"

    graph.objects["users"][oid(1)] = {**user(1), "displayName": "User 1 \ud800"}
    graph.objects["users"][oid(2)] = {**user(2), "department": "Sales"}
    result = import_entra(graph, store, mode="full")
    assert result.result == "completed-import-errors" and result.counters["kept_unreadable"] == 1
    assert result.counters["deletes"] == 0
    with store.engine.connect() as connection:
        alive = dict(
            connection.execute(
                sa.select(cs_object.c.anchor, cs_object.c.attrs).where(cs_object.c.is_deleted == sa.false())
            ).all()
        )
    assert {oid(1), oid(2), GROUP} <= set(alive)
    assert "\\ud800" not in alive[oid(1)] and '"Sales"' in alive[oid(2)]


def _to_read_again(store: Store, resource: str) -> list[str]:
    with store.engine.connect() as connection:
        query = sa.select(watermark.c.cookie).where(watermark.c.partition == retry_key(resource))
        row = connection.execute(query).scalar()
    return json.loads(bytes(row)) if row else []


def _stored_attrs(store: Store, anchor: str) -> dict[str, Any]:
    with store.engine.connect() as connection:
        attrs = connection.execute(sa.select(cs_object.c.attrs).where(cs_object.c.anchor == anchor)).scalar_one()
    return json.loads(attrs)


def test_the_link_moves_on_and_the_failed_group_is_read_again_whole_with_its_members(store, by_id_graph):
    graph = by_id_graph
    _team_imported(graph, store)
    assert _to_read_again(store, "groups") == [] and _to_read_again(store, "users") == []

    graph.put("groups", {"id": GROUP, "displayName": "Team \ud800"}, [member(2), member(3)])
    first = import_entra(graph, store, mode="delta")
    assert first.result == "completed-import-errors" and first.counters["errors"] == 1
    assert "watermarks_kept" not in first.counters and first.counters["objects_to_read_again"] == 1
    assert _to_read_again(store, "groups") == [GROUP]

    graph.objects["groups"][GROUP] = {"id": GROUP, "displayName": "Team"}  # fixed, and no change logged since
    second = import_entra(graph, store, mode="delta")
    assert second.result == "success" and second.counters["objects_read_again"] == 1
    assert _members(store) == {oid(1), oid(2), oid(3)}, "the members added with the failed item were lost"
    assert _stored_attrs(store, GROUP)["displayName"] == ["Team"]
    assert _to_read_again(store, "groups") == []
    groups_links = [link for link in graph.links_used if link and "/groups/" in link]
    assert groups_links[0] != groups_links[1], "the groups link stayed where the failed item was"


def test_an_object_that_fails_again_stays_listed_and_one_graph_no_longer_has_leaves_the_list(store, by_id_graph):
    graph = by_id_graph
    for n in (1, 2):
        graph.put("users", user(n))
    graph.put("groups", {"id": GROUP, "displayName": "Team"})
    assert import_entra(graph, store, mode="full").result == "success"
    graph.put("users", user(1, displayName="User \ud800"))
    graph.put("users", user(2, displayName="Two \ud800"))
    assert import_entra(graph, store, mode="delta").counters["errors"] == 2
    assert _to_read_again(store, "users") == sorted([oid(1), oid(2)])

    graph.delete("users", oid(2))  # gone from the tenant (its removal is a delta change of its own)
    again = import_entra(graph, store, mode="delta")
    assert again.counters["errors"] == 1 and again.counters["objects_read_again"] == 2
    assert _to_read_again(store, "users") == [oid(1)]
    assert sorted(graph.read_by_id) == sorted([oid(1), oid(2)])
    if isinstance(graph, BatchedByIdGraph):  # both read in one call
        assert [sorted(batch) for batch in graph.batches] == [sorted([oid(1), oid(2)])]


def test_what_a_full_import_could_not_read_is_read_again_by_the_next_delta(store, by_id_graph):
    """A full import keeps an object it could not read as it was (never deleted as gone); the next delta reads it
    again by id, without waiting for a change of its own or the next full import."""
    graph = by_id_graph
    for n in (1, 2):
        graph.put("users", user(n))
    assert import_entra(graph, store, mode="full").result == "success"
    graph.objects["users"][oid(1)] = {**user(1), "displayName": "User 1 \ud800", "department": "Sales"}
    full = import_entra(graph, store, mode="full")
    assert full.counters["kept_unreadable"] == 1 and _to_read_again(store, "users") == [oid(1)]

    graph.objects["users"][oid(1)] = {**user(1), "department": "Sales"}  # fixed in place: no delta change logged
    delta = import_entra(graph, store, mode="delta")
    assert delta.result == "success" and delta.counters["objects_read_again"] == 1
    assert _stored_attrs(store, oid(1))["department"] == ["Sales"]
    assert _to_read_again(store, "users") == []


def test_a_user_whose_manager_id_is_unusable_is_named_and_read_again(store, by_id_graph):
    graph = by_id_graph
    graph.put("users", user(1))
    assert import_entra(graph, store, mode="full").result == "success"
    graph.put("users", {**user(1), "manager@delta": [{"id": ""}]})
    result = import_entra(graph, store, mode="delta")
    assert result.counters["errors"] == 1 and _to_read_again(store, "users") == [oid(1)]


def test_an_item_without_an_id_keeps_the_old_link(store, by_id_graph):
    """Nothing names the object to read again: the resource's link stays, as before."""
    graph = by_id_graph
    graph.put("users", user(1))
    assert import_entra(graph, store, mode="full").result == "success"
    graph.objects["users"]["broken"] = {"displayName": "no id"}
    graph.log.append(("users", "broken", []))
    result = import_entra(graph, store, mode="delta")
    assert result.counters["watermarks_kept"] == 1 and _to_read_again(store, "users") == []


def test_an_object_whose_read_graph_refuses_is_a_per_object_error_and_stays_listed(store, by_id_graph):
    """A 400 or 403 on one object's read by id must not fail every delta from then on: the run goes on, the other
    listed objects are read, and the refused one waits for the next delta."""
    graph = by_id_graph
    for n in (1, 2):
        graph.put("users", user(n))
    assert import_entra(graph, store, mode="full").result == "success"
    graph.put("users", user(1, displayName="One \ud800"))
    graph.put("users", user(2, displayName="Two \ud800"))
    assert import_entra(graph, store, mode="delta").counters["errors"] == 2

    graph.objects["users"][oid(1)] = user(1, displayName="One")
    graph.objects["users"][oid(2)] = user(2, displayName="Two")
    graph.refused.add(oid(1))
    result = import_entra(graph, store, mode="delta")
    assert result.result == "completed-import-errors" and result.counters["errors"] == 1
    assert _stored_attrs(store, oid(2))["displayName"] == ["Two"]
    assert _to_read_again(store, "users") == [oid(1)]
