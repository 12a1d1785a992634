"""A state file written by an older emulator still loads, whole: ``data/state-v2.sqlite`` was written by the
emulator before its models were cut into modules (``data/make_state_v2.py``), with every kind of row a state file
holds (apps with secrets and certificates, live, soft-deleted and purged objects, contacts, synced users, member and
owner links, the change log, settings and the delta-token key). ``data/state-v2.json`` is what it loaded as then."""

from __future__ import annotations

import json
import shutil
import sqlite3
import warnings
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

from aadsync_devkit.graph_emulator.app import create_app
from aadsync_devkit.graph_emulator.state import EmulatorState

DATA = Path(__file__).parent / "data"
TENANT_ID = "5e7d0000-0000-4000-8000-00000000c0de"
CLIENT_ID = "5e7d0000-0000-4000-8000-0000000a0001"
SECRET = "fixture-secret-not-a-real-one"


def _expected() -> dict[str, Any]:
    return json.loads((DATA / "state-v2.json").read_text())


#: What tenants and apps gained since version 2 files were written, and what such a file loads them as.
ADDED_TO_TENANTS = {
    "extensionProperties": [],
    "managers": {},
    "unverifiedDomains": [],
    "federatedDomains": [],
    "roleMembers": {},
    "roleEligible": {},
    "roleScoped": {},
    "eligibleScoped": {},
    "customRoles": {},
    "pimLicensed": True,
}
ADDED_TO_APPS = ("objectId",)
#: Emulator settings added since, at their defaults.
ADDED_TO_SETTINGS = {"faultWrite504Ratio": 0.0}


def _loaded(state: EmulatorState) -> list[dict[str, Any]]:
    """The tenants as ``state-v2.json`` has them: without what was added since, after checking its defaults."""
    tenants = json.loads(json.dumps([t.to_dict() for t in state.tenants.values()]))
    for tenant in tenants:
        for key, default in ADDED_TO_TENANTS.items():
            assert tenant.pop(key) == default
        assert tenant.pop("defaultDomain") == f"{tenant['name']}.onmicrosoft.com"  # the initial domain
        for app in tenant["apps"]:
            for key in ADDED_TO_APPS:
                assert app.pop(key)
    return tenants


def _copy(tmp_path: Path) -> Path:
    state_file = tmp_path / "state.sqlite"
    shutil.copyfile(DATA / "state-v2.sqlite", state_file)
    return state_file


def _schema(path: Path) -> set[tuple[str, str, str]]:
    with sqlite3.connect(path) as db:
        return set(db.execute("SELECT type, name, sql FROM sqlite_master"))


def test_an_old_state_file_loads_every_row_and_setting(tmp_path):
    state = EmulatorState(state_file=_copy(tmp_path))
    expected = _expected()
    assert _loaded(state) == expected["tenants"]
    assert state.settings_snapshot() == expected["settings"] | ADDED_TO_SETTINGS
    tenant = state.tenants[TENANT_ID]
    assert [c.thumbprint for c in tenant.app(CLIENT_ID).certificates]  # the certificate credential came back


def test_an_old_state_file_serves_its_tokens_and_delta_links(tmp_path):
    state = EmulatorState(state_file=_copy(tmp_path))
    with TestClient(create_app(state), base_url="https://testserver") as client:
        form = {"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "client_credentials",
                "scope": "https://graph.microsoft.com/.default"}  # fmt: skip
        token = client.post(f"/{TENANT_ID}/oauth2/v2.0/token", data=form)
        assert token.status_code == 200, token.text
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        delta = client.get(_expected()["deltaLink"], headers=auth)  # signed with the saved delta-token key
        assert delta.status_code == 200, delta.text
        items = delta.json()["value"]
        assert sorted(item.get("jobTitle", "") for item in items if "@removed" not in item) == ["Lead"]
        assert sorted(item["@removed"]["reason"] for item in items if "@removed" in item) == ["changed", "deleted"]
        users = client.get("/v1.0/users?$select=userPrincipalName&$top=999", headers=auth).json()["value"]
        assert len(users) == 6 and "synced@fixture.example" in {u["userPrincipalName"] for u in users}


def test_an_old_state_file_is_written_back_in_the_same_format(tmp_path):
    state_file = _copy(tmp_path)
    old_schema = _schema(state_file)
    state = EmulatorState(state_file=state_file)
    state.tenants[TENANT_ID].update_user("fu0@fixture.example", {"jobTitle": "Principal"})
    state.save()  # in place: only the changed rows
    assert _schema(state_file) == old_schema
    reloaded = EmulatorState(state_file=state_file)
    assert reloaded.tenants[TENANT_ID].get("user", "fu0@fixture.example")[1]["jobTitle"] == "Principal"
    fresh = EmulatorState(state_file=tmp_path / "fresh.sqlite")
    fresh.create_tenant({"name": "fresh"})
    fresh.save()  # a new file from scratch
    assert _schema(tmp_path / "fresh.sqlite") == old_schema
