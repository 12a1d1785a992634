"""The Entra ID import through the EntraHook against the Graph emulator over TLS: full, delta, fallbacks."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.entra.extensions import register_extensions
from airflow_provider_aadsync.engine.runs.source import ObjectDecodeError
from airflow_provider_aadsync.engine.store import Store, cs_object, cs_reference
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.hooks.entra import BatchRequest, EntraHook
from airflow_provider_aadsync.hooks.entra_settings import GraphError, GraphUnreachableError
from airflow_provider_aadsync.steps import needed_extensions_of, run_entra_import
from tests.support.graph import create_user
from tests.support.servers import emulator_admin, entra_hook_for
from tests.support.states import graph_writes

USERS = 260
BIG_GROUP = 230  # more members than one delta page item carries


def create_group(hook, name: str, members: list[str], unified: bool) -> str:
    group = hook.request("POST", "/groups", json={
        "displayName": name, "mailNickname": name.lower(), "mailEnabled": unified, "securityEnabled": not unified,
        "groupTypes": ["Unified"] if unified else []})  # fmt: skip
    for member in members:
        hook.request(
            "POST",
            f"/groups/{group['id']}/members/$ref",
            json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{member}"},
        )
    return group["id"]


@pytest.fixture
def tenant_with_data(graph_server, graph_tenant):
    hook = entra_hook_for(graph_server, graph_tenant)
    users = [create_user(hook, graph_tenant["initialDomain"], number) for number in range(USERS)]
    groups = {
        "team": create_group(hook, "Team", users[:BIG_GROUP], unified=True),
        "security": create_group(hook, "Security", users[:5], unified=False),
    }
    return hook, users, groups


def live(store) -> dict[str, dict]:
    with store.engine.connect() as connection:
        query = sa.select(cs_object).where(cs_object.c.is_deleted.is_(False))
        return {row.anchor: dict(row._mapping) for row in connection.execute(query)}


def members(store, group: str) -> set[str]:
    with store.engine.connect() as connection:
        return set(
            connection.execute(
                sa.select(cs_reference.c.target_anchor).where(
                    cs_reference.c.anchor == group, cs_reference.c.attribute == "members"
                )
            ).scalars()
        )


def test_full_then_delta_import(graph_server, graph_tenant, tenant_with_data, store):
    hook, users, groups = tenant_with_data
    full = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")
    assert full["mode"] == "full" and "no delta link" in full["fallback_reason"]
    assert full["result"] == "success" and full["counters"]["adds"] == USERS + 2
    rows = live(store)
    assert sum(row["object_type"] == "user" for row in rows.values()) == USERS
    assert members(store, groups["team"]) == set(users[:BIG_GROUP])
    assert sorted(hook.member_ids(groups["team"])) == sorted(users[:BIG_GROUP])  # a read by id: pages of 999
    assert json.loads(rows[groups["team"]]["attrs"])["groupTypes"] == ["Unified"]
    assert json.loads(rows[users[1]]["attrs"])["department"] == ["Sales"]

    hook.request("PATCH", f"/users/{users[1]}", json={"department": "Finance"})
    hook.request("DELETE", f"/users/{users[2]}")
    added = create_user(hook, graph_tenant["initialDomain"], 9999)
    hook.request(
        "POST",
        f"/groups/{groups['security']}/members/$ref",
        json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{added}"},
    )
    hook.request("DELETE", f"/groups/{groups['security']}/members/{users[3]}/$ref")

    delta = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")
    assert delta["mode"] == "delta" and delta["result"] == "success"
    assert (delta["counters"]["adds"], delta["counters"]["deletes"]) == (1, 1)
    rows = live(store)
    assert json.loads(rows[users[1]]["attrs"])["department"] == ["Finance"]
    assert users[2] not in rows and added in rows
    assert members(store, groups["security"]) == {users[0], users[1], users[4], added}  # 2 deleted, 3 removed
    assert members(store, groups["team"]) == set(users[:BIG_GROUP]) - {users[2]}

    again = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")
    assert sum(again["counters"][name] for name in ("adds", "updates", "deletes")) == 0


@pytest.fixture
def emulator_settings(graph_server, emulator_settings_for):
    return lambda **settings: emulator_settings_for(graph_server, **settings)


def connector_space(store) -> tuple[dict[str, tuple], set[tuple[str, str]]]:
    """What an import leaves: every live object's DN, type, attributes and digests, and every member reference."""
    rows = {
        anchor: (row["dn"], row["object_type"], row["attrs"], row["attrs_hash"], row["refs_hash"])
        for anchor, row in live(store).items()
    }
    with store.engine.connect() as connection:
        references = set(connection.execute(sa.select(cs_reference.c.anchor, cs_reference.c.target_anchor)).all())
    return rows, {tuple(reference) for reference in references}


