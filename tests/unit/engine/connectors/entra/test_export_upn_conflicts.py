"""UPN conflicts in the Entra export. A conflict that lasts keeps the placeholder it was given (no new random one, no
rewrite of the user's sign-in name every cycle). And Graph runs the requests of a ``$batch`` without ``dependsOn`` in
any order ("Individual requests can be executed in any order unless dependsOn is specified"): a UPN a delete frees
goes to the new user of the same cycle only if the delete is in an earlier call."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.runs.source import BatchRequest
from airflow_provider_aadsync.engine.store import export_conflict
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.fakes import FakeAnswer, FakeGraphWriter
from tests.support.stores import fresh_store
from tests.support.world import (
    ad_group,
    ad_user,
    deleted,
    entra_user,
    exports,
    guid,
    immutable_id,
    import_delta,
    import_full,
    links,
)

from .test_writer import export, synced


def test_a_persistent_upn_conflict_keeps_its_placeholder_and_is_released_by_a_delta_cycle(store, rules):
    """Every cycle tries the wanted UPN once (Entra ID's resiliency sweeps so on the service side) and keeps the
    placeholder while it is refused; once the other holder lets it go, the next delta cycle, with nothing changed in
    AD, writes it."""
    graph = FakeGraphWriter()
    squatter = graph.add_user("user2@corp.example", displayName="Someone in the cloud")  # holds the UPN
    synced(store, rules, users=2)
    assert export(store, graph).result == "success"
    (created,) = [
        a
        for a, u in graph.users().items()
        if u.get("onPremisesImmutableId") and u["userPrincipalName"].startswith("user2")
    ]
    first = graph.users()[created]["userPrincipalName"]
    assert first.startswith("user2_") and first.endswith("@contoso.onmicrosoft.com")

    wanted = "user2@corp.example"
    for _cycle in range(3):  # three more 30-minute cycles, nothing changed anywhere
        assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
        graph.calls.clear()
        result = export(store, graph)
        assert result.result == "success", result
        # the user's sign-in name does not change while the conflict lasts: one try of the wanted UPN, no new
        # placeholder written
        assert graph.users()[created]["userPrincipalName"] == first
        upns = [r.body["userPrincipalName"] for r in graph.requests_sent() if "userPrincipalName" in (r.body or {})]
        assert upns == [wanted]
    with store.engine.connect() as connection:
        (conflict,) = connection.execute(sa.select(export_conflict)).all()
    assert conflict.placeholder == first and conflict.released_at is None
    assert all(row["state"] != "failed" for row in exports(store).values())

    del graph.objects[squatter]  # resolved in the cloud
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    assert export(store, graph).result == "success"
    assert graph.users()[created]["userPrincipalName"] == wanted
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(export_conflict.c.released_at)).scalar() is not None
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    graph.calls.clear()
    assert export(store, graph).counters["batch_calls"] == 0  # released: nothing tried any more


def test_a_cloud_user_created_after_the_entra_import_is_soft_matched_by_the_next_cycle_not_duplicated(store, rules):
    """A cloud-only user holding the UPN of a user sync is about to create, made in the tenant after the cycle's
    Entra import: the create is held (no placeholder user beside it), and the next cycle adopts that user."""
    graph = FakeGraphWriter()
    synced(store, rules, users=2)
    import_full(store, "entra", [])  # the cycle read the tenant: empty then
    cloud = graph.add_user("user2@corp.example", displayName="User 2 (made in the portal)")  # made just now

    held = export(store, graph)
    assert held.result == "completed-export-errors" and held.counters["creates_held_for_soft_match"] == 1
    upns = sorted(user["userPrincipalName"] for user in graph.users().values())
    assert upns == ["user1@corp.example", "user2@corp.example"]  # user1 created; no placeholder user for user2
    assert "onPremisesImmutableId" not in graph.users()[cloud]  # the cloud user is not written to
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(export_conflict)).all() == []
    (error,) = [e for e in held_errors(store, held.run_id) if e.code == "soft-match-pending"]
    assert cloud in error.message and "soft-match" in error.message

    # the next cycle: the Entra import reads the cloud user, the syncs soft-match it and withdraw the create
    import_delta(store, "entra", [entra_user(cloud, "user2@corp.example", displayName="User 2 (made in the portal)")])
    assert run_sync(store, rules, connector="entra", mode="delta").result == "success"
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    assert ("entra", cloud) in links(store)
    adopted = export(store, graph)
    assert adopted.result == "success", adopted
    users = graph.users()
    assert len(users) == 2 and users[cloud]["onPremisesImmutableId"] == immutable_id(guid(2))
    assert all(row["state"] != "failed" for row in exports(store).values())


def test_a_cloud_user_the_last_import_saw_and_sync_left_alone_is_a_real_clash_and_gets_the_placeholder(store):
    """Soft matching blocked (BlockSoftMatch): the cloud user holding the UPN was imported and the sync did not join
    it. The create is not held (no cycle would ever adopt it): it goes ahead with a placeholder, as for any clash."""
    from airflow_provider_aadsync.engine.sync.settings import load_sync_rules

    rules = load_sync_rules(block_soft_match=True)
    graph = FakeGraphWriter()
    synced(store, rules, users=2)
    cloud = graph.add_user("user2@corp.example")
    import_full(store, "entra", [entra_user(cloud, "user2@corp.example")])
    assert run_sync(store, rules, connector="entra", mode="full").result == "success"
    assert ("entra", cloud) not in links(store)
    result = export(store, graph)
    assert result.result == "success" and result.counters.get("creates_held_for_soft_match", 0) == 0
    upns = sorted(user["userPrincipalName"] for user in graph.users().values())
    assert len(upns) == 3 and upns[1] == "user2@corp.example" and upns[2].startswith("user2_")


def test_a_rebuilt_store_keeps_the_placeholder_an_earlier_export_gave(tmp_path):
    """A lost store (or a second instance) knows no conflict record: the user it finds holding a placeholder of the
    wanted UPN keeps it while the clash lasts (one try of the wanted UPN, as every cycle), never a new random one."""
    rules = load_sync_rules(block_soft_match=True)
    graph = FakeGraphWriter()
    squatter = graph.add_user("user2@corp.example")
    with fresh_store(tmp_path) as lost:
        synced(lost, rules, users=2)
        assert export(lost, graph).result == "success"
    (ours,) = [i for i, u in graph.users().items() if u.get("onPremisesImmutableId") == immutable_id(guid(2))]
    placeholder = graph.users()[ours]["userPrincipalName"]
    assert placeholder.startswith("user2_")

    rebuilt_dir = tmp_path / "rebuilt"
    rebuilt_dir.mkdir()
    with fresh_store(rebuilt_dir) as store:
        import_full(store, "ad", [ad_user(n) for n in (1, 2)] + [ad_group(100, "Staff", members=(1, 2))])
        users = graph.users().items()
        tenant = [entra_user(i, u["userPrincipalName"], u.get("onPremisesImmutableId")) for i, u in users]
        import_full(store, "entra", tenant)
        for connector in ("ad", "entra"):
            assert run_sync(store, rules, connector=connector, mode="full").result == "success"
        assert ("entra", squatter) not in links(store) and ("entra", ours) in links(store)
        graph.calls.clear()
        assert export(store, graph).result == "success"
        upns = [r.body["userPrincipalName"] for r in graph.requests_sent() if "userPrincipalName" in (r.body or {})]
        assert upns == ["user2@corp.example"]  # the wanted UPN tried once, no new placeholder written
        assert graph.users()[ours]["userPrincipalName"] == placeholder
        with store.engine.connect() as connection:
            (conflict,) = connection.execute(sa.select(export_conflict)).all()
        assert conflict.placeholder == placeholder and conflict.released_at is None


def held_errors(store, run_id: int) -> list:
    from airflow_provider_aadsync.engine.store import run_error

    with store.engine.connect() as connection:
        return connection.execute(sa.select(run_error).where(run_error.c.run_id == run_id)).all()


class ParallelGraph(FakeGraphWriter):
    """Graph's parallel ``$batch``: this tenant happens to carry a call's requests out last to first."""

    def batch(self, requests: Sequence[BatchRequest], *, resend_if_unknown: bool = True) -> dict[str, FakeAnswer]:
        return super().batch(list(reversed(requests)), resend_if_unknown=resend_if_unknown)


@pytest.mark.parametrize("graph_kind", [FakeGraphWriter, ParallelGraph], ids=["in-order", "any-order"])
def test_a_upn_freed_by_a_delete_goes_to_the_new_user_whatever_order_graph_runs_a_call(store, rules, graph_kind):
    graph = graph_kind()
    synced(store, rules, users=2)
    assert export(store, graph).result == "success"
    # user2 leaves; a new account takes over its sign-in name in the same cycle
    import_delta(store, "ad", [deleted(guid(2)), ad_user(3, "newhire", userPrincipalName="user2@corp.example")])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    graph.calls.clear()
    result = export(store, graph)
    assert result.result == "success", result
    (new,) = [u for u in graph.users().values() if u.get("displayName") == "User 3"]
    assert new["userPrincipalName"] == "user2@corp.example"  # not a placeholder
    assert result.counters.get("conflicts_recorded", 0) == 0
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(export_conflict)).scalar() == 0


def test_a_create_is_held_until_an_import_has_read_the_tenant_since_not_forever(store, rules):
    """The hold waits for the next Entra import to bring the cloud user in. An import since the hold that did not
    (here it cannot store the user's values: a per-object import error, every cycle) ends it: the sync can never
    soft-match that user, and the create goes ahead with a placeholder, as for any clash, instead of never."""
    from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
    from tests.support.fakes import FakeGraph

    graph, tenant = FakeGraphWriter(), FakeGraph()
    synced(store, rules, users=2)
    assert import_entra(tenant, store, connector="entra", mode="full").result == "success"  # the tenant: empty
    unstorable = "User 2 \ud800"  # an unpaired surrogate: not valid Unicode, refused by the import
    cloud = graph.add_user("user2@corp.example", displayName=unstorable)
    for _ in range(2):  # held, and held again by an export with no import in between
        assert export(store, graph).counters["creates_held_for_soft_match"] == 1

    for _cycle in range(2):
        item = {"id": cloud, "userPrincipalName": "user2@corp.example", "displayName": unstorable}
        tenant.rounds["users"].append([[item]])
        assert import_entra(tenant, store, connector="entra", mode="delta").result == "completed-import-errors"
        assert run_sync(store, rules, connector="entra", mode="delta").result == "success"
        assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
        result = export(store, graph)
        assert result.counters.get("creates_held_for_soft_match", 0) == 0, "held although the import did not bring it"
    upns = sorted(user["userPrincipalName"] for user in graph.users().values())
    assert len(upns) == 3 and upns[1] == "user2@corp.example" and upns[2].startswith("user2_")
    assert all(row["state"] != "failed" for row in exports(store).values())


def test_a_create_is_held_also_when_the_entra_imports_complete_with_object_errors(store, rules):
    """An import that read the tenant and could not store one object (completed-import-errors) has read it: a cloud
    user made after it that holds the UPN of a user sync creates is held for the soft match, not duplicated."""
    from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
    from tests.support.fakes import FakeGraph, oid

    graph, tenant = FakeGraphWriter(), FakeGraph()
    synced(store, rules, users=2)
    tenant.rounds["users"].append([[{"id": oid(900), "userPrincipalName": "x@corp.example", "displayName": "\ud800"}]])
    assert import_entra(tenant, store, connector="entra", mode="full").result == "completed-import-errors"
    graph.add_user("user2@corp.example", displayName="User 2 (made in the portal)")

    held = export(store, graph)
    assert held.counters["creates_held_for_soft_match"] == 1
    upns = sorted(user["userPrincipalName"] for user in graph.users().values())
    assert upns == ["user1@corp.example", "user2@corp.example"]  # no placeholder user beside the portal's
