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
from tests.support.fakes import FakeAnswer, FakeGraphWriter
from tests.support.world import ad_user, deleted, exports, guid, import_delta

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
