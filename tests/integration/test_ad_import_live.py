"""The AD import against a real Samba AD DC: full, DirSync delta, ranged members, restarts, errors."""

from __future__ import annotations

import json
import threading
import uuid

import ldap3
import pytest
import sqlalchemy as sa

from aadsync_devkit.world.samba import SambaDC
from airflow_provider_aadsync.engine.connectors.ad.schema import DEFAULT_AD_ATTRIBUTES
from airflow_provider_aadsync.engine.connectors.config import ADConnectorConfig, PartitionConfig
from airflow_provider_aadsync.engine.store import Store, cs_object, cs_reference
from airflow_provider_aadsync.hooks.active_directory import IMPORT_FILTER
from airflow_provider_aadsync.hooks.active_directory_pages import READ_AHEAD_PAGES, python_ldap_pages
from airflow_provider_aadsync.hooks.active_directory_settings import ActiveDirectoryConnectionError
from airflow_provider_aadsync.steps import run_ad_import
from tests.support.servers import hook_for, settings_for

pytestmark = pytest.mark.integration

USERS, GROUPS, BIG = 1600, 20, 1501


@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    return start_dc(users=USERS, groups=GROUPS, group_size=BIG)


@pytest.fixture(scope="module")
def admin(dc: SambaDC):
    conn = dc.connect()
    yield conn
    conn.unbind()


def ou(dc: SambaDC, name: str) -> str:
    return f"OU={name},OU=AADSync,{dc.base_dn}"


def add_user(admin: ldap3.Connection, dc: SambaDC, name: str, **attrs) -> str:
    dn = f"CN={name},{ou(dc, 'Users')}"
    assert admin.add(
        dn,
        ["top", "person", "organizationalPerson", "user"],
        {"sAMAccountName": name[:20], "displayName": name, **attrs},
    ), admin.result
    return dn


def guid_of(admin: ldap3.Connection, dn: str) -> str:
    admin.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["objectGUID"])
    return str(uuid.UUID(bytes_le=admin.response[0]["raw_attributes"]["objectGUID"][0]))


def run(dc: SambaDC, store: Store, mode: str, scope: ADConnectorConfig | None = None, **overrides) -> dict:
    return run_ad_import(hook_for(dc, **overrides), store, mode=mode, scope=scope)


def live_rows(store: Store) -> dict[str, dict]:
    with store.engine.connect() as connection:
        query = sa.select(cs_object).where(cs_object.c.is_deleted.is_(False))
        return {row.anchor: dict(row._mapping) for row in connection.execute(query)}


def members(store: Store, anchor: str) -> list[str]:
    with store.engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(cs_reference.c.target_anchor).where(
                    cs_reference.c.anchor == anchor, cs_reference.c.attribute == "member"
                )
            ).scalars()
        )


def directory_objects(admin: ldap3.Connection, base: str) -> dict[str, dict]:
    """An independent read of what the import should see: GUID → class and member count."""
    found = {}
    for entry in admin.extend.standard.paged_search(
        base, IMPORT_FILTER, attributes=["objectGUID", "objectClass"], paged_size=1000, generator=True
    ):
        if entry["type"] != "searchResEntry":
            continue
        classes = {c.lower() for c in entry["attributes"]["objectClass"]}
        if "computer" in classes:
            continue
        found[str(uuid.UUID(bytes_le=entry["raw_attributes"]["objectGUID"][0]))] = classes
    return found


