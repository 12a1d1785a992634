"""Two forests and a tenant synced, for the tests of what happens to a connector space as a whole."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.store import Store
from tests.support.forests import synced_forests


@pytest.fixture
def world(tmp_path):
    """Two forests synced, each user joined to its cloud twin; the groups' cloud creates are staged (forests.py)."""
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}", instance="test") as store:
        yield store, synced_forests(store)
