"""Unjoined objects of one connector waiting for a join key another connector's sync writes (waiting_joins.py): a
foreign security principal or a linked mailbox of the resource forest whose person appears in the account forest
later is joined by the next delta sync of its connector, as a full sync would join it."""

from __future__ import annotations

import sqlalchemy as sa

from airflow_provider_aadsync.engine.store import Store, cs_object
from airflow_provider_aadsync.engine.sync import run_sync
from tests.support.forests import fsp, sid
from tests.support.world import (
    ad_group,
    ad_user,
    guid,
    import_delta,
    import_full,
    links,
    mv_by,
    mv_members,
    reference_exports,
)


def pending_imports(store: Store) -> set[tuple[str, str]]:
    """(connector, anchor) of every connector-space object with a pending import."""
    query = sa.select(cs_object.c.connector, cs_object.c.anchor).where(cs_object.c.pending_import.is_not(None))
    with store.engine.connect() as connection:
        return {(row.connector, row.anchor) for row in connection.execute(query)}


def entra_anchor(store: Store, mv_id: int) -> str:
    (anchor,) = [anchor for (_c, anchor), (linked, _t) in links(store, "entra").items() if linked == mv_id]
    return anchor


def full_syncs(store: Store, rules, ad: list, fabrikam: list) -> None:
    import_full(store, "ad", ad)
    import_full(store, "ad_fabrikam", fabrikam)
    for connector in ("ad", "ad_fabrikam"):
        assert run_sync(store, rules, connector=connector, mode="full").result == "success"


def delta_syncs(store: Store, rules) -> None:
    for connector in ("ad", "ad_fabrikam"):
        result = run_sync(store, rules, connector=connector, mode="delta")
        assert (result.mode, result.result) == ("delta", "success")


def test_a_person_appearing_later_joins_its_fsp_in_the_next_delta_cycle(store, rules):
    fabrikam = [ad_user(13, "fab13"), fsp(14, sid(1101)), ad_group(15, "FabStaff", members=[13, 14])]
    full_syncs(store, rules, [ad_user(2, "other")], fabrikam)
    group_id, _ = mv_by(store, "accountName", "FabStaff")
    fab13, _ = mv_by(store, "accountName", "fab13")
    assert mv_members(store, group_id) == {fab13}

    # owner1 (the FSP's SID) is moved into a synced OU of the account forest: delta syncs only.
    import_delta(store, "ad", [ad_user(1, "owner1", objectSid=sid(1101))])
    delta_syncs(store, rules)

    owner, _ = mv_by(store, "accountName", "owner1")
    assert links(store, "ad_fabrikam")[("ad_fabrikam", guid(14))] == (owner, "join")
    assert mv_members(store, group_id) == {fab13, owner}
    added = (entra_anchor(store, group_id), entra_anchor(store, owner), "add")
    assert added in reference_exports(store)
    assert pending_imports(store) == set()  # the FSP's pending import was read and cleared

    # A full sync of the resource forest finds nothing more to do: the delta cycle ended where it would.
    before = (mv_members(store, group_id), reference_exports(store), links(store))
    assert run_sync(store, rules, connector="ad_fabrikam", mode="full").result == "success"
    assert (mv_members(store, group_id), reference_exports(store), links(store)) == before


def test_a_linked_mailbox_joins_its_owner_appearing_later(store, rules):
    mailbox = ad_user(
        11,
        "fab.mailbox1",
        disabled=True,
        mail="owner1@example.test",
        msExchRecipientTypeDetails="2",
        msExchMasterAccountSid=sid(1101),
    )
    full_syncs(store, rules, [ad_user(2, "other")], [mailbox])
    assert ("ad_fabrikam", guid(11)) not in links(store)

    import_delta(store, "ad", [ad_user(1, "owner1", objectSid=sid(1101))])
    delta_syncs(store, rules)

    owner, attrs = mv_by(store, "accountName", "owner1")
    assert links(store, "ad_fabrikam")[("ad_fabrikam", guid(11))] == (owner, "join")
    assert attrs["mail"] == ["owner1@example.test"]


def test_a_key_no_unjoined_object_holds_marks_nothing(store, rules):
    full_syncs(store, rules, [ad_user(2, "other")], [fsp(14, sid(1101)), ad_group(15, "FabStaff", members=[14])])

    import_delta(store, "ad", [ad_user(1, "owner1", objectSid=sid(1999))])  # another SID than the FSP's
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"

    assert pending_imports(store) == set()
    assert run_sync(store, rules, connector="ad_fabrikam", mode="delta").counters["objects_evaluated"] == 0


def test_a_sync_leaves_its_own_connectors_unjoined_objects_alone(store, rules):
    """A pass of the FSP's own connector does not mark it: that connector's own syncs evaluate its objects."""
    full_syncs(store, rules, [ad_user(2, "other")], [fsp(14, sid(5009)), ad_group(15, "FabStaff", members=[14])])

    import_delta(store, "ad_fabrikam", [ad_user(16, "fab16", objectSid=sid(5009))])
    assert run_sync(store, rules, connector="ad_fabrikam", mode="delta").result == "success"

    assert mv_by(store, "accountName", "fab16")
    assert pending_imports(store) == set()
