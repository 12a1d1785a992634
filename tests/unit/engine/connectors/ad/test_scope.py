"""The AD import's scope: partitions with OUs included and excluded, a pilot group, per-partition DirSync cookies,
and a scope fingerprint that makes the next delta a full import when the scope changes. Deletions that a scope
change causes pass through the import guard."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.ad.reader import import_active_directory, import_ad_connector
from airflow_provider_aadsync.engine.connectors.config import (
    ADConnectorConfig,
    PartitionConfig,
    parse_connectors_config,
)
from airflow_provider_aadsync.engine.dn import dn_is_under
from airflow_provider_aadsync.engine.runs.export_run import adopt_anchor
from airflow_provider_aadsync.engine.runs.import_guard import STOPPED_DELETION_THRESHOLD, ImportGuard
from airflow_provider_aadsync.engine.store import Store, cs_object, link, run_error, watermark
from tests.support.fakes import NC, FakeDirectory, guid

ATTRS = ["objectGUID", "objectClass", "displayName", "member"]
CHILD = f"DC=child,{NC}"
STAFF, LEAVERS, OTHER = f"OU=Staff,{NC}", f"OU=Leavers,OU=Staff,{NC}", f"OU=Other,{NC}"
PILOT = f"CN=Pilot,{STAFF}"


class ScopedDirectory(FakeDirectory):
    """A fake DC with OUs, a child domain read as its own partition (``base``) and group members by DN."""

    def __init__(self) -> None:
        super().__init__(page_size=3)
        self.bases: list[str | None] = []

    def place(self, n: int, name: str, parent: str, object_class: bytes = b"user") -> None:
        self.objects[guid(n)] = (
            self.ext(n, f"CN={name},{parent}" if object_class != b"organizationalUnit" else parent),
            {"objectGUID": [guid(n).bytes_le], "objectClass": [b"top", object_class], "displayName": [name.encode()]},
        )

    def move(self, n: int, parent: str) -> tuple[str, dict]:
        dn, raw = self.objects[guid(n)]
        rdn = dn.split(";")[-1].split(",")[0]
        self.objects[guid(n)] = (self.ext(n, f"{rdn},{parent}"), raw)
        return self.objects[guid(n)]

    def _in(self, base: str | None, dn: str) -> bool:
        plain = dn.split(";")[-1]
        in_child = dn_is_under(plain, CHILD)
        return in_child if base else not in_child

    def full_import_pages(self, attributes: Sequence[str], base: str | None = None) -> Iterator[list]:
        self.bases.append(base)
        entries = [entry for entry in self.objects.values() if self._in(base, entry[0])]
        for start in range(0, len(entries), self.page_size):
            yield entries[start : start + self.page_size]

    def dirsync_watermark(self, base: str | None = None) -> bytes:
        return b"cookie-child" if base else b"cookie-0"

    def dirsync_pages(self, attributes: Sequence[str], cookie: bytes, base: str | None = None) -> Iterator:
        self.bases.append(base)
        self.cookies_seen.append(cookie)
        mine = [entry for batch in self.delta_batches for entry in batch if self._in(base, entry[0])]
        self.delta_batches = [[entry for entry in batch if entry not in mine] for batch in self.delta_batches]
        yield mine, cookie + b"+1"

    def object_guid(self, dn: str) -> str | None:
        """As the hook's: the objectGUID of the entry at ``dn``, None when there is none."""
        found = (n for n, (ext, _raw) in self.objects.items() if ext.split(";")[-1].casefold() == dn.casefold())
        return str(next(found, None) or "") or None

    def group_members(self, group_dn: str) -> list[str]:
        for dn, raw in self.objects.values():
            if dn.split(";")[-1].casefold() == group_dn.casefold():
                return [value.decode() for value in raw.get("member", [])]
        raise LookupError(group_dn)


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as opened:
        yield opened


@pytest.fixture
def directory() -> ScopedDirectory:
    directory = ScopedDirectory()
    directory.place(90, "Staff", STAFF, b"organizationalUnit")
    directory.place(91, "Leavers", LEAVERS, b"organizationalUnit")
    directory.place(92, "Other", OTHER, b"organizationalUnit")
    for n in (1, 2, 3):
        directory.place(n, f"staff{n}", STAFF)
    directory.place(4, "leaver4", LEAVERS)
    directory.place(5, "other5", OTHER)
    directory.place(6, "child6", f"OU=People,{CHILD}")
    return directory


