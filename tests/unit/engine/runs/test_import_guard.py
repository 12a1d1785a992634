"""The import-side guard: an import that would remove too much of its connector space stops with nothing changed."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.ad.reader import import_active_directory
from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
from airflow_provider_aadsync.engine.report import render_cycle_report, render_runs
from airflow_provider_aadsync.engine.runs.import_guard import (
    SHARE_MINIMUM,
    STOPPED_DELETION_THRESHOLD,
    ImportGuard,
    MassRemovalStopped,
    UnreadPartition,
)
from airflow_provider_aadsync.engine.store import Store, cs_object, cs_reference
from tests.support.fakes import ATTRS, NC, FakeDirectory, FakeGraph, guid, oid, user


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as opened:
        yield opened


def snapshot(store: Store) -> tuple[list, list]:
    """Every connector-space row and reference, to compare before and after a stopped run."""
    with store.engine.connect() as connection:
        objects = [tuple(row) for row in connection.execute(sa.select(cs_object).order_by(cs_object.c.anchor))]
        references = [tuple(row) for row in connection.execute(sa.select(cs_reference).order_by(*cs_reference.c))]
    return objects, references


def stops(guard: ImportGuard, **counts) -> bool:
    try:
        guard.check(connector="ad", **counts)
    except MassRemovalStopped:
        return True
    return False


class TestLimits:
    @pytest.mark.parametrize(
        ("mode", "deletes", "space_size", "seen", "stopped"),
        [
            ("full", 1, 3, 2, False),  # a 3-object test space losing one object: 33 %, below the share minimum
            ("full", 2, 3, 1, False),
            ("full", 3, 3, 0, True),  # saw nothing where there was something: always stopped
            ("full", 1, 1, 0, True),
            ("full", 0, 0, 0, False),  # an empty space and an empty directory
            ("full", SHARE_MINIMUM, 20, 10, False),  # 50 %, but only 10 deletes
            ("full", SHARE_MINIMUM + 1, 110, 99, False),  # exactly 10 %
            ("full", SHARE_MINIMUM + 1, 100, 89, True),  # 11 %
            ("full", 500, 100_000, 99_500, False),
            ("full", 501, 100_000, 99_499, True),  # the absolute threshold
            ("delta", 501, 100_000, None, True),
            ("delta", 11, 100, None, True),  # an OU moved out of scope arrives as a delta of deletes
            ("delta", 5, 6, None, False),
            ("delta", 0, 5, None, False),  # a delta that sees no change saw "nothing" legitimately
        ],
    )
    def test_when_an_import_stops(self, mode, deletes, space_size, seen, stopped):
        assert stops(ImportGuard(), mode=mode, deletes=deletes, space_size=space_size, seen=seen) is stopped
        confirmed = ImportGuard(confirm_mass_removal=deletes)
        assert not stops(confirmed, mode=mode, deletes=deletes, space_size=space_size, seen=seen)

    def test_a_confirmation_lets_through_only_the_removal_it_names(self):
        """A number, not a yes, and an exact one: an old DAG run cleared later, or the DAG run's other import,
        confirms the removal its operator saw, not another one pending by then; the new stop names both numbers."""
        confirmed = ImportGuard(confirm_mass_removal=600)
        assert not stops(confirmed, mode="delta", deletes=600, space_size=1000)
        assert not stops(confirmed, mode="full", deletes=600, space_size=600, seen=0)  # "saw nothing" too
        assert stops(confirmed, mode="full", deletes=599, space_size=599, seen=0)  # another slip, smaller
        with pytest.raises(MassRemovalStopped) as stopped:
            confirmed.check(connector="ad", mode="delta", deletes=5000, space_size=5000, command="import-ad")
        assert "would delete 5,000" in stopped.value.detail
        assert "this run confirmed a removal of 600 objects, not 5,000" in stopped.value.detail
        assert "`aadsync import-ad --mode delta --confirm-mass-removal 5000`" in stopped.value.detail
        assert "`confirm_mass_removal` = 5000" in stopped.value.detail
        assert not stops(confirmed, mode="delta", deletes=400, space_size=100_000)  # under the limits: no stop

    def test_a_named_instances_stop_names_its_variables_and_its_instance_in_the_command(self):
        """Following the advice of a named instance's stop changes that instance: its own Variables (read before the
        shared ones) and a command that opens its store, not the default instance's."""
        with pytest.raises(MassRemovalStopped) as stopped:
            ImportGuard().check(
                connector="ad", mode="delta", deletes=600, space_size=1000, command="import-ad", instance="emea"
            )
        detail = stopped.value.detail
        assert "`aadsync import-ad --instance emea --mode delta --confirm-mass-removal 600`" in detail
        assert (
            "(`--import-deletion-threshold`, the Variable `aadsync_emea__import_deletion_threshold` (the named "
            "instance's own; `aadsync_import_deletion_threshold` when emea is the default instance, named by the "
            "Variable aadsync_instance)) and a share of at least 0.60 (`--import-deletion-share`, "
            "`aadsync_emea__import_deletion_share` (the named instance's own; `aadsync_import_deletion_share` when "
            "emea is the default instance"
        ) in detail
        with pytest.raises(MassRemovalStopped) as default:
            ImportGuard().check(connector="ad", mode="delta", deletes=600, space_size=1000, command="import-ad")
        assert "`aadsync import-ad --mode delta --confirm-mass-removal 600`" in default.value.detail
        assert (
            "(`--import-deletion-threshold`, the Variable `aadsync_import_deletion_threshold`) and a share of at least "
            "0.60 (`--import-deletion-share`, `aadsync_import_deletion_share`)."
        ) in default.value.detail
        assert "instance" not in default.value.detail

    @pytest.mark.parametrize("value", [True, False, -1, "600", 1.5])
    def test_a_confirmation_must_be_a_count(self, value):
        with pytest.raises(ValueError, match="confirm_mass_removal must be the number of deletes you confirm"):
            ImportGuard(confirm_mass_removal=value)

    def test_limits_are_settable(self):
        assert not stops(
            ImportGuard(deletion_threshold=1000, deletion_share=1), mode="delta", deletes=900, space_size=900
        )
        assert stops(ImportGuard(deletion_threshold=0), mode="delta", deletes=1, space_size=100)
        # raising the limits never lets "saw nothing" through: only a confirmation does
        assert stops(
            ImportGuard(deletion_threshold=10**9, deletion_share=1), mode="full", deletes=5, space_size=5, seen=0
        )

    def test_from_params_takes_typed_values_none_meaning_the_default(self):
        """Templated text ("None", "") is read by the operators (tests/unit/operators/test_operators.py)."""
        assert ImportGuard.from_params() == ImportGuard()
        assert ImportGuard.from_params(deletion_threshold=None, deletion_share=None) == ImportGuard()
        guard = ImportGuard.from_params(deletion_threshold=42, deletion_share=0.5, confirm_mass_removal=7)
        assert guard == ImportGuard(deletion_threshold=42, deletion_share=0.5, confirm_mass_removal=7)
        assert ImportGuard.from_params().confirm_mass_removal is None
        with pytest.raises(ValueError, match="share must be more than 0 and at most 1"):
            ImportGuard.from_params(deletion_share=10)
        with pytest.raises(ValueError, match="must be 0 or more"):
            ImportGuard.from_params(deletion_threshold=-1)


