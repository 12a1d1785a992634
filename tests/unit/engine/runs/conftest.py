"""Two forests and a tenant synced, for the tests of what happens to a connector space as a whole."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.store import Store
from tests.support.forests import CLOUD, CORP, FABRIKAM
from tests.support.world import links, sync_connectors


@pytest.fixture
def world(tmp_path):
    """Two forests synced, each user joined to its cloud twin; the groups' cloud creates are staged."""
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}", instance="test") as store:
        rules = sync_connectors(store, {"ad": CORP, "ad_fabrikam": FABRIKAM, "entra": CLOUD})
        assert links(store, "entra")[("entra", "cloud-11")][1] == "join"
        with store.transaction() as connection:
            for connector in ("ad", "ad_fabrikam"):
                store.save_watermark(connection, connector, "DC=corp,DC=example", b"cookie", "dc1")
        yield store, rules
