"""The group writeback OU must lie under the AD connection's base DN: the AD import reads only that subtree, so
groups written outside it are never seen again and every cycle creates them once more. Compared RDN by RDN (ldap3's
DN parsing, engine/dn.py), never as text: ``OU=W,DC=notcontoso,DC=com`` is not under ``DC=contoso,DC=com``."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.sync.settings import WritebackSettingsError, check_writeback_ou

BASE = "DC=contoso,DC=com"


@pytest.mark.parametrize(
    "ou",
    [
        "OU=Writeback,DC=contoso,DC=com",  # inside
        "OU=Writeback,OU=Sync,DC=contoso,DC=com",  # deeper inside
        "DC=contoso,DC=com",  # the base DN itself: the import reads it too
        "ou=Writeback, dc=CONTOSO,dc=Com",  # another spelling of an OU inside
        "OU=Writeback , DC=contoso , DC=com",  # spaces around the separators
        "OU=Back\\2Cup,DC=contoso,DC=com",  # an escaped comma inside a value
    ],
)
def test_check_writeback_ou_when_it_lies_under_the_base_dn(ou):
    check_writeback_ou(ou, BASE)
    check_writeback_ou(ou, "dc=Contoso, dc=COM")  # the base DN in another spelling


@pytest.mark.parametrize(
    "ou",
    [
        "OU=Writeback,DC=notcontoso,DC=com",  # a look-alike suffix: ends with the base DN's text, is not under it
        "OU=Writeback,DC=fabrikam,DC=com",  # another domain
        "OU=Writeback,DC=contoso,DC=com,DC=evil",  # the base DN's RDNs, but not at the end
        "DC=com",  # above the base DN
        "OU=Writeback,DC=contoso",  # a typo: a component missing
        "OU=contoso\\,DC=com",  # one RDN whose value only looks like the base DN
    ],
)
def test_check_writeback_ou_when_it_lies_outside_the_base_dn_names_the_ou_the_base_and_the_setting(ou):
    with pytest.raises(WritebackSettingsError) as raised:
        check_writeback_ou(ou, BASE)
    message = str(raised.value)
    assert f"the group writeback OU {ou!r} lies outside the AD connection's base DN {BASE!r}" in message
    assert "aadsync_writeback_ou" in message and "--writeback-ou" in message and "base_dn" in message


def test_check_writeback_ou_when_the_ou_is_no_dn():
    for ou in ("Writeback", "OU=Writeback,,DC=contoso,DC=com"):
        with pytest.raises(WritebackSettingsError, match="writeback OU is not usable: .* is not a valid DN") as raised:
            check_writeback_ou(ou, BASE)
        assert "aadsync_writeback_ou" in str(raised.value)
    with pytest.raises(WritebackSettingsError, match="no writeback OU is set"):
        check_writeback_ou("  ", BASE)
