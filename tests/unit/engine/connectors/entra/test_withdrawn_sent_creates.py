"""A create an interrupted export had sent, withdrawn by sync before any export recorded it (the user left AD).

Sync used to forget it whatever its state: when Graph had carried the create out, nothing ever deleted the user, a
leaver's account left enabled in Entra ID. Now the sent add becomes a delete of its provisional anchor
(sync/staging.py withdraw_create); the deletion guard counts it before the first write, and the export looks the create
up by its ImmutableId as a resumed create is: ours, deleted; never made, or joined since, forgotten.
"""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import PROVISIONAL_PREFIX, run_sync
from tests.support.fakes import FakeGraphWriter, SimulatedKill
from tests.support.world import ad_user, cs_count, deleted, entra_user, exports, guid, import_delta, import_full, links


def export(store: Store, graph: FakeGraphWriter, **settings: object):
    return run_entra_export(
        store, graph, settings=ExportSettings(resend_settle_seconds=0, **settings), lock_holder="test-task"
    )


def killed_create(store: Store, rules, *, carried_out: bool) -> FakeGraphWriter:
    """One AD user synced, and the export that creates it in Entra ID killed while the create is on the wire."""
    import_full(store, "ad", [ad_user(1)])
    import_full(store, "entra", [])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    graph = FakeGraphWriter()
    graph.kill_during_next_call(carried_out=carried_out)
    with pytest.raises(SimulatedKill):
        export(store, graph)
    ((anchor, row),) = exports(store).items()
    assert anchor.startswith(PROVISIONAL_PREFIX) and (row["operation"], row["state"]) == ("add", "sent")
    return graph


def leaves(store: Store, rules) -> str:
    """The user is deleted in AD and a delta sync runs: the sent add is kept as a delete of its provisional anchor."""
    import_delta(store, "ad", [deleted(guid(1))])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    ((anchor, row),) = exports(store).items()
    assert anchor.startswith(PROVISIONAL_PREFIX) and (row["operation"], row["state"]) == ("delete", "sent")
    assert row["changes"]["onPremisesImmutableId"]  # the mark the lookup compares is kept
    assert links(store, "entra") == {} and cs_count(store, "entra") == 1  # no link; the provisional object stays
    return anchor


def as_imported(created: dict) -> object:
    """The user the killed export created, as the next Entra import reads it."""
    skipped = ("@kind", "id", "userPrincipalName", "onPremisesImmutableId", "createdDateTime", "passwordProfile")
    values = {name: value for name, value in created.items() if name not in skipped}
    return entra_user(created["id"], created["userPrincipalName"], created["onPremisesImmutableId"], **values)


@pytest.mark.parametrize("imported_first", [False, True], ids=["plan-only", "imported-before-the-export"])
def test_a_sent_create_carried_out_then_withdrawn_is_deleted_by_the_next_export(store, rules, imported_first):
    graph = killed_create(store, rules, carried_out=True)
    ((user_id, created),) = graph.users().items()
    leaves(store, rules)
    if imported_first:  # the next cycle's import reads the user; nothing joins it (its metaverse object is gone)
        import_full(store, "entra", [as_imported(created)])
        for connector in ("ad", "entra"):
            assert run_sync(store, rules, connector=connector, mode="full").result == "success"
        assert links(store, "entra") == {} and len(exports(store)) == 1

    result = export(store, graph)
    assert result.result == "success", result
    assert result.counters["planned_deletes"] == 1 and result.counters["user_deletes"] == 1, result.counters
    assert graph.users() == {}  # the leaver's account is gone
    deletes = [r for r in graph.requests_sent() if r.method == "DELETE"]
    assert [r.url for r in deletes] == [f"/users/{user_id}"]
    assert not any(r.method == "POST" for r in graph.calls[-1])  # nothing created again
    assert exports(store) == {} and cs_count(store, "entra") == 0 and links(store, "entra") == {}


def test_a_sent_create_never_carried_out_then_withdrawn_is_forgotten_without_a_write(store, rules):
    graph = killed_create(store, rules, carried_out=False)
    leaves(store, rules)
    calls = len(graph.calls)

    result = export(store, graph)
    assert result.result == "success", result
    assert result.counters["withdrawn_creates_forgotten"] == 1, result.counters
    assert len(graph.calls) == calls and graph.objects == {}  # nothing deleted, nothing created
    assert exports(store) == {} and cs_count(store, "entra") == 0


def test_the_deletion_guard_counts_a_withdrawn_sent_create_before_anything_is_written(store, rules):
    graph = killed_create(store, rules, carried_out=True)
    anchor = leaves(store, rules)
    calls, reads = len(graph.calls), len(graph.reads)

    result = export(store, graph, deletion_threshold=0)
    assert result.result == "stopped-deletion-threshold-exceeded", result
    assert result.counters["planned_deletes"] == 1
    assert len(graph.calls) == calls and len(graph.reads) == reads  # no write, not even the lookup
    assert len(graph.users()) == 1 and exports(store)[anchor]["operation"] == "delete"

    result = export(store, graph, deletion_threshold=1)  # within the threshold: deleted
    assert result.result == "success" and graph.users() == {} and exports(store) == {}, result


def test_a_sent_create_an_import_joined_is_forgotten_not_deleted(store, rules):
    """The next cycle imported the created user before any export, and the Entra sync joined it in place of the
    planned create (sync/joins.py): the sent add is withdrawn, and the object it made is the joined one, never
    deleted."""
    graph = killed_create(store, rules, carried_out=True)
    ((user_id, created),) = graph.users().items()
    import_full(store, "entra", [as_imported(created)])
    assert run_sync(store, rules, connector="entra", mode="full").result == "success"
    assert ("entra", user_id) in links(store, "entra")

    result = export(store, graph)
    assert result.result == "success", result
    assert list(graph.users()) == [user_id] and not any(r.method == "DELETE" for r in graph.requests_sent())
    assert not any(anchor.startswith(PROVISIONAL_PREFIX) for anchor in exports(store))
    assert ("entra", user_id) in links(store, "entra") and cs_count(store, "entra") == 1


def test_a_withdrawn_create_never_sent_is_forgotten_as_before(store, rules):
    import_full(store, "ad", [ad_user(1)])
    import_full(store, "entra", [])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    import_delta(store, "ad", [deleted(guid(1))])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    assert exports(store) == {} and cs_count(store, "entra") == 0
