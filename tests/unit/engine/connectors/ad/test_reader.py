"""The AD import against an in-memory directory source: full, delta, fallbacks, errors."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.ad.reader import import_active_directory
from airflow_provider_aadsync.engine.store import Store, cs_object, cs_reference
from airflow_provider_aadsync.hooks.active_directory_settings import ActiveDirectoryReferralError, referral_error
from tests.support.fakes import ATTRS, NC, FakeDirectory, guid


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as opened:
        yield opened


@pytest.fixture
def directory():
    directory = FakeDirectory()
    for n in range(1, 6):
        directory.add_user(n, f"user{n}")
    directory.add_group(100, "group1", [1, 2, 3])
    return directory


def rows(store: Store) -> dict[str, dict]:
    with store.engine.connect() as connection:
        return {row.anchor: dict(row._mapping) for row in connection.execute(sa.select(cs_object))}


def members(store: Store, group: int) -> set[str]:
    with store.engine.connect() as connection:
        return set(
            connection.execute(
                sa.select(cs_reference.c.target_anchor).where(cs_reference.c.anchor == str(guid(group)))
            ).scalars()
        )


def run_import(directory, store, mode):
    return import_active_directory(directory, store, mode=mode, attributes=ATTRS)


class TestFullImport:
    def test_counts_equal_directory_and_second_run_changes_nothing(self, directory, store):
        first = run_import(directory, store, "full")
        assert first.counters["adds"] == 6
        assert first.result == "success"
        assert members(store, 100) == {str(guid(n)) for n in (1, 2, 3)}
        assert all(row["pending_import"] == "add" for row in rows(store).values())
        second = run_import(directory, store, "full")
        assert (second.counters["adds"], second.counters["updates"], second.counters["deletes"]) == (0, 0, 0)
        assert second.counters["unchanged"] == 6

    def test_changes_between_full_imports(self, directory, store):
        run_import(directory, store, "full")
        directory.objects[guid(1)][1]["displayName"] = [b"renamed display"]
        dn, raw = directory.objects[guid(2)]
        directory.objects[guid(2)] = (dn.replace("CN=user2", "CN=user2-moved"), raw)
        del directory.objects[guid(5)]
        directory.add_group(100, "group1", [1, 2, 4])
        result = run_import(directory, store, "full")
        assert result.counters["updates"] == 3  # user1 attrs, user2 rename, group1 members
        assert result.counters["renames"] == 1
        assert result.counters["deletes"] == 1
        assert result.counters["reference_adds"] == 1 and result.counters["reference_removes"] == 1
        assert members(store, 100) == {str(guid(n)) for n in (1, 2, 4)}
        # never synced: a deleted add vanishes instead of lingering as a tombstone
        assert str(guid(5)) not in rows(store)

    def test_delete_after_sync_leaves_pending_delete_and_drops_references(self, directory, store):
        run_import(directory, store, "full")
        with store.transaction() as connection:  # what the sync engine does after processing
            connection.execute(sa.update(cs_object).values(pending_import=None))
        del directory.objects[guid(3)]
        result = run_import(directory, store, "full")
        state = rows(store)[str(guid(3))]
        assert state["is_deleted"] and state["pending_import"] == "delete"
        assert str(guid(3)) not in members(store, 100)
        assert result.counters["deletes"] == 1


class TestDeltaImport:
    def test_delta_without_cookie_becomes_full(self, directory, store):
        result = run_import(directory, store, "delta")
        assert result.mode == "full"
        assert "no DirSync cookie" in result.fallback_reason
        assert store.get_watermark("ad", NC).cookie == b"cookie-0"

    def test_delta_applies_changes_and_advances_cookie(self, directory, store):
        run_import(directory, store, "full")
        directory.delta_batches = [
            [
                (
                    FakeDirectory.ext(1, f"CN=user1,{NC}"),
                    {"objectGUID": [guid(1).bytes_le], "displayName": [b"Changed"]},
                ),
                (
                    FakeDirectory.ext(100, f"CN=group1,{NC}"),
                    {
                        "objectGUID": [guid(100).bytes_le],
                        "member;range=1-1": [FakeDirectory.ext(5, f"CN=user5,{NC}").encode()],
                        "member;range=0-0": [FakeDirectory.ext(1, f"CN=user1,{NC}").encode()],
                    },
                ),
            ],
            [
                (FakeDirectory.ext(2, f"CN=user2-new,{NC}"), {"objectGUID": [guid(2).bytes_le]}),
                (
                    FakeDirectory.ext(4, f"CN=user4\\0ADEL,CN=Deleted Objects,{NC}"),
                    {"objectGUID": [guid(4).bytes_le], "isDeleted": [b"TRUE"]},
                ),
                (
                    FakeDirectory.ext(50, f"CN=user50,{NC}"),
                    {
                        "objectGUID": [guid(50).bytes_le],
                        "objectClass": [b"top", b"user"],
                        "displayName": [b"New"],
                    },
                ),
            ],
        ]
        result = run_import(directory, store, "delta")
        assert result.mode == "delta"
        counters = result.counters
        assert (counters["adds"], counters["updates"], counters["renames"], counters["deletes"]) == (
            1,
            3,
            1,
            1,
        )
        assert (counters["reference_adds"], counters["reference_removes"]) == (1, 1)
        state = rows(store)
        assert json.loads(state[str(guid(1))]["attrs"])["displayName"] == ["Changed"]
        assert state[str(guid(2))]["dn"] == f"CN=user2-new,{NC}"
        assert str(guid(4)) not in state  # never synced, so gone
        assert members(store, 100) == {str(guid(n)) for n in (2, 3, 5)}
        assert store.get_watermark("ad", NC).cookie == b"cookie-0+2"
        # a full import afterwards agrees with the delta about the group's member digest
        directory.add_group(100, "group1", [2, 3, 5])
        directory.objects[guid(1)][1]["displayName"] = [b"Changed"]
        directory.objects[guid(2)] = (
            FakeDirectory.ext(2, f"CN=user2-new,{NC}"),
            directory.objects[guid(2)][1],
        )
        del directory.objects[guid(4)]
        directory.add_user(50, "user50")
        directory.objects[guid(50)][1]["displayName"] = [b"New"]
        after = run_import(directory, store, "full")
        assert (after.counters["adds"], after.counters["updates"], after.counters["deletes"]) == (0, 0, 0)

    def test_deleted_member_is_dropped_from_groups(self, directory, store):
        run_import(directory, store, "full")
        directory.delta_batches = [
            [
                (
                    FakeDirectory.ext(2, f"CN=x,CN=Deleted Objects,{NC}"),
                    {"objectGUID": [guid(2).bytes_le], "isDeleted": [b"TRUE"]},
                )
            ]
        ]
        run_import(directory, store, "delta")
        assert members(store, 100) == {str(guid(1)), str(guid(3))}

    def test_rejected_cookie_falls_back_to_full(self, directory, store):
        run_import(directory, store, "full")
        directory.reject_cookie = True
        result = run_import(directory, store, "delta")
        assert result.mode == "full" and "rejected" in result.fallback_reason
        assert result.counters["unchanged"] == 6

    def test_undecodable_object_is_recorded_and_the_rest_imports(self, directory, store):
        directory.objects[guid(3)][1]["displayName"] = [b"\xff\xfe"]
        result = run_import(directory, store, "full")
        assert result.result == "completed-import-errors"
        assert result.counters["errors"] == 1 and result.counters["adds"] == 5
        [error] = store.run_errors(result.run_id)
        assert error["dn"] == f"CN=user3,{NC}" and "displayName" in error["message"]

    def test_failed_import_keeps_old_watermark_and_rows(self, directory, store):
        run_import(directory, store, "full")

        def broken(attributes, cookie):
            yield (
                [
                    (
                        FakeDirectory.ext(1, f"CN=user1,{NC}"),
                        {"objectGUID": [guid(1).bytes_le], "displayName": [b"half"]},
                    )
                ],
                b"cookie-x",
            )
            raise ConnectionError("server went away")

        directory.dirsync_pages = broken
        with pytest.raises(ConnectionError):
            run_import(directory, store, "delta")
        assert store.get_watermark("ad", NC).cookie == b"cookie-0"
        assert json.loads(rows(store)[str(guid(1))]["attrs"])["displayName"] == ["user1"]
        assert store.list_runs(1)[0]["result"] == "stopped-server-down"

        def referred(attributes, cookie):  # the partition is another domain's: the hook refuses the referral
            raise referral_error("ldap://dc1.corp.example", NC, ["ldap://fabrikam.example/DC=fabrikam,DC=example"])

        directory.dirsync_pages = referred
        with pytest.raises(ActiveDirectoryReferralError):
            run_import(directory, store, "delta")
        assert store.list_runs(1)[0]["result"] == "stopped-configuration-error"  # not retried: no server is down


def test_object_moved_out_of_scope_is_deleted_by_delta(directory, store):
    import_active_directory(directory, store, mode="full", attributes=ATTRS, scope_dn=f"OU=In,{NC}")
    assert rows(store) == {}  # nothing lives under OU=In yet
    for n in (1, 2):
        dn, raw = directory.objects[guid(n)]
        directory.objects[guid(n)] = (dn.replace(f",{NC}", f",OU=In,{NC}"), raw)
    result = import_active_directory(directory, store, mode="full", attributes=ATTRS, scope_dn=f"OU=In,{NC}")
    assert result.counters["adds"] == 2
    directory.delta_batches = [[(FakeDirectory.ext(1, f"CN=user1,OU=Out,{NC}"), {"objectGUID": [guid(1).bytes_le]})]]
    delta = import_active_directory(directory, store, mode="delta", attributes=ATTRS, scope_dn=f"OU=In,{NC}")
    assert delta.counters["deletes"] == 1
    assert set(rows(store)) == {str(guid(2))}


def test_import_refuses_to_interleave_with_another_run(directory, store):
    from airflow_provider_aadsync.engine.store import StoreLockedError

    store.acquire_lock("aadsync_cycle:scheduled__2026-11-25T12:00")
    with pytest.raises(StoreLockedError, match="aadsync_cycle:scheduled__2026-11-25T12:00"):
        run_import(directory, store, "full")  # another process: a holder of its own
    assert store.list_runs() == [] and rows(store) == {}


@pytest.mark.parametrize("spelling", ["dc=corp, dc=test", "DC = CORP , DC = Test", "dc=corp,dc=test "])
def test_base_dn_spelled_unlike_the_dc_still_scopes_everything(directory, store, spelling):
    """The DC accepts these as a search base but returns DNs spelled `...,DC=corp,DC=test`: the scope compares RDN by
    RDN, so the full import sees every object (the text comparison it replaces saw none and deleted them all)."""
    first = import_active_directory(directory, store, mode="full", attributes=ATTRS, scope_dn=NC)
    assert first.counters["adds"] == 6
    again = import_active_directory(directory, store, mode="full", attributes=ATTRS, scope_dn=spelling)
    assert again.result == "success" and again.counters["deletes"] == 0 and again.counters["unchanged"] == 6


def test_object_whose_dn_does_not_parse_is_an_error_not_a_crash(directory, store):
    directory.objects[guid(9)] = (FakeDirectory.ext(9, f"CN=bad,,{NC}"), directory.objects[guid(1)][1] | {})
    directory.objects[guid(9)][1]["objectGUID"] = [guid(9).bytes_le]
    result = run_import(directory, store, "full")
    assert result.result == "completed-import-errors" and result.counters["adds"] == 6
    assert store.run_errors(result.run_id)[0]["code"] == "invalid-dn"


def test_chunks_inside_one_dirsync_search_carry_no_cookie(directory, store):
    """A chunk that ends inside one DirSync search has no cookie (None): the delta keeps the last real one, and the
    search's last chunk's cookie is what commits with the rows."""
    run_import(directory, store, "full")

    def chunked(attributes, cookie):
        for n in (1, 2):
            yield (
                [
                    (
                        FakeDirectory.ext(n, f"CN=user{n},{NC}"),
                        {"objectGUID": [guid(n).bytes_le], "displayName": [b"new"]},
                    )
                ],
                None,
            )
        yield [], b"cookie-after-search"

    directory.dirsync_pages = chunked
    result = run_import(directory, store, "delta")
    assert result.mode == "delta" and result.counters["updates"] == 2
    assert store.get_watermark("ad", NC).cookie == b"cookie-after-search"


@pytest.mark.parametrize("pages", [1, 2])
def test_group_change_after_its_member_s_delete_in_one_page_keeps_refs_hash_right(directory, store, pages):
    """A deleted member's references are dropped (the group's refs_hash adjusted); the group's own change later in
    the same page starts from that hash, as it does in the next page."""
    run_import(directory, store, "full")
    tombstone = (
        FakeDirectory.ext(1, f"CN=user1\\0ADEL:{guid(1)},CN=Deleted Objects,{NC}"),
        {"objectGUID": [guid(1).bytes_le], "isDeleted": [b"TRUE"]},
    )
    group = (
        FakeDirectory.ext(100, f"CN=group1,{NC}"),
        {"objectGUID": [guid(100).bytes_le], "member;range=1-1": [FakeDirectory.ext(4, f"CN=user4,{NC}").encode()]},
    )
    directory.delta_batches = [[tombstone, group]] if pages == 1 else [[tombstone], [group]]
    run_import(directory, store, "delta")
    assert members(store, 100) == {str(guid(n)) for n in (2, 3, 4)}
    delta_hash = rows(store)[str(guid(100))]["refs_hash"]
    del directory.objects[guid(1)]
    dn, raw = directory.objects[guid(100)]
    raw["member"] = [FakeDirectory.ext(n, f"CN=user{n},{NC}").encode() for n in (2, 3, 4)]
    run_import(directory, store, "full")
    assert rows(store)[str(guid(100))]["refs_hash"] == delta_hash
