"""Groups meet an existing tenant as users do (issue 15): a cloud group holding the AD group's sourceAnchor in the
sync app's directory extension is joined (hard match), a mail-enabled one with the same mail is joined when it has
no anchor (soft match, off with BlockSoftMatch); another anchor, or another engine's group, is a per-object error.
Joined groups keep their object id and get the anchor stamped; nothing is created twice. The preflight says the
same before any write."""

from __future__ import annotations

import sqlalchemy as sa

from airflow_provider_aadsync.engine.runs.preflight import CONFLICT, CREATE, HARD, SOFT, group_preflight
from airflow_provider_aadsync.engine.store import Store, run_error
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.world import ad_group, entra_group, exports, guid, immutable_id, import_full, links, mv_by

ANCHOR = "extension_aadsyncSourceAnchor"


def seed(store: Store) -> None:
    import_full(
        store,
        "ad",
        [
            ad_group(20, "Staff"),  # security group: hard match on the anchor extension only
            ad_group(21, "Sales", mail="sales@corp.example", security=False),  # distribution: soft match on mail
            ad_group(22, "Ops", mail="ops@corp.example"),  # a cloud group with this mail holds another anchor
            ad_group(23, "Legal", mail="legal@corp.example"),  # another engine's group
            ad_group(24, "New"),  # nothing in the tenant: created
        ],
    )
    import_full(
        store,
        "entra",
        [
            entra_group("cloud-staff", "Staff", **{ANCHOR: immutable_id(guid(20))}),
            entra_group("cloud-sales", "Sales", mail="SALES@corp.example", mailEnabled=True),
            entra_group("cloud-ops", "Ops", mail="ops@corp.example", **{ANCHOR: immutable_id(guid(999))}),
            entra_group("cloud-legal", "Legal", mail="legal@corp.example", onPremisesSyncEnabled=True),
        ],
    )


def errors(store: Store) -> dict[str, str]:
    with store.engine.connect() as connection:
        return dict(connection.execute(sa.select(run_error.c.anchor, run_error.c.code)).all())


def test_groups_are_hard_matched_on_the_anchor_extension_then_soft_matched_on_mail(store):
    seed(store)
    rules = load_sync_rules()
    run_sync(store, rules, connector="ad", mode="full")
    preflight = {row.ad_dn.split(",")[0]: row for row in group_preflight(store)}
    assert (preflight["CN=Staff"].outcome, preflight["CN=Staff"].cloud_id) == (HARD, "cloud-staff")
    assert (preflight["CN=Sales"].outcome, preflight["CN=Sales"].matched_on) == (SOFT, "mail")
    assert preflight["CN=Ops"].outcome == CONFLICT and "another anchor" in preflight["CN=Ops"].conflict
    assert preflight["CN=Legal"].outcome == CONFLICT and "another engine" in preflight["CN=Legal"].conflict
    assert preflight["CN=New"].outcome == CREATE

    run_sync(store, rules, connector="entra", mode="full")
    staff, _ = mv_by(store, "accountName", "Staff")
    sales, _ = mv_by(store, "accountName", "Sales")
    assert links(store, "entra")[("entra", "cloud-staff")] == (staff, "join")
    assert links(store, "entra")[("entra", "cloud-sales")] == (sales, "join")
    staged = exports(store)
    # the joined groups keep their ids; the soft-matched one gets its anchor stamped, the hard-matched one has it
    assert staged["cloud-sales"]["operation"] == "update"
    assert staged["cloud-sales"]["changes"][ANCHOR] == [immutable_id(guid(21))]
    assert ANCHOR not in staged.get("cloud-staff", {}).get("changes", {})
    adds = [e for e in staged.values() if e["operation"] == "add" and e["state"] != "refused"]
    assert sorted(e["changes"]["displayName"][0] for e in adds) == ["New"]  # Ops and Legal: held refused, no create
    assert adds[0]["changes"][ANCHOR] == [immutable_id(guid(24))]
    found = errors(store)
    assert found["cloud-ops"] == "anchor-mismatch" and found["cloud-legal"] == "held-by-other-engine"


def test_block_soft_match_leaves_mail_out_for_groups_too(store):
    seed(store)
    rules = load_sync_rules(block_soft_match=True)
    run_sync(store, rules, connector="ad", mode="full")
    assert {row.ad_dn.split(",")[0]: row.outcome for row in group_preflight(store, block_soft_match=True)} == {
        "CN=Staff": HARD, "CN=Sales": CREATE, "CN=Ops": CREATE, "CN=Legal": CREATE, "CN=New": CREATE,
    }  # fmt: skip
    run_sync(store, rules, connector="entra", mode="full")
    assert ("entra", "cloud-staff") in links(store, "entra")
    assert ("entra", "cloud-sales") not in links(store, "entra")


def test_a_group_is_soft_matched_on_its_primary_smtp_proxy_address(store):
    """A mail-enabled group's primary SMTP address is its SMTP: proxy address, not its mail, as for users."""
    proxies = ["smtp:team@corp.example", "SMTP:team.primary@corp.example"]
    import_full(store, "ad", [ad_group(30, "Team", mail="team@corp.example", security=False, proxyAddresses=proxies)])
    import_full(
        store,
        "entra",
        [
            entra_group("cloud-other", "Other", mail="team@corp.example", mailEnabled=True),
            entra_group("cloud-team", "Team", mail="Team.Primary@corp.example", mailEnabled=True),
        ],
    )
    rules = load_sync_rules()
    run_sync(store, rules, connector="ad", mode="full")
    (row,) = group_preflight(store)
    assert (row.outcome, row.cloud_id) == (SOFT, "cloud-team")
    run_sync(store, rules, connector="entra", mode="full")
    team, _ = mv_by(store, "accountName", "Team")
    assert links(store, "entra")[("entra", "cloud-team")] == (team, "join")
    assert ("entra", "cloud-other") not in links(store, "entra")