def test_full_import_counts_equal_the_directory_and_second_run_changes_nothing(dc, admin, store):
    first = run(dc, store, "full")
    assert first["result"] == "success", first
    expected = directory_objects(admin, dc.base_dn)
    rows = live_rows(store)
    assert set(rows) == set(expected)
    assert first["counters"]["adds"] == len(expected) >= USERS + GROUPS
    by_type = {t: sum(1 for r in rows.values() if r["object_type"] == t) for t in ("user", "group")}
    assert by_type["user"] == sum(1 for c in expected.values() if "user" in c and "group" not in c)
    assert by_type["group"] == sum(1 for c in expected.values() if "group" in c)
    # a user's attributes arrive decoded
    admin.search(ou(dc, "Users"), "(employeeID=E0000001)", attributes=["objectGUID", "mail", "proxyAddresses"])
    entry = admin.response[0]
    attrs = json.loads(rows[str(uuid.UUID(bytes_le=entry["raw_attributes"]["objectGUID"][0]))]["attrs"])
    assert (
        attrs["mail"] == entry["attributes"]["mail"]
        if isinstance(entry["attributes"]["mail"], list)
        else [entry["attributes"]["mail"]]
    )
    assert sorted(attrs["proxyAddresses"]) == sorted(entry["attributes"]["proxyAddresses"])
    assert attrs["objectSid"][0].startswith("S-1-5-21-")

    second = run(dc, store, "full")
    counters = second["counters"]
    assert (counters["adds"], counters["updates"], counters["renames"], counters["deletes"]) == (0, 0, 0, 0)
    assert counters["unchanged"] == len(expected)


def test_delta_shows_exactly_the_changes(dc, admin, store):
    doomed = add_user(admin, dc, "Delta Doomed")
    run(dc, store, "full")
    modified, renamed = add_user(admin, dc, "Delta Modified"), add_user(admin, dc, "Delta Renamed")
    run(dc, store, "delta")  # picks up the two new users
    group = f"CN=Delta Group,{ou(dc, 'Groups')}"
    assert admin.add(group, ["top", "group"], {"sAMAccountName": "delta-group", "member": [modified]}), admin.result
    run(dc, store, "delta")

    added = add_user(admin, dc, "Delta Added", department="Sales")
    assert admin.modify(modified, {"title": [(ldap3.MODIFY_REPLACE, ["Chief Modifier"])]})
    assert admin.modify_dn(renamed, "CN=Delta Renamed Twice")
    assert admin.delete(doomed)
    assert admin.modify(group, {"member": [(ldap3.MODIFY_ADD, [added]), (ldap3.MODIFY_DELETE, [modified])]})

    delta = run(dc, store, "delta")
    assert delta["mode"] == "delta" and delta["fallback_reason"] is None
    counters = delta["counters"]
    # added user; updates: modified title, rename, group membership
    assert (counters["adds"], counters["updates"], counters["renames"], counters["deletes"]) == (1, 3, 1, 1)
    assert (counters["reference_adds"], counters["reference_removes"]) == (1, 1)
    rows = live_rows(store)
    assert rows[guid_of(admin, added)]["pending_import"] == "add"
    assert json.loads(rows[guid_of(admin, modified)]["attrs"])["title"] == ["Chief Modifier"]
    renamed_row = rows[guid_of(admin, f"CN=Delta Renamed Twice,{ou(dc, 'Users')}")]
    assert renamed_row["dn"] == f"CN=Delta Renamed Twice,{ou(dc, 'Users')}"
    assert members(store, guid_of(admin, group)) == [guid_of(admin, added)]
    assert "Delta Doomed" not in {row["dn"].split(",")[0][3:] for row in rows.values()}

    again = run(dc, store, "delta")
    assert again["mode"] == "delta"
    assert sum(again["counters"][name] for name in ("adds", "updates", "renames", "deletes")) == 0


def test_deleted_member_is_dropped_from_its_group(dc, admin, store):
    member = add_user(admin, dc, "Leaving Member")
    group = f"CN=Leaving Group,{ou(dc, 'Groups')}"
    assert admin.add(group, ["top", "group"], {"sAMAccountName": "leaving-group", "member": [member]}), admin.result
    group_guid = guid_of(admin, group)
    run(dc, store, "full")
    assert len(members(store, group_guid)) == 1
    assert admin.delete(member)
    delta = run(dc, store, "delta")
    assert delta["counters"]["deletes"] == 1
    assert members(store, group_guid) == []