def directory_with_users(count: int, ou: str = f"OU=Staff,{NC}") -> FakeDirectory:
    directory = FakeDirectory(page_size=7)
    for n in range(1, count + 1):
        directory.add_user(n, f"user{n}")
        dn, raw = directory.objects[guid(n)]
        directory.objects[guid(n)] = (dn.replace(f",{NC}", f",{ou}"), raw)
    return directory


class TestADImport:
    def test_full_import_that_sees_nothing_stops_with_nothing_changed_and_a_confirmed_run_applies_it(self, store):
        directory = directory_with_users(3)
        directory.add_group(100, "group1", [1, 2, 3])
        first = import_active_directory(directory, store, mode="full", attributes=ATTRS, scope_dn=f"OU=Staff,{NC}")
        assert first.counters["adds"] == 3  # the group lives outside OU=Staff
        with store.transaction() as connection:  # synced: deletes would now stay as pending deletes
            connection.execute(sa.update(cs_object).values(pending_import=None))
        before, cookie = snapshot(store), store.get_watermark("ad", NC)

        directory.add_user(50, "newcomer")  # an object the wrong scope would add: rolled back too
        stopped = import_active_directory(directory, store, mode="full", attributes=ATTRS, scope_dn=f"OU=Empty,{NC}")
        assert stopped.result == STOPPED_DELETION_THRESHOLD
        assert stopped.counters["deletes_planned"] == 3 and stopped.counters["connector_space_objects"] == 3
        assert stopped.counters["objects_in_scope"] == 0 and stopped.counters["deletes"] == 0
        assert "saw no user, group or contact in scope, but the connector space holds 3" in stopped.detail
        assert f"base DN 'OU=Empty,{NC}'" in stopped.detail and "read permission" in stopped.detail
        assert f"`aadsync import-ad --store {store.url} --mode full --confirm-mass-removal 3`" in stopped.detail
        assert "raise the limits" not in stopped.detail  # only a confirmation lets "saw nothing" through
        assert snapshot(store) == before
        assert store.get_watermark("ad", NC) == cookie
        run = store.get_run(stopped.run_id)
        assert run["result"] == STOPPED_DELETION_THRESHOLD and run["detail"] == stopped.detail

        confirmed = import_active_directory(
            directory,
            store,
            mode="full",
            attributes=ATTRS,
            scope_dn=f"OU=Empty,{NC}",
            guard=ImportGuard(confirm_mass_removal=3),
        )
        assert confirmed.result == "success" and confirmed.counters["deletes"] == 3
        with store.engine.connect() as connection:
            assert connection.execute(sa.select(sa.func.count()).where(~cs_object.c.is_deleted)).scalar_one() == 0

    def test_base_ou_alone_counts_as_seeing_nothing(self, store):
        """Switched to an existing but empty OU, the import reads only that OU: it saw nothing, even in a space of
        a few objects that neither limit would protect."""
        directory = directory_with_users(3)
        import_active_directory(directory, store, mode="full", attributes=ATTRS)
        before = snapshot(store)
        directory.objects[guid(60)] = (
            FakeDirectory.ext(60, f"ou=empty, {NC.lower()}"),
            {"objectGUID": [guid(60).bytes_le], "objectClass": [b"top", b"organizationalUnit"]},
        )
        stopped = import_active_directory(directory, store, mode="full", attributes=ATTRS, scope_dn=f"OU=Empty,{NC}")
        assert stopped.result == STOPPED_DELETION_THRESHOLD and stopped.counters["objects_in_scope"] == 0
        assert "saw no user, group or contact in scope" in stopped.detail and snapshot(store) == before

    def test_full_import_above_the_share_stops(self, store):
        directory = directory_with_users(40)
        import_active_directory(directory, store, mode="full", attributes=ATTRS)
        before = snapshot(store)
        for n in range(1, 13):  # 12 of 40: 30 %, more than 10 deletes
            del directory.objects[guid(n)]
        stopped = import_active_directory(directory, store, mode="full", attributes=ATTRS)
        assert stopped.result == STOPPED_DELETION_THRESHOLD and stopped.counters["deletes_planned"] == 12
        assert "more than 10% of the connector space" in stopped.detail
        assert (
            "an import deletion threshold of at least 12" in stopped.detail
            and "a share of at least 0.30" in stopped.detail
        )
        assert snapshot(store) == before
        raised = import_active_directory(
            directory, store, mode="full", attributes=ATTRS, guard=ImportGuard(deletion_share=0.3)
        )
        assert raised.result == "success" and raised.counters["deletes"] == 12

    def test_delta_that_moves_an_ou_out_of_scope_stops_and_keeps_the_cookie(self, store):
        directory = directory_with_users(30)
        scope = f"OU=Staff,{NC}"
        import_active_directory(directory, store, mode="full", attributes=ATTRS, scope_dn=scope)
        before, cookie = snapshot(store), store.get_watermark("ad", NC)
        moved = [
            (FakeDirectory.ext(n, f"CN=user{n},OU=Staff,OU=Archive,{NC}"), {"objectGUID": [guid(n).bytes_le]})
            for n in range(1, 21)
        ]
        directory.delta_batches = [moved]
        stopped = import_active_directory(directory, store, mode="delta", attributes=ATTRS, scope_dn=scope)
        assert stopped.mode == "delta" and stopped.result == STOPPED_DELETION_THRESHOLD
        assert stopped.counters["deletes_planned"] == 20 and "objects_in_scope" not in stopped.counters
        assert f"`aadsync import-ad --store {store.url} --mode delta --confirm-mass-removal 20`" in stopped.detail
        assert snapshot(store) == before and store.get_watermark("ad", NC) == cookie

        directory.delta_batches = [moved]  # the DC sends the same changes again: the cookie did not move
        confirmed = import_active_directory(
            directory,
            store,
            mode="delta",
            attributes=ATTRS,
            scope_dn=scope,
            guard=ImportGuard.from_params(confirm_mass_removal=20),
        )
        assert confirmed.result == "success" and confirmed.counters["deletes"] == 20
        assert directory.cookies_seen == [b"cookie-0", b"cookie-0"]
        assert store.get_watermark("ad", NC).cookie == b"cookie-0+1"

    def test_a_named_instances_import_stops_naming_the_instance(self, tmp_path):
        """The import run passes its store's instance to the guard: the recorded stop names it."""
        directory = directory_with_users(30)
        with Store.open(f"sqlite:///{tmp_path / 'emea.sqlite'}", instance="emea") as store:
            import_active_directory(directory, store, mode="full", attributes=ATTRS)
            before = snapshot(store)
            directory.objects = {}
            stopped = import_active_directory(directory, store, mode="full", attributes=ATTRS)
            assert stopped.result == STOPPED_DELETION_THRESHOLD and snapshot(store) == before
            assert (
                f"`aadsync import-ad --instance emea --store {store.url} --mode full --confirm-mass-removal 30`"
                in stopped.detail
            )
            assert store.list_runs(1)[0]["detail"] == stopped.detail

    def test_report_shows_the_stop(self, store):
        directory = directory_with_users(3)
        import_active_directory(directory, store, mode="full", attributes=ATTRS)
        directory.objects.clear()
        stopped = import_active_directory(directory, store, mode="full", attributes=ATTRS)
        text = render_runs(store, [stopped.run_id])
        assert f"full-import on `ad` — {STOPPED_DELETION_THRESHOLD}" in text and "- detail: the full import" in text
        assert "| deletes_planned | 3 |" in text
        cycle = render_cycle_report(store, [{"task": "import_ad", "summary": stopped.summary()}], title="t")
        assert f"| {STOPPED_DELETION_THRESHOLD} | stopped before any change: 3 planned deletes" in cycle


