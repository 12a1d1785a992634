"""Mail-enabled security groups and distribution groups are read-only through Graph ("Mail-enabled and distribution
groups are read-only through Microsoft Graph"; every write is refused "Cannot Update a mail-enabled security groups
and or distribution list."). An AD group soft matched to one by its SMTP address is joined, never created twice, and
the export sends it nothing: its update (the anchor stamp, names) and its member changes are settled unsent (state
read-only) and counted in one run notice, staged again only when they change. After a lost store it is matched on
its mail again (it carries no stamp). The fake Graph refuses such writes as Graph does."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.entra.planning import MAIL_GROUP_WRITE, UNSUPPORTED
from airflow_provider_aadsync.engine.connectors.entra.schema import MEMBERS
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.runs.preflight import (
    CREATE,
    READ_ONLY_IN_GRAPH,
    SOFT,
    counts,
    group_preflight,
    render_text,
)
from airflow_provider_aadsync.engine.runs.source import SourceObject
from airflow_provider_aadsync.engine.store import Store, pending_export_reference
from airflow_provider_aadsync.engine.sync import run_sync
from tests.support.fakes import FakeGraphWriter
from tests.support.stores import fresh_store
from tests.support.world import ad_group, ad_user, exports, import_full, links

SETTINGS = ExportSettings(resend_settle_seconds=0)
MAIL = "payroll@corp.example"


@pytest.fixture
def graph() -> FakeGraphWriter:
    return FakeGraphWriter()


def cloud_objects(graph: FakeGraphWriter) -> list[SourceObject]:
    """The fake tenant's users and groups (with their members) as a full Entra import puts them in the connector
    space; the anchor stamp is named as the writer sent it (no app: names unchanged)."""
    found = []
    for object_id, props in graph.objects.items():
        kind = props["@kind"]
        attrs = {name: value if isinstance(value, list) else [value] for name, value in props.items()
                 if not name.startswith("@") and name != "createdDateTime" and value is not None}  # fmt: skip
        references = {MEMBERS: [(m, None) for m in sorted(graph.members[object_id])]} if kind == "group" else {}
        found.append(SourceObject(anchor=object_id, dn=f"{kind}s/{object_id}", object_type=kind, attrs=attrs,
                                  references=references))  # fmt: skip
    return found


def cycle(store: Store, rules, graph: FakeGraphWriter, ad: list[SourceObject]):
    import_full(store, "ad", ad)
    import_full(store, "entra", cloud_objects(graph))
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    assert run_sync(store, rules, connector="entra", mode="full").result == "success"
    graph.calls.clear()
    return run_entra_export(store, graph, settings=SETTINGS, lock_holder="test-task")


def reference_states(store: Store, anchor: str) -> set[str]:
    query = sa.select(pending_export_reference.c.state).where(pending_export_reference.c.anchor == anchor)
    with store.engine.connect() as connection:
        return set(connection.execute(query).scalars())


def test_a_soft_matched_mail_enabled_group_is_joined_and_never_written(store, rules, graph, tmp_path):
    payroll = graph.add_group("Payroll (Exchange Online)", mailNickname="payroll", mail=MAIL, mailEnabled=True,
                              securityEnabled=True, groupTypes=[])  # fmt: skip
    team = graph.add_group("Team", mailNickname="team", mail="team@corp.example", mailEnabled=True,
                           securityEnabled=False, groupTypes=["Unified"])  # fmt: skip
    payroll_ad = ad_group(302, "Payroll", [1], mail=MAIL, description="Payroll staff")
    ad = [ad_user(1), payroll_ad, ad_group(303, "Staff", [1])]

    result = cycle(store, rules, graph, ad)
    assert result.result == "success" and result.counters["errors"] == 0, result
    assert ("entra", payroll) in links(store, "entra")  # joined by its SMTP address
    assert sorted(g["displayName"] for g in graph.groups().values()) == ["Payroll (Exchange Online)", "Staff", "Team"]
    assert graph.groups()[payroll]["displayName"] == "Payroll (Exchange Online)" and graph.members[payroll] == set()
    touched = [r.url for r in graph.requests_sent() if payroll in r.url or payroll in str(r.body)]
    assert touched == []  # not one write Graph would refuse
    (notice,) = store.run_notices(result.run_id)
    assert (notice["code"], notice["subject"], notice["count"]) == (UNSUPPORTED, MAIL_GROUP_WRITE, 1)
    assert "manage them in Exchange Online" in notice["message"]
    assert notice["examples"][0]["dn"].startswith("CN=Payroll,")  # named by its AD DN
    assert exports(store)[payroll]["state"] == "read-only" and reference_states(store, payroll) == {"read-only"}
    assert result.counters["read_only_groups"] == 1 and result.counters["read_only_group_member_changes"] == 1
    staff = next(i for i, g in graph.groups().items() if g["displayName"] == "Staff")
    assert len(graph.members[staff]) == 1 and team not in str(graph.requests_sent())

    # Settled: the next export sends nothing and says nothing; a sync staging the same change leaves it settled.
    again = cycle(store, rules, graph, ad)
    assert again.counters["errors"] == 0 and store.run_notices(again.run_id) == []
    assert graph.requests_sent() == [] and exports(store)[payroll]["state"] == "read-only"

    # A change in AD is staged again: counted once more, still not written.
    ad[1] = ad_group(302, "Payroll", [1], mail=MAIL, description="Payroll and pensions")
    changed = cycle(store, rules, graph, ad)
    assert [(n["subject"], n["count"]) for n in store.run_notices(changed.run_id)] == [(MAIL_GROUP_WRITE, 1)]
    assert graph.requests_sent() == [] and exports(store)[payroll]["state"] == "read-only"
    assert changed.counters["errors"] == 0

    # The store is lost: the group carries no stamp, and is matched on its mail again (no duplicate).
    (tmp_path / "rebuilt").mkdir()
    with fresh_store(tmp_path / "rebuilt") as rebuilt:
        import_full(rebuilt, "ad", ad)
        import_full(rebuilt, "entra", cloud_objects(graph))
        run_sync(rebuilt, rules, connector="ad", mode="full")
        (row,) = [r for r in group_preflight(rebuilt) if r.ad_dn.startswith("CN=Payroll")]
        assert (row.outcome, row.matched_on, row.cloud_id, row.note) == (SOFT, "mail", payroll, READ_ONLY_IN_GRAPH)
        assert "| soft match (mail), read-only in Graph |" in render_text([row])
        groups_before = len(graph.groups())
        result = cycle(rebuilt, rules, graph, ad)
        assert result.counters["errors"] == 0 and ("entra", payroll) in links(rebuilt, "entra")
        assert len(graph.groups()) == groups_before  # Staff is joined by its stamp, Payroll by its mail
        assert [(n["subject"], n["count"]) for n in rebuilt.run_notices(result.run_id)] == [(MAIL_GROUP_WRITE, 1)]


def test_the_preflight_of_a_rebuilt_store_names_the_read_only_group_an_ad_group_without_mail_would_duplicate(
    store, rules, graph, tmp_path
):
    """The one way a lost store creates a group twice: an AD group adopted on its mail by a mail-enabled group (which
    Graph cannot stamp) loses its mail; the rebuilt store cannot find the cloud group and plans a create. The preflight
    says so, naming the cloud group and what to do; another create gets no such note."""
    payroll = graph.add_group("Payroll (Exchange Online)", mailNickname="payroll", mail=MAIL, mailEnabled=True,
                              securityEnabled=True, groupTypes=[])  # fmt: skip
    ad = [ad_user(1), ad_group(302, "Payroll", [1], mail=MAIL, mailNickname="payroll"), ad_group(303, "Staff", [1])]
    assert cycle(store, rules, graph, ad).counters["errors"] == 0 and ("entra", payroll) in links(store, "entra")

    ad[1] = ad_group(302, "Payroll", [1], mailNickname="payroll")  # its mail cleared in AD
    (tmp_path / "rebuilt").mkdir()
    with fresh_store(tmp_path / "rebuilt") as rebuilt:
        import_full(rebuilt, "ad", ad)
        import_full(rebuilt, "entra", cloud_objects(graph))
        run_sync(rebuilt, rules, connector="ad", mode="full")
        rows = {r.ad_dn.split(",")[0]: r for r in group_preflight(rebuilt)}
    row = rows["CN=Payroll"]
    assert row.outcome == CREATE and row.cloud_id == "" and payroll in row.note and "mailNickname" in row.note
    assert "give the AD group its mail back before the first export" in render_text([row])
    assert rows["CN=Staff"].note == ""  # joined by its stamp: nothing to say
    assert counts(rows.values())["group create beside an unmatched read-only group of its name"] == 1


def test_a_read_only_group_whose_ad_group_leaves_scope_is_not_deleted(store, rules, graph):
    """Graph cannot delete a mail-enabled security group either (read-only through Graph): the delete sync stages
    when its AD group goes is settled unsent and counted in the run's notice, and the group stays in Exchange."""
    payroll = graph.add_group("Payroll (Exchange Online)", mailNickname="payroll", mail=MAIL, mailEnabled=True,
                              securityEnabled=True, groupTypes=[])  # fmt: skip
    ad = [ad_user(1), ad_group(302, "Payroll", [1], mail=MAIL)]
    assert cycle(store, rules, graph, ad).counters["errors"] == 0
    assert ("entra", payroll) in links(store, "entra")

    gone = cycle(store, rules, graph, ad[:1])
    # Soft-matched by mail and never stamped (Graph cannot write it): disconnected, no delete staged.
    assert payroll not in exports(store) and ("entra", payroll) not in links(store, "entra")
    assert gone.counters["errors"] == 0 and payroll in graph.groups()
    assert [r for r in graph.requests_sent() if payroll in r.url] == []