@pytest.mark.parametrize("size", [1499, 1500, BIG])
def test_ranged_member_retrieval(dc, admin, store, size):
    admin.search(ou(dc, "Users"), "(employeeID=*)", attributes=["objectGUID", "employeeID"])
    users = sorted(
        (e["attributes"]["employeeID"], e["dn"], str(uuid.UUID(bytes_le=e["raw_attributes"]["objectGUID"][0])))
        for e in admin.response
        if e["type"] == "searchResEntry"
    )
    if size == BIG:
        group = f"CN=BigGroup-{BIG},{ou(dc, 'Groups')}"
    else:
        group = f"CN=Ranged-{size},{ou(dc, 'Groups')}"
        if not admin.search(group, "(objectClass=group)", ldap3.BASE):
            assert admin.add(group, ["top", "group"], {"sAMAccountName": f"ranged-{size}"}), admin.result
            assert admin.modify(group, {"member": [(ldap3.MODIFY_REPLACE, [dn for _, dn, _ in users[:size]])]})
    expected = {guid for _, _, guid in users[:size]} if size != BIG else None
    run(dc, store, "full")
    stored = members(store, guid_of(admin, group))
    assert len(stored) == size == len(set(stored))
    if expected is not None:
        assert set(stored) == expected
    # the DC really answers in ranges: the hook's first window ends the list only for groups up to 1,500 members
    probe = hook_for(dc).get_conn()  # ldap3 without auto-range, as the import reads
    probe.search(group, "(objectClass=*)", ldap3.BASE, attributes=["member;range=0-1499"])
    [returned] = [name for name in probe.response[0]["raw_attributes"] if name.startswith("member;range=")]
    assert returned == ("member;range=0-*" if size <= 1500 else "member;range=0-1499")


def test_cookie_survives_a_restart_of_the_task(dc, admin, tmp_path):
    url = f"sqlite:///{tmp_path / 'restart.sqlite'}"
    with Store.open(url) as store:
        run(dc, store, "full")
    add_user(admin, dc, "After Restart")
    with Store.open(url) as reopened:  # a new process: new store handle, new hook, new LDAP connection
        delta = run(dc, reopened, "delta")
    assert delta["mode"] == "delta" and delta["counters"]["adds"] == 1
    assert delta["counters"]["objects_read"] == 1


def test_rejected_cookie_falls_back_to_full_import(dc, store):
    run(dc, store, "full")
    with store.transaction() as connection:
        connection.execute(sa.text("UPDATE watermark SET cookie = :c"), {"c": b"not-a-cookie"})
    result = run(dc, store, "delta")
    assert result["mode"] == "full"
    assert "rejected the DirSync cookie" in result["fallback_reason"]
    assert result["counters"]["adds"] == 0 and result["counters"]["unchanged"] > USERS


def test_undecodable_value_is_a_per_object_error(dc, admin, store):
    bad = add_user(admin, dc, "Bad Bytes")
    assert admin.modify(bad, {"photo": [(ldap3.MODIFY_REPLACE, [b"\xff\xd8\xff\xe0"])]}), admin.result
    result = run(dc, store, "full", attributes=[*DEFAULT_AD_ATTRIBUTES, "photo"])
    assert result["result"] == "completed-import-errors"
    assert result["counters"]["errors"] == 1
    [error] = store.run_errors(result["run_id"])
    assert error["dn"] == bad and error["code"] == "undecodable-value" and "photo" in error["message"]
    assert result["counters"]["adds"] > USERS  # the rest of the import went on
    assert admin.modify(bad, {"photo": [(ldap3.MODIFY_DELETE, [])]})