def bind_members(hook, group: str, users: list[str]) -> None:
    """Add members 20 at a time (Graph's limit per request), 20 requests per $batch."""
    bind = "https://graph.microsoft.com/v1.0/directoryObjects"
    results = hook.batch([
        BatchRequest(f"m{start}", "PATCH", f"/groups/{group}",
                     {"members@odata.bind": [f"{bind}/{user}" for user in users[start : start + 20]]})
        for start in range(0, len(users), 20)
    ])  # fmt: skip
    assert {result.status for result in results.values()} == {204}


def test_delta_pages_split_a_groups_member_changes(graph_server, graph_tenant, tenant_with_data, store):
    """More member changes than one delta item carries (100): the group comes in several items, all applied."""
    hook, users, groups = tenant_with_data
    run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="full")
    bind_members(hook, groups["security"], users[5:155])
    added = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")
    assert added["mode"] == "delta" and added["counters"]["reference_adds"] == 150
    assert members(store, groups["security"]) == set(users[:155])

    removals = [BatchRequest(f"r{n}", "DELETE", f"/groups/{groups['security']}/members/{user}/$ref")
                for n, user in enumerate(users[10:130])]  # fmt: skip
    assert {result.status for result in hook.batch(removals).values()} == {204}
    removed = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")
    assert removed["counters"]["reference_removes"] == 120
    assert members(store, groups["security"]) == set(users[:10] + users[130:155])
    # the delta-maintained connector space is what a full import of the same tenant writes
    with Store.open(f"sqlite:///{store.url.removeprefix('sqlite:///')}.full", instance="test") as fresh:
        run_entra_import(entra_hook_for(graph_server, graph_tenant), fresh, mode="full")
        assert connector_space(fresh) == connector_space(store)


def test_failed_delta_keeps_the_old_delta_link_and_writes_nothing(
    graph_server, graph_tenant, tenant_with_data, store, emulator_settings
):
    hook, users, _groups = tenant_with_data
    run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="full")
    links = {resource: store.get_watermark("entra", resource).cookie for resource in ("users", "groups")}
    before = connector_space(store)
    for user in users[:60]:
        hook.request("PATCH", f"/users/{user}", json={"department": "Moved"})
    # small pages, half the requests answered 503 and no retries: the delta fails partway
    emulator_settings(deltaPageSize=20, faultRatio5xx=0.5, faultRetryAfterSeconds=0, randomSeed=1)
    emulator_admin(graph_server, "DELETE", "/counters")
    failing = entra_hook_for(graph_server, graph_tenant)
    failing = EntraHook(settings=failing.settings.model_copy(update={"max_attempts": 1}))
    with pytest.raises(GraphError, match="503"):
        run_entra_import(failing, store, mode="delta")
    assert emulator_admin(graph_server, "GET", "/counters").json()["status"].get("200", 0) >= 1  # pages were read first
    assert store.list_runs(1)[0]["result"] == "stopped-extension-error"
    assert {resource: store.get_watermark("entra", resource).cookie for resource in links} == links
    assert connector_space(store) == before

    emulator_settings(faultRatio5xx=0)
    recovered = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")
    assert recovered["mode"] == "delta" and recovered["counters"]["updates"] == 60
    assert {json.loads(live(store)[user]["attrs"])["department"][0] for user in users[:60]} == {"Moved"}


def test_unreachable_graph_is_recorded_as_server_down(graph_server, graph_tenant, store, unused_tcp_port):
    settings = entra_hook_for(graph_server, graph_tenant).settings.model_copy(
        update={"max_attempts": 1, "graph_url": f"https://127.0.0.1:{unused_tcp_port}"}
    )
    with pytest.raises(GraphUnreachableError):
        run_entra_import(EntraHook(settings=settings), store, mode="full")
    run = store.list_runs(1)[0]
    assert run["result"] == "stopped-server-down" and f"127.0.0.1:{unused_tcp_port}" in run["detail"]


