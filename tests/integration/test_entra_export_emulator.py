"""The V2 export through the EntraHook against the Graph emulator over TLS: creates, members, updates, deletes,
guards, conflicts, throttling, faults and a killed-and-retried export."""

from __future__ import annotations

import datetime as dt
import functools
import json

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.entra.graph import graph_body
from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.store import export_conflict, pending_export, pending_export_reference
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.adoption import seed_tenant
from tests.support.graph import graph_groups, graph_members, graph_users
from tests.support.servers import (
    after_graph_requests,
    emulator_admin,
    entra_hook_for,
    graph_status_counts,
)
from tests.support.world import ad_group, ad_user, deleted, guid, immutable_id, import_delta, import_full

pytestmark = pytest.mark.integration

DOMAIN = "corp.example"


@pytest.fixture
def tenant(tenant_verifying):
    """A tenant that has verified the AD users' UPN domain."""
    return tenant_verifying(DOMAIN)


@pytest.fixture(scope="module")
def rules():
    return load_sync_rules()


def cloud_user(hook, nickname: str, *, upn: str | None = None, **values) -> dict:
    """A user created in the cloud, holding a value our export will want (a UPN, an SMTP address)."""
    body = {
        "accountEnabled": True,
        "displayName": f"Cloud {nickname}",
        "mailNickname": nickname,
        "userPrincipalName": upn or f"{nickname}@{DOMAIN}",
        "passwordProfile": {"password": "Xy!12345678abc"},
        **values,
    }
    return hook.request("POST", "/users", json=body)


def open_plan(store) -> tuple[int, int]:
    """The Entra export's open plan (AD holds the ConsistencyGuid writeback's updates, which no test here exports)."""
    with store.engine.connect() as connection:
        objects = connection.execute(
            sa.select(sa.func.count()).select_from(pending_export).where(pending_export.c.connector == "entra")
        ).scalar()
        references = connection.execute(
            sa.select(sa.func.count())
            .select_from(pending_export_reference)
            .where(pending_export_reference.c.connector == "entra")
        ).scalar()
    return objects, references


def seed_and_sync(store, rules, users: int = 60, big: int = 45) -> None:
    objects = [ad_user(n, department=f"D{n % 3}") for n in range(1, users + 1)]
    objects += [
        ad_group(1001, "Everyone", members=range(1, big + 1)),
        ad_group(1002, "Small", members=[1, 2, 1003]),
        ad_group(1003, "Nested", members=[3]),
    ]
    import_full(store, "ad", objects)
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"


def confirm(store, hook, rules) -> None:
    """The confirming import and sync of the cycle: Entra's view comes back into the connector space."""
    assert import_entra(hook, store, connector="entra", mode="delta").result == "success"
    assert run_sync(store, rules, connector="entra", mode="delta").result == "success"


def test_initial_export_then_nothing_to_write(graph_server, tenant, store, rules):
    hook = entra_hook_for(graph_server, tenant)
    seed_and_sync(store, rules)
    result = run_entra_export(store, hook)
    assert result.result == "success", (result, store.run_errors(result.run_id))
    counters = result.counters
    assert counters["user_creates"] == 60 and counters["group_creates"] == 3
    assert counters["member_adds"] == 45 + 3 + 1
    assert counters["batch_calls"] <= 1.05 * counters["batch_calls_minimum"]
    assert open_plan(store) == (0, 0)

    users = graph_users(hook)
    assert len(users) == 60
    first = users[immutable_id(guid(1))]
    assert first["userPrincipalName"] == f"user1@{DOMAIN}" and first["department"] == "D1"
    groups = graph_groups(hook)
    assert groups["Everyone"]["securityEnabled"] is True and groups["Everyone"]["mailEnabled"] is False
    everyone = graph_members(hook, groups["Everyone"]["id"])
    assert everyone == {users[immutable_id(guid(n))]["id"] for n in range(1, 46)}
    assert graph_members(hook, groups["Small"]["id"]) == {
        users[immutable_id(guid(1))]["id"],
        users[immutable_id(guid(2))]["id"],
        groups["Nested"]["id"],
    }

    confirm(store, hook, rules)
    assert open_plan(store) == (0, 0), "the confirming import found differences"
    again = run_entra_export(store, hook)
    assert again.result == "success" and again.counters["batch_calls"] == 0


