"""Faults: 429 storms, 5xx bursts, dropped connections, expired and revoked tokens, a revoked credential, the DC
stopped mid-import and PostgreSQL restarted between steps. Each run completes (after the hook's own retries, or when
run again) or stops with a clear error; either way nothing is half-applied, and the end state equals a clean run's.

Mid-run faults are placed by counting Graph requests or LDAP searches in this process, never by sleeping.
"""

from __future__ import annotations

from typing import Any

import ldap3
import pytest

try:  # the [ldap] extra: the full read's C client
    from ldap.ldapobject import SimpleLDAPObject
except ImportError:  # pragma: no cover - ./run.sh setup installs it
    SimpleLDAPObject = None

from aadsync_devkit.graph_emulator.server import EmulatorServer
from aadsync_devkit.world.postgres import LocalPostgres
from aadsync_devkit.world.samba import SambaDC
from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.hooks.entra import EntraHook
from airflow_provider_aadsync.hooks.entra_settings import EntraAuthError, EntraConnectionSettings, GraphError
from airflow_provider_aadsync.steps import run_ad_import
from tests.support.reliability import (
    copy_store,
    entra_spec,
    open_exports,
    snapshot,
    store_path,
    tenant_factory,
    tenant_state,
    watermarks,
)
from tests.support.servers import (
    GRAPH_CLIENT_ID,
    GRAPH_SECRET,
    after_graph_requests,
    emulator_admin,
    graph_status_counts,
    hook_for,
)

pytestmark = pytest.mark.integration

#: A rerun looks up creates an interrupted run had sent after this pause (5 s by default).
SETTLE = ExportSettings(resend_settle_seconds=0.2)


@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    return start_dc(users=200, groups=10, group_size=150)


@pytest.fixture(scope="module")
def tenants(graph_server):
    yield from tenant_factory(graph_server)


@pytest.fixture(scope="module")
def world(dc, graph_server, tenants, tmp_path_factory) -> dict[str, Any]:
    """AD imported and synchronized (``synced``); the same exported to a reference tenant without faults."""
    home = tmp_path_factory.mktemp("faults-world")
    synced = f"sqlite:///{home / 'synced.sqlite'}"
    with Store.open(synced, instance="test") as store:
        assert run_ad_import(hook_for(dc), store, mode="full")["result"] == "success"
        assert run_sync(store, load_sync_rules(), connector="ad", mode="full").result == "success"
    exported = copy_store(store_path(synced), home / "exported.sqlite")
    reference = tenants()
    with Store.open(exported, instance="test") as store:
        assert run_entra_export(store, hook(graph_server, reference)).result == "success"
    return {"synced": synced, "exported": exported, "tenant": reference,
            "expected": tenant_state(hook(graph_server, reference))}  # fmt: skip


def hook(server: EmulatorServer, tenant: dict, **settings: Any) -> EntraHook:
    return EntraHook(settings=EntraConnectionSettings(**{**entra_spec(server, tenant), **settings}))