def live(store: Store, connector: str = "ad") -> set[str]:
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(cs_object.c.attrs, cs_object.c.anchor).where(
                cs_object.c.connector == connector, cs_object.c.is_deleted == sa.false()
            )
        ).all()
    return {json.loads(row.attrs)["displayName"][0] for row in rows}


STAFF_ONLY = (PartitionConfig(dn=NC, include_ous=(STAFF,), exclude_ous=(LEAVERS,)),)


def scoped(directory, store, mode, partitions=STAFF_ONLY, **options):
    return import_active_directory(directory, store, mode=mode, attributes=ATTRS, partitions=partitions, **options)


def test_included_ou_brings_its_children_and_an_excluded_child_ou_stays_out(directory, store):
    result = scoped(directory, store, "full")
    assert result.result == "success"
    assert live(store) == {"Staff", "staff1", "staff2", "staff3"}  # not Leavers, leaver4, Other, other5, child6


def test_moving_into_an_excluded_ou_is_a_deletion_through_the_guard(directory, store):
    scoped(directory, store, "full")
    with store.transaction() as connection:  # synced: deletions become pending deletes, as after a sync
        connection.execute(sa.update(cs_object).values(pending_import=None))
    directory.delta_batches = [[directory.move(1, LEAVERS)]]
    result = scoped(directory, store, "delta")
    assert (result.mode, result.counters["deletes"]) == ("delta", 1)
    assert live(store) == {"Staff", "staff2", "staff3"}
    # Two more moves out of a 4-object space: the guard stops the delta before anything is deleted.
    directory.delta_batches = [[directory.move(2, LEAVERS), directory.move(3, OTHER)]]
    stopped = scoped(directory, store, "delta", guard=ImportGuard(deletion_threshold=1))
    assert stopped.result == STOPPED_DELETION_THRESHOLD
    assert live(store) == {"Staff", "staff2", "staff3"}
    # Moving back in is an add again (children follow their parent).
    directory.delta_batches = [[directory.move(1, STAFF)]]
    assert scoped(directory, store, "delta").counters["adds"] == 1


def test_a_changed_scope_makes_the_next_delta_a_full_import_whose_deletions_pass_the_guard(directory, store):
    scoped(directory, store, "full")
    assert scoped(directory, store, "delta").mode == "delta"
    wider = (PartitionConfig(dn=NC, include_ous=(STAFF,)),)
    result = scoped(directory, store, "delta", partitions=wider)
    assert result.mode == "full" and "scope" in result.fallback_reason
    assert "leaver4" in live(store)
    # A typo that empties the scope stops at the guard instead of deleting everything.
    typo = (PartitionConfig(dn=NC, include_ous=(f"OU=Staf,{NC}",)),)
    stopped = scoped(directory, store, "delta", partitions=typo, guard=ImportGuard(deletion_threshold=2))
    assert stopped.result == STOPPED_DELETION_THRESHOLD
    assert "leaver4" in live(store)
    with store.engine.connect() as connection:
        scopes = connection.execute(
            sa.select(watermark.c.partition).where(watermark.c.partition.startswith("scope "))
        ).scalars()
        assert len(list(scopes)) == 1  # the wider scope's row, the one the connector space was read with


def test_pilot_group_limits_to_direct_members_and_a_membership_change_imports_fully(directory, store):
    directory.place(50, "Pilot", STAFF, b"group")
    directory.objects[guid(50)][1]["member"] = [directory.objects[guid(n)][0].encode() for n in (1, 4)]
    partitions = (PartitionConfig(dn=NC),)
    scoped(directory, store, "full", partitions=partitions, pilot_group=PILOT)
    # Direct members only (leaver4 is one: OU filtering is not asked here); OUs stay, the group is no member.
    assert live(store) == {"Staff", "Leavers", "Other", "staff1", "leaver4"}
    assert scoped(directory, store, "delta", partitions=partitions, pilot_group=PILOT).mode == "delta"
    directory.objects[guid(50)][1]["member"] = [directory.objects[guid(n)][0].encode() for n in (1, 2)]
    result = scoped(directory, store, "delta", partitions=partitions, pilot_group=PILOT)
    assert result.mode == "full" and "scope" in result.fallback_reason
    assert live(store) == {"Staff", "Leavers", "Other", "staff1", "staff2"}