@pytest.mark.parametrize(("expiry", "answer"), [("", "400 syncStateNotFound"), ("?mode=gone", "410")])
def test_expired_delta_link_falls_back_to_full_import(
    graph_server, graph_tenant, tenant_with_data, store, expiry, answer
):
    run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="full")
    emulator_admin(graph_server, "POST", f"/tenants/{graph_tenant['id']}/deltaTokens/expire{expiry}")
    result = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")
    assert result["mode"] == "full" and "rejected the delta link" in result["fallback_reason"]
    assert answer in result["fallback_reason"]
    assert (result["counters"]["adds"], result["counters"]["updates"], result["counters"]["deletes"]) == (0, 0, 0)
    with store.engine.connect() as connection:
        runs = [row.result for row in connection.execute(sa.text("SELECT result FROM run ORDER BY id"))]
    assert runs == ["success", "stopped-watermark-rejected", "success"]


def test_import_rides_out_throttling_server_faults_and_dropped_connections(
    graph_server, graph_tenant, tenant_with_data, store, emulator_settings, quick_backoff
):
    emulator_settings(
        throttlingEnabled=True,
        throttleResourceUnits=2,
        throttleResourceWindowSeconds=1,
        faultRatio5xx=0.2,
        faultDropRatio=0.15,
        faultRetryAfterSeconds=1,
        randomSeed=7,
    )
    # The default attempts: throttling (the 429s, and the 503s that ask for a wait) does not use them up, only the
    # dropped connections do (15 %), so six in a row are as good as never met. (A 503 with Retry-After: 0 would be a
    # fault: with those, 35 % of requests failed and six in a row came once in many runs.)
    result = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="full")
    assert result["result"] == "success" and result["counters"]["adds"] == USERS + 2
    assert result["graph"]["throttled"] >= 1 and result["graph"]["retries"] > result["graph"]["throttled"]
    assert result["graph"]["retry_wait_seconds"] >= 1  # Retry-After honoured, not hammered through
    counters = emulator_admin(graph_server, "GET", "/counters").json()
    assert counters["429"] >= 1

    # the same tenant imported without throttling or faults gives the same connector space
    hook, users, groups = tenant_with_data
    emulator_settings(throttlingEnabled=False, faultRatio5xx=0, faultDropRatio=0)
    with Store.open(f"sqlite:///{store.url.removeprefix('sqlite:///')}.calm", instance="test") as calm:
        run_entra_import(entra_hook_for(graph_server, graph_tenant), calm, mode="full")
        assert connector_space(store) == connector_space(calm)
        assert len(connector_space(store)[1]) == BIG_GROUP + 5

        # and a delta import under the same weather ends where an unhindered one does
        hook.request("PATCH", f"/users/{users[7]}", json={"department": "Legal"})
        bind_members(hook, groups["security"], users[200:240])
        # the delta is a few requests: its first one certainly meets a 429, whatever the dice or the machine's speed
        emulator_settings(throttlingEnabled=True, faultRatio5xx=0.2, faultDropRatio=0.15, randomSeed=11, faultNext429=1)
        stormy = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")
        emulator_settings(throttlingEnabled=False, faultRatio5xx=0, faultDropRatio=0, faultNext429=0)
        run_entra_import(entra_hook_for(graph_server, graph_tenant), calm, mode="delta")
        assert stormy["mode"] == "delta" and stormy["result"] == "success" and stormy["graph"]["retries"] >= 1
        assert connector_space(store) == connector_space(calm)
    assert json.loads(live(store)[users[7]]["attrs"])["department"] == ["Legal"]


def test_sixty_thousand_member_group_full_and_delta(graph_server, graph_tenant, store):
    """60,000 users and one group holding all of them (members split over 600 delta items), then a member delta."""
    size = 60_000
    tenant = graph_tenant["id"]
    users: list[str] = []
    for start in range(0, size, 10_000):
        seeded = emulator_admin(graph_server, "POST", f"/tenants/{tenant}/objects", timeout=300, json=[
            {"@odata.type": "#microsoft.graph.user", "accountEnabled": True, "displayName": f"Big {n}",
             "mailNickname": f"big{n}", "userPrincipalName": f"big{n}@{graph_tenant['initialDomain']}"}
            for n in range(start, start + 10_000)])  # fmt: skip
        users += [user["id"] for user in seeded.json()["value"]]
    hook = entra_hook_for(graph_server, graph_tenant)
    group = hook.request("POST", "/groups", json={"displayName": "Everyone", "mailNickname": "everyone",
                                                  "mailEnabled": False, "securityEnabled": True})["id"]  # fmt: skip
    bind_members(hook, group, users)  # len(users) == size
    assert hook.counters["batch_requests"] == size // 400  # the protocol minimum: 20 links x 20 requests per call

    full = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="full")
    assert full["result"] == "success" and full["counters"]["adds"] == size + 1
    assert members(store, group) == set(users)

    for user in users[:10]:
        hook.request("DELETE", f"/groups/{group}/members/{user}/$ref")
    delta = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")
    assert delta["mode"] == "delta"
    assert (delta["counters"]["updates"], delta["counters"]["reference_removes"]) == (1, 10)
    assert len(members(store, group)) == size - 10


