"""The AD connection's Test button against the real DC: the bind, the base DN and the DirSync right, each named."""

from __future__ import annotations

import ldap3
import pytest

from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook
from airflow_provider_aadsync.hooks.active_directory_settings import ADConnectionSettings
from tests.support.servers import hook_for

pytestmark = pytest.mark.integration

PLAIN_PASSWORD = "Plain-Passw0rd-For-Test!"


@pytest.fixture(scope="module")
def dc(start_dc):
    return start_dc(users=0, groups=0)


@pytest.fixture(scope="module")
def plain_user(dc) -> str:
    """An enabled domain user with no right beyond a domain user's: it may read the directory, not DirSync it."""
    dn = f"CN=aadsync-plain,CN=Users,{dc.base_dn}"
    admin = dc.connect()
    try:
        assert admin.add(
            dn,
            ["top", "person", "organizationalPerson", "user"],
            {
                "sAMAccountName": "aadsync-plain",
                "unicodePwd": f'"{PLAIN_PASSWORD}"'.encode("utf-16-le"),
                "userAccountControl": 512,
            },
        ), admin.result
    finally:
        admin.unbind()
    return dn


def test_the_administrator_passes_every_check(dc):
    ok, message = hook_for(dc).test_connection()
    assert ok, message
    assert f"naming context {dc.base_dn}" in message and f"base DN {dc.base_dn} exists" in message
    assert "DirSync is allowed" in message and "full imports read through python-ldap" in message


def test_a_missing_base_dn_is_named(dc):
    missing = f"OU=Nowhere,{dc.base_dn}"
    ok, message = hook_for(dc, base_dn=missing).test_connection()
    assert not ok and "does not exist" in message and "OU=Nowhere" in message


def test_an_account_without_the_dirsync_right_is_told_which_right_to_grant(dc, plain_user):
    info = dc.connection_info()
    settings = ADConnectionSettings.from_fields(
        name="of the test DC", **{**info, "login": plain_user, "password": PLAIN_PASSWORD}
    )
    hook = ActiveDirectoryHook(settings=settings)
    conn = hook.get_conn()  # the bind and the base DN are fine for a plain user
    assert conn.bound and conn.search(dc.base_dn, "(objectClass=*)", ldap3.BASE)
    ok, message = hook.test_connection()
    assert not ok, message
    assert "DirSync on" in message and "insufficient access rights" in message
    assert "Replicating Directory Changes" in message and PLAIN_PASSWORD not in message


def test_the_consistency_guid_write_right_is_checked_on_a_user(dc, plain_user):
    """The DC answers allowedAttributesEffective: the administrator may write mS-DS-ConsistencyGuid on a user."""
    ok, message = hook_for(dc).test_connection()
    assert ok, message
    assert "the bind account may write mS-DS-ConsistencyGuid on users" in message