def test_member_deltas_updates_and_deletes(graph_server, tenant, store, rules):
    hook = entra_hook_for(graph_server, tenant)
    seed_and_sync(store, rules)
    run_entra_export(store, hook)
    confirm(store, hook, rules)

    import_delta(
        store,
        "ad",
        [
            ad_group(1001, "Everyone", members=list(range(5, 50))),  # 1-4 out, 46-49 in
            ad_user(7, department="Changed"),
            deleted(guid(60)),
        ],
    )
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    result = run_entra_export(store, hook)
    assert result.result == "success", store.run_errors(result.run_id)
    assert (result.counters["member_adds"], result.counters["member_removes"]) == (4, 4)
    assert result.counters["user_updates"] == 1 and result.counters["user_deletes"] == 1
    users = graph_users(hook)
    assert immutable_id(guid(60)) not in users
    assert users[immutable_id(guid(7))]["department"] == "Changed"
    everyone = graph_members(hook, graph_groups(hook)["Everyone"]["id"])
    assert everyone == {users[immutable_id(guid(n))]["id"] for n in range(5, 50)}
    confirm(store, hook, rules)
    assert open_plan(store) == (0, 0)


def test_deletion_threshold_stops_before_any_write_and_staging_writes_nothing(graph_server, tenant, store, rules):
    hook = entra_hook_for(graph_server, tenant)
    seed_and_sync(store, rules, users=12, big=5)
    staged = run_entra_export(store, hook, settings=ExportSettings(staging=True))
    assert staged.result == "staged" and staged.counters["planned_user_adds"] == 12
    assert graph_users(hook) == {} and hook.counters.get("batch_requests", 0) == 0
    run_entra_export(store, hook)
    confirm(store, hook, rules)

    import_delta(store, "ad", [deleted(guid(n)) for n in range(1, 5)])
    run_sync(store, rules, connector="ad", mode="delta")
    calls = hook.counters["batch_requests"]
    stopped = run_entra_export(store, hook, settings=ExportSettings(deletion_threshold=3))
    assert stopped.result == "stopped-deletion-threshold-exceeded"
    assert "deletion threshold of at least 4" in stopped.detail
    assert hook.counters["batch_requests"] == calls and len(graph_users(hook)) == 12
    allowed = run_entra_export(store, hook, settings=ExportSettings(deletion_threshold=4))
    assert allowed.result == "success" and len(graph_users(hook)) == 8


def test_upn_conflict_gets_a_placeholder_and_is_released_later(graph_server, tenant, store, rules):
    hook = entra_hook_for(graph_server, tenant)
    squatter = cloud_user(hook, "squatter", upn=f"user1@{DOMAIN}")
    seed_and_sync(store, rules, users=3, big=2)
    result = run_entra_export(store, hook)
    assert result.result == "success", [(e["code"], e["message"]) for e in store.run_errors(result.run_id)]
    assert result.counters["conflicts_recorded"] == 1
    upn = graph_users(hook)[immutable_id(guid(1))]["userPrincipalName"]
    local, _, domain = upn.partition("@")
    # the product's user1+1234 form, with "_" because Graph's UPN characters do not include "+"
    assert local.startswith("user1_") and local[-4:].isdigit() and len(local) == len("user1_1234")
    assert domain == tenant["initialDomain"]
    with store.engine.connect() as connection:
        conflict = connection.execute(sa.select(export_conflict)).one()
    assert conflict.wanted_value == f"user1@{DOMAIN}" and conflict.placeholder == upn and conflict.released_at is None

    for _cycle in range(2):  # while the conflict lasts, the user keeps its placeholder: no new one every cycle
        assert import_entra(hook, store, connector="entra", mode="delta").result == "success"
        # the squatter soft-matches user1's person, already joined to the user created for it: a join conflict
        assert run_sync(store, rules, connector="entra", mode="delta").result in ("success", "completed-sync-errors")
        again = run_entra_export(store, hook)
        assert again.result == "success" and again.counters.get("user_updates", 0) == 0
        assert graph_users(hook)[immutable_id(guid(1))]["userPrincipalName"] == upn

    hook.request("DELETE", f"/users/{squatter['id']}")  # resolved upstream
    confirm(store, hook, rules)
    released = run_entra_export(store, hook)
    assert released.result == "success"
    assert graph_users(hook)[immutable_id(guid(1))]["userPrincipalName"] == f"user1@{DOMAIN}"
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(export_conflict.c.released_at)).scalar() is not None


