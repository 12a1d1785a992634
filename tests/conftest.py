"""Options for the whole test tree (pytest reads ``pytest_addoption`` only from the root conftest)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import pytest

# The dev kit (devkit/, its own distribution) is installed editable by run.sh; a checkout run with only the product on
# PYTHONPATH (a worktree, CI before `pip install -e devkit`) finds it here, and so do the processes the tests start.
_DEVKIT = Path(__file__).resolve().parents[1] / "devkit"
if importlib.util.find_spec("aadsync_devkit") is None:
    sys.path.insert(0, str(_DEVKIT))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(_DEVKIT), os.environ.get("PYTHONPATH")) if p)


#: Integration and reliability modules that need only the Graph emulator (a process of their own on a free port, one
#: per pytest-xdist worker) and SQLite stores: they may run beside the modules holding the DCs, PostgreSQL and Airflow.
EMULATOR_ONLY_MODULES = frozenset(
    {
        "tests/integration/test_adoption_emulator.py",
        "tests/integration/test_emulator_cli_serve.py",
        "tests/integration/test_emulator_msgraph_sdk.py",
        "tests/integration/test_emulator_server.py",
        "tests/integration/test_entra_export_emulator.py",
        "tests/integration/test_entra_hook_emulator.py",
        "tests/integration/test_entra_import_emulator.py",
        "tests/integration/test_entra_permissions_emulator.py",
        "tests/reliability/test_bad_input.py",
        "tests/reliability/test_export_exactness.py",
    }
)
#: Fixtures that start a Samba DC or PostgreSQL: an emulator-only module using one is a mistake in the list above.
SERVER_FIXTURES = frozenset({"start_dc", "dc", "postgres_server", "pg_store"})


def xdist_scope(nodeid: str) -> str:
    """The unit of work a test belongs to under ``pytest -n 2`` (what ``./run.sh test`` runs): "servers" for every
    module that starts a Samba DC, PostgreSQL or Airflow, so that one worker runs them one after the other as without
    xdist (the DCs all bind the standard LDAP ports of their loopback address, so two at once would collide); its
    module for any other test, so that the other worker takes the unit tests and the emulator-only modules
    meanwhile, a module at a time (its module fixtures set up once)."""
    module = nodeid.split("::", 1)[0]
    if module.startswith(("tests/integration/", "tests/reliability/")) and module not in EMULATOR_ONLY_MODULES:
        return "servers"
    return module


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before xdist's own, which picks by --dist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's scheduler by :func:`xdist_scope` (its ``--dist loadgroup`` reads groups from the test ids,
    which pytest 9 no longer lets a plugin change)."""
    from xdist.scheduler import LoadScopeScheduling

    class ServersOnOneWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return ServersOnOneWorker(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """An emulator-only module whose tests use a server fixture is a mistake in :data:`EMULATOR_ONLY_MODULES`: it
    would start a DC beside the server modules' one."""
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        used = SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        if module in EMULATOR_ONLY_MODULES and used:
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(used)}: {module} is not emulator-only")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="run the reliability suite's long profile (more kill points, longer fault storms)",
    )


@pytest.fixture(autouse=True)
def _secret_masks_of_one_test_only():
    """Forget the masks a test added once it ends, keeping those its session and module fixtures added.

    Airflow's secrets masker recompiles one regular expression over every mask it holds on each new mask, and the
    masks of 1,800 tests piled up in one process made a late test's mask (and every log line it redacts) tens of
    seconds slow: the unit tests ran four times slower after the integration tests than alone.
    """
    from airflow.sdk._shared.secrets_masker.secrets_masker import _secrets_masker

    masker = _secrets_masker()
    patterns, replacer = set(masker.patterns), masker.replacer
    yield
    masker.patterns, masker.replacer = patterns, replacer


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Entra hook's backoffs from 10 ms instead of 1 s (throttling that named no wait) and 0.5 s (a fault), for
    tests that storm the emulator with hundreds of 429s and 5xx: what they check is that the export ends exact, and
    the backoffs' own sizes are unit-tested (tests/unit/hooks/test_entra.py). Graph's own Retry-After is honoured
    as it is."""
    monkeypatch.setattr("airflow_provider_aadsync.hooks.entra_transport.THROTTLE_FLOOR_SECONDS", 0.01)
    monkeypatch.setattr("airflow_provider_aadsync.hooks.entra_transport.FAULT_BACKOFF_FIRST_SECONDS", 0.01)
