"""Referrals are never followed, and one is a clear configuration error through either client, never a rejected
DirSync cookie."""

from __future__ import annotations

from typing import Any

import ldap
import ldap3
import pytest
from ldap3.core import exceptions as ldap_errors

from airflow_provider_aadsync.hooks import active_directory as hook_module
from airflow_provider_aadsync.hooks import active_directory_pages as pages
from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook
from airflow_provider_aadsync.hooks.active_directory_referrals import ReferralRefusingConnection
from airflow_provider_aadsync.hooks.active_directory_settings import (
    ActiveDirectoryConfigurationError,
    ActiveDirectoryConnectionError,
    ActiveDirectoryReferralError,
    ADConnectionSettings,
    DirSyncCookieRejected,
)
from airflow_provider_aadsync.operators.base import CONFIGURATION_ERRORS

SECRET = "S3cret-Bind-Passw0rd"
NC = "DC=corp,DC=example,DC=com"
TYPO = "DC=contoso,DC=co"
REFERRED = "ldap://contoso.co/DC=contoso,DC=co"


def settings(**extra: Any) -> ADConnectionSettings:
    return ADConnectionSettings(
        host="127.0.0.1", port=1, bind_dn="CN=svc", password=SECRET, base_dn=NC, connect_timeout=2, **extra
    )


def test_the_connection_never_follows_referrals(monkeypatch):
    created: list[ldap3.Connection] = []

    class Recording(ReferralRefusingConnection):
        def __init__(self, server: ldap3.Server, **options: Any):
            super().__init__(server, **options)
            created.append(self)

    monkeypatch.setattr(hook_module, "ReferralRefusingConnection", Recording)
    with pytest.raises(ActiveDirectoryConnectionError, match="could not reach"):
        ActiveDirectoryHook(settings=settings()).get_conn()
    [conn] = created
    assert conn.auto_referrals is False
    assert conn.aadsync_url == "ldaps://127.0.0.1:1"


def referring_connection(monkeypatch) -> ReferralRefusingConnection:
    """A connection whose DC answers every search with a referral result, as ldap3 reports one without
    auto_referrals: ``raise_exceptions`` raises LDAPReferralResult with the result (and its URLs) kept."""

    def referral(self: ldap3.Connection, search_base: str, *args: Any, **options: Any) -> bool:
        self.result = {"result": 10, "description": "referral", "referrals": [REFERRED], "dn": "", "message": ""}
        raise ldap_errors.LDAPOperationResult(result=10, description="referral", dn="", message="", response_type="")

    monkeypatch.setattr(ldap3.Connection, "search", referral)
    conn = ReferralRefusingConnection(
        ldap3.Server("127.0.0.1", port=1), url="ldaps://dc1:636", auto_referrals=False, raise_exceptions=True
    )
    return conn


def test_a_referral_names_the_partition_where_it_points_and_what_to_do(monkeypatch):
    conn = referring_connection(monkeypatch)
    with pytest.raises(ActiveDirectoryReferralError) as caught:
        conn.search(TYPO, "(objectClass=*)", ldap3.SUBTREE)
    message = str(caught.value)
    assert f"ldaps://dc1:636 does not hold the partition {TYPO!r}" in message
    assert REFERRED in message and "not followed" in message
    assert "AD connector of its own in the connectors file" in message and "mistyped" in message
    assert SECRET not in message
    # A configuration error: the operators fail the task without retries.
    assert isinstance(caught.value, ActiveDirectoryConfigurationError)
    assert issubclass(ActiveDirectoryReferralError, CONFIGURATION_ERRORS)


@pytest.mark.parametrize("cookie", [None, b"saved-cookie"])
def test_an_ldap3_dirsync_referral_is_not_a_rejected_cookie(monkeypatch, cookie):
    hook = ActiveDirectoryHook(settings=settings(full_read_client="ldap3"))
    hook._conn = conn = referring_connection(monkeypatch)
    conn.bound, conn.closed = True, False  # as get_conn leaves it: bound, checked
    hook.__dict__["root_dse"] = {"defaultNamingContext": [NC]}
    with pytest.raises(ActiveDirectoryReferralError, match=r"'DC=contoso,DC=co'") as caught:
        list(hook.dirsync_pages(["cn"], cookie, base=TYPO)) if cookie else hook.dirsync_watermark(base=TYPO)
    assert not isinstance(caught.value, DirSyncCookieRejected)


def python_ldap_referral() -> ldap.REFERRAL:
    """A REFERRAL as python-ldap raises it with OPT_REFERRALS 0: the referred URL in ``info``."""
    return ldap.REFERRAL({"result": 10, "desc": "Referral", "info": f"Referral:\n{REFERRED}", "ctrls": []})


class ReferringPythonLdap:
    """A python-ldap connection whose DC answers each search with a referral."""

    def search_ext(self, *args: Any, **options: Any) -> int:
        raise python_ldap_referral()

    def abandon(self, msgid: int) -> None:
        pass

    def unbind_s(self) -> None:
        pass


def test_python_ldap_referral_gives_the_same_error():
    error = pages._failure(python_ldap_referral(), f"the paged read of {TYPO!r}", settings(), TYPO)
    assert isinstance(error, ActiveDirectoryReferralError)
    assert f"does not hold the partition {TYPO!r}" in str(error) and REFERRED in str(error)


@pytest.mark.parametrize("cookie", [b"", b"saved-cookie"])
def test_a_python_ldap_dirsync_referral_is_not_a_rejected_cookie(monkeypatch, cookie):
    monkeypatch.setattr(pages, "open_python_ldap", lambda settings: ReferringPythonLdap())
    with pytest.raises(ActiveDirectoryReferralError, match=REFERRED) as caught:
        list(pages.python_ldap_dirsync_pages(settings(), TYPO, "(objectClass=*)", ["cn"], cookie))
    assert not isinstance(caught.value, DirSyncCookieRejected)


def test_python_ldap_paged_read_referral(monkeypatch):
    monkeypatch.setattr(pages, "open_python_ldap", lambda settings: ReferringPythonLdap())
    with pytest.raises(ActiveDirectoryReferralError, match=r"does not hold the partition 'DC=contoso,DC=co'"):
        list(pages.python_ldap_pages(settings(), TYPO, "(objectClass=*)", ["cn"]))
