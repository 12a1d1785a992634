"""The AD Test button's wording for each outcome of its DirSync probe (the real DC is in
tests/integration/test_ad_test_connection.py)."""

from __future__ import annotations

import pytest
from ldap3.core import exceptions as ldap_errors

from airflow_provider_aadsync.hooks.active_directory_checks import check_connection
from airflow_provider_aadsync.hooks.active_directory_settings import (
    ActiveDirectoryConnectionError,
    ADConnectionSettings,
)

SECRET = "Bind-Passw0rd-Secret!"


class FakeConnection:
    """A user search answering allowedAttributesEffective (what the bind account may write on it)."""

    def __init__(self, writable):
        self.writable, self.response = writable, []

    def search(self, base, search_filter, scope, attributes, size_limit):
        assert attributes == ["allowedAttributesEffective"] and size_limit == 1
        if self.writable is None:  # no user under the base DN
            self.response = []
            return
        values = [name.encode() for name in self.writable]
        self.response = [{"type": "searchResEntry", "dn": f"CN=ann,{base}",
                          "raw_attributes": {"allowedAttributesEffective": values}}]  # fmt: skip


class FakeHook:
    """What check_connection uses of the hook; ``dirsync`` is what the DirSync probe does."""

    def __init__(
        self, dirsync=None, connect=None, writable=("description", "mS-DS-ConsistencyGuid"), full_read_client="ldap3"
    ):
        self.settings = ADConnectionSettings(
            host="127.0.0.1" if full_read_client == "python-ldap" else "dc1.corp.test",
            port=1 if full_read_client == "python-ldap" else None,
            bind_dn="CN=svc,DC=corp,DC=test",
            password=SECRET,
            base_dn="OU=Staff,DC=corp,DC=test",
            full_read_client=full_read_client,
            connect_timeout=2,
        )
        self.search_base = self.settings.base_dn
        self._dirsync, self._connect = dirsync, connect
        self._conn = FakeConnection(writable)

    def get_conn(self):
        if self._connect:
            raise self._connect
        return self._conn

    def naming_context(self) -> str:
        return "DC=corp,DC=test"

    def server_name(self) -> str:
        return "dc1.corp.test"

    def dirsync_watermark(self, base=None) -> bytes:
        if self._dirsync:
            raise self._dirsync
        return b"cookie"


def test_every_check_passing_is_said_in_one_line():
    ok, message = check_connection(FakeHook())
    assert ok
    assert message == (
        "Connected to ldaps://dc1.corp.test:636 (dc1.corp.test), naming context DC=corp,DC=test; base DN "
        "OU=Staff,DC=corp,DC=test exists; DirSync is allowed for the bind account; full imports read through ldap3; "
        "the bind account may write mS-DS-ConsistencyGuid on users (ConsistencyGuid writeback)"
    )


def test_a_python_ldap_bind_that_fails_is_named_with_the_way_out():
    """ldap3 bound, but the full import's python-ldap connection cannot: the Test button says so before an import."""
    ok, message = check_connection(FakeHook(full_read_client="python-ldap"))
    assert not ok and "the full import's read through python-ldap failed" in message
    assert "could not reach ldaps://127.0.0.1:1" in message and "full_read_client to ldap3" in message
    assert SECRET not in message


def test_a_missing_consistency_guid_write_right_is_a_note_naming_the_right():
    ok, message = check_connection(FakeHook(writable=("description",)))
    assert ok  # the writeback can be turned off: a note, not a failure
    assert "note: the bind account may not write mS-DS-ConsistencyGuid on CN=ann,OU=Staff,DC=corp,DC=test" in message
    assert '"<account>:WP;mS-DS-ConsistencyGuid;user"' in message and "aadsync_consistency_guid_writeback" in message
    ok, message = check_connection(FakeHook(writable=None))
    assert ok and "no user under the base DN to check" in message


def test_dirsync_refused_names_the_right_to_grant():
    refused = ldap_errors.LDAPInsufficientAccessRightsResult("insufficientAccessRights")
    ok, message = check_connection(FakeHook(dirsync=refused))
    assert not ok
    assert "as CN=svc,DC=corp,DC=test" in message and "base DN OU=Staff,DC=corp,DC=test exists" in message
    assert "DirSync on DC=corp,DC=test was refused (insufficient access rights)" in message
    assert '"Replicating Directory Changes" on the naming context' in message


@pytest.mark.parametrize(
    "error", [ldap_errors.LDAPUnavailableCriticalExtensionResult("unavailableCriticalExtension")], ids=["no-dirsync"]
)
def test_another_dirsync_refusal_is_named_too(error):
    ok, message = check_connection(FakeHook(dirsync=error))
    assert not ok and "DirSync on DC=corp,DC=test failed" in message and "an AD DC" in message


def test_a_connection_error_is_the_message_without_the_password():
    error = ActiveDirectoryConnectionError(f"bind refused (password {SECRET})")
    ok, message = check_connection(FakeHook(connect=error))
    assert not ok and "bind refused" in message and SECRET not in message  # the settings registered it