def test_each_partition_has_its_own_cookie_and_is_read_from_its_own_base(directory, store):
    config = parse_connectors_config(
        f"ad:\n  - name: ad_two\n    conn_id: c\n    partitions:\n      - dn: '{NC}'\n"
        f"        include_ous: ['{STAFF}']\n      - dn: '{CHILD}'\n"
    )
    connector: ADConnectorConfig = config.ad[0]
    import_ad_connector(directory, store, connector, mode="full", attributes=ATTRS)
    assert live(store, "ad_two") == {"Staff", "Leavers", "staff1", "staff2", "staff3", "leaver4", "child6"}
    assert directory.bases == [None, CHILD]  # the naming context through the connection's own base
    assert store.get_watermark("ad_two", NC).cookie == b"cookie-0"
    assert store.get_watermark("ad_two", CHILD).cookie == b"cookie-child"
    directory.place(7, "child7", f"OU=People,{CHILD}")
    directory.delta_batches = [[directory.objects[guid(7)]]]
    result = import_ad_connector(directory, store, connector, mode="delta", attributes=ATTRS)
    assert result.mode == "delta" and "child7" in live(store, "ad_two")
    assert store.get_watermark("ad_two", CHILD).cookie == b"cookie-child+1"
    assert store.get_watermark("ad_two", NC).cookie == b"cookie-0+1"


def test_a_partition_of_the_naming_context_under_a_narrower_base_dn_is_refused(directory, store):
    """The full read of such a partition searched under the connection's base_dn and DirSync the whole naming
    context: a delta added an object of an included OU outside base_dn, and the next full import deleted it."""
    with pytest.raises(ValueError, match="base_dn .* lies below it"):
        scoped(directory, store, "full", scope_dn=STAFF)
    scoped(directory, store, "full", scope_dn=NC)  # the naming context itself: read whole, limited by include_ous


def test_the_pilot_group_must_lie_in_a_partition():
    with pytest.raises(ValueError, match="outside every partition"):
        parse_connectors_config(
            f"ad:\n  - name: ad\n    conn_id: c\n    pilot_group: 'CN=Pilot,DC=else,DC=test'\n"
            f"    partitions:\n      - dn: '{NC}'\n"
        )


def test_the_steps_glue_passes_a_configured_scope(directory, store):
    """steps.run_ad_import (what the CLI and the operators call) reads a connector's configured scope."""
    from types import SimpleNamespace

    from airflow_provider_aadsync.steps import run_ad_import

    directory.settings = SimpleNamespace(attributes=ATTRS, binary_attributes=None, base_dn=None)
    directory.close = lambda: None
    connector = ADConnectorConfig(name="ad", conn_id="aadsync_ad", partitions=STAFF_ONLY)
    summary = run_ad_import(directory, store, mode="full", connector="ad", scope=connector)
    assert summary["result"] == "success"
    assert live(store) == {"Staff", "staff1", "staff2", "staff3"}


