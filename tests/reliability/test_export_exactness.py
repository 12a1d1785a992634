"""Exactness of the Entra export under faults, against the Graph emulator only (no Samba): a create, a member change
or a delete whose answer is lost, refused in part or throttled ends with every object once and every change made once,
in the same run or the next."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from aadsync_devkit.graph_emulator.server import EmulatorServer
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.runs.source import BatchRequest, WriteOutcomeUnknownError
from airflow_provider_aadsync.engine.store import pending_export, pending_export_reference
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.hooks.entra import EntraHook
from airflow_provider_aadsync.hooks.entra_settings import GraphThrottledError
from tests.support.fakes import SimulatedKill
from tests.support.graph import graph_members, graph_users
from tests.support.servers import entra_hook_for, trust
from tests.support.world import ad_group, ad_user, deleted, guid, immutable_id, import_delta, import_full

pytestmark = pytest.mark.integration

DOMAIN = "corp.example"
SETTINGS = ExportSettings(resend_settle_seconds=0)


@pytest.fixture
def tenant(tenant_verifying):
    return tenant_verifying(DOMAIN)


def set_emulator(server: EmulatorServer, **settings: Any) -> None:
    response = httpx.put(f"{server.base_url}/_emulator/settings", json=settings, verify=trust(server))
    assert response.status_code == 200, response.text


class FaultyCall:
    """The hook, with emulator ``settings`` on for the first ``$batch`` that ``matches`` (then the defaults again)."""

    def __init__(
        self,
        hook,
        server: EmulatorServer,
        matches: Callable[[Sequence[BatchRequest]], bool],
        *,
        kill: bool = False,
        **settings,
    ):
        self.hook, self.server, self.matches, self.settings = hook, server, matches, settings
        #: the task dies once the call is answered (before the answer is recorded)
        self.kill = kill
        self.faulted = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.hook, name)

    def batch(self, requests, **kwargs):
        if self.faulted or not self.matches(requests):
            return self.hook.batch(requests, **kwargs)
        self.faulted += 1
        set_emulator(self.server, **self.settings)
        try:
            answers = self.hook.batch(requests, **kwargs)
        finally:
            set_emulator(self.server, **dict.fromkeys(self.settings))
        if self.kill:
            raise SimulatedKill
        return answers


def open_exports(store) -> list[tuple]:
    """The Entra export's open plan rows (objects and references)."""
    with store.engine.connect() as connection:
        objects = connection.execute(
            sa.select(pending_export.c.anchor, pending_export.c.state).where(pending_export.c.connector == "entra")
        ).all()
        references = connection.execute(
            sa.select(pending_export_reference.c.anchor, pending_export_reference.c.state).where(
                pending_export_reference.c.connector == "entra"
            )
        ).all()
    return [tuple(row) for row in [*objects, *references]]


def open_references(store) -> list[tuple]:
    """The Entra export's open reference rows: (group, member, state)."""
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                pending_export_reference.c.anchor,
                pending_export_reference.c.target_anchor,
                pending_export_reference.c.state,
            ).where(pending_export_reference.c.connector == "entra")
        ).all()
    return [tuple(row) for row in rows]


def all_groups(hook) -> list[dict]:
    """Every group of the tenant, with the sourceAnchor the sync app's extension holds."""
    select = f"id,displayName,createdDateTime,{hook.extension_names.to_graph('extension_aadsyncSourceAnchor')}"
    return [g for page in hook.paginate("/groups", params={"$select": select, "$top": "999"}) for g in page["value"]]


def group_creates(requests: Sequence[BatchRequest]) -> bool:
    return any(r.method == "POST" and r.url == "/groups" for r in requests)


def same_named_groups(store) -> None:
    """Two groups of the same mailNickname and displayName, as two forests' "Staff" (sAMAccountName is unique in one
    domain only), each with a member."""
    import_full(
        store,
        "ad",
        [
            ad_user(1),
            ad_user(2),
            ad_group(1001, "Staff", [1], displayName="Staff", mailNickname="Staff"),
            ad_group(1002, "Staff2", [2], displayName="Staff", mailNickname="Staff"),
        ],
    )
    assert run_sync(store, load_sync_rules(), connector="ad", mode="full").result == "success"


def assert_each_group_once_with_its_member(store, hook) -> None:
    """Each group once, holding its own member: AD group 1001 user 1, group 1002 user 2 (by the anchors)."""
    anchor = hook.extension_names.to_graph("extension_aadsyncSourceAnchor")
    groups = all_groups(hook)
    assert len(groups) == 2, [(g["id"], g["displayName"], g["createdDateTime"]) for g in groups]
    users = graph_users(hook)
    members = {group[anchor]: graph_members(hook, group["id"]) for group in groups}
    assert members == {
        immutable_id(guid(1001)): {users[immutable_id(guid(1))]["id"]},
        immutable_id(guid(1002)): {users[immutable_id(guid(2))]["id"]},
    }
    assert open_exports(store) == []


