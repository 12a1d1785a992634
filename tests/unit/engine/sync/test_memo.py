"""The sync memo: a full sync skips what is provably unchanged and still evaluates everything whose inputs moved."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.rules import load_default_rules, load_rules_text
from airflow_provider_aadsync.engine.store import link, mv_object, pending_export, sync_memo
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.frames import BATCH_ROWS
from airflow_provider_aadsync.engine.sync.memo import SyncMemo, _row_text, pass_digest
from airflow_provider_aadsync.engine.sync.settings import rule_parameters
from airflow_provider_aadsync.engine.sync.state import SyncPass
from tests.support.world import (
    ad_group,
    ad_user,
    cloud_twin_of_user1,
    entra_user,
    export_for,
    exports,
    guid,
    immutable_id,
    import_delta,
    import_full,
    metaverse,
    mv_by,
    reference_exports,
    seed,
)


def linked_objects(store, connector="ad"):
    with store.engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count()).select_from(link).where(link.c.connector == connector)
        ).scalar_one()


def memoized(store, connector="ad"):
    with store.engine.connect() as connection:
        return set(connection.execute(sa.select(sync_memo.c.mv_id).where(sync_memo.c.connector == connector)).scalars())


def updated_at(store):
    with store.engine.connect() as connection:
        return dict(connection.execute(sa.select(mv_object.c.id, mv_object.c.updated_at)).all())


def test_a_second_full_sync_skips_every_settled_object_and_changes_nothing(store, rules):
    seed(store)
    first = run_sync(store, rules, connector="ad", mode="full")
    assert first.counters["objects_memoized"] == len(metaverse(store))
    before = exports(store), reference_exports(store), updated_at(store)

    again = run_sync(store, rules, connector="ad", mode="full")
    assert again.result == "success"
    assert again.counters["objects_unchanged"] == linked_objects(store) > 0
    assert again.counters["objects_evaluated"] == first.counters["objects_evaluated"]  # every object is accounted
    assert {name: value for name, value in again.counters.items() if "staged" in name and value} == {}
    assert (exports(store), reference_exports(store), updated_at(store)) == before


def test_reevaluate_evaluates_every_object_and_memoizes_it_again(store, rules):
    seed(store)
    run_sync(store, rules, connector="ad", mode="full")
    before = exports(store), reference_exports(store)
    again = run_sync(store, rules, connector="ad", mode="full", reevaluate=True)
    assert again.counters.get("objects_unchanged", 0) == 0
    assert again.counters["objects_memoized"] == len(metaverse(store))
    assert (exports(store), reference_exports(store)) == before


def test_a_cloud_edit_is_corrected_by_the_next_full_sync_of_the_other_connector(store, rules):
    seed(store)
    run_sync(store, rules, connector="ad", mode="full")
    import_full(store, "entra", [cloud_twin_of_user1("Sales")])
    run_sync(store, rules, connector="entra", mode="full")
    run_sync(store, rules, connector="ad", mode="full")
    assert "cloud-1" not in exports(store)

    # the edit reaches the Entra connector space; only the AD side's full sync runs after it
    import_delta(store, "entra", [entra_user("cloud-1", "user1@corp.example", department="Edited in the portal")])
    result = run_sync(store, rules, connector="ad", mode="full")
    assert exports(store)["cloud-1"]["changes"] == {"department": ["Sales"]}
    assert result.counters["objects_unchanged"] == linked_objects(store) - 1  # user 1 alone was evaluated


def test_a_withdrawn_pending_export_is_staged_again_by_the_next_full_sync(store, rules):
    seed(store)
    run_sync(store, rules, connector="ad", mode="full")
    mv_id, _ = mv_by(store, "accountName", "user2")
    withdrawn = export_for(store, mv_id)
    with store.transaction() as connection:
        connection.execute(sa.delete(pending_export).where(pending_export.c.anchor == withdrawn["anchor"]))

    result = run_sync(store, rules, connector="ad", mode="full")
    assert export_for(store, mv_id) == withdrawn
    assert result.counters["objects_unchanged"] == linked_objects(store) - 1


def test_changed_rules_and_an_ad_change_are_evaluated(store, rules):
    seed(store)
    run_sync(store, rules, connector="ad", mode="full")
    changed = load_default_rules({**rule_parameters(), "MemberLimit": 1000})
    assert run_sync(store, changed, connector="ad", mode="full").counters.get("objects_unchanged", 0) == 0

    import_delta(store, "ad", [ad_user(1, department="Finance")])
    run_sync(store, changed, connector="ad", mode="delta")  # a delta sync memoizes what it evaluated too
    result = run_sync(store, changed, connector="ad", mode="full")
    assert result.counters["objects_unchanged"] == linked_objects(store)
    assert mv_by(store, "accountName", "user1")[1]["department"] == ["Finance"]


def test_an_object_with_an_error_is_evaluated_by_every_full_sync(store):
    rules = load_default_rules({**rule_parameters(), "MemberLimit": 2})
    seed(store)
    run_sync(store, rules, connector="ad", mode="full")
    staff_id = mv_by(store, "accountName", "Staff")[0]
    assert staff_id not in memoized(store)

    again = run_sync(store, rules, connector="ad", mode="full")
    assert again.result == "completed-sync-errors" and again.counters["errors"] == 1  # reported again
    assert again.counters["objects_unchanged"] == linked_objects(store) - 1


MEMBER_OF_RULES = """
rules:
  - name: In from AD - Staff only
    direction: inbound
    connector: ad
    source_object_type: user
    target_object_type: person
    link_type: Provision
    precedence: 10
    scoping:
      - - {attribute: memberOf, operator: ISMEMBEROF, value: "CN=Staff,OU=Groups,DC=corp,DC=example"}
    join:
      - - {source: objectGUID, target: sourceAnchor}
    flows:
      - {type: Direct, source: objectGUID, target: sourceAnchor}
      - {type: Direct, source: displayName, target: displayName}
