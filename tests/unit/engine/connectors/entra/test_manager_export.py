"""The manager reference from AD to Entra ID (issue 17, point 2): resolved through the metaverse like group members,
staged as reference rows, written with ``PUT /users/{id}/manager/$ref`` after the creates and removed with
``DELETE``, in ``$batch`` calls; an unchanged manager is never written again. Fast: a fake Graph, a SQLite store."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.entra.planning import plan_counts
from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.connectors.schema import PROVISIONAL_PREFIX
from airflow_provider_aadsync.engine.runs.source import SourceObject
from airflow_provider_aadsync.engine.store import cs_object, cs_reference, pending_export_reference
from airflow_provider_aadsync.engine.sync import run_sync
from tests.support.fakes import FakeGraph, FakeGraphWriter, graph_error, to
from tests.support.stores import fresh_store
from tests.support.world import BASE, ad_user, guid, import_delta, import_full

SETTINGS = ExportSettings(resend_settle_seconds=0)


def person(n: int, manager: int | None = None, **attrs: Any) -> SourceObject:
    """AD user ``n`` whose ``manager`` is AD user ``manager`` (a reference, as the AD reader hands it over: the
    whole value, an empty list when AD cleared it)."""
    obj = ad_user(n, **attrs)
    obj.references = {"manager": [(guid(manager), f"CN=user{manager},OU=Users,{BASE}")] if manager else []}
    return obj


def sync(store, rules, mode: str = "delta") -> None:
    assert run_sync(store, rules, connector="ad", mode=mode).result == "success"


def export(store, graph: FakeGraphWriter):
    result = run_entra_export(store, graph, settings=SETTINGS, lock_holder="test-task")
    assert result.result == "success", result
    return result


def upn_ids(graph: FakeGraphWriter) -> dict[str, str]:
    return {props["userPrincipalName"].split("@")[0]: i for i, props in graph.users().items()}


def managers_by_name(graph: FakeGraphWriter) -> dict[str, str]:
    names = {i: n for n, i in upn_ids(graph).items()}
    return {names[user]: names[boss] for user, boss in graph.managers.items()}


def staged(store) -> list[tuple[str, str, str, str]]:
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                pending_export_reference.c.anchor,
                pending_export_reference.c.target_anchor,
                pending_export_reference.c.operation,
                pending_export_reference.c.state,
            ).where(pending_export_reference.c.attribute == "manager")
        ).all()
    return [tuple(row) for row in rows]


def cs_managers(store) -> dict[str, str]:
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(cs_reference.c.anchor, cs_reference.c.target_anchor).where(
                cs_reference.c.connector == "entra", cs_reference.c.attribute == "manager"
            )
        ).all()
    return dict(rows)


def manager_requests(graph: FakeGraphWriter):
    return [r for r in graph.requests_sent() if "/manager/" in r.url]


def test_managers_are_staged_through_the_metaverse_even_when_the_manager_is_created_in_the_same_pass(store, rules):
    import_full(store, "ad", [person(1), person(2, manager=1), person(3, manager=1), person(4, manager=9)])
    sync(store, rules, "full")
    rows = staged(store)
    # user4's manager is not in AD's scope: no metaverse reference, nothing staged (and nothing sent)
    assert len(rows) == 2 and {op for _a, _t, op, _s in rows} == {"add"}
    with store.engine.connect() as connection:
        user1_anchor = (
            connection.execute(
                sa.select(cs_object.c.anchor).where(cs_object.c.connector == "entra", cs_object.c.dn.like("users/%"))
            )
            .scalars()
            .all()
        )
    assert all(a.startswith(PROVISIONAL_PREFIX) and t.startswith(PROVISIONAL_PREFIX) for a, t, _o, _s in rows)
    assert {t for _a, t, _o, _s in rows} <= set(user1_anchor)
    assert plan_counts(store, "entra")["planned_manager_changes"] == 2


def test_managers_are_written_after_the_creates_moved_and_removed(store, rules):
    graph = FakeGraphWriter()
    import_full(store, "ad", [person(1), person(2, manager=1), person(3, manager=1), person(4, manager=2)])
    sync(store, rules, "full")
    result = export(store, graph)
    creates, references = graph.calls
    assert [r.method for r in creates] == ["POST"] * 4
    assert sorted((r.method, r.url.split("/")[-2]) for r in references) == [("PUT", "manager")] * 3
    ids = upn_ids(graph)
    put = next(r for r in references if r.url == f"/users/{ids['user4']}/manager/$ref")
    assert put.body == {"@odata.id": f"https://graph.microsoft.com/v1.0/users/{ids['user2']}"}
    assert managers_by_name(graph) == {"user2": "user1", "user3": "user1", "user4": "user2"}
    assert cs_managers(store) == {ids["user2"]: ids["user1"], ids["user3"]: ids["user1"], ids["user4"]: ids["user2"]}
    assert staged(store) == [] and result.counters["manager_sets"] == 3
    assert result.counters["batch_calls"] == result.counters["batch_calls_minimum"] == 2

    # unchanged: a full sync stages nothing and the export sends nothing
    sync(store, rules, "full")
    graph.calls.clear()
    export(store, graph)
    assert staged(store) == [] and manager_requests(graph) == []

    # user4 moves to user3, user2's manager is cleared in AD: one PUT, one DELETE, nothing else
    import_delta(store, "ad", [person(4, manager=3), person(2)])
    sync(store, rules)
    assert plan_counts(store, "entra")["planned_manager_changes"] == 2
    result = export(store, graph)
    assert sorted((r.method, r.url) for r in manager_requests(graph)) == [
        ("DELETE", f"/users/{ids['user2']}/manager/$ref"),
        ("PUT", f"/users/{ids['user4']}/manager/$ref"),
    ]
    assert managers_by_name(graph) == {"user3": "user1", "user4": "user3"}
    assert cs_managers(store) == {ids["user3"]: ids["user1"], ids["user4"]: ids["user3"]}
    assert staged(store) == []
    assert (result.counters["manager_sets"], result.counters["manager_removes"]) == (1, 1)
    assert result.counters["planned_member_removes"] == 0  # a manager removal is not a member removal (guards)


def test_a_manager_exported_later_is_written_once_it_has_an_entra_id(store, rules):
    graph = FakeGraphWriter()
    # user1 fails to create: user2's manager waits (the change fails, the row stays open), then goes out
    import_full(store, "ad", [person(1), person(2, manager=1)])
    sync(store, rules, "full")
    user1_create = lambda r: to("POST", "/users")(r) and r.body["userPrincipalName"] == "user1@corp.example"  # noqa: E731
    graph.answer(user1_create, graph_error(503, "ServiceUnavailable", "try later"), times=1)
    graph.calls.clear()
    result = run_entra_export(store, graph, settings=SETTINGS, lock_holder="test-task")
    assert len(graph.users()) == 1 and graph.managers == {}
    assert result.counters["member_changes_unresolved"] == 1
    assert [(op, state) for _a, _t, op, state in staged(store)] == [("add", "failed")]
    export(store, graph)
    assert managers_by_name(graph) == {"user2": "user1"} and staged(store) == []


def test_a_delete_of_an_absent_manager_counts_as_done_and_a_repeated_put_is_harmless(store, rules):
    graph = FakeGraphWriter()
    import_full(store, "ad", [person(1), person(2, manager=1)])
    sync(store, rules, "full")
    export(store, graph)
    graph.managers.clear()  # someone removed it in the cloud
    import_delta(store, "ad", [person(2)])
    sync(store, rules)
    export(store, graph)  # DELETE answered 404: done
    assert staged(store) == [] and cs_managers(store) == {}
    # a call cut off after Graph carried out the PUT: sent again, 204 again, confirmed once
    import_delta(store, "ad", [person(2, manager=1)])
    sync(store, rules)
    graph.drop_next_call(carried_out=True)
    export(store, graph)
    assert managers_by_name(graph) == {"user2": "user1"} and staged(store) == []
    assert len(cs_managers(store)) == 1


def delta_round(writer: FakeGraphWriter, managers: bool = True) -> list[list[dict[str, Any]]]:
    """The fake tenant's users as one users delta round with ``$expand=manager`` (``manager@delta``)."""
    items = []
    for user_id, props in writer.users().items():
        item = {k: v for k, v in props.items() if not k.startswith("@") and k != "createdDateTime"}
        if managers and user_id in writer.managers:
            item["manager@delta"] = [{"@odata.type": "#microsoft.graph.user", "id": writer.managers[user_id]}]
        items.append(item)
    return [items]


