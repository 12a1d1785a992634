"""A group that grows over the member limit is a per-object error and is not synced: none of its member changes may
be staged. When it grows by members that are themselves new (provisioned in the same pass) the outbound's
"groups holding a newly provisioned member" step staged the group's member adds anyway, past the limit."""

from __future__ import annotations

import sqlalchemy as sa

from airflow_provider_aadsync.engine.store import run_error
from airflow_provider_aadsync.engine.sync import run_sync, settings
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.world import (
    ad_group,
    ad_user,
    confirm_group,
    export_for,
    import_delta,
    mv_by,
    reference_exports,
    world_with_cloud_twins,
)


def test_group_grown_over_limit_by_new_users_stages_no_member_adds(store, monkeypatch):
    monkeypatch.setattr(settings, "V2_MEMBER_LIMIT", 3)
    world_with_cloud_twins(store, 3)
    rules = load_sync_rules()
    import_delta(store, "ad", [ad_group(20, "Staff", members=[1, 2, 3])])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    group = export_for(store, mv_by(store, "accountName", "Staff")[0])
    confirm_group(store, group["anchor"], ["cloud-1", "cloud-2", "cloud-3"])
    assert reference_exports(store) == set()

    # two new users join the group: 5 members, over the limit of 3
    import_delta(store, "ad", [ad_user(4), ad_user(5), ad_group(20, "Staff", members=[1, 2, 3, 4, 5])])
    result = run_sync(store, rules, connector="ad", mode="delta")
    with store.engine.connect() as connection:
        query = sa.select(run_error.c.message).where(run_error.c.run_id == result.run_id)
        codes = list(connection.execute(query).scalars())
    assert any("Maximum member count exceeded" in message for message in codes), codes
    staged = {row for row in reference_exports(store) if row[0] == group["anchor"]}
    assert staged == set(), f"member changes staged for a group over the limit: {staged}"

    # back under the limit: sync resumes with exactly the difference, no duplicates
    import_delta(store, "ad", [ad_group(20, "Staff", members=[1, 2, 4])])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    staged = {(target, op) for anchor, target, op in reference_exports(store) if anchor == group["anchor"]}
    assert {op for _t, op in staged} == {"add", "remove"} and len(staged) == 2 and ("cloud-3", "remove") in staged


def test_a_first_full_sync_evaluates_each_object_once_whatever_references_its_new_members(store, monkeypatch):
    """The groups (and managers' reports) holding objects a pass provisions are evaluated again only when the pass
    did not evaluate them. A first full sync evaluates every object: none a second time, also not a user whose
    manager is new (it has no member flow), nor a group the target refuses (it stages no member rows): one error."""
    from airflow_provider_aadsync.engine.sync import outbound
    from tests.support.world import guid, import_full

    evaluated: list[tuple[str, int]] = []
    evaluate = outbound.Outbound._outbound_rules

    def counting(self, connector, rules, mv_ids, *args, **kwargs):
        evaluated.extend((connector, mv_id) for mv_id in mv_ids)
        return evaluate(self, connector, rules, mv_ids, *args, **kwargs)

    monkeypatch.setattr(outbound.Outbound, "_outbound_rules", counting)
    users = [ad_user(n) for n in range(1, 6)]
    for reports in users[1:]:
        reports.references = {"manager": [(guid(1), "CN=user1")]}
    too_long = "Staff" + "x" * 300  # Graph refuses a displayName over 256 characters: not exported, one error
    import_full(store, "ad", [*users, ad_group(20, "Staff", members=[1, 2, 3]), ad_group(21, too_long, members=[4])])
    result = run_sync(store, load_sync_rules(), connector="ad", mode="full")

    assert result.counters["provisioned"] == 6
    entra = [mv_id for connector, mv_id in evaluated if connector == "entra"]
    assert sorted(entra) == sorted(set(entra)) and len(entra) == 7  # five users, two groups: each once
    with store.engine.connect() as connection:
        query = sa.select(run_error.c.code).where(run_error.c.run_id == result.run_id)
        assert list(connection.execute(query).scalars()) == ["invalid-attribute-value"]