def test_an_import_registers_no_extension_and_its_delta_link_outlives_the_registration(
    graph_server, graph_tenant, store
):
    """A staging cycle imports too: the import only reads which directory extensions the sync app has (none yet on
    a fresh tenant), leaves the unregistered ones out of its ``$select`` and sends no write, an extension definition
    included. Its delta link is keyed on the configured extensions, so the registration the first export makes does
    not turn the next delta into a full import."""
    hook = entra_hook_for(graph_server, graph_tenant)
    writes = graph_writes(graph_server)
    full = run_entra_import(hook, store, mode="full")
    assert full["result"] == "success" and graph_writes(graph_server) == writes
    anchor = f"extension_{hook.application_id.replace('-', '')}_aadsyncSourceAnchor"
    assert full["directory_extensions"] == {"registered": [], "not_registered": [anchor]}
    assert [definition["name"] for definition in extension_definitions(hook)] == []

    registered = register_extensions(hook, hook.application_id, needed_extensions_of(load_sync_rules()))
    assert registered.created == [anchor]  # what the first export (or `aadsync register-extensions`) does
    delta = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")
    assert delta["result"] == "success" and delta["mode"] == "delta", delta.get("fallback_reason")
    assert delta["directory_extensions"] == {"registered": [anchor]}


def extension_definitions(hook) -> list[dict]:
    app = hook.request("GET", f"/applications(appId='{hook.application_id}')")
    return hook.request("GET", f"/applications/{app['id']}/extensionProperties")["value"]


def test_a_group_that_failed_in_a_delta_is_read_again_by_id_with_its_members(graph_server, graph_tenant, store):
    """Members join a group while its description holds an unpaired surrogate (Graph sends it escaped in its JSON;
    the import cannot store it): the delta link moves on, and once the description is fixed the group is read again
    by id, its members with it, instead of its member changes being lost with the failed item."""
    hook = entra_hook_for(graph_server, graph_tenant)
    users = [create_user(hook, graph_tenant["initialDomain"], number) for number in range(3)]
    group = create_group(hook, "Readers", users[:1], unified=False)
    assert run_entra_import(hook, store, mode="full")["result"] == "success"
    broken = b'{"description": "Readers \\ud800"}'  # a lone surrogate escaped, as JSON allows it
    hook.request("PATCH", f"/groups/{group}", content=broken, headers={"Content-Type": "application/json"})
    for user in users[1:]:
        hook.request(
            "POST",
            f"/groups/{group}/members/$ref",
            json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{user}"},
        )
    link = store.get_watermark("entra", "groups").cookie

    failed = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")
    assert failed["result"] == "completed-import-errors" and failed["counters"]["objects_to_read_again"] == 1
    assert store.get_watermark("entra", "groups").cookie != link, "the groups delta link stayed at the failed item"
    assert members(store, group) == {users[0]}

    hook.request("PATCH", f"/groups/{group}", json={"description": "Readers"})
    fixed = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")
    assert fixed["result"] == "success" and fixed["counters"]["objects_read_again"] == 1
    assert members(store, group) == set(users), "the members added with the failed item were lost"
    assert json.loads(live(store)[group]["attrs"])["description"] == ["Readers"]
    assert json.loads(bytes(store.get_watermark("entra", "retry groups").cookie)) == []


def managers_of(store, user: str) -> list[str]:
    with store.engine.connect() as connection:
        query = sa.select(cs_reference.c.target_anchor).where(
            cs_reference.c.anchor == user, cs_reference.c.attribute == "manager"
        )
        return list(connection.execute(query).scalars())