@pytest.mark.parametrize("members", [[], None], ids=["emptied", "unreadable"])
def test_a_pilot_group_emptied_or_unreadable_stops_at_the_guard_however_small_the_pilot(directory, store, members):
    """A pilot is small: its few users are under every threshold. A pilot group that lost its members (or whose
    member attribute the account cannot read: no values) takes every user out of scope; the OUs still read must not
    count as "saw something"."""
    directory.place(50, "Pilot", STAFF, b"group")
    pilot = directory.objects[guid(50)][1]
    pilot["member"] = [directory.objects[guid(n)][0].encode() for n in (1, 2, 3)]
    partitions = (PartitionConfig(dn=NC),)
    assert scoped(directory, store, "full", partitions=partitions, pilot_group=PILOT).result == "success"
    assert {"staff1", "staff2", "staff3"} <= live(store)
    if members is None:
        del pilot["member"]
    else:
        pilot["member"] = members
    stopped = scoped(directory, store, "delta", partitions=partitions, pilot_group=PILOT)
    assert stopped.result == STOPPED_DELETION_THRESHOLD
    assert "saw no user, group or contact in scope" in stopped.detail
    assert "0 members read" in stopped.detail and PILOT in stopped.detail
    assert {"staff1", "staff2", "staff3"} <= live(store)
    # Confirmed, the removal goes through.
    confirmed = ImportGuard(confirm_mass_removal=stopped.counters["deletes_planned"])
    result = scoped(directory, store, "delta", partitions=partitions, pilot_group=PILOT, guard=confirmed)
    assert result.result == "success"
    assert not {"staff1", "staff2", "staff3"} & live(store)


def test_read_permission_lost_below_the_ous_stops_at_the_guard(directory, store):
    """The account still reads the OUs but no longer the users in them: the import sees only containers."""
    whole = (PartitionConfig(dn=NC),)
    assert scoped(directory, store, "full", partitions=whole).result == "success"
    before = live(store)
    for n in (1, 2, 3, 4, 5):
        del directory.objects[guid(n)]
    stopped = scoped(directory, store, "full", partitions=whole)
    assert stopped.result == STOPPED_DELETION_THRESHOLD
    assert "saw no user, group or contact in scope" in stopped.detail
    assert live(store) == before


def _errors(store: Store, run_id: int) -> list:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(run_error).where(run_error.c.run_id == run_id)).all()


@pytest.mark.parametrize("second", ["ad_corp", "ad_copy"], ids=["renamed", "overlapping"])
def test_an_object_already_in_another_ad_connector_space_is_not_imported_twice(directory, store, second):
    """A connector renamed in the connectors file (its old space stays in the store) or two connectors reading the
    same partition would import every object a second time, and the sync would project a second person and
    provision a second cloud account for each. Such an object is a per-object error naming the other space."""
    first = ADConnectorConfig(name="ad", conn_id="aadsync_ad", partitions=STAFF_ONLY)
    import_ad_connector(directory, store, first, mode="full", attributes=ATTRS)
    assert live(store, "ad") == {"Staff", "staff1", "staff2", "staff3"}
    other = ADConnectorConfig(name=second, conn_id=f"aadsync_{second}", partitions=(PartitionConfig(dn=NC),))
    result = import_ad_connector(directory, store, other, mode="full", attributes=ATTRS)
    # Only what the first connector does not hold: the OUs Leavers and Other, leaver4 and other5.
    assert live(store, second) == {"Leavers", "Other", "leaver4", "other5"}
    errors = _errors(store, result.run_id)
    assert {row.anchor for row in errors} == {str(guid(n)) for n in (90, 1, 2, 3)}
    assert {row.code for row in errors} == {"anchor-in-another-connector"}
    assert "'ad'" in errors[0].message
    # A delta bringing a new object the first connector already imported is refused the same way.
    directory.place(8, "staff8", STAFF)
    import_ad_connector(directory, store, first, mode="full", attributes=ATTRS)
    directory.delta_batches = [[directory.objects[guid(8)]]]
    delta = import_ad_connector(directory, store, other, mode="delta", attributes=ATTRS)
    assert delta.mode == "delta" and "staff8" not in live(store, second)
    assert [row.anchor for row in _errors(store, delta.run_id)] == [str(guid(8))]


TWO_OUS = (PartitionConfig(dn=NC, include_ous=(STAFF, OTHER), exclude_ous=(LEAVERS,)),)