class TestEntraImport:
    def test_empty_tenant_stops_the_full_import(self, store):
        graph = FakeGraph()
        graph.rounds["users"].append([[user(n) for n in range(1, 5)]])
        import_entra(graph, store, mode="full")
        before, links = snapshot(store), store.get_watermark("entra", "users")
        stopped = import_entra(graph, store, mode="full")  # the next rounds are empty: a wrong tenant, say
        assert stopped.result == STOPPED_DELETION_THRESHOLD and stopped.counters["deletes_planned"] == 4
        assert (
            "tenant at graph.test" in stopped.detail
            and f"aadsync import-entra --store {store.url} --mode full" in stopped.detail
        )
        assert snapshot(store) == before and store.get_watermark("entra", "users") == links

    def test_mass_removal_in_a_delta_stops(self, store):
        graph = FakeGraph()
        graph.rounds["users"].append([[user(n) for n in range(1, 31)]])
        import_entra(graph, store, mode="full")
        before = snapshot(store)
        removed = [{"id": oid(n), "@removed": {"reason": "changed"}} for n in range(1, 16)]
        graph.rounds["users"].append([removed])
        stopped = import_entra(graph, store, mode="delta")
        assert stopped.result == STOPPED_DELETION_THRESHOLD and stopped.counters["deletes_planned"] == 15
        assert snapshot(store) == before
        graph.rounds["users"].append([removed])
        too_few = import_entra(graph, store, mode="delta", guard=ImportGuard(confirm_mass_removal=14))
        assert too_few.result == STOPPED_DELETION_THRESHOLD and snapshot(store) == before
        assert "confirmed a removal of 14 objects, not 15" in too_few.detail
        graph.rounds["users"].append([removed])
        confirmed = import_entra(graph, store, mode="delta", guard=ImportGuard(confirm_mass_removal=15))
        assert confirmed.result == "success" and confirmed.counters["deletes"] == 15


def test_an_unread_partition_stops_only_with_deletes_under_it_and_names_itself():
    guard = ImportGuard()
    partition = UnreadPartition("DC=child,DC=corp,DC=test")
    guard.check(connector="ad", mode="full", deletes=3, space_size=1000, seen=990, gone={partition: 0})
    with pytest.raises(MassRemovalStopped) as stopped:
        guard.check(connector="ad", mode="full", deletes=3, space_size=1000, seen=990, gone={partition: 3})
    assert "the partition 'DC=child,DC=corp,DC=test' (3 of the deletes are under it)" in stopped.value.detail
    assert "included OU" not in stopped.value.detail and "raise the limits" not in stopped.value.detail
    ImportGuard(confirm_mass_removal=3).check(
        connector="ad", mode="full", deletes=3, space_size=1000, seen=990, gone={partition: 3}
    )
