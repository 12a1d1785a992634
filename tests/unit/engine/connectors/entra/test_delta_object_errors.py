"""A change an Entra delta read but could not apply (a per-object error) is read again by the next delta.

Graph's delta link brings the changes made since it was issued: a group whose item failed (a value that is not valid
Unicode) had its ``members@delta`` dropped with it, and a link moved on would bring the group again only with the
member changes made later, so the members of the failed item would never reach the connector space. The import keeps
the old link of a resource where an object failed; the next delta reads the resource again from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
from airflow_provider_aadsync.engine.store import Store, cs_object, cs_reference
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

    def delta_pages(
        self, resource: str, select: Sequence[str], delta_link: str | None, expand: Sequence[str] = ()
    ) -> Iterator[dict[str, Any]]:
        self.links_used.append(delta_link)
        since = int(delta_link.rsplit("=", 1)[1]) if delta_link else 0
        items: dict[str, dict[str, Any]] = {}
        for logged, object_id, members in self.log[since:]:
            if logged == resource:
                item = items.setdefault(object_id, {**self.objects[resource][object_id], "members@delta": []})
                item["members@delta"] += members
        link = f"https://graph.test/v1.0/{resource}/delta?$deltatoken={len(self.log)}"
        yield {"value": list(items.values()), "@odata.deltaLink": link}


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as opened:
        yield opened


def _members(store: Store) -> set[str]:
    with store.engine.connect() as connection:
        query = sa.select(cs_reference.c.target_anchor).where(cs_reference.c.anchor == GROUP)
        return set(connection.execute(query).scalars())


def test_member_changes_of_a_group_item_that_failed_are_read_again_once_it_is_fixed(store):
    graph = ChangeLogGraph()
    for n in (1, 2, 3):
        graph.put("users", user(n))
    graph.put("groups", {"id": GROUP, "displayName": "Team"}, [member(1)])
    assert import_entra(graph, store, mode="full").result == "success"
    assert _members(store) == {oid(1)}

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