@pytest.mark.parametrize("held", ["userPrincipalName", "mail"])
def test_a_cloud_user_made_after_the_entra_import_is_adopted_by_the_next_cycle_never_duplicated(
    graph_server, tenant, store, rules, held
):
    """The portal's user, made between the cycle's Entra import and its export, holds the UPN (or the mail) of a user
    sync plans to create: the create is held (no second user beside it, with a placeholder UPN or without its mail),
    and the next cycle soft-matches it on that attribute."""
    hook = entra_hook_for(graph_server, tenant)
    shared = f"shared@{DOMAIN}"
    import_full(store, "ad", [ad_user(1, mail=shared), ad_user(2), ad_user(3)])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    assert import_entra(hook, store, connector="entra", mode="full").result == "success"  # the tenant: empty
    made = {"upn": f"user1@{DOMAIN}"} if held == "userPrincipalName" else {"mail": shared}
    portal = cloud_user(hook, "portal", **made)

    first = run_entra_export(store, hook)
    assert first.result == "completed-export-errors" and first.counters["creates_held_for_soft_match"] == 1
    assert [e["code"] for e in store.run_errors(first.run_id)] == ["soft-match-pending"]
    users = hook.request("GET", "/users", params={"$select": "id,userPrincipalName,mail,onPremisesImmutableId"})
    assert len(users["value"]) == 3 and immutable_id(guid(1)) not in graph_users(hook)  # users 2, 3 and the portal's
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(export_conflict)).all() == []

    confirm(store, hook, rules)  # the next cycle's import reads the portal's user and its sync soft-matches it
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    adopted = run_entra_export(store, hook)
    assert adopted.result == "success", [(e["code"], e["message"]) for e in store.run_errors(adopted.run_id)]
    user1 = graph_users(hook)[immutable_id(guid(1))]
    assert user1["id"] == portal["id"] and user1["userPrincipalName"] == f"user1@{DOMAIN}"
    assert len(hook.request("GET", "/users")["value"]) == 3


