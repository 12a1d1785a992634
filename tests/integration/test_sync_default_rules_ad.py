"""The shipped rules on a real AD import (Samba AD DC): full sync, a delta cycle, a quiet second run, preview."""

from __future__ import annotations

import base64
import json
import uuid

import ldap3
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from aadsync_devkit.world.samba import SambaDC
from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.engine.store import Store, link, mv_object, mv_reference, pending_export
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.steps import run_ad_import
from tests.support.servers import hook_for

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


def guid_of(admin: ldap3.Connection, base: str, ldap_filter: str) -> str:
    admin.search(base, ldap_filter, attributes=["objectGUID"])
    entries = [entry for entry in admin.response if entry["type"] == "searchResEntry"]
    assert len(entries) == 1, ldap_filter
    return str(uuid.UUID(bytes_le=entries[0]["raw_attributes"]["objectGUID"][0]))


def person_by_anchor(store: Store, anchor: str) -> tuple[int, dict]:
    with store.engine.connect() as connection:
        row = connection.execute(
            sa.select(mv_object.c.id, mv_object.c.attrs)
            .join(link, link.c.mv_id == mv_object.c.id)
            .where(link.c.connector == "ad", link.c.anchor == anchor)
        ).one()
    return row.id, json.loads(row.attrs)


def count(store: Store, query) -> int:
    with store.engine.connect() as connection:
        return connection.execute(query).scalar()


def test_default_rules_on_a_real_directory(dc, admin, store):
    rules = load_sync_rules()
    assert run_ad_import(hook_for(dc), store, mode="full")["result"] == "success"
    result = run_sync(store, rules, connector="ad", mode="full")
    assert result.result == "success", result

    # every seeded user is a person; AD's own critical accounts are not
    seeded_users = f"OU=Users,OU=AADSync,{dc.base_dn}"
    persons = count(store, sa.select(sa.func.count()).where(mv_object.c.object_type == "person"))
    assert persons == USERS
    for name in ("Administrator", "krbtgt", "Guest"):
        anchor = guid_of(admin, dc.base_dn, f"(sAMAccountName={name})")
        assert count(store, sa.select(sa.func.count()).where(link.c.anchor == anchor)) == 0, name

    # ImmutableId = base64 of the raw objectGUID bytes, exported as onPremisesImmutableId
    admin.search(seeded_users, "(employeeID=E0000001)", attributes=["objectGUID", "userPrincipalName", "department"])
    entry = admin.response[0]
    raw_guid = entry["raw_attributes"]["objectGUID"][0]
    anchor = str(uuid.UUID(bytes_le=raw_guid))
    mv_id, attrs = person_by_anchor(store, anchor)
    assert attrs["sourceAnchor"] == [base64.b64encode(raw_guid).decode()]
    assert attrs["userPrincipalName"] == [entry["raw_attributes"]["userPrincipalName"][0].decode()]
    with store.engine.connect() as connection:
        export = connection.execute(
            sa.select(pending_export.c.operation, pending_export.c.changes)
            .join(link, sa.and_(link.c.connector == "entra", link.c.anchor == pending_export.c.anchor))
            .where(link.c.mv_id == mv_id)
        ).one()
    assert export.operation == "add"
    assert json.loads(export.changes)["onPremisesImmutableId"] == [base64.b64encode(raw_guid).decode()]

    # the 1,501-member group: every member resolved in the metaverse and staged as a member add
    big = guid_of(admin, dc.base_dn, f"(sAMAccountName=BigGroup-{BIG})")
    big_id, _ = person_by_anchor(store, big)
    assert count(store, sa.select(sa.func.count()).where(mv_reference.c.mv_id == big_id)) == BIG
    assert result.counters["export_reference_adds_staged"] >= BIG
    assert result.counters["references_pending"] == 0

    # a second full sync stages nothing
    again = run_sync(store, rules, connector="ad", mode="full")
    assert {k: v for k, v in again.counters.items() if k.endswith("_staged") and v} == {}

    # a delta cycle: one new user, one changed department, one member removed from the big group
    new_dn = f"CN=Sync Newcomer,OU=AADSync,{dc.base_dn}"
    assert admin.add(new_dn, ["top", "person", "organizationalPerson", "user"], {"sAMAccountName": "newcomer"})
    assert admin.modify(entry["dn"], {"department": [(ldap3.MODIFY_REPLACE, ["Sync Testing"])]})
    admin.search(
        f"CN=BigGroup-{BIG},OU=Groups,OU=AADSync,{dc.base_dn}",
        "(objectClass=group)",
        ldap3.BASE,
        attributes=["member;range=0-0"],
    )
    member_dn = next(iter(admin.response[0]["attributes"].values()))[0]
    assert admin.modify(admin.response[0]["dn"], {"member": [(ldap3.MODIFY_DELETE, [member_dn])]})
    assert run_ad_import(hook_for(dc), store, mode="delta")["result"] == "success"
    delta = run_sync(store, rules, connector="ad", mode="delta")
    assert delta.mode == "delta" and delta.result == "success"
    assert 3 <= delta.counters["objects_evaluated"] <= 5, delta.counters
    assert delta.counters["projections"] == 1
    assert person_by_anchor(store, anchor)[1]["department"] == ["Sync Testing"]
    assert count(store, sa.select(sa.func.count()).where(mv_reference.c.mv_id == big_id)) == BIG - 1

    # preview of one AD object through the command line
    command = ["preview", "--connector", "ad", "--dn", entry["dn"], "--store", store.url, "--instance", store.instance]
    output = CliRunner().invoke(main, command).output
    assert "Inbound rules in scope: In from AD - User Join" in output
    assert "department = 'Sync Testing'" in output and output.rstrip().endswith("Nothing was written.")
