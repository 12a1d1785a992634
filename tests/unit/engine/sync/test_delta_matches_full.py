"""Delta syncs after AD changes leave the store as a full re-evaluation of the same connector space would.

A seeded random AD world (tests/support/differential.py) goes through rounds of DirSync-like changes, each followed by
a delta sync; a copy of the store then gets a full sync with ``reevaluate=True``, which must find nothing different to
do, and a copy a memoized full sync, which must do the same. The metaverse must also be the one a store built from
scratch out of the final AD state gets. The tests before it are the mismatches the random worlds found, reduced.
"""

from __future__ import annotations

import logging
import random

import pytest

from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import run_sync
from tests.support.differential import (
    ARBITRATION,
    AdModel,
    by_anchor,
    cloud_round,
    cloud_twins,
    copy_store,
    differences,
    snapshot,
)
from tests.support.world import (
    BASE,
    ad_group,
    ad_user,
    cloud_twin,
    cloud_twin_of_user1,
    deleted,
    entra_group,
    entra_user,
    exports,
    guid,
    immutable_id,
    import_delta,
    import_full,
    links,
    reference_exports,
)


def managed_by(n: int, manager: int, **attrs):
    user = ad_user(n, **attrs)
    user.references = {"manager": [(guid(manager), f"CN=user{manager},OU=Users,{BASE}")]}
    return user


def reevaluated(store: Store, rules, tmp_path, name: str = "copy") -> list[str]:
    """What a full re-evaluation of a copy of the store changes (nothing, when the delta syncs were right)."""
    before = snapshot(store)
    with Store.open(copy_store(store, str(tmp_path / f"{name}.sqlite")), instance="test") as copy:
        run_sync(copy, rules, connector="ad", mode="full", reevaluate=True)
        return differences(before, snapshot(copy))


def test_a_user_back_in_scope_before_its_delete_is_exported_is_added_to_its_groups_again(store, rules, tmp_path):
    """Cloud-filtered in one delta sync (its cloud user's delete staged, the link gone), unfiltered in the next: the
    cloud user is joined again and its delete withdrawn; the groups holding it get its member add again, as for a user
    provisioned in the pass, though the pass did not evaluate them."""
    import_full(store, "ad", [ad_user(1), ad_group(20, "Staff", members=[1])])
    import_full(store, "entra", [cloud_twin(1)])
    run_sync(store, rules, connector="ad", mode="full")
    run_sync(store, rules, connector="entra", mode="full")
    ((staff, _target, _op),) = reference_exports(store)
    assert reference_exports(store) == {(staff, "cloud-1", "add")}

    import_delta(store, "ad", [ad_user(1, msExchRecipientTypeDetails=ARBITRATION)])
    run_sync(store, rules, connector="ad", mode="delta")
    assert exports(store)["cloud-1"]["operation"] == "delete" and reference_exports(store) == set()

    import_delta(store, "ad", [ad_user(1, msExchRecipientTypeDetails=[])])
    result = run_sync(store, rules, connector="ad", mode="delta")
    assert result.counters["rejoined"] == 1 and "cloud-1" not in exports(store)
    assert reference_exports(store) == {(staff, "cloud-1", "add")}
    assert reevaluated(store, rules, tmp_path) == []


def test_a_withdrawn_create_leaves_no_empty_update_on_the_joined_user_it_was_the_manager_of(store, rules, tmp_path):
    """A user sync was to create goes out of scope before the export: its create is withdrawn, and with it the manager
    reference of the joined user it managed; that user's update row, which carried nothing else, goes too."""
    import_full(store, "ad", [managed_by(1, 2), ad_user(2)])
    import_full(store, "entra", [cloud_twin(1)])
    run_sync(store, rules, connector="ad", mode="full")
    run_sync(store, rules, connector="entra", mode="full")
    assert exports(store)["cloud-1"]["operation"] == "update" and exports(store)["cloud-1"]["changes"] == {}

    import_delta(store, "ad", [ad_user(2, msExchRecipientTypeDetails=ARBITRATION)])
    run_sync(store, rules, connector="ad", mode="delta")
    assert exports(store) == {} and reference_exports(store) == set()
    assert reevaluated(store, rules, tmp_path) == []


