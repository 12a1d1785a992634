"""A big group read by ranged retrieval from the real DC, and its member deltas.

CI reads the 1,501-member group of the live-import tests' cached directory (two ranges of 1,500); the 50,000-member
group (34 ranges, the V1 member limit) is a scale case run with ``pytest -m slow``: its directory takes minutes to
build on a fresh machine and its three imports of 50,000 users about two minutes more.
"""

from __future__ import annotations

import uuid

import ldap3
import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.store import cs_reference
from airflow_provider_aadsync.steps import run_ad_import
from tests.support.servers import hook_for

pytestmark = pytest.mark.integration

#: (users, groups, members of the big group): the first is test_ad_import_live's directory, so its cache serves both.
DIRECTORIES = [
    pytest.param((1600, 20, 1501), id="1501-members"),
    pytest.param((50_000, 10, 50_000), id="50000-members", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module", params=DIRECTORIES)
def directory(request, start_dc):
    users, groups, size = request.param
    return start_dc(users=users, groups=groups, group_size=size), users, size


def test_big_group_full_and_delta(directory, store):
    dc, user_count, size = directory
    group = f"CN=BigGroup-{size},OU=Groups,OU=AADSync,{dc.base_dn}"
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
        admin.search(group, "(objectClass=*)", ldap3.BASE, attributes=["objectGUID", "member"])  # ldap3 follows ranges
        group_guid = str(uuid.UUID(bytes_le=admin.response[0]["raw_attributes"]["objectGUID"][0]))
        members = {users[dn] for dn in admin.response[0]["attributes"]["member"]}
        assert len(users) == user_count and len(members) == size

        full = run_ad_import(hook_for(dc), store, mode="full")
        assert full["result"] == "success"
        with store.engine.connect() as connection:
            stored = (
                connection.execute(sa.select(cs_reference.c.target_anchor).where(cs_reference.c.anchor == group_guid))
                .scalars()
                .all()
            )
        assert len(stored) == size == len(set(stored))
        assert set(stored) == members

        leaving = sorted(dn for dn, guid in users.items() if guid in members)[:10]
        assert admin.modify(group, {"member": [(ldap3.MODIFY_DELETE, leaving)]}), admin.result
        delta = run_ad_import(hook_for(dc), store, mode="delta")
        assert delta["mode"] == "delta"
        assert (delta["counters"]["updates"], delta["counters"]["reference_removes"]) == (1, 10)

        # a full import afterwards finds the member digest the delta kept up to date: nothing to change
        again = run_ad_import(hook_for(dc), store, mode="full")
        assert again["counters"]["updates"] == 0 and again["counters"]["unchanged"] >= user_count
        assert admin.modify(group, {"member": [(ldap3.MODIFY_ADD, leaving)]}), admin.result
    finally:
        admin.unbind()