def test_the_entra_import_reads_managers_so_a_rebuilt_store_writes_none_again(store, rules, tmp_path):
    writer = FakeGraphWriter()
    import_full(store, "ad", [person(1), person(2, manager=1), person(3, manager=2)])
    sync(store, rules, "full")
    export(store, writer)
    ids = upn_ids(writer)
    # the store is rebuilt: a new one, AD imported again, Entra read back (the managers come with the users)
    (tmp_path / "rebuilt").mkdir()
    with fresh_store(tmp_path / "rebuilt") as rebuilt:
        graph = FakeGraph()
        graph.rounds["users"].append(delta_round(writer))
        assert import_entra(graph, rebuilt, mode="full").result == "success"
        assert cs_managers(rebuilt) == {ids["user2"]: ids["user1"], ids["user3"]: ids["user2"]}
        import_full(rebuilt, "ad", [person(1), person(2, manager=1), person(3, manager=2)])
        sync(rebuilt, rules, "full")
        assert run_sync(rebuilt, rules, connector="entra", mode="full").result == "success"
        assert staged(rebuilt) == []  # every manager is already right in Entra ID: nothing to write
        # a delta round: user3's manager moved to user1 in the cloud, user2's was removed there
        graph.rounds["users"].append(
            [[
                {"id": ids["user3"], "manager@delta": [{"id": ids["user1"]}]},
                {"id": ids["user2"], "manager@delta": [{"id": ids["user1"], "@removed": {"reason": "deleted"}}]},
            ]]
        )  # fmt: skip
        assert import_entra(graph, rebuilt, mode="delta").result == "success"
        assert cs_managers(rebuilt) == {ids["user3"]: ids["user1"]}
        assert run_sync(rebuilt, rules, connector="entra", mode="delta").result == "success"
        # AD is the authority: the cloud-side edits are put back
        assert sorted((a, t, op) for a, t, op, _s in staged(rebuilt)) == sorted([
            (ids["user2"], ids["user1"], "add"), (ids["user3"], ids["user1"], "remove"),
            (ids["user3"], ids["user2"], "add"),
        ])  # fmt: skip
