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


class FakeHook:
    """What check_connection uses of the hook; ``dirsync`` is what the DirSync probe does."""

    def __init__(self, dirsync=None, connect=None):
        self.settings = ADConnectionSettings(
            host="dc1.corp.test", bind_dn="CN=svc,DC=corp,DC=test", password=SECRET, base_dn="OU=Staff,DC=corp,DC=test"
        )
        self._dirsync, self._connect = dirsync, connect

    def get_conn(self):
        if self._connect:
            raise self._connect

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
        "OU=Staff,DC=corp,DC=test exists; DirSync is allowed for the bind account"
    )


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
