"""A cloud user sync created and deleted (its AD user deleted, or moved out of the synced OUs, or filtered out), its
delete exported and confirmed by the next Entra import, then restored by an administrator from Entra's deleted items
(same object id, onPremisesImmutableId and UPN): the next Entra delta import reads it as an add.

* Its person gone from the metaverse (AD user deleted or out of the imported OUs): it is a disconnector, like any
  cloud user no metaverse object claims, and sync leaves it alone: no write, no delete (sync deletes only what it has
  joined and deprovisions; an administrator's restore is not undone). Its person filtered out (still in the
  metaverse, cloudFiltered): the hard match joins it and, out of every outbound rule's scope, it is deleted again, as
  Entra Connect deletes a synced object whose source is out of scope; many at once stop at the deletion threshold.
* Its AD user back in scope at the same time: the restored user is joined (hard match on the ImmutableId), never a
  second cloud user created beside it, whichever directory is imported and synced first, by delta or full syncs.
  Before, when the Entra sync read the restored user while its person was still gone, a later delta sync of AD
  staged a create and no delta sync of Entra read the restored user again (only a full one joined it): the export
  would create a second cloud user beside it. A restored user the hard match refuses holds that create instead.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings
from airflow_provider_aadsync.engine.runs.export_guards import STOPPED_DELETES
from airflow_provider_aadsync.engine.runs.export_run import run_export
from airflow_provider_aadsync.engine.store import Store, pending_export
from airflow_provider_aadsync.engine.sync import run_sync
from tests.support.plans import RecordingExporter
from tests.support.world import (
    ad_user,
    cloud_twin,
    deleted,
    exports,
    guid,
    import_delta,
    import_full,
    links,
    mv_by,
    world_with_cloud_twins,
)

ARBITRATION = str(0x800000)  # msExchRecipientTypeDetails of an arbitration mailbox: cloudFiltered


def confirm_deletes(store: Store, rules, anchors: list[str]) -> None:
    """The export deleted them (its rows done) and the next Entra import, a delta one, read them removed."""
    with store.transaction() as connection:
        connection.execute(sa.delete(pending_export).where(pending_export.c.anchor.in_(anchors)))
    import_delta(store, "entra", [deleted(anchor) for anchor in anchors])
    assert run_sync(store, rules, connector="entra", mode="delta").result == "success"
    assert exports(store) == {}


def deleted_in_the_cloud(store: Store, users: int, gone: list[int], *, filtered: bool = False):
    """``users`` AD users synced to cloud twins; those in ``gone`` deleted in AD (or filtered out), their cloud twins
    deleted by an export the next Entra import confirmed."""
    rules = world_with_cloud_twins(store, users)
    if filtered:
        import_delta(store, "ad", [ad_user(n, msExchRecipientTypeDetails=ARBITRATION) for n in gone])
    else:
        import_delta(store, "ad", [deleted(guid(n)) for n in gone])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    assert {anchor: row["operation"] for anchor, row in exports(store).items()} == {
        f"cloud-{n}": "delete" for n in gone
    }
    confirm_deletes(store, rules, [f"cloud-{n}" for n in gone])
    assert all(("entra", f"cloud-{n}") not in links(store) for n in gone)
    return rules


def sync(store: Store, rules, connector: str, mode: str) -> dict[str, float]:
    result = run_sync(store, rules, connector=connector, mode=mode)
    assert result.result == "success", result
    return result.counters


def export(store: Store, settings: ExportSettings):
    writer = RecordingExporter()
    result = run_export(
        store, connector="entra", settings=settings, plan=dict, exporter=lambda run_id: writer, command="export-entra"
    )
    return result, writer


# ------------------------------------------------------------------------------------- case A: its person is gone
@pytest.mark.parametrize("mode", ["delta", "full"])
def test_a_restored_cloud_user_whose_person_is_gone_is_left_alone(store, mode):
    rules = deleted_in_the_cloud(store, 3, [2, 3])
    import_delta(store, "entra", [cloud_twin(2), cloud_twin(3)])  # restored from Entra's deleted items

    for rounds in range(2):
        counters = sync(store, rules, "entra", mode)
        assert counters["joins"] == 0 and counters["disconnectors"] == (2 if rounds == 0 or mode == "full" else 0)
        sync(store, rules, "ad", mode)
        assert exports(store) == {}  # no delete, no write: an administrator's restore is not undone
        assert set(links(store, "entra")) == {("entra", "cloud-1")}
    assert export(store, ExportSettings(deletion_threshold=0))[0].result == "success"


@pytest.mark.parametrize("mode", ["delta", "full"])
def test_restored_cloud_users_whose_person_is_filtered_are_deleted_again_through_the_deletion_threshold(store, mode):
    gone = list(range(2, 8))
    rules = deleted_in_the_cloud(store, 8, gone, filtered=True)
    import_delta(store, "entra", [cloud_twin(n) for n in gone])  # a mass restore

    counters = sync(store, rules, "entra", mode)
    # Joined by the hard match to their persons, out of every outbound rule's scope: deleted again, as sync deletes
    # a synced cloud user whose source is out of scope.
    assert counters["export_deletes_staged"] == len(gone)
    staged = {anchor: row["operation"] for anchor, row in exports(store).items()}
    assert staged == {f"cloud-{n}": "delete" for n in gone}
    sync(store, rules, "ad", mode)
    assert len(exports(store)) == len(gone)

    stopped, writer = export(store, ExportSettings(deletion_threshold=5))
    assert stopped.result == STOPPED_DELETES and not writer.ran  # nothing written
    assert stopped.detail.startswith("6 deletes are pending, more than the deletion threshold of 5")
    assert len(exports(store)) == len(gone)  # the plan is kept for a confirmed run


# ------------------------------------------------------------------------------------ case B: its person comes back
ORDERS = {
    # each step: import one directory (a delta import) and, unless "together", sync it
    "entra imported and synced first": (("entra", "ad"), False),
    "ad imported and synced first": (("ad", "entra"), False),
    "both imported, entra synced first": (("entra", "ad"), True),
    "both imported, ad synced first": (("ad", "entra"), True),
}


def _come_back(store: Store, rules, order: str, mode: str, moved_back) -> None:
    connectors, together = ORDERS[order]
    imports = {
        "entra": lambda: import_delta(store, "entra", [cloud_twin(2)]),  # restored from Entra's deleted items
        "ad": lambda: import_delta(store, "ad", [moved_back]),
    }
    if together:
        for connector in connectors:
            imports[connector]()
    for connector in connectors:
        if not together:
            imports[connector]()
        sync(store, rules, connector, mode)


@pytest.mark.parametrize("mode", ["delta", "full"])
@pytest.mark.parametrize("order", list(ORDERS))
def test_a_restored_cloud_user_is_joined_when_its_ad_user_comes_back_in_scope(store, order, mode):
    rules = deleted_in_the_cloud(store, 2, [2])
    # Moved back into a synced OU: the AD delta import reads it as an add (same objectGUID).
    _come_back(store, rules, order, mode, ad_user(2))

    # A cycle syncs Entra after AD, before its export: that sync joins it (or has joined it) in place of any create.
    sync(store, rules, "entra", mode)
    bob_id, _ = mv_by(store, "accountName", "user2")
    assert links(store, "entra")[("entra", "cloud-2")][0] == bob_id
    assert sorted(links(store, "entra")) == [("entra", "cloud-1"), ("entra", "cloud-2")]
    assert exports(store) == {}  # nothing to write: the restored user holds the values

    # The next passes, delta ones too, keep it so and hold its cloud anchor in the metaverse.
    for connector in ("ad", "entra", "ad"):
        sync(store, rules, connector, mode)
    assert mv_by(store, "accountName", "user2")[1]["cloudAnchor"] == ["cloud-2"]
    assert exports(store) == {}
    assert links(store, "entra")[("entra", "cloud-2")][0] == bob_id


@pytest.mark.parametrize("mode", ["delta", "full"])
def test_a_restored_cloud_user_joined_again_gets_what_changed_in_ad_meanwhile(store, mode):
    rules = deleted_in_the_cloud(store, 2, [2])
    _come_back(store, rules, "entra imported and synced first", mode, ad_user(2, department="Sales"))
    sync(store, rules, "entra", mode)
    assert set(links(store, "entra")) == {("entra", "cloud-1"), ("entra", "cloud-2")}
    assert {anchor: (row["operation"], row["changes"]) for anchor, row in exports(store).items()} == {
        "cloud-2": ("update", {"department": ["Sales"]})
    }


def test_a_restored_cloud_user_held_by_another_engine_is_refused_and_the_create_held(store):
    """A restored user another engine masters (onPremisesSyncEnabled true): the hard match refuses it (a per-object
    error of the Entra sync), it gets no write, and the create sync staged for the person is held (state refused)
    as for any refused match, never sent beside it."""
    rules = deleted_in_the_cloud(store, 2, [2])
    import_delta(store, "entra", [cloud_twin(2, onPremisesSyncEnabled=True)])
    sync(store, rules, "entra", "delta")
    import_delta(store, "ad", [ad_user(2)])
    sync(store, rules, "ad", "delta")
    refused = run_sync(store, rules, connector="entra", mode="delta")
    assert refused.result == "completed-sync-errors" and refused.counters["errors"] == 1
    assert ("entra", "cloud-2") not in links(store)
    assert [(row["operation"], row["state"]) for row in exports(store).values()] == [("add", "refused")]


def test_full_imports_of_both_directories_then_delta_syncs_join_the_restored_user(store):
    rules = deleted_in_the_cloud(store, 2, [2])
    import_full(store, "entra", [cloud_twin(1), cloud_twin(2)])
    sync(store, rules, "entra", "delta")
    import_full(store, "ad", [ad_user(1), ad_user(2)])
    sync(store, rules, "ad", "delta")
    sync(store, rules, "entra", "delta")
    assert set(links(store, "entra")) == {("entra", "cloud-1"), ("entra", "cloud-2")}
    assert exports(store) == {}
