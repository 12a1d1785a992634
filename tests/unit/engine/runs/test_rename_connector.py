"""A connector renamed in the connectors file and in the store (``aadsync store rename-connector``): its space, links,
cookies, pending exports and metaverse contributions move to the new name, so the next cycle imports, joins,
creates and deletes nothing again; a rename that would change anything but the name is refused."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.runs.rename_connector import RenameRefused, rename_connector_space
from airflow_provider_aadsync.engine.runs.unconfigured import unconfigured_spaces
from airflow_provider_aadsync.engine.store import link, mv_object, sync_state, watermark
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.forests import CLOUD, CORP, FABRIKAM
from tests.support.world import cs_count, exports, import_full, links, metaverse, reference_exports

CONFIGURED = ["ad", "ad_contoso", "entra"]


def contributors(store) -> set[str]:
    with store.engine.connect() as connection:
        texts = connection.execute(sa.select(mv_object.c.contributions)).scalars()
        return {key.split("|", 1)[0] for text in texts for entries in json.loads(text).values() for key in entries}


def connectors_of(store, table) -> set[str]:
    with store.engine.connect() as connection:
        return set(connection.execute(sa.select(table.c.connector)).scalars())


def test_a_renamed_connector_goes_on_where_it_was_and_writes_nothing_again(world):
    store, rules = world
    fabrikam_links = {anchor: row for (_c, anchor), row in links(store, "ad_fabrikam").items()}
    before = (metaverse(store), links(store, "entra"), exports(store), reference_exports(store))

    planned = rename_connector_space(store, "ad_fabrikam", "ad_contoso", confirm=False, configured=CONFIGURED)
    assert cs_count(store, "ad_fabrikam") == 4 and contributors(store) == {"ad", "ad_fabrikam", "entra"}
    assert "would be renamed 'ad_contoso': cs_object 4" in planned.message() and "--confirm-rename" in planned.message()

    renamed = rename_connector_space(
        store, "ad_fabrikam", "ad_contoso", confirm=True, configured=CONFIGURED, rules=rules
    )
    assert (renamed.rows["cs_object"], renamed.rows["link"], renamed.rows["watermark"]) == (4, 4, 1)
    assert renamed.metaverse_objects == 4 and renamed.reordered == 0 and renamed.rows == planned.rows
    assert cs_count(store, "ad_fabrikam") == 0 and cs_count(store, "ad_contoso") == 4
    assert {anchor: row for (_c, anchor), row in links(store, "ad_contoso").items()} == fabrikam_links
    assert contributors(store) == {"ad", "ad_contoso", "entra"}
    assert connectors_of(store, watermark) == {"ad", "ad_contoso"} and "ad_fabrikam" not in connectors_of(
        store, sync_state
    )
    assert unconfigured_spaces(store, CONFIGURED) == []

    # The next cycle: the forest read again under its new name, each connector synced (the renamed one in full).
    import_full(store, "ad_contoso", FABRIKAM)
    import_full(store, "ad", CORP)
    import_full(store, "entra", CLOUD)
    synced = {connector: run_sync(store, rules, connector=connector, mode="delta") for connector in CONFIGURED}
    assert synced["ad_contoso"].mode == "full" and all(r.result == "success" for r in synced.values())
    for result in synced.values():
        assert not any(result.counters.get(name) for name in ("projections", "joins", "disconnections", "provisions"))
    assert (metaverse(store), links(store, "entra"), exports(store), reference_exports(store)) == before


def test_a_rename_that_would_change_more_than_the_name_is_refused_and_changes_nothing(world):
    store, rules = world
    before = (metaverse(store), links(store), exports(store), contributors(store))
    refusals = [
        (("ad_fabrikam", "AD_Fabrikam"), {}, "are one connector name"),
        (("ad_fabrikam", "contoso"), {}, "not connectors of one kind"),
        (("ad_fabrikam", "ad"), {}, r"already holds connector 'ad' \(cs_object, cs_reference, link"),
        (("ad_gone", "ad_new"), {}, "holds no connector 'ad_gone'"),
        (
            ("ad_fabrikam", "ad_contoso"),
            {"configured": ["ad", "ad_fabrikam", "entra"]},
            "must name 'ad_contoso' and no longer 'ad_fabrikam'",
        ),
        # Group writeback creates groups in the connector named "ad" alone: renamed, its groups would be made again.
        (
            ("ad", "ad_corp"),
            {"rules": load_sync_rules(writeback_enabled=True, writeback_ou="OU=Groups,DC=corp,DC=example")},
            "Out to AD - Group Writeback would stop applying",
        ),
    ]
    for (old, new), options, message in refusals:
        with pytest.raises(RenameRefused, match=message):
            rename_connector_space(store, old, new, confirm=True, **options)
    assert (metaverse(store), links(store), exports(store), contributors(store)) == before
    # Groups written back into the space: with writeback off in the rules given, nothing would write them any more.
    with store.transaction() as connection:
        connection.execute(sa.update(link).where(link.c.connector == "ad_fabrikam").values(link_type="provision"))
    with pytest.raises(RenameRefused, match="holds 4 objects sync provisioned there .group writeback."):
        rename_connector_space(store, "ad_fabrikam", "ad_contoso", confirm=True, rules=rules)
    # The same rename with the shipped rules and writeback off reads and writes both names alike: done.
    assert rename_connector_space(store, "ad", "ad_corp", confirm=True, rules=rules).rows["cs_object"] == 3