def test_a_cleared_manager_leaves_no_empty_update_on_the_joined_user(store, rules, tmp_path):
    """The joined user's update row was kept for its manager reference; the AD delta that clears the manager
    withdraws the reference (staged after the update row) and the update row with it."""
    import_full(store, "ad", [managed_by(1, 2), ad_user(2)])
    import_full(store, "entra", [cloud_twin(1)])
    run_sync(store, rules, connector="ad", mode="full")
    run_sync(store, rules, connector="entra", mode="full")
    assert "cloud-1" in exports(store) and len(reference_exports(store)) == 1

    cleared = ad_user(1)
    cleared.references = {"manager": []}
    import_delta(store, "ad", [cleared])
    run_sync(store, rules, connector="ad", mode="delta")
    assert "cloud-1" not in exports(store) and reference_exports(store) == set()
    assert reevaluated(store, rules, tmp_path) == []


def test_a_user_deprovisioned_alone_is_removed_from_the_joined_groups_holding_it(store, rules, tmp_path):
    """A joined user cloud-filtered in a delta sync: its cloud user's delete is staged and, as a full sync stages it,
    its removal from the joined cloud group holding it (the groups are not evaluated by the delta otherwise)."""
    import_full(store, "ad", [ad_user(1), ad_user(2), ad_group(20, "Staff", members=[1, 2])])
    import_full(
        store,
        "entra",
        [
            cloud_twin(1),
            cloud_twin(2),
            entra_group(
                "cloud-group-20", "Staff", ["cloud-1", "cloud-2"], extension_aadsyncSourceAnchor=immutable_id(guid(20))
            ),
        ],
    )
    run_sync(store, rules, connector="ad", mode="full")
    run_sync(store, rules, connector="entra", mode="full")
    assert exports(store) == {} and reference_exports(store) == set()

    import_delta(store, "ad", [ad_user(1, msExchRecipientTypeDetails=ARBITRATION)])
    run_sync(store, rules, connector="ad", mode="delta")
    assert exports(store)["cloud-1"]["operation"] == "delete"
    assert reference_exports(store) == {("cloud-group-20", "cloud-1", "remove")}
    assert reevaluated(store, rules, tmp_path) == []


def test_a_deleted_cloud_user_is_no_longer_named_by_the_manager_reference_of_its_reports(store, rules, tmp_path):
    """A cloud-only user soft-matched to a cloud-filtered person (joined, never written) is deleted in Entra ID: the
    Entra delta sync disconnects it and the person stays; the manager add of the person's report that named the
    deleted user goes, as a full sync of its report would drop it."""
    import_full(store, "ad", [ad_user(1, msExchRecipientTypeDetails=ARBITRATION), managed_by(2, 1)])
    import_full(store, "entra", [entra_user("soft-1", "user1@corp.example", accountEnabled=True)])
    run_sync(store, rules, connector="ad", mode="full")
    run_sync(store, rules, connector="entra", mode="full")
    ((report, target, operation),) = reference_exports(store)
    assert (target, operation) == ("soft-1", "add")

    import_delta(store, "entra", [deleted("soft-1", "users/soft-1")])
    run_sync(store, rules, connector="entra", mode="delta")
    assert ("entra", "soft-1") not in links(store) and reference_exports(store) == set()
    assert reevaluated(store, rules, tmp_path) == []


def test_an_attribute_changed_back_leaves_no_older_value_in_the_update_kept_for_member_changes(store, rules):
    """The update row of a joined user kept for its manager reference held a department AD changed since and then
    changed back: no attribute is to be written now, and the row keeps the member change alone, not the older value
    (the export would write it). A random world found it: the member change withdrawn later left the older value alone
    in the row, which a full re-evaluation then dropped."""
    import_full(store, "ad", [managed_by(1, 2, department="Sales"), ad_user(2)])
    import_full(store, "entra", [cloud_twin_of_user1("Sales")])
    run_sync(store, rules, connector="ad", mode="full")
    run_sync(store, rules, connector="entra", mode="full")
    assert exports(store)["cloud-1"]["changes"] == {} and len(reference_exports(store)) == 1

    import_delta(store, "ad", [managed_by(1, 2, department="IT")])
    run_sync(store, rules, connector="ad", mode="delta")
    assert exports(store)["cloud-1"]["changes"] == {"department": ["IT"]}

    import_delta(store, "ad", [managed_by(1, 2, department="Sales")])
    run_sync(store, rules, connector="ad", mode="delta")
    assert exports(store)["cloud-1"]["operation"] == "update" and exports(store)["cloud-1"]["changes"] == {}
    assert len(reference_exports(store)) == 1


# ------------------------------------------------------------------------------------------------ random worlds
ROUNDS = 6


