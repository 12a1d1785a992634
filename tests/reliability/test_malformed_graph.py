"""Malformed Graph answers (the emulator's ``faultMalformed``): truncated JSON, wrong JSON types, objects without
``id``, a page without ``value``, an HTML page with 200 or 502, a ``$batch`` answer missing items.

The Entra import turns each into a clear error (an EntraError naming the request) and applies nothing: rows and delta
links stay as they were. The Entra export turns each into a clear error or per-object errors; a run without the
fault then completes it to exactly a clean export's tenant (no duplicate, no lost write). Never a KeyError or
TypeError, never a hang.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from aadsync_devkit.graph_emulator.server import EmulatorServer
from aadsync_devkit.graph_emulator.settings import MALFORMED_KINDS
from aadsync_devkit.world.samba import SambaDC
from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.hooks.entra import EntraHook
from airflow_provider_aadsync.hooks.entra_settings import EntraConnectionSettings, EntraError
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
from tests.support.servers import hook_for

pytestmark = pytest.mark.integration

#: What a broken run may raise: a clear, named error of the hook or the export, never a programming error.
CLEAR = (EntraError, Exception)
PROGRAMMING_ERRORS = (KeyError, TypeError, AttributeError, IndexError, ValueError)
#: No fault case may take longer than this (the hook's retries are bounded; 2 attempts here).
NO_HANG_SECONDS = 30
#: A rerun looks up creates an interrupted run had sent after this pause (5 s by default).
SETTLE = ExportSettings(resend_settle_seconds=0.2)


@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    return start_dc(users=200, groups=10, group_size=150)


@pytest.fixture(scope="module")
def tenants(graph_server):
    yield from tenant_factory(graph_server)


def hook(server: EmulatorServer, tenant: dict) -> EntraHook:
    return EntraHook(settings=EntraConnectionSettings(**entra_spec(server, tenant), max_attempts=2))


@pytest.fixture(scope="module")
def world(dc, graph_server, tenants, tmp_path_factory) -> dict[str, Any]:
    """AD imported and synchronized; exported to a reference tenant, then imported back from it once (delta links)."""
    home = tmp_path_factory.mktemp("malformed-world")
    synced = f"sqlite:///{home / 'synced.sqlite'}"
    with Store.open(synced, instance="test") as store:
        assert run_ad_import(hook_for(dc), store, mode="full")["result"] == "success"
        assert run_sync(store, load_sync_rules(), connector="ad", mode="full").result == "success"
    imported = copy_store(store_path(synced), home / "imported.sqlite")
    reference = tenants()
    graph = hook(graph_server, reference)
    with Store.open(imported, instance="test") as store:
        assert run_entra_export(store, graph).result == "success"
        assert import_entra(graph, store, connector="entra", mode="full").result == "success"
    return {"synced": synced, "imported": imported, "tenant": reference, "expected": tenant_state(graph)}


def outcome(call) -> tuple[Any, BaseException | None, float]:
    started = time.monotonic()
    try:
        return call(), None, time.monotonic() - started
    except Exception as error:  # noqa: BLE001 - what it raised is what the test checks
        return None, error, time.monotonic() - started


IMPORT_KINDS = [kind for kind in MALFORMED_KINDS if kind != "batch-missing-items"]


@pytest.mark.parametrize("mode", ["full", "delta"])
@pytest.mark.parametrize("kind", IMPORT_KINDS)
def test_import_stops_with_a_clear_error_and_applies_nothing(
    world, graph_server, emulator_settings_for, tmp_path, kind, mode
):
    url = copy_store(store_path(world["imported"]), tmp_path / "store.sqlite")
    graph = hook(graph_server, world["tenant"])
    # a change the import would apply, so "nothing applied" means something
    users = graph.request("GET", "/users", params={"$select": "id", "$top": "2"})["value"]
    graph.request("PATCH", f"/users/{users[0]['id']}", json={"displayName": f"Renamed under {kind}"})
    before, marks = snapshot(url), watermarks(url)
    emulator_settings_for(graph_server, faultMalformed=kind, faultMalformedPath="/delta")
    with Store.open(url, instance="test") as store:
        result, error, seconds = outcome(lambda: import_entra(graph, store, connector="entra", mode=mode))
        run = store.list_runs(1)[0]
    assert seconds < NO_HANG_SECONDS
    assert result is None and isinstance(error, EntraError), (kind, result, repr(error))
    assert run["result"].startswith("stopped") and type(error).__name__ in run["detail"], run
    assert "/delta" in str(error), error
    assert snapshot(url) == before and watermarks(url) == marks, "the import half-applied"

    emulator_settings_for(graph_server, faultMalformed=None, faultMalformedPath=None)
    with Store.open(url, instance="test") as store:
        assert import_entra(graph, store, connector="entra", mode=mode).result == "success"
    assert snapshot(url) != before and watermarks(url) != marks


EXPORT_KINDS = [kind for kind in MALFORMED_KINDS if kind != "no-value"]


@pytest.mark.parametrize("kind", EXPORT_KINDS)
def test_export_gives_clear_or_per_object_errors_and_the_next_run_completes_it(
    world, graph_server, tenants, emulator_settings_for, tmp_path, kind
):
    url = copy_store(store_path(world["synced"]), tmp_path / "store.sqlite")
    tenant = tenants()
    graph = hook(graph_server, tenant)
    emulator_settings_for(graph_server, faultMalformed=kind, faultMalformedPath="/$batch")
    with Store.open(url, instance="test") as store:
        result, error, seconds = outcome(lambda: run_entra_export(store, graph, settings=SETTLE))
        run = store.list_runs(1)[0]
        errors = store.run_errors(run["id"])
    assert seconds < NO_HANG_SECONDS
    if error is not None:  # a clear error: the hook's or the export's own, named in the run record
        assert not isinstance(error, PROGRAMMING_ERRORS) or isinstance(error, EntraError), repr(error)
        assert run["result"].startswith("stopped") and run["detail"], run
    else:  # per-object errors, each naming what failed
        assert result.result in ("completed-export-errors", "success"), result
        assert all(e["code"] and e["message"] for e in errors)

    emulator_settings_for(graph_server, faultMalformed=None, faultMalformedPath=None)
    runs = []
    for _ in range(3):
        with Store.open(url, instance="test") as store:
            runs.append(run_entra_export(store, graph, settings=SETTLE).result)
        if runs[-1] == "success" and not open_exports(url, "entra"):
            break
    assert runs[-1] == "success", runs
    assert tenant_state(graph) == world["expected"], f"{kind}: duplicates or lost writes"
