"""Adopting a populated tenant as an admin would (issue 15), driven through the shipped DAGs (Airflow 3.3 runs them
with ``airflow dags test``) against the real DC and the Graph emulator.

The tenant already holds cloud users (the same UPN, the same mail, the ImmutableId Entra Connect wrote, one still
held by another engine, one holding another ImmutableId, one cloud-only) and groups (a mail-enabled group with the
AD group's SMTP address, a security group a lost store stamped with the anchor extension, a Microsoft 365 group that
group writeback copies to AD). Then, each a DAG run:

1. ``aadsync_full`` with the ``preflight`` param: the report's preflight rows say how each AD object meets the
   tenant, and nothing is written to Entra ID (no request of any write method) or AD;
2. ``aadsync_full``: nothing is created twice, the pre-existing object ids are kept, the conflicts are per-object
   errors and those cloud users are left untouched;
3. the store file is deleted (a lost store, or a second instance) and ``aadsync_full`` runs again: no create and no
   delete in Entra ID or in AD (group writeback on), every object joined back;
4. a user's mS-DS-ConsistencyGuid is changed in AD and ``aadsync_cycle`` runs: the per-object error "sourceAnchor
   attribute has changed", the cloud user's onPremisesImmutableId unchanged.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path

import ldap3
import pytest
import sqlalchemy as sa

from aadsync_devkit.world.airflow_runs import LocalAirflow
from aadsync_devkit.world.samba import SambaDC
from aadsync_devkit.world.seed import MAIL_DOMAIN, dev_writeback_variables, ensure_writeback_ou
from airflow_provider_aadsync.engine.connectors.entra.extensions import register_extensions
from airflow_provider_aadsync.engine.store import cs_object, link
from airflow_provider_aadsync.operators.report import report_location
from tests.support.adoption import (
    ad_anchors,
    ad_groups,
    ad_objects,
    ad_users,
    anchor_of,
    cloud_group,
    cloud_user,
    seed_tenant,
)
from tests.support.airflow_world import airflow_world, main_store, module_tenant, succeeded
from tests.support.servers import entra_hook_for
from tests.support.states import ad_state, graph_writes

pytestmark = pytest.mark.integration

USERS, GROUPS = 30, 4
WRITEBACK_OU = "OU=Writeback,OU=AADSync"


@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    dc = start_dc(users=USERS, groups=GROUPS)
    conn = dc.connect()
    try:
        ensure_writeback_ou(conn, dc.base_dn)  # group writeback on: the cycles run the AD export too
        # the first group gets an SMTP address (the seeded groups have none): mail-enabled, soft matched on it
        first_group = min(ad_groups(dc))
        smtp = {"mail": [(ldap3.MODIFY_REPLACE, [f"{first_group.lower()}@{MAIL_DOMAIN}"])]}
        assert conn.modify(ad_groups(dc)[first_group]["dn"], smtp), conn.result
    finally:
        conn.unbind()
    return dc


tenant = module_tenant("adopt")


@pytest.fixture(scope="module")
def airflow(dc, graph_server, tenant, tmp_path_factory) -> LocalAirflow:
    world = airflow_world(
        tmp_path_factory.mktemp("airflow-adopt"),
        dc,
        graph_server,
        tenant,
        variables={"aadsync_instance": "main", "aadsync_retries": "0", **dev_writeback_variables(dc.base_dn)},
    )
    world.migrate()
    return world


@pytest.fixture(scope="module")
def populated(dc, graph_server, tenant) -> dict:
    """The tenant as an admin finds it before the cutover; returns the AD side and the seeded cloud object ids."""
    hook = entra_hook_for(graph_server, tenant)
    users = dict(sorted(ad_users(dc).items()))
    (upn, mail, hard, hard2, held, other, *_rest) = users
    groups = dict(sorted(ad_groups(dc).items()))
    smtp_group, stamped_group, *_others = groups
    local = {name: name.split("@")[0] for name in users}
    seeded = seed_tenant(graph_server, tenant, [
        cloud_user("upn", upn),  # soft match: userPrincipalName
        cloud_user("mail", f"{local[mail]}.cloud@{MAIL_DOMAIN}", mail=users[mail]["mail"]),  # soft match: mail
        cloud_user("hard", f"{local[hard]}.old@{MAIL_DOMAIN}", onPremisesImmutableId=users[hard]["anchor"]),
        cloud_user("hard2", hard2, onPremisesImmutableId=users[hard2]["anchor"]),  # Entra Connect's, same UPN
        cloud_user("held", held, onPremisesImmutableId=users[held]["anchor"], onPremisesSyncEnabled=True),
        cloud_user("other", other, onPremisesImmutableId=anchor_elsewhere()),
        cloud_user("only", f"cloud.only@{MAIL_DOMAIN}"),
    ])  # fmt: skip
    ids = {user["displayName"].removeprefix("Cloud "): user["id"] for user in seeded}
    # a lost store stamped its group with the anchor extension: the app has the definition already
    anchor_extension = f"extension_{hook.application_id.replace('-', '')}_aadsyncSourceAnchor"
    register_extensions(hook, hook.application_id, {"aadsyncSourceAnchor": {"User", "Group"}})
    seeded = seed_tenant(graph_server, tenant, [
        cloud_group("Mail group made by hand", mailEnabled=True, mail=groups[smtp_group]["mail"].upper(),
                    proxyAddresses=[f"SMTP:{groups[smtp_group]['mail']}"]),
        cloud_group("Made by the lost store", **{anchor_extension: groups[stamped_group]["anchor"]}),
        cloud_group("Team Adopt", mailEnabled=True, securityEnabled=False, groupTypes=["Unified"],
                    mail=f"teamadopt@{MAIL_DOMAIN}", members=(ids["hard"],)),
    ])  # fmt: skip
    ids |= {"smtp group": seeded[0]["id"], "stamped group": seeded[1]["id"], "team": seeded[2]["id"]}
    return {
        "hook": hook,
        "users": users,
        "groups": groups,
        "ids": ids,
        "roles": {"upn": upn, "mail": mail, "hard": hard, "hard2": hard2, "held": held, "other": other},
        "group_roles": {"smtp group": smtp_group, "stamped group": stamped_group},
        "anchor_extension": anchor_extension,
    }


def anchor_elsewhere() -> str:
    """An ImmutableId of no object of this directory (another forest's)."""
    return anchor_of(uuid.uuid4().bytes)


def cloud_users(hook) -> dict[str, dict]:
    select = "id,userPrincipalName,mail,onPremisesImmutableId,onPremisesSyncEnabled,displayName"
    return {u["id"]: u for page in hook.paginate("/users", params={"$select": select, "$top": "999"})
            for u in page["value"]}  # fmt: skip


def cloud_groups(hook, extension: str) -> dict[str, dict]:
    select = f"id,displayName,mail,groupTypes,{extension}"
    return {g["id"]: g for page in hook.paginate("/groups", params={"$select": select, "$top": "999"})
            for g in page["value"]}  # fmt: skip


def creates_and_deletes(writes: Counter[str]) -> dict[str, int]:
    """The Graph requests that create or delete a directory object (or a membership: a rebuilt store rewrites none)."""
    return {
        key: n
        for key, n in writes.items()
        if key.startswith("DELETE ") or (key.startswith("POST ") and not key.endswith("/$batch"))
    }


def unjoined(airflow, dc) -> dict[str, set[str]]:
    """Per connector, the anchors of the users and groups in the store (AD: under OU=AADSync) joined to nothing."""
    root = f",ou=aadsync,{dc.base_dn}".lower()
    query = (
        sa.select(cs_object.c.connector, cs_object.c.anchor, cs_object.c.dn)
        .outerjoin(link, sa.and_(link.c.connector == cs_object.c.connector, link.c.anchor == cs_object.c.anchor))
        .where(cs_object.c.object_type.in_(["user", "group"]), cs_object.c.is_deleted.is_(False))
        .where(link.c.mv_id.is_(None))
    )
    found: dict[str, set[str]] = {"ad": set(), "entra": set()}
    with main_store(airflow) as store, store.engine.connect() as connection:
        for connector, anchor, dn in connection.execute(query):
            if connector != "ad" or dn.lower().endswith(root):
                found.setdefault(connector, set()).add(anchor)
    return found


def expected_preflight(populated) -> dict[str, tuple[str, str, str]]:
    """AD object (a user's UPN, a group's DN) → (outcome, matched on, cloud id) the preflight must report."""
    ids, roles, groups = populated["ids"], populated["roles"], populated["groups"]
    rows = {upn: ("create", "", "") for upn in populated["users"]}
    rows |= {
        roles["upn"]: ("soft match", "userPrincipalName", ids["upn"]),
        roles["mail"]: ("soft match", "mail", ids["mail"]),
        roles["hard"]: ("hard match", "onPremisesImmutableId", ids["hard"]),
        roles["hard2"]: ("hard match", "onPremisesImmutableId", ids["hard2"]),
        roles["held"]: ("conflict", "onPremisesImmutableId", ids["held"]),
        roles["other"]: ("conflict", "userPrincipalName", ids["other"]),
    }
    rows |= {group["dn"].lower(): ("create", "", "") for group in groups.values()}
    smtp, stamped = (groups[populated["group_roles"][role]]["dn"].lower() for role in ("smtp group", "stamped group"))
    rows[smtp] = ("soft match", "mail", ids["smtp group"])
    rows[stamped] = ("hard match", "extension_aadsyncSourceAnchor", ids["stamped group"])
    return rows


def test_a_populated_tenant_is_adopted_through_the_dags_and_a_rebuilt_store_changes_nothing(
    airflow, dc, graph_server, populated
):
    hook, ids, roles, users = populated["hook"], populated["ids"], populated["roles"], populated["users"]
    before = cloud_users(hook)

    # 1. the cutover preflight: a staging run of aadsync_full; its report says how each AD object meets the tenant
    writes, ad_before = graph_writes(graph_server), ad_objects(dc)
    run = succeeded(airflow.dags_test("aadsync_full", {"preflight": True}), dc)
    assert graph_writes(graph_server) == writes  # no request of any write method, /applications included
    assert ad_objects(dc) == ad_before  # no LDAP add or delete, and no ConsistencyGuid written yet:
    assert {guid for _, guid in ad_anchors(dc, "OU=Users,OU=AADSync").values()} == {None}
    report = airflow.report(run)
    assert "## Cutover preflight (before any write)" in report, report
    for line in ("- hard match: 2", "- soft match: 2", "- conflict: 2", f"- create: {USERS - 6}",
                 f"- group create: {GROUPS - 2}", "- group hard match: 1", "- group soft match: 1"):  # fmt: skip
        assert line in report, report
    found = json.loads(report_location(run.dag_id, run.run_id, airflow.report_dir(), ".preflight.json").read_text())
    rows = {row["user_principal_name"] if row["object_type"] == "user" else row["ad_dn"].lower(): row
            for row in found["rows"]}  # fmt: skip
    assert {key: (row["outcome"], row["matched_on"], row["cloud_id"]) for key, row in rows.items()} == (
        expected_preflight(populated)
    )
    assert "another engine" in rows[roles["held"]]["conflict"]
    assert "another ImmutableId" in rows[roles["other"]]["conflict"]

    # 2. the full cycle: matched objects joined and updated, nothing created twice, the conflicts per object
    run = succeeded(airflow.dags_test("aadsync_full"), dc)
    after = cloud_users(hook)
    assert set(before) <= set(after) and len(after) == len(before) + USERS - 6  # the others were created
    for role in ("upn", "mail", "hard", "hard2"):  # the pre-existing object ids, now holding the AD user's anchor
        assert (after[ids[role]]["userPrincipalName"], after[ids[role]]["onPremisesImmutableId"]) == (
            roles[role],
            users[roles[role]]["anchor"],
        )
    for role in ("held", "other", "only"):  # refused, or cloud-only: untouched
        assert after[ids[role]] == before[ids[role]]
    holding = Counter(user["onPremisesImmutableId"] for user in after.values())
    assert {upn: holding[user["anchor"]] for upn, user in users.items()} == {  # no AD user twice in the tenant
        upn: 0 if upn == roles["other"] else 1 for upn in users
    }
    groups = cloud_groups(hook, populated["anchor_extension"])
    assert len(groups) == 3 + GROUPS - 2  # two adopted, two created, the Microsoft 365 group
    stamps = {group.get(populated["anchor_extension"]) for group in groups.values()} - {None}
    smtp_anchor = populated["groups"][populated["group_roles"]["smtp group"]]["anchor"]
    assert stamps == {group["anchor"] for group in populated["groups"].values()} - {smtp_anchor}
    # the mail-enabled security group is joined but read-only in Graph: no stamp, no write (a rebuilt store matches
    # it by its SMTP address again); the run's notice counts it
    assert groups[ids["smtp group"]].get(populated["anchor_extension"]) is None
    wanted = populated["groups"][populated["group_roles"]["stamped group"]]["anchor"]
    assert groups[ids["stamped group"]][populated["anchor_extension"]] == wanted
    with main_store(airflow) as store:
        runs = {(r["profile"], r["connector"]): r for r in store.list_runs(limit=6)}
        errors = {e["anchor"]: e["code"] for e in store.run_errors(runs[("full-sync", "entra")]["id"])}
    assert errors == {ids["held"]: "held-by-other-engine", ids["other"]: "anchor-mismatch"}
    report = airflow.report(run)
    assert "held-by-other-engine" in report and "anchor-mismatch" in report, report
    written_back = ad_groups(dc, WRITEBACK_OU)
    assert list(written_back) == [f"Group_{ids['team']}"]  # group writeback is on

    # 3. the store is lost: a full cycle from scratch creates and deletes nothing, and joins everything back
    store_files = list((Path(airflow.extra_env["AADSYNC_HOME"]) / "store").glob("main.sqlite*"))
    assert store_files
    for path in store_files:
        path.unlink()
    writes, ad_before, ad_shape = graph_writes(graph_server), ad_objects(dc), ad_state(dc)
    run = succeeded(airflow.dags_test("aadsync_full"), dc)
    written = graph_writes(graph_server) - writes
    assert creates_and_deletes(written) == {}, written  # (measured: no write at all)
    assert ad_objects(dc) == ad_before and ad_state(dc) == ad_shape  # no LDAP add or delete, members the same
    assert cloud_users(hook).keys() == after.keys()
    assert cloud_groups(hook, populated["anchor_extension"]).keys() == groups.keys()
    assert unjoined(airflow, dc) == {"ad": set(), "entra": {ids["held"], ids["other"], ids["only"]}}

    # 4. an admin changes a user's mS-DS-ConsistencyGuid: the anchor is immutable once exported
    changed = roles["upn"]
    conn = dc.connect()
    try:
        replace = {"mS-DS-ConsistencyGuid": [(ldap3.MODIFY_REPLACE, [uuid.uuid4().bytes_le])]}
        assert conn.modify(users[changed]["dn"], replace), conn.result
    finally:
        conn.unbind()
    run = succeeded(airflow.dags_test("aadsync_cycle"), dc)
    with main_store(airflow) as store:
        runs = {(r["profile"], r["connector"]): r for r in store.list_runs(limit=6)}
        (error,) = store.run_errors(runs[("delta-sync", "ad")]["id"])
    assert error["code"] == "source-anchor-changed" and "sourceAnchor attribute has changed" in error["message"]
    assert error["anchor"] == ids["upn"], error  # on the cloud user it stops exporting to
    assert "restore the AD object's previous anchor" in error["message"]  # how to resolve it
    assert "sourceAnchor attribute has changed" in airflow.report(run)
    assert cloud_users(hook)[ids["upn"]]["onPremisesImmutableId"] == users[changed]["anchor"]