def test_an_object_that_fails_is_kept_by_a_full_import_and_read_again_whole_by_each_delta(dc, admin, store):
    """A value the import cannot decode (a photo read as text), set in the same change as a new display name: the
    delta records the error and moves its cookie on; each delta reads the user again whole by objectGUID (the hook's
    search) until the value is fixed, and then applies the display name of the failed change too. A full import in
    between keeps the user as it was instead of deleting it as unseen."""
    attributes = [*DEFAULT_AD_ATTRIBUTES, "photo"]
    user = add_user(admin, dc, "Read Again")
    anchor = guid_of(admin, user)
    assert run(dc, store, "full", attributes=attributes)["result"] == "success"
    change = {"displayName": [(ldap3.MODIFY_REPLACE, ["Read Again Renamed"])]}
    assert admin.modify(user, {**change, "photo": [(ldap3.MODIFY_REPLACE, [b"\xff\xd8\xff\xe0"])]}), admin.result

    failed = run(dc, store, "delta", attributes=attributes)
    assert failed["mode"] == "delta" and failed["result"] == "completed-import-errors"
    assert [error["anchor"] for error in store.run_errors(failed["run_id"])] == [anchor]
    assert failed["counters"]["objects_to_read_again"] == 1 and "watermarks_kept" not in failed["counters"]
    assert json.loads(live_rows(store)[anchor]["attrs"])["displayName"] == ["Read Again"]

    full = run(dc, store, "full", attributes=attributes)  # still broken: kept as it was, not deleted as unseen
    assert full["result"] == "completed-import-errors" and full["counters"]["kept_unreadable"] == 1
    assert anchor in live_rows(store)
    again = run(dc, store, "delta", attributes=attributes)  # the full import listed it too
    assert again["counters"]["objects_read_again"] == 1 and again["result"] == "completed-import-errors"

    assert admin.modify(user, {"photo": [(ldap3.MODIFY_DELETE, [])]}), admin.result
    fixed = run(dc, store, "delta", attributes=attributes)
    assert fixed["result"] == "success" and fixed["counters"]["objects_read_again"] == 1
    attrs = json.loads(live_rows(store)[anchor]["attrs"])
    assert attrs["displayName"] == ["Read Again Renamed"] and "photo" not in attrs
    clean = run(dc, store, "delta", attributes=attributes)
    assert clean["result"] == "success" and "objects_read_again" not in clean["counters"]
    assert admin.delete(user)


def test_filter_built_from_data_is_escaped(dc, admin):
    injected = "*)(objectClass=*"
    add_user(admin, dc, "Injection Probe", description=injected)
    found = hook_for(dc).find_objects("description", injected)
    assert len(found) == 1 and "CN=Injection Probe" in found[0][0]


def test_contacts_and_ous_are_imported_with_their_types(dc, admin, store):
    contact = f"CN=External Partner,{ou(dc, 'Users')}"
    assert admin.add(
        contact,
        ["top", "person", "organizationalPerson", "contact"],
        {"displayName": "External Partner", "mail": "partner@example.org"},
    ), admin.result
    run(dc, store, "full")
    by_dn = {row["dn"]: row for row in live_rows(store).values()}
    assert by_dn[contact]["object_type"] == "contact"
    assert json.loads(by_dn[contact]["attrs"])["mail"] == ["partner@example.org"]
    assert by_dn[ou(dc, "Users")]["object_type"] == "organizationalUnit"


def stored_rows(store: Store) -> tuple[dict, list]:
    """Every connector-space row but the columns a run stamps (its id and time): what a reader decides."""
    with store.engine.connect() as connection:
        objects = {
            row.anchor: {key: value for key, value in row._mapping.items() if key not in ("last_run_id", "updated_at")}
            for row in connection.execute(sa.select(cs_object))
        }
        references = sorted(tuple(row) for row in connection.execute(sa.select(cs_reference)))
    return objects, references