def test_a_create_whose_immutable_id_a_cloud_user_holds_is_refused_then_hard_matched_never_duplicated(
    graph_server, tenant, store, rules
):
    """A user restored in the cloud (made long ago) holds the ImmutableId of a user sync plans to create, under
    another UPN, after the cycle's Entra import: Graph refuses the create (the ImmutableId is unique in a tenant), the
    export does not adopt an object it did not create, and that user's error lets the others through. The next
    cycle's import reads the restored user and its sync hard-matches it: one user, never two."""
    hook = entra_hook_for(graph_server, tenant)
    import_full(store, "ad", [ad_user(1), ad_user(2), ad_user(3)])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    assert import_entra(hook, store, connector="entra", mode="full").result == "success"  # the tenant: empty
    last_year = (dt.datetime.now(dt.UTC) - dt.timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ")
    (restored,) = seed_tenant(
        graph_server,
        tenant,
        [
            {"@odata.type": "#microsoft.graph.user", "accountEnabled": True, "displayName": "Restored One",
             "mailNickname": "restored.one", "userPrincipalName": f"restored.one@{DOMAIN}",
             "onPremisesImmutableId": immutable_id(guid(1)), "createdDateTime": last_year},
        ],
    )  # fmt: skip

    first = run_entra_export(store, hook)
    assert first.result == "completed-export-errors", first
    (error,) = store.run_errors(first.run_id)
    assert error["code"] == "not-adopted" and restored["id"] in error["message"], error
    assert first.counters["user_creates"] == 2
    users = hook.request("GET", "/users", params={"$select": "id,onPremisesImmutableId"})["value"]
    holders = [u["id"] for u in users if u["onPremisesImmutableId"] == immutable_id(guid(1))]
    assert len(users) == 3 and holders == [restored["id"]]  # users 2, 3 and the restored one: no second user 1

    confirm(store, hook, rules)  # the next cycle's import reads the restored user; its sync hard-matches it
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    adopted = run_entra_export(store, hook)
    assert adopted.result == "success", [(e["code"], e["message"]) for e in store.run_errors(adopted.run_id)]
    assert adopted.counters.get("user_creates", 0) == 0 and adopted.counters["user_updates"] == 1
    user1 = graph_users(hook)[immutable_id(guid(1))]
    assert user1["id"] == restored["id"] and user1["userPrincipalName"] == f"user1@{DOMAIN}"
    assert len(hook.request("GET", "/users")["value"]) == 3


def test_contacts_are_reported_as_unsupported(graph_server, tenant, store, rules):
    from airflow_provider_aadsync.engine.runs.source import SourceObject

    hook = entra_hook_for(graph_server, tenant)
    contact = SourceObject(
        anchor=guid(500),
        dn="CN=Partner,OU=Contacts,DC=corp,DC=example",
        object_type="contact",
        attrs={"objectGUID": [guid(500)], "cn": ["Partner"], "mail": ["partner@example.org"]},
    )
    import_full(store, "ad", [ad_user(1), contact])
    run_sync(store, rules, connector="ad", mode="full")
    result = run_entra_export(store, hook)
    assert result.result == "success" and result.counters["user_creates"] == 1
    assert store.run_errors(result.run_id) == []  # a grouped notice, not an error per object
    (notice,) = store.run_notices(result.run_id)
    assert (notice["code"], notice["subject"], notice["count"]) == ("unsupported-by-graph", "contact create", 1)
    assert "Partner" in notice["examples"][0]["dn"]


def test_mail_enabled_security_groups_are_not_downgraded_and_mail_enablement_is_never_patched(
    graph_server, tenant, store, rules
):
    """A security group with mail in AD is a mail-enabled security group, which Graph does not create (the emulator
    refuses it as Graph does): it is not created as a plain security group, one notice says so. One made in
    Exchange Online with the same SMTP address is adopted (joined by its SMTP address) and, read-only in Graph, sent
    nothing (the emulator refuses every write to it, as Graph does): one more notice. An exported security group
    whose AD group gains mail keeps its mail-enablement (Graph sets it at the create only), again a notice."""
    hook = entra_hook_for(graph_server, tenant)
    (payroll,) = seed_tenant(
        graph_server,
        tenant,
        [{"@odata.type": "#microsoft.graph.group", "displayName": "Payroll (Exchange Online)",
          "mailNickname": "payroll", "mailEnabled": True, "securityEnabled": True,
          "mail": f"payroll@{DOMAIN}", "proxyAddresses": [f"SMTP:payroll@{DOMAIN}"]}],
    )  # fmt: skip
    universal = ad_group(1101, "Finance", members=[1], mail=f"finance@{DOMAIN}", groupType="-2147483640")
    objects = [ad_user(1), universal, ad_group(1102, "Payroll", mail=f"payroll@{DOMAIN}"), ad_group(1103, "Staff", [1])]
    import_full(store, "ad", objects)
    assert import_entra(hook, store, connector="entra", mode="full").result == "success"
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    assert run_sync(store, rules, connector="entra", mode="full").result == "success"

    result = run_entra_export(store, hook)
    assert result.result == "success" and store.run_errors(result.run_id) == [], store.run_errors(result.run_id)
    groups = graph_groups(hook)
    # Finance: not created, not downgraded; Payroll adopted, its name kept (read-only in Graph)
    assert sorted(groups) == ["Payroll (Exchange Online)", "Staff"]
    adopted = groups["Payroll (Exchange Online)"]
    assert (adopted["id"], adopted["mailEnabled"]) == (payroll["id"], True)
    assert (groups["Staff"]["securityEnabled"], groups["Staff"]["mailEnabled"]) == (True, False)
    notices = {n["subject"]: n for n in store.run_notices(result.run_id)}
    assert {(n["code"], s, n["count"]) for s, n in notices.items()} == {
        ("unsupported-by-graph", "mail-enabled security group create", 1),
        ("unsupported-by-graph", "mail-enabled group write", 1),
    }  # fmt: skip
    assert notices["mail-enabled security group create"]["examples"][0]["dn"].startswith("CN=Finance,")
    assert notices["mail-enabled group write"]["examples"][0]["dn"].startswith("CN=Payroll,")

    confirm(store, hook, rules)
    import_delta(store, "ad", [ad_group(1103, "Staff", [1], mail=f"staff@{DOMAIN}", description="Now with mail")])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    result = run_entra_export(store, hook)
    assert result.result == "success" and store.run_errors(result.run_id) == [], store.run_errors(result.run_id)
    staff = graph_groups(hook)["Staff"]
    assert (staff["description"], staff["mailEnabled"]) == ("Now with mail", False)
    assert {(n["subject"], n["count"]) for n in store.run_notices(result.run_id)} == {
        ("mail-enabled security group create", 1), ("mailEnabled", 1),
    }  # fmt: skip


CHILD = """
import sys
from airflow_provider_aadsync.engine.connectors.entra.writer import run_entra_export
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.hooks.entra import EntraHook
with Store.open(sys.argv[1], instance=sys.argv[2]) as store:
    run_entra_export(store, EntraHook("aadsync_entra"), lock_holder="dag:run-1")
"""


def batch_calls(server) -> int:
    counters = emulator_admin(server, "GET", "/counters").json()
    return sum(n for key, n in counters["requests"].items() if key.startswith("POST") and key.endswith("/$batch"))


@pytest.mark.parametrize("kill_after_calls", [7, 21])  # among the user creates / in the member call
def test_an_export_killed_between_calls_resumes_without_duplicates_or_gaps(
    graph_server, tenant, store, rules, emulator_settings_for, kill_after_calls
):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.support.servers import entra_connection

    users = 400
    import_full(store, "ad", [ad_user(n) for n in range(1, users + 1)] + [ad_group(1001, "All", range(1, users + 1))])
    run_sync(store, rules, connector="ad", mode="full")
    connection = entra_connection(graph_server, tenant)
    env = {**os.environ, "AIRFLOW_CONN_AADSYNC_ENTRA": connection.as_json()}
    emulator_settings_for(graph_server, latencyMs=40)
    emulator_admin(graph_server, "DELETE", "/counters")
    child = subprocess.Popen([sys.executable, "-c", CHILD, store.url, store.instance], env=env)
    deadline = time.monotonic() + 120
    while batch_calls(graph_server) < kill_after_calls and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the export finished before it could be killed"
    emulator_settings_for(graph_server, latencyMs=0)
    killed = store.list_runs(limit=1)[0]  # its plan was on record before its first write
    assert (killed["profile"], killed["result"]) == ("export", "in-progress")
    assert killed["counters"]["planned_user_adds"] == users and killed["counters"]["planned_member_adds"] == users

    hook = entra_hook_for(graph_server, tenant)
    result = run_entra_export(store, hook, lock_holder="dag:run-1")  # the Airflow retry: same DAG run, same lock
    assert result.result == "success", [(e["code"], e["message"]) for e in store.run_errors(result.run_id)]
    listed = [
        user
        for page in hook.paginate("/users", params={"$select": "id,onPremisesImmutableId", "$top": "999"})
        for user in page["value"]
    ]
    immutable_ids = [user["onPremisesImmutableId"] for user in listed]
    assert len(immutable_ids) == len(set(immutable_ids)) == users  # no duplicate, no gap
    groups = [g for page in hook.paginate("/groups", params={"$top": "999"}) for g in page["value"]]
    assert [g["displayName"] for g in groups] == ["All"]
    assert graph_members(hook, groups[0]["id"]) == {user["id"] for user in listed}
    assert open_plan(store) == (0, 0)
    confirm(store, hook, rules)
    assert open_plan(store) == (0, 0)


def test_export_paced_to_the_write_budget_under_throttling(graph_server, tenant, store, rules, emulator_settings_for):
    """The emulated tenant allows 100 writes per 2 s; the export paces itself to that and loses nothing."""
    import math
    import time

    emulator_settings_for(
        graph_server, throttlingEnabled=True, throttleAppWrites=100, throttleAppWriteWindowSeconds=2.0
    )
    hook = entra_hook_for(graph_server, tenant)
    seed_and_sync(store, rules, users=300, big=260)
    started = time.monotonic()
    result = run_entra_export(store, hook, settings=ExportSettings(write_budget=100, write_window_seconds=2.0))
    elapsed = time.monotonic() - started
    assert result.result == "success", store.run_errors(result.run_id)
    writes = result.counters["planned_requests"]
    # the cap lets N writes through in no less than (ceil(N / 100) - 1) windows of 2 s: we need at most 1/0.9 of that,
    # plus a second for what no pacing touches (the plan and guards before the first write, the last call's work and
    # the run's end after it: 0.75 s in a CI run while the other worker ran the Airflow tests, 6.75 s against 6.0)
    fastest_allowed = (math.ceil(writes / 100) - 1) * 2.0
    assert elapsed <= fastest_allowed / 0.9 + 1.0, (writes, elapsed)
    assert result.counters["pacing_wait_seconds"] <= fastest_allowed, result.counters  # never waits past the windows
    assert result.counters["throttled_requests"] <= 2 and result.counters["pacing_wait_seconds"] > 0
    assert len(graph_users(hook)) == 300
    assert len(graph_members(hook, graph_groups(hook)["Everyone"]["id"])) == 260


def test_export_rides_out_429s_5xx_dropped_connections_and_token_expiry(
    graph_server, tenant, store, rules, emulator_settings_for, quick_backoff
):
    """No pacing (budget far above the tenant's), injected faults, and the tenant's tokens refused every twelfth
    request (as an expired or revoked token is, while msal still holds it for valid): the result is still exact.

    (Tokens issued for seconds would not do: msal never serves a token within five minutes of its end from its cache,
    so each request would get a new one and none would ever be refused.)"""
    emulator_settings_for(
        graph_server,
        throttlingEnabled=True,
        throttleAppWrites=60,
        throttleAppWriteWindowSeconds=1.0,
        faultRatio5xx=0.15,
        faultRetryAfterSeconds=0,
        faultDropRatio=0.1,
        randomSeed=7,
        faultNext429=2,  # a 429 however slow the machine (the write throttle alone may not trip on a loaded one)
    )
    hook = entra_hook_for(graph_server, tenant)
    seed_and_sync(store, rules, users=240, big=200)
    # one call in ten cut off: three in a row (the default stop) is likely enough over ~50 calls to make a flaky test
    settings = ExportSettings(resend_settle_seconds=0.2, unknown_outcome_limit=8)
    emulator_admin(graph_server, "DELETE", "/counters")
    expire = functools.partial(emulator_admin, graph_server, "POST", f"/tenants/{tenant['id']}/tokens/revoke")
    with after_graph_requests(12, expire, every=True):
        result = run_entra_export(store, hook, settings=settings)
    assert result.result == "success", [(e["code"], e["message"]) for e in store.run_errors(result.run_id)]
    assert result.counters["throttled_requests"] > 0 and result.counters["calls_with_unknown_outcome"] > 0
    assert graph_status_counts(graph_server).get("401", 0) >= 2  # refused tokens were renewed, more than once
    users = graph_users(hook)
    assert len(users) == 240
    assert sorted(group["displayName"] for group in graph_groups_all(hook)) == ["Everyone", "Nested", "Small"]
    groups = graph_groups(hook)
    assert graph_members(hook, groups["Everyone"]["id"]) == {users[immutable_id(guid(n))]["id"] for n in range(1, 201)}
    emulator_settings_for(graph_server, faultRatio5xx=0.0, faultDropRatio=0.0, throttlingEnabled=False)
    confirm(store, hook, rules)
    assert open_plan(store) == (0, 0)


def test_creates_answered_504_after_graph_carried_them_out_are_adopted_never_sent_twice(
    graph_server, tenant, store, rules, emulator_settings_for
):
    """A gateway timeout after the write (the emulator carries it out, then answers 504): the create is looked up and
    adopted. Sent again, a group would exist twice (Graph keeps no key of a group unique) and a user would conflict
    with itself."""
    emulator_settings_for(graph_server, faultWrite504Ratio=0.5, randomSeed=21)
    hook = entra_hook_for(graph_server, tenant)
    seed_and_sync(store, rules, users=40, big=30)
    result = run_entra_export(store, hook, settings=ExportSettings(resend_settle_seconds=0.05))
    emulator_settings_for(graph_server, faultWrite504Ratio=None, randomSeed=None)
    assert result.result == "success", [(e["code"], e["message"]) for e in store.run_errors(result.run_id)]
    assert result.counters["creates_reconciled"] >= 10  # half of the 43 creates were answered 504
    assert sorted(group["displayName"] for group in graph_groups_all(hook)) == ["Everyone", "Nested", "Small"]
    users = graph_users(hook)
    assert len(users) == 40
    groups = graph_groups(hook)
    assert graph_members(hook, groups["Everyone"]["id"]) == {users[immutable_id(guid(n))]["id"] for n in range(1, 31)}
    confirm(store, hook, rules)
    assert open_plan(store) == (0, 0)
    assert run_entra_export(store, hook).counters["batch_calls"] == 0


def test_smtp_conflict_drops_the_mail_value_and_is_released_later(graph_server, tenant, store, rules):
    hook = entra_hook_for(graph_server, tenant)
    squatter = cloud_user(hook, "holder", mail=f"shared@{DOMAIN}")
    import_full(store, "ad", [ad_user(1, mail=f"shared@{DOMAIN}"), ad_user(2)])
    run_sync(store, rules, connector="ad", mode="full")
    result = run_entra_export(store, hook)
    assert result.result == "success", [(e["code"], e["message"]) for e in store.run_errors(result.run_id)]
    assert result.counters["user_creates"] == 2 and result.counters["conflicts_recorded"] == 1
    select = {"$select": "id,mail,onPremisesImmutableId"}
    user = hook.request("GET", "/users", params={**select, "$filter": f"userPrincipalName eq 'user1@{DOMAIN}'"})
    assert user["value"][0]["mail"] is None  # the conflicting value was dropped, the user exists
    with store.engine.connect() as connection:
        conflict = connection.execute(sa.select(export_conflict)).one()
    assert (conflict.attribute, conflict.wanted_value, conflict.placeholder) == ("mail", f"shared@{DOMAIN}", None)

    hook.request("DELETE", f"/users/{squatter['id']}")
    confirm(store, hook, rules)  # the confirming import shows no mail: sync plans it again
    released = run_entra_export(store, hook)
    assert released.result == "success" and released.counters["user_updates"] == 1
    user = hook.request("GET", "/users", params={**select, "$filter": f"userPrincipalName eq 'user1@{DOMAIN}'"})
    assert user["value"][0]["mail"] == f"shared@{DOMAIN}"
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(export_conflict.c.released_at)).scalar() is not None


