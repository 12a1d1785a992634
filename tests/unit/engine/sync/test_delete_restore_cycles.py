"""An object deleted, restored and deleted again in the connected directory (AD's recycle bin, Entra's deleted items)
while no sync ran in between: the connector space must still hand the last delete to the sync, which disconnects the
metaverse object and deletes its cloud twin. The import read the restore as an add, and an add the sync has not
processed vanished on its delete as if it had never been synced, leaving its link behind: the delete was lost."""

from __future__ import annotations

import sqlalchemy as sa

from airflow_provider_aadsync.engine.runs.cs_writer import ConnectorSpaceWriter
from airflow_provider_aadsync.engine.store import Store, cs_object
from airflow_provider_aadsync.engine.sync import run_sync
from tests.support.world import ad_user, deleted, exports, guid, import_delta, links, world_with_cloud_twins


def _row(store: Store, anchor: str) -> tuple[bool, str | None] | None:
    with store.engine.connect() as connection:
        row = connection.execute(
            sa.select(cs_object.c.is_deleted, cs_object.c.pending_import).where(
                cs_object.c.connector == "ad", cs_object.c.anchor == anchor
            )
        ).first()
    return None if row is None else (bool(row.is_deleted), row.pending_import)


def _import_full(store: Store, objects: list) -> None:
    run_id = store.start_run("full-import", "ad")
    with store.transaction() as connection:
        writer = ConnectorSpaceWriter(store, connection, "ad", run_id)
        writer.begin_full()
        writer.write_full_page(objects)
        writer.finish_full()
    store.finish_run(run_id, "success", {})


def test_a_user_deleted_restored_and_deleted_again_by_deltas_before_a_sync_is_deleted_in_the_cloud(store):
    rules = world_with_cloud_twins(store, 2)
    assert ("ad", guid(2)) in links(store)

    import_delta(store, "ad", [deleted(guid(2))])
    import_delta(store, "ad", [ad_user(2)])  # reanimated: the same objectGUID, read whole
    assert _row(store, guid(2)) == (False, "update")  # the sync knows it: not a new object
    import_delta(store, "ad", [deleted(guid(2))])
    assert _row(store, guid(2)) == (True, "delete")

    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    assert ("ad", guid(2)) not in links(store)
    assert exports(store)["cloud-2"]["operation"] == "delete"


def test_a_user_restored_by_a_full_import_and_deleted_by_a_delta_before_a_sync_is_deleted_in_the_cloud(store):
    rules = world_with_cloud_twins(store, 2)
    import_delta(store, "ad", [deleted(guid(2))])
    _import_full(store, [ad_user(1), ad_user(2)])  # a full import finds it restored
    import_delta(store, "ad", [deleted(guid(2))])
    assert _row(store, guid(2)) == (True, "delete")

    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    assert ("ad", guid(2)) not in links(store)
    assert exports(store)["cloud-2"]["operation"] == "delete"