def test_python_ldap_and_ldap3_full_reads_store_the_same_rows(dc, admin, tmp_path):
    """The full read through python-ldap (C) and through ldap3 yield the same connector space: every attribute
    value, DN (escaped commas, non-ASCII), reference (the 1,501-member group's further ranges) and per-object error."""
    add_user(admin, dc, "Müller\\, Jörg", sAMAccountName="mueller.joerg", description="Zürich, ÄÖÜ ß")
    odd = add_user(admin, dc, "Reader Odd Bytes")
    assert admin.modify(odd, {"photo": [(ldap3.MODIFY_REPLACE, [b"\xff\xd8\xff\xe0"])]}), admin.result
    attributes = [*DEFAULT_AD_ATTRIBUTES, "photo"]
    seen = {}
    try:
        for client in ("python-ldap", "ldap3"):
            with Store.open(f"sqlite:///{tmp_path / f'{client}.sqlite'}", instance="test") as store:
                result = run(dc, store, "full", full_read_client=client, attributes=attributes)
                errors = [(e["dn"], e["code"], e["message"]) for e in store.run_errors(result["run_id"])]
                seen[client] = (stored_rows(store), result["counters"], errors)
    finally:
        assert admin.modify(odd, {"photo": [(ldap3.MODIFY_DELETE, [])]})
    (objects, references), counters, errors = seen["python-ldap"]
    assert seen["python-ldap"] == seen["ldap3"]
    assert counters["adds"] == len(objects) > USERS and counters["errors"] == 1 and errors[0][0] == odd
    assert any("Müller\\, Jörg" in row["dn"] for row in objects.values())
    assert sum(1 for ref in references if ref[2] == "member") >= BIG


def test_python_ldap_read_verifies_the_dc_certificate(dc):
    """The python-ldap connection validates TLS as the ldap3 one does: the DC's CA as a file or as PEM text, or
    the system trust store, which does not know the test CA."""
    base = ou(dc, "Groups")
    for ca in (str(dc.tls_files.ca_cert), dc.tls_files.ca_cert.read_text()):
        pages = python_ldap_pages(settings_for(dc, ca_cert=ca), base, IMPORT_FILTER, ["cn"])
        assert next(pages)
        pages.close()
    with pytest.raises(ActiveDirectoryConnectionError, match="certificate was not accepted .*system trust store"):
        next(python_ldap_pages(settings_for(dc, ca_cert=None), base, IMPORT_FILTER, ["cn"]))
    with pytest.raises(ActiveDirectoryConnectionError, match="invalid credentials"):
        next(python_ldap_pages(settings_for(dc, password="wrong"), base, IMPORT_FILTER, ["cn"]))


def test_python_ldap_read_ahead_hands_every_page_on_and_stops_with_a_caller_that_stops(dc):
    """The python-ldap read takes pages off the wire in a thread of its own, at most READ_AHEAD_PAGES ahead: read
    to the end it hands on every entry once, in the DC's order; a caller that stops after the first page stops the
    reader too (no read thread is left, its connection is closed)."""
    base = dc.base_dn
    settings = settings_for(dc, page_size=25)
    pages = list(python_ldap_pages(settings, base, IMPORT_FILTER, ["cn"]))
    dns = [dn for page in pages for dn, _attrs in page]
    assert len(pages) > READ_AHEAD_PAGES + 1 and all(len(page) <= 25 for page in pages)
    assert len(dns) == len(set(dns)) > 100

    def readers() -> list[threading.Thread]:
        return [thread for thread in threading.enumerate() if thread.name == "python-ldap paged read"]

    first = python_ldap_pages(settings, base, IMPORT_FILTER, ["cn"])
    assert [dn for dn, _attrs in next(first)] == dns[: len(pages[0])]
    assert readers()
    first.close()
    assert readers() == []


