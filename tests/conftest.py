"""Options for the whole test tree (pytest reads ``pytest_addoption`` only from the root conftest)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

# The dev kit (devkit/, its own distribution) is installed editable by run.sh; a checkout run with only the product on
# PYTHONPATH (a worktree, CI before `pip install -e devkit`) finds it here, and so do the processes the tests start.
_DEVKIT = Path(__file__).resolve().parents[1] / "devkit"
if importlib.util.find_spec("aadsync_devkit") is None:
    sys.path.insert(0, str(_DEVKIT))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(_DEVKIT), os.environ.get("PYTHONPATH")) if p)


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