def test_managers_come_with_the_users_delta_rounds_as_graph_tracks_them(graph_server, graph_tenant, store):
    """Graph tracks a user's manager when a delta query's ``$select`` names it (``manager@delta``) and ignores
    ``$expand`` there (microsoft-graph-docs issue 6194), as the emulator does: the import selects it, so a full import
    holds each manager (a rebuilt store does not write them again) and a delta brings a change and a removal."""
    hook = entra_hook_for(graph_server, graph_tenant)
    boss, other, worker = (create_user(hook, graph_tenant["initialDomain"], number) for number in range(3))

    def set_manager(manager: str) -> None:
        bind = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{manager}"}
        hook.request("PUT", f"/users/{worker}/manager/$ref", json=bind)

    set_manager(boss)
    assert run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")["mode"] == "full"
    assert managers_of(store, worker) == [boss] and managers_of(store, boss) == []
    set_manager(other)
    changed = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")
    assert changed["mode"] == "delta" and changed["counters"]["updates"] == 1
    assert managers_of(store, worker) == [other]
    hook.request("DELETE", f"/users/{worker}/manager/$ref")
    assert run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")["result"] == "success"
    assert managers_of(store, worker) == []


def test_a_user_kept_by_a_full_import_is_read_again_by_id_with_its_manager(graph_server, graph_tenant, store):
    """A full import keeps a user it cannot store as it was (never deleted as gone); the next delta reads the user
    again by id (``$expand=manager``): its values and the manager it got while it could not be stored."""
    hook = entra_hook_for(graph_server, graph_tenant)
    boss, worker = (create_user(hook, graph_tenant["initialDomain"], number) for number in range(2))
    assert run_entra_import(hook, store, mode="full")["result"] == "success"
    broken = b'{"displayName": "Worker \\ud800", "department": "Finance"}'
    hook.request("PATCH", f"/users/{worker}", content=broken, headers={"Content-Type": "application/json"})
    hook.request(
        "PUT",
        f"/users/{worker}/manager/$ref",
        json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{boss}"},
    )
    kept = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="full")
    assert kept["counters"]["kept_unreadable"] == 1
    assert json.loads(bytes(store.get_watermark("entra", "retry users").cookie)) == [worker]

    # the fix is a delta change of the name; the manager, set before the full import, comes only with the read by id
    hook.request("PATCH", f"/users/{worker}", json={"displayName": "Worker"})
    read_again = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")
    assert read_again["result"] == "success" and read_again["counters"]["objects_read_again"] == 1
    attrs = json.loads(live(store)[worker]["attrs"])
    assert (attrs["displayName"], attrs["department"]) == (["Worker"], ["Finance"])
    assert managers_of(store, worker) == [boss]
    assert hook.get_object("users", "00000000-0000-0000-0000-000000000000", ["id"]) is None  # 404: gone
    with pytest.raises(ObjectDecodeError, match="400") as refused:  # Graph refuses the read of this object
        hook.get_object("users", worker, ["noSuchProperty"])
    assert (refused.value.anchor, refused.value.code) == (worker, "unreadable-object")


def test_a_delta_reads_again_twenty_objects_a_batch(graph_server, graph_tenant, store):
    """What a delta could not apply is read again by id through ``$batch``, 20 reads a call, not a call each; a read
    Graph refuses or an object it no longer has is answered per object there too."""
    hook = entra_hook_for(graph_server, graph_tenant)
    users = [create_user(hook, graph_tenant["initialDomain"], number) for number in range(21)]
    assert run_entra_import(hook, store, mode="full")["result"] == "success"
    for number, user in enumerate(users):
        broken = f'{{"displayName": "User {number} \\ud800"}}'.encode()
        hook.request("PATCH", f"/users/{user}", content=broken, headers={"Content-Type": "application/json"})
    failed = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")
    assert failed["counters"]["objects_to_read_again"] == 21

    for number, user in enumerate(users):
        hook.request("PATCH", f"/users/{user}", json={"displayName": f"User {number}"})
    fixed = run_entra_import(entra_hook_for(graph_server, graph_tenant), store, mode="delta")
    assert fixed["result"] == "success" and fixed["counters"]["objects_read_again"] == 21
    assert fixed["graph"]["batch_requests"] == 2 and fixed["graph"]["batch_items"] == 21
    assert {json.loads(live(store)[user]["attrs"])["displayName"][0] for user in users} == {
        f"User {number}" for number in range(21)
    }

    gone = "00000000-0000-0000-0000-000000000000"
    found, refused = hook.get_objects("users", [users[0], gone], ["id", "displayName"])
    assert found[users[0]]["displayName"] == "User 0" and found[gone] is None and refused == []
    found, refused = hook.get_objects("users", [users[1]], ["noSuchProperty"])
    assert found == {} and [(error.anchor, error.code) for error in refused] == [(users[1], "unreadable-object")]
