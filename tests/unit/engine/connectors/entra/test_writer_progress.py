"""An Entra export tells its progress: the real EntraHook against the Graph emulator (in process), which answers a
429; the task log shows the throttling wait as such, the phases and their final lines."""

from __future__ import annotations

import logging
import warnings

import httpx
import pytest

from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.connectors.entra.settings import WritePacer
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.hooks import entra as entra_module
from airflow_provider_aadsync.hooks.entra import EntraHook
from airflow_provider_aadsync.hooks.entra_settings import EntraConnectionSettings
from tests.support.graph import graph_users
from tests.support.stores import fresh_store
from tests.support.world import ad_group, ad_user, import_full

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

from aadsync_devkit.graph_emulator.app import create_app
from aadsync_devkit.graph_emulator.state import EmulatorState

CLIENT_ID = "0b1c2d3e-0000-4000-8000-00000000a002"
SECRET = "progress-test-secret"


@pytest.fixture
def emulator():
    with TestClient(create_app(EmulatorState()), base_url="https://testserver") as client:
        answer = client.post(
            "/_emulator/tenants",
            json={
                "name": "contoso",
                "verifiedDomains": ["contoso.com"],
                "apps": [{"clientId": CLIENT_ID, "clientSecret": SECRET}],
            },
        )
        assert answer.status_code == 201, answer.text
        yield client, answer.json()["id"]


@pytest.fixture
def hook(emulator, monkeypatch):
    """The production hook; its HTTP client is the emulator app's (no sockets), its waits are not slept."""
    client, tenant_id = emulator
    token = client.post(
        f"/{tenant_id}/oauth2/v2.0/token",
        data={
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "grant_type": "client_credentials",
            "scope": "https://graph.microsoft.com/.default",
        },
    ).json()["access_token"]
    settings = EntraConnectionSettings(
        tenant_id=tenant_id, client_id=CLIENT_ID, client_secret=SECRET, graph_url="https://testserver", max_attempts=4
    )
    hook = EntraHook(settings=settings)
    monkeypatch.setattr(hook, "get_token", lambda: token)
    hook.__dict__["_http"] = TestClient(client.app, base_url="https://testserver/v1.0")
    slept: list[float] = []
    monkeypatch.setattr(entra_module.time, "sleep", slept.append)
    hook.slept = slept
    return hook


def test_a_throttled_export_logs_the_wait_as_throttling_and_its_phases(tmp_path, emulator, hook, caplog):
    client, _tenant = emulator
    with fresh_store(tmp_path) as store:
        users = [ad_user(n, userPrincipalName=f"user{n}@contoso.com") for n in range(1, 4)]
        import_full(store, "ad", [*users, ad_group(100, "Staff", members=(1, 2))])
        assert run_sync(store, load_sync_rules(), connector="ad", mode="full").result == "success"
        settings = client.put("/_emulator/settings", json={"faultNext429": 1, "faultRetryAfterSeconds": 9})
        assert settings.status_code == 200, settings.text
        caplog.set_level(logging.INFO)
        caplog.clear()
        result = run_entra_export(store, hook, settings=ExportSettings(resend_settle_seconds=0))
    assert result.result == "success", result
    assert len(graph_users(hook)) == 3 and hook.slept == [9.0]
    assert result.counters["throttled_requests"] == 1 and result.counters["throttle_wait_seconds"] == 9
    lines = [record.getMessage() for record in caplog.records if record.name == progress.log.name]
    assert "export to entra: waiting 9.0 s for Graph throttling (Retry-After), 1 wait so far" in lines
    assert lines[0] == "export to entra: object writes started (4 objects)", lines
    done = next(line for line in lines if line.startswith("export to entra: object writes done,"))
    assert done.startswith("export to entra: object writes done, 4/4 objects") and "waited 9.0 s for throttling" in done
    assert any(line.startswith("export to entra: member changes done, 2/2 references") for line in lines)
    assert SECRET not in caplog.text and hook.get_token() not in caplog.text


def test_pacing_to_the_write_budget_is_told_as_pacing(caplog):
    now = [0.0]
    pacer = WritePacer(40, 150.0, clock=lambda: now[0], sleep=lambda seconds: now.__setitem__(0, now[0] + seconds))
    caplog.set_level(logging.INFO)
    with progress.track("export to entra") as report:
        for _ in range(3):  # 20 writes per call: the third waits for the first to leave the window
            pacer.acquire(20)
            pacer.spent(20)
        assert report.waits.seconds["pacing"] == pytest.approx(150.001)
    lines = [record.getMessage() for record in caplog.records if record.name == progress.log.name]
    assert lines == [
        "export to entra: waiting 2m30s for the tenant's write budget (40 writes per 150 s, pacing), 1 wait so far"
    ]


class DropsAnAnswer:
    """The hook's HTTP client, keeping the writes of each ``$batch`` it sends; the first ``$batch`` that ``matches`` is
    carried out by the emulator and its answer lost (the connection drops), so the hook sends it again."""

    def __init__(self, client, matches) -> None:
        self.client, self.matches = client, matches
        self.batches: list[int] = []
        self.dropped = False

    def __getattr__(self, name):
        return getattr(self.client, name)

    def request(self, method, url, **kwargs):
        response = self.client.request(method, url, **kwargs)
        items = (kwargs.get("json") or {}).get("requests", [])
        if url == "/$batch":
            self.batches.append(sum(item["method"] != "GET" for item in items))
        if url == "/$batch" and not self.dropped and self.matches(items):
            self.dropped = True
            raise httpx.ReadError("the connection dropped after Graph carried the call out")
        return response


def test_the_pacer_charges_every_send_of_a_call_as_graph_does(tmp_path, hook, monkeypatch):
    transport = DropsAnAnswer(
        hook._http, lambda items: any("members@odata.bind" in item.get("body", {}) for item in items)
    )
    hook.__dict__["_http"] = transport
    charged: list[int] = []
    real_spent = WritePacer.spent
    monkeypatch.setattr(WritePacer, "spent", lambda pacer, writes: (charged.append(writes), real_spent(pacer, writes)))
    with fresh_store(tmp_path) as store:
        users = [ad_user(n, userPrincipalName=f"user{n}@contoso.com") for n in range(1, 4)]
        import_full(store, "ad", [*users, ad_group(100, "Staff", members=(1, 2))])
        assert run_sync(store, load_sync_rules(), connector="ad", mode="full").result == "success"
        result = run_entra_export(store, hook, settings=ExportSettings(resend_settle_seconds=0))
    assert result.result == "success", result
    assert transport.dropped and len(graph_users(hook)) == 3
    # four creates in one call (and the directory extension's registration before it); the member add of two, sent
    # twice (no create in it: the hook resends it), which Graph charged twice; its "already exist" answer split into
    # two single adds in a third call. Every write sent is charged to the write budget.
    assert transport.batches == [4, 1, 1, 2] and charged == [5, 2, 2]
    assert sum(charged) == hook.counters["writes_sent"] == sum(transport.batches) + 1