def test_resume_adopts_only_the_objects_this_export_created(graph_server, tenant, store, rules):
    """After a crash (every create "sent", its time recorded before the write), resume adopts the user whose create
    had gone through, but not someone else's objects created earlier that hold the same keys: a user with our
    ImmutableId is a per-object error naming it (never adopted, never written), and a group with the same
    mailNickname and displayName is left alone while ours is created beside it, as an uninterrupted export does
    (Graph does not keep group names unique). Ownership is "created after the create was first sent"."""
    hook = entra_hook_for(graph_server, tenant)
    import_full(store, "ad", [ad_user(1), ad_user(2), ad_user(3), ad_group(1001, "Team", members=[1, 2])])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    with store.engine.connect() as connection:
        plan = {
            (row.object_type, (json.loads(row.changes).get("onPremisesImmutableId") or ["group"])[0]): row
            for row in connection.execute(sa.select(pending_export).where(pending_export.c.operation == "add"))
        }
    team = json.loads(plan[("group", "group")].changes)
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    foreign_group, foreign_user = seed_tenant(
        graph_server,
        tenant,
        [
            {"@odata.type": "#microsoft.graph.group", "displayName": team["displayName"][0],
             "mailNickname": team["mailNickname"][0], "mailEnabled": False, "securityEnabled": True,
             "createdDateTime": yesterday},
            {"@odata.type": "#microsoft.graph.user", "accountEnabled": True, "displayName": "Someone Else",
             "mailNickname": "someone.else", "userPrincipalName": f"someone.else@{DOMAIN}",
             "onPremisesImmutableId": immutable_id(guid(3)), "createdDateTime": yesterday},
        ],
    )  # fmt: skip
    with store.transaction() as connection:  # what the killed export left: its creates sent, the time on record
        connection.execute(
            sa.update(pending_export)
            .where(pending_export.c.connector == "entra", pending_export.c.operation == "add")
            .values(state="sent", sent_at=dt.datetime.now(dt.UTC))
        )
    changes = json.loads(plan[("user", immutable_id(guid(1)))].changes)
    hook.extension_names.ensure(hook, changes)  # as the export does before its first write of an extension
    body = graph_body(changes, hook.extension_names)
    ours = hook.request("POST", "/users", json={**body, "passwordProfile": {"password": "Xy!12345678abc"}})

    result = run_entra_export(store, hook, settings=ExportSettings(resend_settle_seconds=0))
    assert result.result == "completed-export-errors"
    (error,) = store.run_errors(result.run_id)
    assert error["code"] == "not-adopted", error
    assert "an object we did not create holds this name; not adopted" in error["message"]
    assert foreign_user["id"] in error["message"] and yesterday in error["message"]
    counters = result.counters
    assert (counters["creates_reconciled"], counters["user_creates"], counters["group_creates"]) == (1, 1, 1)
    assert (counters["creates_not_adopted"], counters["foreign_objects_not_adopted"]) == (1, 1)
    users = graph_users(hook)
    assert users[immutable_id(guid(1))]["id"] == ours["id"]  # adopted, not created twice
    assert users[immutable_id(guid(3))]["id"] == foreign_user["id"]  # the only one: not adopted, not duplicated
    assert users[immutable_id(guid(3))]["displayName"] == "Someone Else"  # never written
    teams = [g for g in graph_groups_all(hook) if g["displayName"] == team["displayName"][0]]
    assert {g["id"] for g in teams} - {foreign_group["id"]} and len(teams) == 2
    (mine,) = [g for g in teams if g["id"] != foreign_group["id"]]
    assert graph_members(hook, foreign_group["id"]) == set()  # someone else's group is untouched
    assert graph_members(hook, mine["id"]) == {ours["id"], users[immutable_id(guid(2))]["id"]}
    with store.engine.connect() as connection:
        (row,) = connection.execute(
            sa.select(pending_export).where(
                pending_export.c.connector == "entra", pending_export.c.state != "confirmed"
            )
        ).all()
    assert row.state == "failed" and row.last_error.startswith("not-adopted")


def graph_groups_all(hook) -> list[dict]:
    return [group for page in hook.paginate("/groups", params={"$top": "999"}) for group in page["value"]]
