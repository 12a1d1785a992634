"""The dev world's forests: the connectors configuration `aadsync-dev env` writes is one the product accepts."""

from __future__ import annotations

import yaml

from aadsync_devkit.world.forests import FORESTS, connectors_configuration
from airflow_provider_aadsync.engine.connectors.config import parse_connectors_config


def test_the_dev_configuration_names_both_forests_and_validates():
    config = parse_connectors_config(yaml.safe_dump(connectors_configuration(FORESTS), sort_keys=False))
    assert [(c.name, c.conn_id) for c in config.ad] == [("ad", "aadsync_ad"), ("ad_fabrikam", "aadsync_ad_fabrikam")]
    assert [c.partitions[0].dn for c in config.ad] == ["DC=corp,DC=example,DC=test", "DC=fabrikam,DC=example,DC=test"]
    assert config.entra.conn_id == "aadsync_entra"
    assert [spec.host for spec in FORESTS] == ["127.0.0.1", "127.0.0.2"]
