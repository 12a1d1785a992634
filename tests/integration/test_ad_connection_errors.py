"""Bad connection settings give clear errors naming the problem, never the password."""

from __future__ import annotations

import pytest

from aadsync_devkit.tls import make_ca_and_server_cert
from airflow_provider_aadsync.hooks.active_directory_settings import (
    ActiveDirectoryConfigurationError,
    ActiveDirectoryConnectionError,
    DirSyncCookieRejected,
)
from tests.support.servers import hook_for

pytestmark = pytest.mark.integration

WRONG_PASSWORD = "Wrong-Passw0rd-Secret!"


@pytest.fixture(scope="module")
def dc(start_dc):
    return start_dc(users=0, groups=0)


def connect_error(hook) -> str:
    with pytest.raises(ActiveDirectoryConnectionError) as caught:
        hook.get_conn()
    ok, message = hook.test_connection()
    assert not ok and message == str(caught.value)
    return message


def test_good_settings_connect(dc):
    ok, message = hook_for(dc).test_connection()
    assert ok, message
    assert "DC=corp,DC=example,DC=test" in message


def test_wrong_password(dc):
    message = connect_error(hook_for(dc, password=WRONG_PASSWORD))
    assert "invalid credentials" in message and "CN=Administrator" in message
    assert WRONG_PASSWORD not in message


def test_wrong_ca(dc, tmp_path):
    other = make_ca_and_server_cert(tmp_path / "other-ca")
    message = connect_error(hook_for(dc, ca_cert=str(other.ca_cert)))
    assert "could not be verified" in message and str(other.ca_cert) in message


def test_missing_ca_file(dc, tmp_path):
    message = connect_error(hook_for(dc, ca_cert=str(tmp_path / "nope.pem")))
    assert "does not exist" in message


def test_ca_as_pem_text(dc):
    pem = dc.tls_files.ca_cert.read_text()
    assert hook_for(dc, ca_cert=pem).test_connection()[0]


def test_unreachable_host(dc):
    message = connect_error(hook_for(dc, port=1))
    assert "could not reach ldaps://127.0.0.1:1" in message


def test_plain_ldap_refused_by_strong_auth(dc):
    """Allowed on our side (allow_plain_ldap_bind), the DC itself still refuses a simple bind in clear."""
    message = connect_error(hook_for(dc, tls="none", port=389, allow_plain_ldap_bind=True))
    assert "requires a TLS-protected bind" in message


def test_plain_ldap_refused_before_the_password_leaves(dc):
    message = connect_error(hook_for(dc, tls="none", port=389))
    assert "send the password in clear" in message and "allow_plain_ldap_bind" in message


def test_starttls(dc):
    ok, message = hook_for(dc, tls="starttls", port=389).test_connection()
    assert ok, message


def test_a_mistyped_partition_is_a_clear_error_through_both_clients_never_a_rejected_cookie(dc):
    """Samba answers a DirSync read under a DN it does not hold with noSuchObject (Windows AD with a referral): the
    error names the partition; with a saved cookie it is not taken for a rejected one (a full import that fails
    the same way)."""
    hook = hook_for(dc)
    cookie = hook.dirsync_watermark()  # the domain's own partition reads
    wrong = "DC=corp,DC=example,DC=tset"
    with pytest.raises(ActiveDirectoryConfigurationError) as caught:
        hook.dirsync_watermark(wrong)
    assert wrong in str(caught.value) and "noSuchObject" in str(caught.value) and "connectors file" in str(caught.value)
    for client in ("ldap3", "python-ldap"):
        reader = hook_for(dc, full_read_client=client)
        with pytest.raises(ActiveDirectoryConfigurationError) as caught:
            list(reader.dirsync_pages(["cn"], cookie, wrong))
        assert not isinstance(caught.value, DirSyncCookieRejected) and wrong in str(caught.value), client