@pytest.mark.parametrize(
    "fault",
    [{"faultWrite504Ratio": 1.0}, {"faultDropRatio": 1.0}, {"faultMalformed": "batch-missing-items"}],
    ids=["504", "dropped", "answer-left-them-out"],
)
def test_groups_of_the_same_names_whose_creates_lost_their_answers_are_each_created_once(
    graph_server, tenant, store, fault
):
    """Reconciled in the same run: each group is found by its anchor (the sync app's extension), never by its names,
    by which each found both and, finding no single one of its own, was created again beside them."""
    same_named_groups(store)
    hook = entra_hook_for(graph_server, tenant)
    faulty = FaultyCall(hook, graph_server, group_creates, **fault)
    result = run_entra_export(store, faulty, settings=SETTINGS)
    assert faulty.faulted == 1
    assert result.result == "success", result
    assert_each_group_once_with_its_member(store, hook)
    counted = result.counters
    assert counted["creates_reconciled"] >= 2  # the answered ones are recorded as creates
    assert counted["creates_reconciled"] + counted.get("user_creates", 0) + counted.get("group_creates", 0) == 4


def test_groups_of_the_same_names_a_stopped_run_had_created_are_adopted_by_the_next_run(graph_server, tenant, store):
    same_named_groups(store)
    hook = entra_hook_for(graph_server, tenant)
    faulty = FaultyCall(hook, graph_server, group_creates, faultDropRatio=1.0)
    with pytest.raises(WriteOutcomeUnknownError):  # it stops at the first call without an answer
        run_entra_export(store, faulty, settings=SETTINGS.model_copy(update={"unknown_outcome_limit": 1}))
    assert len(all_groups(hook)) == 2  # carried out, unconfirmed
    result = run_entra_export(store, hook, settings=SETTINGS)
    assert result.result == "success", result
    assert_each_group_once_with_its_member(store, hook)
    assert result.counters["creates_reconciled"] == 4 and "group_creates" not in result.counters  # users too


# ------------------------------------------------------------------------------------------- member changes
def counters(server: EmulatorServer) -> dict[str, Any]:
    return httpx.get(f"{server.base_url}/_emulator/counters", verify=trust(server)).json()


def reset_counters(server: EmulatorServer) -> None:
    httpx.delete(f"{server.base_url}/_emulator/counters", verify=trust(server))


def test_member_changes_answered_in_part_are_each_recorded_and_only_what_is_left_is_sent_again(
    graph_server, tenant, store
):
    """One group's adds and removes, answered in one run with 429s (Retry-After), "already exist" (an add made in the
    cloud meanwhile), 404 on a remove (a removal made in the cloud) and 404 for a member deleted in the cloud: every
    other change is made once and confirmed; the next run sends only the add that cannot be made."""
    rules = load_sync_rules()
    users = [ad_user(n) for n in range(1, 13)]
    import_full(store, "ad", [*users, ad_group(1001, "Team", range(1, 6))])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    hook = entra_hook_for(graph_server, tenant)
    assert run_entra_export(store, hook, settings=SETTINGS).result == "success"
    cloud = graph_users(hook)
    ids = {n: cloud[immutable_id(guid(n))]["id"] for n in range(1, 13)}
    (team,) = all_groups(hook)
    assert graph_members(hook, team["id"]) == {ids[n] for n in range(1, 6)}

    # AD: members 1, 2 stay; 3, 4, 5 leave; 6 to 12 join
    import_delta(store, "ad", [ad_group(1001, "Team", [1, 2, *range(6, 13)])])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    # the cloud meanwhile: 6 added and 3 removed by someone else, 12 deleted
    hook.request("POST", f"/groups/{team['id']}/members/$ref", json={"@odata.id": hook.directory_object_url(ids[6])})
    hook.request("DELETE", f"/groups/{team['id']}/members/{ids[3]}/$ref")
    hook.request("DELETE", f"/users/{ids[12]}")

    set_emulator(graph_server, faultRatio429=0.4, faultRetryAfterSeconds=1, randomSeed=5)
    try:
        result = run_entra_export(store, hook, settings=SETTINGS)
    finally:
        set_emulator(graph_server, faultRatio429=None, faultRetryAfterSeconds=None, randomSeed=None)
    assert result.counters["throttled_requests"] > 0
    assert graph_members(hook, team["id"]) == {ids[n] for n in (1, 2, *range(6, 12))}
    assert result.result == "completed-export-errors", result
    (error,) = store.run_errors(result.run_id)
    assert error["code"] in ("Request_ResourceNotFound", "ResourceNotFound", "http-404"), error
    assert result.counters["member_adds"] == 6 and result.counters["member_removes"] == 3
    left = open_references(store)
    assert left == [(team["id"], ids[12], "failed")], left  # the group's update marker row waits with it

    reset_counters(graph_server)
    again = run_entra_export(store, hook, settings=SETTINGS)
    assert again.result == "completed-export-errors", again
    sent = {k: v for k, v in counters(graph_server)["requests"].items() if not k.startswith("GET")}
    assert sent == {"POST /v1.0/$batch": 1, "PATCH /v1.0/groups/{id}": 1}, sent  # the one add left, alone
    assert again.counters["batch_calls"] == 1 and again.counters["planned_requests"] == 1
    assert graph_members(hook, team["id"]) == {ids[n] for n in (1, 2, *range(6, 12))}