@pytest.mark.parametrize("slip", ["mistyped", "deleted"])
def test_an_included_ou_with_no_entry_stops_a_full_import_however_few_it_deletes(directory, store, slip):
    assert scoped(directory, store, "full", partitions=TWO_OUS).result == "success"
    assert live(store) == {"Staff", "staff1", "staff2", "staff3", "Other", "other5"}
    if slip == "mistyped":  # one of several included OUs misspelt: its two objects would go, under every threshold
        partitions = (PartitionConfig(dn=NC, include_ous=(STAFF, f"OU=Othr,{NC}"), exclude_ous=(LEAVERS,)),)
        missing = f"OU=Othr,{NC}"
    else:  # the OU deleted (or renamed, or unreadable) on the DC, the connectors file unchanged
        partitions = TWO_OUS
        missing = OTHER
        for n in (92, 5):
            del directory.objects[guid(n)]
    stopped = scoped(directory, store, "full", partitions=partitions)
    assert stopped.result == STOPPED_DELETION_THRESHOLD
    assert f"the included OU {missing!r}" in stopped.detail and "has no entry on the DC" in stopped.detail
    assert "confirm_mass_removal` = 2" in stopped.detail and "raise the limits" not in stopped.detail
    assert live(store) == {"Staff", "staff1", "staff2", "staff3", "Other", "other5"}  # nothing deleted
    confirmed = scoped(directory, store, "full", partitions=partitions, guard=ImportGuard(confirm_mass_removal=2))
    assert confirmed.result == "success" and confirmed.counters["deletes"] == 2
    assert live(store) == {"Staff", "staff1", "staff2", "staff3"}


def test_an_included_ou_emptied_on_the_dc_is_not_a_slip(directory, store):
    scoped(directory, store, "full", partitions=TWO_OUS)
    del directory.objects[guid(5)]  # other5 left; the OU itself is still there
    result = scoped(directory, store, "full", partitions=TWO_OUS)
    assert result.result == "success" and result.counters["deletes"] == 1


def test_a_group_written_back_is_read_whatever_the_pilot_group_holds(directory, store):
    """The pilot group scopes what syncs in from AD, not what sync made: a group written back (its provision link)
    stays in the connector space through full and delta imports, where it would be deleted each cycle and written
    again by the next export; another group outside the pilot stays out."""
    directory.place(50, "Pilot", STAFF, b"group")
    directory.objects[guid(50)][1]["member"] = [directory.objects[guid(1)][0].encode()]
    directory.place(60, "Written Back", STAFF, b"group")
    directory.place(61, "Not Ours", STAFF, b"group")
    partitions = (PartitionConfig(dn=NC),)
    assert scoped(directory, store, "full", partitions=partitions, pilot_group=PILOT).result == "success"
    assert not {"Written Back", "Not Ours"} & live(store)
    # The export created "Written Back" from its provisional object and took its objectGUID (as export_ad does).
    with store.transaction() as connection:
        now = dt.datetime.now(dt.UTC)
        connection.execute(
            sa.insert(cs_object).values(
                connector="ad", anchor="provisional:1", dn=directory.objects[guid(60)][0].split(";")[-1],
                object_type="group", attrs="{}", attrs_hash="", refs_hash="", updated_at=now,
            )
        )  # fmt: skip
        connection.execute(
            sa.insert(link).values(
                connector="ad", anchor="provisional:1", mv_id=1, rule="Out to AD - Group", link_type="provision",
                created_at=now,
            )
        )  # fmt: skip
        adopt_anchor(connection, "ad", "provisional:1", str(guid(60)), {"displayName": ["Written Back"]}, run_id=1)
    assert "Written Back" in live(store)
    full = scoped(directory, store, "full", partitions=partitions, pilot_group=PILOT)
    assert full.result == "success" and full.counters.get("deletes", 0) == 0
    assert live(store) == {"Staff", "Leavers", "Other", "staff1", "Written Back"}
    # A delta (the export's member writes, a rename in AD) keeps it too, with its new values.
    directory.objects[guid(60)][1]["displayName"] = [b"Written Back Renamed"]
    directory.delta_batches = [[directory.objects[guid(60)], directory.objects[guid(61)]]]
    delta = scoped(directory, store, "delta", partitions=partitions, pilot_group=PILOT)
    assert delta.mode == "delta" and delta.result == "success"
    assert live(store) == {"Staff", "Leavers", "Other", "staff1", "Written Back Renamed"}


TWO_PARTITIONS = (PartitionConfig(dn=NC), PartitionConfig(dn=CHILD))


