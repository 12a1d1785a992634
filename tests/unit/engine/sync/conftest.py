"""What the sync tests share: a store of their own per test (SQLite in the test's folder) and the shipped rules."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}", instance="test") as opened:
        yield opened


@pytest.fixture(scope="module")
def rules():
    """The shipped rules with the default settings (load_sync_rules)."""
    return load_sync_rules()