# --------------------------------------------------------------------------------------------------- deletes
def deletes(requests: Sequence[BatchRequest]) -> bool:
    return any(r.method == "DELETE" for r in requests)


@pytest.mark.parametrize(
    "fault",
    [{"faultWrite504Ratio": 1.0}, {"faultDropRatio": 1.0}, {"kill": True}],
    ids=["504", "dropped", "killed"],
)
def test_deletes_whose_answers_were_lost_count_as_done_when_graph_answers_404(graph_server, tenant, store, fault):
    """Deletes (a user, a group) and a member removal carried out but unanswered: sent again, in the same run (504,
    a dropped call) or by the next (the task killed before it recorded them), Graph answers 404: done, no error."""
    rules = load_sync_rules()
    import_full(
        store, "ad", [ad_user(1), ad_user(2), ad_user(3), ad_group(1001, "Team", [1, 2]), ad_group(1002, "Old")]
    )
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    hook = entra_hook_for(graph_server, tenant)
    assert run_entra_export(store, hook, settings=SETTINGS, lock_holder="dag:1").result == "success"
    cloud = graph_users(hook)
    import_delta(store, "ad", [deleted(guid(3)), deleted(guid(1002)), ad_group(1001, "Team", [1])])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"

    faulty = FaultyCall(hook, graph_server, deletes, **fault)
    if fault.get("kill"):
        with pytest.raises(SimulatedKill):
            run_entra_export(store, faulty, settings=SETTINGS, lock_holder="dag:1")
        assert {state for _anchor, state in open_exports(store)} >= {"sent"}
        result = run_entra_export(store, hook, settings=SETTINGS, lock_holder="dag:1")
    else:
        result = run_entra_export(store, faulty, settings=SETTINGS, lock_holder="dag:1")
    assert faulty.faulted >= 1
    assert result.result == "success", (result, store.run_errors(result.run_id))
    assert (result.counters["user_deletes"], result.counters["group_deletes"]) == (1, 1)
    assert result.counters["member_removes"] == 1
    assert sorted(graph_users(hook)) == sorted([immutable_id(guid(1)), immutable_id(guid(2))])
    (team,) = all_groups(hook)
    assert graph_members(hook, team["id"]) == {cloud[immutable_id(guid(1))]["id"]}
    assert open_exports(store) == []


# ------------------------------------------------------------------------------------------------ throttling
def test_a_call_throttled_in_part_past_max_retry_wait_stops_and_the_next_run_completes_it_exactly(
    graph_server, tenant, store
):
    """Half the creates of a call answered 429 with a Retry-After past max_retry_wait, the others carried out: the run
    stops without waiting, after recording what Graph created (those objects adopted, their creates done); the next
    one creates the rest, each object once."""
    rules = load_sync_rules()
    import_full(store, "ad", [*(ad_user(n) for n in range(1, 9)), ad_group(1001, "Team", range(1, 9))])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    hook = EntraHook(settings=entra_hook_for(graph_server, tenant).settings.model_copy(update={"max_retry_wait": 5}))
    faulty = FaultyCall(
        hook,
        graph_server,
        lambda requests: any(r.method == "POST" for r in requests),
        faultRatio429=0.5,
        faultRetryAfterSeconds=600,
        randomSeed=6,
    )
    with pytest.raises(GraphThrottledError):
        run_entra_export(store, faulty, settings=SETTINGS, lock_holder="dag:1")
    made = len(graph_users(hook)) + len(all_groups(hook))
    assert 0 < made < 9  # some carried out, some throttled
    with store.engine.connect() as connection:
        left = connection.execute(
            sa.select(pending_export.c.state).where(pending_export.c.connector == "entra")
        ).scalars()
        assert sorted(left) == ["sent"] * (9 - made)  # only the throttled creates wait for the next run
    result = run_entra_export(store, hook, settings=SETTINGS, lock_holder="dag:1")
    assert result.result == "success", (result, store.run_errors(result.run_id))
    assert result.counters.get("creates_reconciled", 0) == 0  # looked up, none found: Graph had not made them
    users = graph_users(hook)
    assert sorted(users) == sorted(immutable_id(guid(n)) for n in range(1, 9))
    (team,) = all_groups(hook)
    assert graph_members(hook, team["id"]) == {user["id"] for user in users.values()}
    assert open_exports(store) == []