def test_python_ldap_and_ldap3_dirsync_reads_store_the_same_rows(dc, admin, tmp_path):
    """The DirSync delta through python-ldap (streamed, in chunks) and through ldap3 store the same rows after the
    same changes: adds, modifies, a rename, a delete, member adds and removes as incremental values. With a page size
    of 2 the python-ldap read yields several chunks of one search, and only the last one carries a cookie."""
    keep, gone = add_user(admin, dc, "Twin Keep"), add_user(admin, dc, "Twin Gone")
    renamed = add_user(admin, dc, "Twin Renamed")
    group = f"CN=Twin Group,{ou(dc, 'Groups')}"
    assert admin.add(group, ["top", "group"], {"sAMAccountName": "twin-group", "member": [keep, gone]}), admin.result
    first = tmp_path / "first.sqlite"
    with Store.open(f"sqlite:///{first}", instance="test") as store:
        run(dc, store, "full")
    (tmp_path / "ldap3.sqlite").write_bytes(first.read_bytes())
    (tmp_path / "python-ldap.sqlite").write_bytes(first.read_bytes())
    hook = hook_for(dc, full_read_client="python-ldap", page_size=2)
    before = hook.dirsync_watermark()

    added = add_user(admin, dc, "Twin Added", department="Sales")
    assert admin.modify(keep, {"title": [(ldap3.MODIFY_REPLACE, ["Twin Title"])]})
    assert admin.modify_dn(renamed, "CN=Twin Renamed Again")
    assert admin.modify(group, {"member": [(ldap3.MODIFY_ADD, [added]), (ldap3.MODIFY_DELETE, [keep])]})
    assert admin.delete(gone)

    chunks = list(hook.dirsync_pages(DEFAULT_AD_ATTRIBUTES, before))
    hook.close()
    assert len(chunks) >= 3 and all(cookie is None for _, cookie in chunks[:-1]) and chunks[-1][1]
    names = {name for entries, _ in chunks for _, raw in entries for name in raw}
    assert {"member;range=1-1", "member;range=0-0", "isDeleted"} <= names
    assert all(dn.startswith("<GUID=") for entries, _ in chunks for dn, _ in entries)

    seen = {}
    for client in ("python-ldap", "ldap3"):
        with Store.open(f"sqlite:///{tmp_path / f'{client}.sqlite'}", instance="test") as store:
            result = run(dc, store, "delta", full_read_client=client, page_size=2)
            assert result["mode"] == "delta" and result["fallback_reason"] is None, result
            seen[client] = (stored_rows(store), result["counters"])
    assert seen["python-ldap"] == seen["ldap3"]
    counters = seen["ldap3"][1]
    assert (counters["adds"], counters["renames"], counters["deletes"]) == (1, 1, 1)
    # removed: the member taken out, and the deleted user (the engine drops references to deleted objects)
    assert (counters["reference_adds"], counters["reference_removes"]) == (1, 2)


def test_delta_reads_an_object_moved_into_the_scope_whole(dc, admin, store):
    """DirSync reports a move with the attributes the move changed (no objectClass, no other value): an object moved
    from an excluded OU into the scope is read whole, as a full import reads it, and one moved out is deleted."""
    parking = ou(dc, "Parking")
    assert admin.add(parking, ["top", "organizationalUnit"]), admin.result
    partition = PartitionConfig(dn=dc.base_dn, exclude_ous=(parking,))
    scope = {"scope": ADConnectorConfig(name="ad", conn_id="aadsync_ad", partitions=(partition,))}
    parked = f"CN=Parked Person,{parking}"
    assert admin.add(
        parked,
        ["top", "person", "organizationalPerson", "user"],
        {"sAMAccountName": "parked-person", "displayName": "Parked Person", "department": "Logistics"},
    ), admin.result
    anchor = guid_of(admin, parked)
    assert run(dc, store, "full", **scope)["result"] == "success"
    assert anchor not in live_rows(store)

    assert admin.modify_dn(parked, "CN=Parked Person", new_superior=ou(dc, "Users")), admin.result
    delta = run(dc, store, "delta", **scope)
    assert delta["mode"] == "delta" and delta["counters"]["adds"] == 1, delta["counters"]
    row = live_rows(store)[anchor]
    attrs = json.loads(row["attrs"])
    assert row["object_type"] == "user" and row["dn"] == f"CN=Parked Person,{ou(dc, 'Users')}"
    assert attrs["sAMAccountName"] == ["parked-person"] and attrs["department"] == ["Logistics"]

    assert admin.modify_dn(row["dn"], "CN=Parked Person", new_superior=parking), admin.result
    assert run(dc, store, "delta", **scope)["counters"]["deletes"] == 1
    assert anchor not in live_rows(store)
