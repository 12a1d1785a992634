"""A 50,000-member group read by ranged retrieval from the real DC, and its member deltas."""

from __future__ import annotations

import uuid

import ldap3
import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.store import cs_reference
from airflow_provider_aadsync.steps import run_ad_import
from tests.support.servers import hook_for

pytestmark = pytest.mark.integration

SIZE = 50_000


@pytest.fixture(scope="module")
def dc(start_dc):
    return start_dc(users=SIZE, groups=10, group_size=SIZE)


def test_fifty_thousand_members_full_and_delta(dc, store):
    group = f"CN=BigGroup-{SIZE},OU=Groups,OU=AADSync,{dc.base_dn}"
    admin = dc.connect()
    try:
        users = {
            entry["dn"]: str(uuid.UUID(bytes_le=entry["raw_attributes"]["objectGUID"][0]))
            for entry in admin.extend.standard.paged_search(
                f"OU=Users,OU=AADSync,{dc.base_dn}",
                "(employeeID=*)",
                attributes=["objectGUID"],
                paged_size=1000,
                generator=True,
            )
            if entry["type"] == "searchResEntry"
        }
        admin.search(group, "(objectClass=*)", ldap3.BASE, attributes=["objectGUID"])
        group_guid = str(uuid.UUID(bytes_le=admin.response[0]["raw_attributes"]["objectGUID"][0]))
        assert len(users) == SIZE

        full = run_ad_import(hook_for(dc), store, mode="full")
        assert full["result"] == "success"
        with store.engine.connect() as connection:
            stored = (
                connection.execute(sa.select(cs_reference.c.target_anchor).where(cs_reference.c.anchor == group_guid))
                .scalars()
                .all()
            )
        assert len(stored) == SIZE == len(set(stored))
        assert set(stored) == set(users.values())

        leaving = sorted(users)[:10]
        assert admin.modify(group, {"member": [(ldap3.MODIFY_DELETE, leaving)]}), admin.result
        delta = run_ad_import(hook_for(dc), store, mode="delta")
        assert delta["mode"] == "delta"
        assert (delta["counters"]["updates"], delta["counters"]["reference_removes"]) == (1, 10)

        # a full import afterwards finds the member digest the delta kept up to date: nothing to change
        again = run_ad_import(hook_for(dc), store, mode="full")
        assert again["counters"]["updates"] == 0 and again["counters"]["unchanged"] >= SIZE
        assert admin.modify(group, {"member": [(ldap3.MODIFY_ADD, leaving)]}), admin.result
    finally:
        admin.unbind()