def _two_domains() -> ScopedDirectory:
    """A naming context of 2,000 users beside a child domain of 150: the child's share is under both thresholds."""
    directory = ScopedDirectory()
    directory.page_size = 500
    directory.place(90, "Staff", STAFF, b"organizationalUnit")
    for n in range(1000, 3000):
        directory.place(n, f"staff{n}", STAFF)
    directory.place(80, "People", f"OU=People,{CHILD}", b"organizationalUnit")
    for n in range(100, 250):
        directory.place(n, f"child{n}", f"OU=People,{CHILD}")
    return directory


def test_a_partition_read_empty_beside_another_stops_a_full_import_however_few_it_deletes(store):
    """The account loses its read rights in the child domain (its search returns the OU alone): "saw nothing"
    counts the whole import, which read 2,000 users, so the child's 150 (7 %) went under every threshold."""
    directory = _two_domains()
    assert scoped(directory, store, "full", partitions=TWO_PARTITIONS).result == "success"
    children = {f"child{n}" for n in range(100, 250)}
    assert children <= live(store)
    for n in range(100, 250):
        del directory.objects[guid(n)]
    stopped = scoped(directory, store, "full", partitions=TWO_PARTITIONS)
    assert stopped.result == STOPPED_DELETION_THRESHOLD
    assert f"the partition {CHILD!r} (150 of the deletes are under it) gave no user, group or contact" in stopped.detail
    assert f"the partition {NC!r}" not in stopped.detail
    assert "confirm_mass_removal` = 150" in stopped.detail and "raise the limits" not in stopped.detail
    assert children <= live(store)  # nothing deleted
    # Raising the limits does not let it through; the exact confirmation does.
    wide = ImportGuard(deletion_threshold=10_000, deletion_share=1)
    assert scoped(directory, store, "full", partitions=TWO_PARTITIONS, guard=wide).result == STOPPED_DELETION_THRESHOLD
    confirmed = scoped(directory, store, "full", partitions=TWO_PARTITIONS, guard=ImportGuard(confirm_mass_removal=150))
    assert confirmed.result == "success" and confirmed.counters["deletes"] == 150
    assert not children & live(store)


def test_a_partition_with_included_ous_read_empty_stops_too(store):
    directory = _two_domains()
    partitions = (PartitionConfig(dn=NC), PartitionConfig(dn=CHILD, include_ous=(f"OU=People,{CHILD}",)))
    assert scoped(directory, store, "full", partitions=partitions).result == "success"
    for n in range(100, 250):
        del directory.objects[guid(n)]
    stopped = scoped(directory, store, "full", partitions=partitions)
    assert stopped.result == STOPPED_DELETION_THRESHOLD and f"the partition {CHILD!r}" in stopped.detail
    assert "child100" in live(store)


def test_a_partition_still_read_is_not_stopped_when_its_scope_empties(store):
    """The account reads the child domain (a built-in user outside the included OU): the included OU emptied on the
    DC is a real removal, left to the thresholds; so is a parent partition whose own objects are read while the
    nested child's are not counted for it."""
    directory = _two_domains()
    directory.place(70, "Administrator", f"CN=Users,{CHILD}")
    partitions = (PartitionConfig(dn=NC), PartitionConfig(dn=CHILD, include_ous=(f"OU=People,{CHILD}",)))
    assert scoped(directory, store, "full", partitions=partitions).result == "success"
    for n in range(100, 120):
        del directory.objects[guid(n)]
    result = scoped(directory, store, "full", partitions=partitions)
    assert result.result == "success" and result.counters["deletes"] == 20


def test_a_partition_read_empty_with_nothing_of_it_to_delete_stops_nothing(directory, store):
    """A child domain whose objects are all out of scope (its OUs are read, no user of it is held): nothing of it
    is lost, so a delete elsewhere passes as before."""
    partitions = (PartitionConfig(dn=NC, exclude_ous=(LEAVERS,)), PartitionConfig(dn=CHILD))
    del directory.objects[guid(6)]
    directory.place(80, "People", f"OU=People,{CHILD}", b"organizationalUnit")
    assert scoped(directory, store, "full", partitions=partitions).result == "success"
    del directory.objects[guid(5)]
    result = scoped(directory, store, "full", partitions=partitions)
    assert result.result == "success" and result.counters["deletes"] == 1
