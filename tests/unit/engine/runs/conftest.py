"""Two forests and a tenant synced, for the tests of what happens to a connector space as a whole."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.store import Store
from tests.support.world import ad_group, ad_user, cloud_twin, links, sync_connectors

CORP = [ad_user(1), ad_user(2), ad_group(20, "Staff", members=[1, 2])]
FABRIKAM = [ad_user(11, "fab11"), ad_user(12, "fab12"), ad_user(13, "fab13"), ad_group(30, "Fab", members=[11, 12])]
CLOUD = [cloud_twin(1), cloud_twin(2), cloud_twin(11, "fab11"), cloud_twin(12, "fab12"), cloud_twin(13, "fab13")]


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
