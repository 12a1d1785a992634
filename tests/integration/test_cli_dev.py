"""`aadsync-dev` drives the local world and `aadsync` the import, as a person would."""

from __future__ import annotations

import json
import shlex

import pytest
from click.testing import CliRunner

from aadsync_devkit.cli import main as dev_main
from aadsync_devkit.paths import fixture_cache_dir
from aadsync_devkit.world.graph import DEV_TENANT_ID
from aadsync_devkit.world.seed import MAIL_DOMAIN
from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.hooks.entra import EntraHook
from tests.support.graph import create_user

pytestmark = pytest.mark.integration


@pytest.fixture
def dev_home(tmp_path, monkeypatch):
    monkeypatch.setenv("AADSYNC_FIXTURE_CACHE", str(fixture_cache_dir()))  # keep the shared fixture cache
    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path))
    yield tmp_path
    CliRunner().invoke(dev_main, ["down"])


@pytest.fixture
def monkeypatch_env_from(monkeypatch):
    """Apply `export NAME='value'` lines as `eval "$(aadsync-dev env)"` would."""

    def apply(output: str) -> None:
        for line in output.strip().splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            monkeypatch.setenv(name, shlex.split(value)[0])

    return apply


def invoke(*args: str) -> str:
    """Run ``aadsync-dev`` (for ``dev ...``) or ``aadsync``; return its output."""
    cli, args = (dev_main, args[1:]) if args[0] == "dev" else (main, args)
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_dev_lifecycle_import_and_report(dev_home, monkeypatch_env_from):
    assert "local DC running" in invoke("dev", "up", "--users", "200", "--groups", "10", "--group-size", "150")
    status = json.loads(invoke("dev", "status"))
    assert status["samba"]["running"] and status["samba"]["user_count"] >= 200  # plus the built-in accounts
    assert status["graph"]["running"]
    monkeypatch_env_from(invoke("dev", "env"))
    ok, message = EntraHook().test_connection()
    assert ok and DEV_TENANT_ID in message, message
    assert "already seeded" in invoke("dev", "seed", "--users", "200", "--groups", "10", "--group-size", "150")
    assert "already running" in invoke("dev", "up")
    report = invoke("import-ad", "--mode", "delta")
    assert "full-import on `ad` — success" in report  # no cookie yet: the delta became a full import
    assert "delta-import on `ad` — success" in invoke("import-ad", "--mode", "delta")
    assert "# AADSync run report" in invoke("report")
    # The emulator keeps its tenant between runs; --empty-tenant starts from an empty one (same id and app).
    create_user(EntraHook(), MAIL_DOMAIN, 1)
    assert "already running" in invoke("dev", "up") and EntraHook().request("GET", "/users")["value"]
    assert "an empty tenant" in invoke("dev", "up", "--empty-tenant")
    assert EntraHook().request("GET", "/users")["value"] == []
    assert "local DC stopped" in invoke("dev", "down")
    status = json.loads(invoke("dev", "status"))
    assert status["samba"]["running"] is False and status["graph"]["running"] is False