"""


def test_with_rules_reading_member_of_a_membership_change_is_evaluated(store):
    rules = load_rules_text(MEMBER_OF_RULES, name="staff.yaml")
    import_full(store, "ad", [ad_user(1), ad_user(2), ad_group(20, "Staff", members=[1, 2])])
    run_sync(store, rules, connector="ad", mode="full")
    assert {attrs["displayName"][0] for attrs in metaverse(store).values()} == {"User 1", "User 2"}

    import_delta(store, "ad", [ad_group(20, "Staff", members=[2])])  # user 1's own object is unchanged
    result = run_sync(store, rules, connector="ad", mode="full")
    assert {attrs["displayName"][0] for attrs in metaverse(store).values()} == {"User 2"}
    assert result.counters["objects_unchanged"] == 1


NOW_RULES = """
rules:
  - name: In from AD - Stamped
    direction: inbound
    connector: ad
    source_object_type: user
    target_object_type: person
    link_type: Provision
    precedence: 10
    join:
      - - {source: objectGUID, target: sourceAnchor}
    flows:
      - {type: Direct, source: objectGUID, target: sourceAnchor}
      - {type: Expression, target: lastSeen, expression: 'CStr(Now())'}
"""


def test_rules_calling_now_turn_the_memo_off(store, rules):
    seed(store)
    run_sync(store, rules, connector="ad", mode="full")
    assert memoized(store)
    stamped = load_rules_text(NOW_RULES, name="stamped.yaml")
    result = run_sync(store, stamped, connector="ad", mode="full")
    assert result.counters.get("objects_unchanged", 0) == 0
    assert memoized(store) == set()  # nothing it evaluated may be skipped later
    assert run_sync(store, stamped, connector="ad", mode="full").counters.get("objects_unchanged", 0) == 0


def test_a_cloud_twin_matched_later_is_evaluated(store, rules):
    """A full sync of the other side links a new object to a memoized metaverse object: its fingerprint moves."""
    seed(store)
    run_sync(store, rules, connector="ad", mode="full")
    mv_id, _ = mv_by(store, "accountName", "user1")
    import_full(store, "entra", [cloud_twin_of_user1("Old department")])
    run_sync(store, rules, connector="entra", mode="full")
    assert exports(store)["cloud-1"]["changes"] == {"department": ["Sales"]}
    # The group "Staff" had user1's planned creation as a member add; it names the twin now (in the same pass).
    assert any(target == "cloud-1" for _group, target, _op in reference_exports(store))
    exports_before = exports(store)

    result = run_sync(store, rules, connector="ad", mode="full")
    # user1 (a new link) and "Staff" (its member rows in Entra changed) are evaluated again
    assert result.counters["objects_unchanged"] == linked_objects(store) - 2
    assert exports(store) == exports_before
    assert mv_by(store, "sourceAnchor", immutable_id(guid(1)))[0] == mv_id


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("a", "b"), ("ab", None)),
        (("a\0", "b", "c\0-"), ("a\0" + "1:b", "c\0", None)),  # SQLite's length() stops at a NUL: JSON escapes it
        (("a\0b",), ("a",)),
        (('"', ","), ('",",', None)),  # quotes and commas inside a field are escaped
        (("-", None), (None, "-")),
    ],
    ids=["split", "nul", "nul-end", "quotes", "null"],
)
def test_different_rows_read_as_different_texts(store, one, other):
    """A fingerprint hashes each row as one text the store concatenates: no two different rows may give the same."""

    def text(fields):
        return sa.select(_row_text(*(sa.null() if f is None else sa.literal(f, sa.String) for f in fields)))

    with store.engine.connect() as connection:
        assert connection.execute(text(one)).scalar_one() != connection.execute(text(other)).scalar_one()


def test_whole_store_by_id_and_by_anchor_range_reads_give_the_same_fingerprints(store, rules):
    """A full sync over most of the metaverse reads every fingerprint one scan per table; a delta sync reads them by
    id, the next full sync by anchor range. The three must agree, or an unchanged object would be evaluated again
    after a pass of the other kind (or a changed one skipped)."""
    seed(store)
    first = run_sync(store, rules, connector="ad", mode="full")  # most of the metaverse: the whole-store read
    with store.engine.connect() as connection:
        stored = dict(
            connection.execute(
                sa.select(sync_memo.c.mv_id, sync_memo.c.fingerprint).where(sync_memo.c.connector == "ad")
            ).all()
        )
        memo = SyncMemo(
            SyncPass(store, connection, rules, "ad", None, None, schemas=None, trace=None, batch_rows=BATCH_ROWS),
            pass_digest(rules, "ad", None),
        )
        whole = memo.fingerprints(None)
        assert len(stored) == first.counters["objects_memoized"] > 2
        assert {mv_id: whole[mv_id] for mv_id in stored} == stored
        assert memo.fingerprints(sorted(stored)) == stored
        assert memo.fingerprints(memo._linked_between(None, None)) == stored
        ids = sorted(stored)
        assert len({whole[mv_id] for mv_id in ids}) == len(ids)  # objects with other rows: other fingerprints