def without_export_states(rows: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """A store snapshot without the per-operation state of pending exports (pending / sent)."""
    return {
        table: sorted((tuple(cell for cell in row if cell[0] != "state") for row in values), key=repr)
        for table, values in rows.items()
    }


def export_until_done(url: str, graph: EntraHook, runs: int = 4) -> list[str]:
    """Run the export again until it succeeds (as Airflow retries a failed task); the results of every run."""
    results = []
    for _ in range(runs):
        with Store.open(url, instance="test") as store:
            try:
                results.append(run_entra_export(store, graph, settings=SETTLE).result)
            except Exception as error:  # noqa: BLE001 - a stopped run is recorded; the retry must complete it
                results.append(f"raised {type(error).__name__}")
        if results[-1] == "success":
            return results
    raise AssertionError(f"the export never completed: {results}")


# --------------------------------------------------------------------------------------------- Graph faults
STORMS = {
    "429 storm": {"faultRatio429": 0.3, "faultRetryAfterSeconds": 0, "randomSeed": 13},
    "5xx burst": {"faultRatio5xx": 0.3, "faultRetryAfterSeconds": 0, "randomSeed": 14},
    "dropped connections": {"faultDropRatio": 0.15, "randomSeed": 15},
    "gateway timeouts after the write": {"faultWrite504Ratio": 0.3, "randomSeed": 16},
    "short-lived tokens": {"tokenLifetimeSeconds": 3},
}


@pytest.mark.parametrize("fault", list(STORMS))
def test_export_through_a_fault_storm_ends_equal_to_a_clean_export(
    world, graph_server, tenants, emulator_settings_for, tmp_path, fault, soak, quick_backoff
):
    url = copy_store(store_path(world["synced"]), tmp_path / "store.sqlite")
    tenant = tenants()
    graph = hook(graph_server, tenant)
    storm = dict(STORMS[fault])
    if soak:  # the long profile: twice as stormy
        storm.update({name: min(2 * value, 0.6) for name, value in storm.items() if "Ratio" in name})
    emulator_settings_for(graph_server, **storm)
    results = export_until_done(url, graph)
    emulator_settings_for(graph_server, **dict.fromkeys(STORMS[fault]))
    assert open_exports(url, "entra") == []
    assert tenant_state(graph) == world["expected"], results
    if fault != "short-lived tokens":
        assert graph.counters["retries"] > 0, "the storm never hit the export"


def test_import_through_5xx_and_dropped_connections_ends_equal_to_a_clean_import(
    world, graph_server, emulator_settings_for, tmp_path, quick_backoff
):
    clean = copy_store(store_path(world["exported"]), tmp_path / "clean.sqlite")
    with Store.open(clean, instance="test") as store:
        assert import_entra(hook(graph_server, world["tenant"]), store, connector="entra", mode="full").result == (
            "success"
        )
    faulty = copy_store(store_path(world["exported"]), tmp_path / "faulty.sqlite")
    graph = hook(graph_server, world["tenant"])
    emulator_settings_for(graph_server, faultRatio5xx=0.2, faultDropRatio=0.2, faultRetryAfterSeconds=0, randomSeed=3)
    with Store.open(faulty, instance="test") as store:
        assert import_entra(graph, store, connector="entra", mode="full").result == "success"
    assert graph.counters["retries"] > 0
    assert snapshot(faulty) == snapshot(clean)


def test_a_long_retry_after_stops_the_run_cleanly_and_the_next_run_completes(
    world, graph_server, tenants, emulator_settings_for, tmp_path, soak
):
    """Graph asks to wait an hour: the hook does not hold a worker that long (``max_retry_wait``); the run stops,
    says why, and writes nothing; once the storm is over the next run completes."""
    url = copy_store(store_path(world["synced"]), tmp_path / "store.sqlite")
    tenant = tenants()
    graph = hook(graph_server, tenant, max_retry_wait=2 if not soak else 30)
    before = snapshot(url)
    emulator_settings_for(graph_server, faultRatio429=1.0, faultRetryAfterSeconds=3600)
    with Store.open(url, instance="test") as store, pytest.raises(GraphError, match="Retry-After") as stopped:
        run_entra_export(store, graph)
        assert store.list_runs(1)[0]["result"].startswith("stopped")
    assert "3600" in str(stopped.value) and "max_retry_wait" in str(stopped.value)
    # nothing written: the refused call's operations are marked sent (the next run reconciles them), nothing else
    assert without_export_states(snapshot(url)) == without_export_states(before)
    emulator_settings_for(graph_server, faultRatio429=None, faultRetryAfterSeconds=None)
    assert tenant_state(graph)["users"] == []
    assert export_until_done(url, graph) == ["success"]
    assert tenant_state(graph) == world["expected"]


def test_tokens_revoked_mid_export_are_renewed_and_the_export_completes(world, graph_server, tenants, tmp_path):
    url = copy_store(store_path(world["synced"]), tmp_path / "store.sqlite")
    tenant = tenants()
    graph = hook(graph_server, tenant)
    emulator_admin(graph_server, "DELETE", "/counters")
    with after_graph_requests(
        3, lambda: emulator_admin(graph_server, "POST", f"/tenants/{tenant['id']}/tokens/revoke")
    ):
        assert export_until_done(url, graph) == ["success"]  # one run: the refused token was renewed at once
    assert graph_status_counts(graph_server).get("401") == 1
    assert tenant_state(graph) == world["expected"]


def test_a_credential_revoked_mid_export_stops_it_clearly_and_a_restored_one_completes(
    world, graph_server, tenants, tmp_path
):
    url = copy_store(store_path(world["synced"]), tmp_path / "store.sqlite")
    tenant = tenants()
    graph = hook(graph_server, tenant)

    def revoke() -> None:
        emulator_admin(
            graph_server, "PATCH", f"/tenants/{tenant['id']}/apps/{GRAPH_CLIENT_ID}", json={"clientSecret": "rot"}
        )
        emulator_admin(graph_server, "POST", f"/tenants/{tenant['id']}/tokens/revoke")

    # 3 + 4: the export first registers the anchor's directory extension (GET the app, GET and POST its
    # extensionProperties), then the revoke lands after its fourth $batch, as before
    with after_graph_requests(3 + 4, revoke), Store.open(url, instance="test") as store:
        with pytest.raises(EntraAuthError, match="invalid_client") as stopped:
            run_entra_export(store, graph)
        run = store.list_runs(1)[0]
    assert GRAPH_SECRET not in str(stopped.value) and run["result"].startswith("stopped"), run
    assert "invalid_client" in (run["detail"] or "")
    partial = tenant_state(hook(graph_server, tenant, client_secret="rot"))
    assert 0 < len(partial["users"]) < len(world["expected"]["users"])
    emulator_admin(
        graph_server, "PATCH", f"/tenants/{tenant['id']}/apps/{GRAPH_CLIENT_ID}", json={"clientSecret": GRAPH_SECRET}
    )
    assert export_until_done(url, hook(graph_server, tenant)) == ["success"]
    assert open_exports(url, "entra") == []
    assert tenant_state(graph) == world["expected"]


# ------------------------------------------------------------------------------------------------ the DC
@pytest.mark.parametrize("client", ["ldap3", "python-ldap"])
def test_dc_stopped_mid_import_stops_it_cleanly_and_the_restarted_dc_completes_it(dc, tmp_path, client):
    """Through either full-read client: the DC goes down under the import after two pages."""
    if client == "python-ldap" and SimpleLDAPObject is None:
        pytest.fail("python-ldap is not installed: run ./run.sh setup (it installs the [ldap] extra)")
    paged = hook_for(dc, page_size=50, full_read_client=client)
    reference = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    with Store.open(reference, instance="test") as store:
        assert run_ad_import(paged, store, mode="full")["result"] == "success"
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with Store.open(url, instance="test") as store:  # an earlier state: the watermark and rows a full import had
        assert run_ad_import(hook_for(dc, full_read_client=client), store, mode="full")["result"] == "success"
    before, marks = snapshot(url), watermarks(url)

    # the paged search of the client in use: ldap3's Connection.search, python-ldap's search_ext
    owner, name = (ldap3.Connection, "search") if client == "ldap3" else (SimpleLDAPObject, "search_ext")
    original = getattr(owner, name)
    searches = [0]

    def search(self, *args, **kwargs):
        if kwargs.get("paged_size") or kwargs.get("serverctrls"):
            searches[0] += 1
            if searches[0] == 3:  # two pages asked for: the DC goes down under the import
                dc.stop()
        return original(self, *args, **kwargs)

    setattr(owner, name, search)
    try:
        with Store.open(url, instance="test") as store, pytest.raises(Exception) as stopped:
            run_ad_import(hook_for(dc, page_size=50, full_read_client=client), store, mode="full")
        run = Store.open(url, instance="test").list_runs(1)[0]
    finally:
        setattr(owner, name, original)
        dc.start()
    assert searches[0] == 3 and run["profile"] == "full-import" and run["id"] > 1, (run, searches)
    assert run["result"] == "stopped-server-down", (run, stopped.value)
    assert not isinstance(stopped.value, KeyError | TypeError | AttributeError), stopped.value
    assert snapshot(url) == before and watermarks(url) == marks
    with Store.open(url, instance="test") as store:
        completed = run_ad_import(hook_for(dc, page_size=50, full_read_client=client), store, mode="full")
    assert completed["result"] == "success"
    assert snapshot(url) == snapshot(reference)


# ----------------------------------------------------------------------------------------------- PostgreSQL
def test_postgres_restarted_between_steps(dc, postgres_server: LocalPostgres, graph_server, tenants, world):
    database = "t_restart_between_steps"
    url = postgres_server.create_database(database)
    tenant = tenants()
    graph = hook(graph_server, tenant)
    try:
        with Store.open(url, instance="test") as store:  # one handle across the steps, as a long-lived worker
            assert run_ad_import(hook_for(dc), store, mode="full")["result"] == "success"
            postgres_server.stop()
            postgres_server.start()
            assert run_sync(store, load_sync_rules(), connector="ad", mode="full").result == "success"
            postgres_server.stop()
            postgres_server.start()
            assert run_entra_export(store, graph).result == "success"
        assert tenant_state(graph) == world["expected"]
    finally:
        postgres_server.drop_database(database)
