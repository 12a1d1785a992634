"""The Entra exporter against a fake Graph tenant: what goes out in which ``$batch``, and what the store records.

Plans come from the real sync (AD objects imported through the connector-space writer, the shipped rules), or are
staged by hand where a test needs a shape sync would take long to build (a group of 1,001 members). The exporter
meets the fake through the same ``GraphWriter`` interface the EntraHook implements; tests/integration runs the same
exporter against the Graph emulator over HTTPS.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.store import (
    Store,
    cs_object,
    cs_reference,
    export_conflict,
    pending_export_reference,
)
from airflow_provider_aadsync.engine.sync import run_sync
from tests.support.fakes import FakeGraphWriter, SimulatedKill, ThrottledStop, not_found, to
from tests.support.plans import cs_row, plan_references, plan_row
from tests.support.world import ad_group, ad_user, deleted, exports, guid, immutable_id, import_delta, import_full

#: No pause before reconciling creates an interrupted call had sent (the fake has nothing in flight).
SETTINGS = ExportSettings(resend_settle_seconds=0)


@pytest.fixture
def graph() -> FakeGraphWriter:
    return FakeGraphWriter()


def synced(store: Store, rules, users: int = 3, members: tuple[int, ...] = (1, 2)) -> None:
    """AD users 1..``users`` and the group Staff (``members``), imported and synced: creates staged for Entra."""
    import_full(store, "ad", [*(ad_user(n) for n in range(1, users + 1)), ad_group(100, "Staff", members=members)])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"


def export(store: Store, graph: FakeGraphWriter, **settings: Any):
    return run_entra_export(store, graph, settings=SETTINGS.model_copy(update=settings), lock_holder="test-task")


def entra_rows(store: Store) -> dict[str, dict[str, Any]]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(cs_object).where(cs_object.c.connector == "entra")).all()
    return {row.anchor: {**json.loads(row.attrs), "@dn": row.dn} for row in rows}


def anchor_of(store: Store, upn: str) -> str:
    (anchor,) = [a for a, attrs in entra_rows(store).items() if attrs.get("userPrincipalName") == [upn]]
    return anchor


def cs_members(store: Store, group: str) -> set[str]:
    with store.engine.connect() as connection:
        return set(
            connection.execute(
                sa.select(cs_reference.c.target_anchor).where(
                    cs_reference.c.connector == "entra", cs_reference.c.anchor == group
                )
            ).scalars()
        )


def open_references(store: Store) -> int:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(pending_export_reference)).scalar()


def shape(call) -> list[str]:
    """A $batch as 'METHOD /resource' per request (ids left out), to compare call order."""
    return [f"{r.method} /{r.url.strip('/').split('/')[0]}" + ("/members" if "members" in r.url else "") for r in call]


# ---------------------------------------------------------------------------------------------------- phases
def test_objects_go_before_member_changes_and_the_store_takes_the_real_ids(store, rules, graph):
    synced(store, rules)
    result = export(store, graph)
    assert result.result == "success", result
    creates, members = graph.calls
    assert shape(creates) == ["POST /users"] * 3 + ["POST /groups"]
    (bind,) = members  # the created ids exist before a member change names them
    user_ids = {anchor_of(store, f"user{n}@corp.example") for n in (1, 2)}
    group_id = next(iter(graph.groups()))
    assert bind.method == "PATCH" and bind.url == f"/groups/{group_id}"
    assert {url.rsplit("/", 1)[-1] for url in bind.body["members@odata.bind"]} == user_ids
    assert graph.members[group_id] == user_ids == cs_members(store, group_id)
    assert exports(store) == {} and open_references(store) == 0
    assert set(entra_rows(store)) == set(graph.objects)  # provisional anchors replaced by Graph's ids
    assert entra_rows(store)[group_id]["@dn"] == f"groups/{group_id}"
    assert graph.passwords_sent == 3 and "passwordProfile" not in json.dumps(entra_rows(store))
    counters = result.counters
    assert (counters["user_creates"], counters["group_creates"], counters["member_adds"]) == (3, 1, 2)
    assert counters["batch_calls"] == counters["batch_calls_minimum"] == 2

    # A second round: deletes go first in calls of their own (Graph runs a call's requests in any order), then a
    # create and an update share a call.
    import_delta(store, "ad", [deleted(guid(3)), ad_user(1, displayName="Renamed One"), ad_user(4)])
    import_delta(store, "ad", [ad_group(100, "Staff", members=(1, 2, 4))])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    graph.calls.clear()
    result = export(store, graph)
    assert result.result == "success", result
    deletes, objects, *member_calls = graph.calls
    assert shape(deletes) == ["DELETE /users"]
    assert shape(objects) == ["POST /users", "PATCH /users"]
    assert [shape(call) for call in member_calls] == [["PATCH /groups"]]
    new_user = anchor_of(store, "user4@corp.example")
    assert graph.users()[anchor_of(store, "user1@corp.example")]["displayName"] == "Renamed One"
    assert len(graph.users()) == 3 and graph.members[group_id] == user_ids | {new_user} == cs_members(store, group_id)
    assert exports(store) == {} and open_references(store) == 0


def test_a_delete_graph_answers_404_for_counts_as_done(store, rules, graph):
    synced(store, rules, users=2, members=())
    assert export(store, graph).result == "success"
    gone = anchor_of(store, "user2@corp.example")
    import_delta(store, "ad", [deleted(guid(2))])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    graph.answer(to("DELETE", f"/users/{gone}"), not_found(gone))
    result = export(store, graph)
    assert result.result == "success" and result.counters["user_deletes"] == 1
    assert gone not in entra_rows(store) and exports(store) == {}
    assert gone in graph.users()  # the canned 404 kept the fake's copy: nothing else was tried


# ------------------------------------------------------------------------------------------- Graph's limits
def test_twenty_requests_per_batch_and_twenty_member_links_per_request(store, rules, graph):
    synced(store, rules, users=45, members=tuple(range(1, 46)))
    result = export(store, graph)
    assert result.result == "success", result
    assert [len(call) for call in graph.calls] == [20, 20, 6, 3]
    assert shape(graph.calls[2])[-1] == "POST /groups"  # groups after users, in the same calls
    binds = [len(r.body["members@odata.bind"]) for r in graph.calls[3]]
    assert binds == [20, 20, 5]
    (group_id,) = graph.groups()
    assert len(graph.members[group_id]) == 45 == len(cs_members(store, group_id))
    assert result.counters["batch_calls"] == result.counters["batch_calls_minimum"] == 4


def test_a_large_group_is_written_in_packs_of_twenty_in_calls_of_twenty(store, graph):
    """1,001 members: 51 requests in 3 calls, the same arithmetic as 250,000 members in 12,500 requests and 625
    calls (the protocol minimum)."""
    group = graph.add_group("Everyone")
    users = [graph.add_user(f"u{n}@corp.example") for n in range(1_001)]
    cs_row(store, "entra", group, f"groups/{group}", attrs={"id": [group], "displayName": ["Everyone"]})
    plan_row(store, "entra", group, f"groups/{group}", operation="update")  # announces member changes only
    plan_references(store, "entra", group, "members", users)
    result = export(store, graph)
    assert result.result == "success", result
    assert [len(call) for call in graph.calls] == [20, 20, 11]
    packs = [len(r.body["members@odata.bind"]) for r in graph.requests_sent()]
    assert packs == [20] * 50 + [1]
    assert graph.members[group] == set(users) == cs_members(store, group)
    assert result.counters["planned_requests"] == 51 and result.counters["batch_calls_minimum"] == 3
    assert exports(store) == {} and open_references(store) == 0  # the update marker went with its last member


# ---------------------------------------------------------------------------------- duplicate attribute resiliency
def test_a_taken_upn_gets_a_placeholder_in_the_initial_domain_and_is_released_when_free(store, rules, graph):
    blocker = graph.add_user("user2@corp.example", displayName="Someone in the cloud")
    synced(store, rules, users=2, members=())
    result = export(store, graph)
    assert result.result == "success" and result.counters["conflicts_recorded"] == 1, result
    upns = [r.body["userPrincipalName"] for r in graph.requests_sent() if (r.method, r.url) == ("POST", "/users")]
    wanted, plus, underscore = [u for u in upns if u.startswith("user2")]
    # the product's form "+1234" first; Graph refuses "+" in a UPN, so the same digits with "_"
    assert wanted == "user2@corp.example"
    assert plus.startswith("user2+") and plus.endswith("@contoso.onmicrosoft.com")
    assert underscore == plus.replace("+", "_")
    created = anchor_of(store, underscore)
    assert graph.users()[created]["onPremisesImmutableId"] == immutable_id(guid(2))
    with store.engine.connect() as connection:
        (conflict,) = connection.execute(sa.select(export_conflict)).all()
    assert (conflict.anchor, conflict.attribute, conflict.wanted_value) == (created, "userPrincipalName", wanted)
    assert conflict.placeholder == underscore and conflict.released_at is None
    assert ("GET", "/domains", {}) in graph.reads

    del graph.objects[blocker]  # the cloud user gives the name up: the next cycle writes the wanted UPN
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    assert export(store, graph).result == "success"
    assert graph.users()[created]["userPrincipalName"] == wanted
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(export_conflict.c.released_at)).scalar() is not None


def test_a_taken_smtp_address_is_dropped_and_recorded(store, rules, graph):
    graph.add_user("other@corp.example", mail="shared@corp.example")
    import_full(store, "ad", [ad_user(1, mail="shared@corp.example")])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    result = export(store, graph)
    assert result.result == "success" and result.counters["conflicts_recorded"] == 1, result
    created = anchor_of(store, "user1@corp.example")
    assert "mail" not in graph.users()[created]
    with store.engine.connect() as connection:
        (conflict,) = connection.execute(sa.select(export_conflict)).all()
    assert (conflict.attribute, conflict.wanted_value, conflict.placeholder) == ("mail", "shared@corp.example", None)


@pytest.mark.parametrize("address", ["shared@corp.example", "sales_2024@corp.example"])
def test_a_taken_smtp_address_is_written_and_released_once_free(store, rules, graph, address):
    """Tried again each cycle and released once written: also an address whose local part ends like a placeholder's
    (``_`` and four digits), which only a UPN can be."""
    holder = graph.add_user("other@corp.example", mail=address)
    import_full(store, "ad", [ad_user(1, mail=address)])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    assert export(store, graph).counters["conflicts_recorded"] == 1
    del graph.objects[holder]  # the other holder lets it go
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    assert export(store, graph).result == "success"
    assert graph.users()[anchor_of(store, "user1@corp.example")]["mail"] == address
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(export_conflict.c.released_at)).scalar() is not None


# ------------------------------------------------------------------------------ calls without a clear answer
@pytest.mark.parametrize("carried_out", [True, False])
def test_a_dropped_call_is_reconciled_never_created_twice(store, rules, graph, carried_out):
    synced(store, rules)
    graph.drop_next_call(carried_out=carried_out)
    result = export(store, graph)
    assert result.result == "success", result
    assert len(graph.users()) == 3 and len(graph.groups()) == 1
    lookups = [params["$filter"].split(" eq ")[0] for _m, url, params in graph.reads if url != "/domains"]
    # the group by its anchor (the sync app's extension): its names are not unique in Graph, and are looked up only
    # when no group holds the anchor (one created before the extension was registered does not hold it)
    names = [] if carried_out else ["mailNickname"]
    assert sorted(lookups) == ["extension_aadsyncSourceAnchor", *names] + ["onPremisesImmutableId"] * 3
    assert result.counters["calls_with_unknown_outcome"] == 1
    assert result.counters.get("creates_reconciled", 0) == (4 if carried_out else 0)
    creates_sent = [r for r in graph.requests_sent() if r.method == "POST"]
    assert len(creates_sent) == (4 if carried_out else 8)  # not carried out: sent once more, after the lookup
    (group_id,) = graph.groups()
    assert len(graph.members[group_id]) == 2 and exports(store) == {} and open_references(store) == 0


def test_throttled_requests_are_resent_after_retry_after_and_counted(store, rules, graph):
    synced(store, rules, members=())
    graph.throttle(to("POST", "/users"), retry_after=7)
    result = export(store, graph)
    assert result.result == "success", result
    assert [len(call) for call in graph.calls] == [4, 1]  # the throttled request alone, after the wait
    assert result.counters["throttled_requests"] == 1 and result.counters["throttle_wait_seconds"] == 7
    assert len(graph.users()) == 3


def test_a_create_throttled_past_the_retries_fails_alone_and_the_next_run_sends_it(store, rules, graph):
    synced(store, rules)
    second = immutable_id(guid(2))
    graph.throttle(lambda r: r.method == "POST" and (r.body or {}).get("onPremisesImmutableId") == second, times=3)
    first = export(store, graph)
    assert first.result == "completed-export-errors", first
    (error,) = store.run_errors(first.run_id)
    assert error["dn"] == "CN=user2,OU=Users,DC=corp,DC=example"  # named by its AD source
    assert "429" in error["message"]
    (failed,) = [row for row in exports(store).values() if row["state"] == "failed"]
    assert failed["changes"]["onPremisesImmutableId"] == [second]
    (group_id,) = graph.groups()
    assert len(graph.users()) == 2 and len(graph.members[group_id]) == 1  # user2's membership waits for it

    again = export(store, graph)
    assert again.result == "success", again
    assert len(graph.users()) == 3 and len(graph.members[group_id]) == 2
    assert exports(store) == {} and open_references(store) == 0


# ---------------------------------------------------------------------------------------------------- staging
def test_staging_stores_the_plan_and_sends_nothing(store, rules, graph):
    synced(store, rules)
    before = exports(store)
    result = export(store, graph, staging=True)
    assert result.result == "staged"
    assert graph.calls == [] and graph.reads == [] and graph.objects == {}
    assert exports(store) == before and open_references(store) == 2
    assert all(row["state"] == "pending" for row in before.values())
    assert (result.counters["planned_user_adds"], result.counters["planned_group_adds"]) == (3, 1)
    assert store.get_run(result.run_id)["result"] == "staged"


def test_a_call_stopped_by_throttling_records_what_graph_answered_and_the_next_run_the_rest(store, rules, graph):
    """Throttled past the connection's limits in the middle of a call, the run stops; the creates Graph answered are
    recorded at once (their cloud objects adopted, their exports done), the others stay sent, and the next run
    reconciles them: nothing is created twice, nothing is looked up for what was recorded."""
    synced(store, rules, members=())
    graph.stop_throttled_in_next_call(answered=2)
    with pytest.raises(ThrottledStop):
        export(store, graph)
    assert store.list_runs(1)[0]["result"].startswith("stopped-")
    assert len(graph.objects) == 2 and set(graph.objects) <= set(entra_rows(store))  # the two adopted at once
    assert sorted(row["state"] for row in exports(store).values()) == ["sent", "sent"]
    graph.reads.clear()
    again = export(store, graph)
    assert again.result == "success", again
    assert len(graph.users()) == 3 and len(graph.groups()) == 1 and exports(store) == {}
    lookups = [params["$filter"].split(" eq ")[0] for _m, url, params in graph.reads if url != "/domains"]
    # Only the two left sent (user3 by its ImmutableId; the group by its anchor, then its mailNickname) were looked up.
    assert sorted(lookups) == ["extension_aadsyncSourceAnchor", "mailNickname", "onPremisesImmutableId"]


# ------------------------------------------------------------------------------------- resuming a killed run
def killed(store: Store, graph: FakeGraphWriter, *, carried_out: bool) -> None:
    graph.kill_during_next_call(carried_out=carried_out)
    with pytest.raises(SimulatedKill):
        export(store, graph)


def test_creates_a_killed_run_had_sent_are_adopted_not_sent_again(store, rules, graph):
    synced(store, rules)
    killed(store, graph, carried_out=True)
    states = exports(store).values()
    assert {row["state"] for row in states} == {"sent"} and len(graph.objects) == 4
    graph.calls.clear()
    result = export(store, graph)
    assert result.result == "success", result
    assert result.counters["creates_reconciled"] == 4
    assert [r.method for r in graph.requests_sent()] == ["PATCH"]  # only the member change is new
    assert len(graph.users()) == 3 and set(entra_rows(store)) == set(graph.objects)
    assert exports(store) == {} and open_references(store) == 0


def test_a_sent_create_not_carried_out_is_sent_once_more(store, rules, graph):
    synced(store, rules, members=())
    killed(store, graph, carried_out=False)
    result = export(store, graph)
    assert result.result == "success" and result.counters["user_creates"] == 3, result
    assert len(graph.users()) == 3 and result.counters.get("creates_reconciled", 0) == 0


def test_resume_never_adopts_a_user_someone_else_created_with_our_key(store, rules, graph):
    synced(store, rules, users=2, members=())
    killed(store, graph, carried_out=False)
    key = immutable_id(guid(1))
    foreign = graph.add_user("squatter@corp.example", onPremisesImmutableId=key, created="2020-01-01T00:00:00Z")
    result = export(store, graph)
    assert result.result == "completed-export-errors", result
    (error,) = store.run_errors(result.run_id)
    assert error["code"] == "not-adopted" and foreign in error["message"]
    assert graph.users()[foreign]["userPrincipalName"] == "squatter@corp.example"  # nothing written to it
    assert foreign not in entra_rows(store)
    assert [row["state"] for row in exports(store).values()] == ["failed"]
    assert result.counters["creates_not_adopted"] == 1 and result.counters["user_creates"] == 1


def test_resume_finds_a_group_by_its_anchor_never_by_names_another_group_shares(store, rules, graph):
    """Two groups of the same names (two forests' "Staff") whose creates a killed run had sent: each is adopted by the
    anchor it carries in the sync app's extension, neither is created again (by names each found both)."""
    import_full(
        store,
        "ad",
        [
            ad_group(100, "Staff", displayName="Staff", mailNickname="Staff"),
            ad_group(101, "Staff2", displayName="Staff", mailNickname="Staff"),
        ],
    )
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    killed(store, graph, carried_out=True)
    result = export(store, graph)
    assert result.result == "success", result
    assert result.counters["creates_reconciled"] == 2 and "group_creates" not in result.counters
    held = {props["extension_aadsyncSourceAnchor"]: gid for gid, props in graph.groups().items()}
    assert sorted(held) == sorted([immutable_id(guid(100)), immutable_id(guid(101))])
    assert set(entra_rows(store)) == set(graph.groups())


def test_resume_never_adopts_a_group_someone_else_created_with_our_anchor(store, rules, graph):
    synced(store, rules, users=1, members=())
    killed(store, graph, carried_out=False)
    foreign = graph.add_group("Other", mailNickname="Other", extension_aadsyncSourceAnchor=immutable_id(guid(100)))
    result = export(store, graph)
    assert result.result == "completed-export-errors", result
    (error,) = store.run_errors(result.run_id)
    assert error["code"] == "not-adopted" and foreign in error["message"]
    assert "extension_aadsyncSourceAnchor" in error["message"]
    assert list(graph.groups()) == [foreign] and foreign not in entra_rows(store)
    assert result.counters["creates_not_adopted"] == 1


def test_a_member_pack_a_killed_run_had_sent_is_split_and_confirmed(store, rules, graph):
    synced(store, rules)
    assert export(store, graph).result == "success"
    (group_id,) = graph.groups()
    import_delta(store, "ad", [ad_group(100, "Staff", members=(1, 2, 3))])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    killed(store, graph, carried_out=True)  # user3 became a member; the store still says 'sent'
    graph.calls.clear()
    result = export(store, graph)
    assert result.result == "success", result
    # Graph refuses the whole pack (one is a member already): the pack is split and each add counts as done
    assert [shape(call) for call in graph.calls] == [["PATCH /groups"], ["POST /groups/members"]]
    assert result.counters["member_packs_split"] == 1
    assert graph.members[group_id] == cs_members(store, group_id) and len(cs_members(store, group_id)) == 3
    assert exports(store) == {} and open_references(store) == 0


def test_one_member_gone_from_graph_does_not_block_the_other_adds_of_its_pack(store):
    """A pack of member binds is all or nothing in Graph: one target deleted there since the last import answers 404
    for the whole pack. The pack is added one by one then (as for "already exist"): only that one fails, instead of
    all of them on every run."""
    graph = FakeGraphWriter()
    group = graph.add_group("Staff")
    users = [graph.add_user(f"u{n}@corp.example") for n in range(3)]
    gone = graph.add_user("gone@corp.example")
    cs_row(store, "entra", group, f"groups/{group}", attrs={"id": [group], "displayName": ["Staff"]})
    plan_row(store, "entra", group, f"groups/{group}", operation="update")
    plan_references(store, "entra", group, "members", [*users, gone])
    del graph.objects[gone]  # deleted in the cloud after the last import
    result = export(store, graph)
    assert graph.members[group] == set(users)
    assert result.counters["member_packs_split"] == 1


def test_a_graph_refusal_quoting_a_secret_is_kept_scrubbed_in_the_plan_too(store, rules, graph):
    """Graph's message went scrubbed into run_error but as it was into the plan row's last_error, which the sync
    manager's lineage and export plan pages show."""
    from airflow_provider_aadsync.engine import secrets
    from airflow_provider_aadsync.engine.store import pending_export
    from tests.support.fakes import graph_error

    secret = "Cl1ent-Secret~echoed"
    secrets.register_secret(secret)
    synced(store, rules, users=1, members=())
    graph.answer(to("POST", "/users"), graph_error(400, "Request_BadRequest", f"the request had {secret} in it"))
    try:
        result = export(store, graph)
    finally:
        secrets.forget_secrets()
    errors = store.run_errors(result.run_id)
    assert errors and all(secret not in error["message"] for error in errors)
    with store.engine.connect() as connection:
        failed = (
            connection.execute(sa.select(pending_export.c.last_error).where(pending_export.c.state == "failed"))
            .scalars()
            .all()
        )
    assert failed and all(text.startswith("Request_BadRequest: ") for text in failed), failed
    assert all(secret not in text and "had *** in it" in text for text in failed), failed
