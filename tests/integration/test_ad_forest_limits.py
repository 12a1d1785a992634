"""How long the forest keeps deleted objects (the DirSync cookie's lifetime), read from a real Samba AD DC.

(Referrals are tested in tests/unit/hooks/test_active_directory_referrals.py: Samba 4.17 answers a search under a base
outside its naming contexts, ``DC=example,DC=invalid``, with noSuchObject, not with the referral Windows AD sends.)"""

from __future__ import annotations

import datetime as dt

import ldap3
import pytest

from aadsync_devkit.world.samba import SambaDC
from tests.support.servers import hook_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    return start_dc(users=0, groups=0)


def test_the_deletion_window_is_what_the_dc_stores(dc):
    conn = dc.connect()
    try:
        conn.search("", "(objectClass=*)", ldap3.BASE, attributes=["configurationNamingContext"])
        configuration = conn.response[0]["raw_attributes"]["configurationNamingContext"][0].decode()
        service = f"CN=Directory Service,CN=Windows NT,CN=Services,{configuration}"
        conn.search(service, "(objectClass=*)", ldap3.BASE, attributes=["tombstoneLifetime"])
        stored = conn.response[0]["raw_attributes"].get("tombstoneLifetime")
    finally:
        conn.unbind()
    assert stored == [b"180"]  # Samba provisions a forest with 180 days, as Windows Server 2003 SP1 and later do
    assert hook_for(dc).deletion_window() == dt.timedelta(days=180)