def random_story(seed: int, rules, tmp_path, *, cloud_changes: bool) -> tuple[AdModel, list, list[str]]:
    """Rounds of random AD changes, each imported as a delta and synced by a delta sync of AD (and, with
    ``cloud_changes``, followed by random Entra changes and a delta sync of Entra); the store is left at
    ``tmp_path / "delta.sqlite"``. Returns the AD model, the Entra objects first imported and the story told."""
    rng = random.Random(seed)
    model = AdModel(rng, users=rng.randint(10, 20), groups=rng.randint(3, 5))
    cloud = cloud_twins(model, rng)
    live = {obj.anchor: obj for obj in cloud}
    story: list[str] = []
    with Store.open(f"sqlite:///{tmp_path / 'delta.sqlite'}", instance="test") as store:
        import_full(store, "ad", model.full())
        import_full(store, "entra", cloud)
        run_sync(store, rules, connector="ad", mode="full")
        run_sync(store, rules, connector="entra", mode="full")
        for round_number in range(ROUNDS):
            changes = model.random_round(rng.randint(2, 6))
            story += [f"{round_number}: {kind} {[o.anchor[-4:] for o in objs]}" for kind, objs in changes]
            import_delta(store, "ad", [obj for _kind, objs in changes for obj in objs])
            assert run_sync(store, rules, connector="ad", mode="delta").mode == "delta"
            if cloud_changes:
                edits = cloud_round(rng, live, model)
                story += [f"{round_number}: entra {'delete' if o.deleted else 'change'} {o.anchor}" for o in edits]
                import_delta(store, "entra", edits)
                assert run_sync(store, rules, connector="entra", mode="delta").mode == "delta"
    return model, cloud, story


def full_syncs_change_nothing(rules, tmp_path, story: list[str]) -> str:
    """A full re-evaluation of AD on a copy of the delta-synced store, and a memoized full sync on another copy, find
    nothing different to do; returns the URL of the re-evaluated copy."""
    with Store.open(f"sqlite:///{tmp_path / 'delta.sqlite'}", instance="test") as store:
        delta = snapshot(store)
        reevaluated_url = copy_store(store, str(tmp_path / "reevaluated.sqlite"))
        memoized_url = copy_store(store, str(tmp_path / "memoized.sqlite"))
    with Store.open(reevaluated_url, instance="test") as copy:
        result = run_sync(copy, rules, connector="ad", mode="full", reevaluate=True)
        full = snapshot(copy)
    assert differences(delta, full) == [], (story, result.counters)
    with Store.open(memoized_url, instance="test") as copy:
        run_sync(copy, rules, connector="ad", mode="full")
        assert differences(snapshot(copy), full) == [], story
    return reevaluated_url


@pytest.mark.parametrize("seed", [2, 11, 14, 26])
def test_delta_syncs_of_random_ad_changes_match_a_full_reevaluation(seed, rules, tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    model, cloud, story = random_story(seed, rules, tmp_path, cloud_changes=False)
    reevaluated_url = full_syncs_change_nothing(rules, tmp_path, story)

    # A store built from scratch out of the final AD state: the same metaverse (ids and provisional anchors aside).
    # Both stores get a full sync of Entra first: an AD sync that joins a cloud object again (one back in scope before
    # its delete was exported) links it, and what the cloud object contributes (cloudAnchor) flows at Entra's next sync
    # that evaluates it.
    changed = [model.source_anchor(n) for n in model.anchor_changed if n in model.users]
    with Store.open(f"sqlite:///{tmp_path / 'scratch.sqlite'}", instance="test") as scratch:
        import_full(scratch, "ad", model.full())
        import_full(scratch, "entra", cloud)
        run_sync(scratch, rules, connector="ad", mode="full")
        run_sync(scratch, rules, connector="entra", mode="full")
        built = by_anchor(scratch, changed)
    with Store.open(reevaluated_url, instance="test") as copy:
        run_sync(copy, rules, connector="entra", mode="full")
        assert differences(by_anchor(copy, changed), built) == [], story


@pytest.mark.parametrize("seed", [15, 26])
def test_delta_syncs_of_random_ad_and_entra_changes_match_a_full_reevaluation_of_ad(seed, rules, tmp_path, caplog):
    """Entra changes (and delta syncs of Entra) between the AD rounds. Only AD's full re-evaluation is compared: a delta
    sync of Entra leaves its unchanged disconnectors alone (a cloud user holding the anchor of a person AD's sync
    provisions), which its next full sync joins, by design."""
    caplog.set_level(logging.ERROR)
    _model, _cloud, story = random_story(seed, rules, tmp_path, cloud_changes=True)
    full_syncs_change_nothing(rules, tmp_path, story)
