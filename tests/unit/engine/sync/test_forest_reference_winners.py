"""A person in two forests (the optional same-person rule) takes its manager from the forest that wins; when that
forest's user goes (deleted, or out of every joining rule's scope), the other forest's manager takes its place in the
same pass, as a store built from scratch has it. Before, the rows of the forest gone stayed through every delta sync:
only a full sync of the remaining forest rebuilt them (references.follow_reference_winners)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_aadsync.engine.rules import DEFAULT_RULES_DIR
from airflow_provider_aadsync.engine.runs.source import SourceObject
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.contributions import REFERENCE_MARKER
from airflow_provider_aadsync.engine.sync.references import dropped_reference_winners
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.forests import SAME_PERSON
from tests.support.world import (
    BASE,
    ad_user,
    cloud_twin,
    deleted,
    guid,
    import_delta,
    import_full,
    links,
    metaverse,
    mv_members,
    reference_exports,
)

CONNECTORS = ("ad", "ad_fabrikam")
#: The cloud users of alice (one sourceAnchor for both forests' accounts: the ConsistencyGuid of a migrated account)
#: and of both managers, so every reference export names cloud objects both stores share.
CLOUD = [cloud_twin(1, "alice"), cloud_twin(3, "boss_ad"), cloud_twin(13, "boss_fab")]


def managed(n: int, sam: str, manager: int, **attrs: str) -> SourceObject:
    """An AD user ``n`` whose manager is user ``manager``, with alice's mail (the same person in each forest)."""
    user = ad_user(n, sam, mail="alice@example.test", mS_DS_ConsistencyGuid=guid(1), **attrs)
    user.references = {"manager": [(guid(manager), f"CN=boss{manager},OU=Users,{BASE}")]}
    return user


def forests(**alice_ad: str) -> dict[str, list[SourceObject]]:
    """Each forest: a manager and alice, managed by it (``alice_ad``: values of the ``ad`` alice)."""
    return {
        "ad": [ad_user(3, "boss_ad"), managed(1, "alice", 3, **alice_ad)],
        "ad_fabrikam": [ad_user(13, "boss_fab"), managed(11, "alice_f", 13)],
    }


def build(store: Store, rules, world: dict[str, list[SourceObject]]) -> None:
    for connector, objects in world.items():
        import_full(store, connector, objects)
    import_full(store, "entra", CLOUD)
    for connector in (*CONNECTORS, "entra"):
        assert run_sync(store, rules, connector=connector, mode="full").result == "success"


def managers(store: Store) -> set[str]:
    """The accountName of alice's metaverse manager (alice found through whichever of her users remains)."""
    person = next(mv_id for (_c, anchor), (mv_id, _t) in links(store).items() if anchor in (guid(1), guid(11)))
    everyone = metaverse(store)
    return {everyone[target]["accountName"][0] for target in mv_members(store, person, "manager")}


CASES = {
    "the ad user deleted": ("ad", [deleted(guid(1))], {"ad": [ad_user(3, "boss_ad")]}, "boss_fab"),
    "the ad user scoped out": (
        "ad",
        [managed(1, "alice", 3, isCriticalSystemObject="TRUE")],
        {"ad": forests(isCriticalSystemObject="TRUE")["ad"]},
        "boss_fab",
    ),
    "the ad_fabrikam user deleted": (
        "ad_fabrikam",
        [deleted(guid(11))],
        {"ad_fabrikam": [ad_user(13, "boss_fab")]},
        "boss_ad",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_manager_follows_the_forest_that_wins_when_the_winners_user_goes(tmp_path: Path, case: str) -> None:
    changed, delta, scratch_world, boss = CASES[case]
    rules = load_sync_rules([str(DEFAULT_RULES_DIR), str(SAME_PERSON)])
    (tmp_path / "scratch").mkdir()
    with (
        Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}", instance="test") as store,
        Store.open(f"sqlite:///{tmp_path / 'scratch' / 'store.sqlite'}", instance="test") as scratch,
    ):
        build(store, rules, forests())
        assert managers(store) == {"boss_ad"}  # "ad" wins the tie (contribution_order)
        import_delta(store, changed, delta)
        assert run_sync(store, rules, connector=changed, mode="delta").result == "success"
        assert managers(store) == {boss}  # in the pass that dropped the winning contribution
        for connector in (*CONNECTORS, "entra"):
            assert run_sync(store, rules, connector=connector, mode="delta").mode == "delta"

        build(scratch, rules, {**forests(), **scratch_world})
        assert managers(store) == managers(scratch) == {boss}
        assert reference_exports(store) == reference_exports(scratch)
        assert reference_exports(store) == {("cloud-1", "cloud-3" if boss == "boss_ad" else "cloud-13", "add")}


def test_only_a_winning_reference_contribution_dropped_hands_the_rows_on() -> None:
    contributions = {
        "manager": {"ad|r": [100, "Update", REFERENCE_MARKER], "ad_fabrikam|r": [100, "Update", REFERENCE_MARKER]},
        "Member": {"ad|g": [100, "Update", REFERENCE_MARKER]},
        "displayName": {"ad|r": [100, "Update", ["a"]]},
    }
    assert dropped_reference_winners(contributions, {("manager", "ad|r"), ("displayName", "ad|r")}) == {"manager"}
    assert dropped_reference_winners(contributions, {("manager", "ad_fabrikam|r")}) == set()  # it lost: rows stay
    assert dropped_reference_winners(contributions, {("Member", "ad|g")}) == {"member"}
