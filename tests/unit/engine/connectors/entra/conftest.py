"""Fixtures of the Entra exporter's tests: a fresh store per test and the shipped rules."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.stores import fresh_store


@pytest.fixture
def store(tmp_path):
    with fresh_store(tmp_path) as opened:
        yield opened


@pytest.fixture(scope="module")
def rules():
    """The shipped rules (read once: a rule set is not changed by a run)."""
    return load_sync_rules()
