"""The group writeback OU must lie under the AD connection's base DN: the AD import reads only that subtree, so
groups written outside it are never seen again and every cycle creates them once more. Compared RDN by RDN (ldap3's
DN parsing, engine/dn.py), never as text: ``OU=W,DC=notcontoso,DC=com`` is not under ``DC=contoso,DC=com``."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.connectors.config import PartitionConfig
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


#: A connector's partitions from the connectors file: the forest root's users and groups, but not its disabled OU,
#: and a child domain's groups (a DN below the root's, a naming context of its own).
PARTITIONS = (
    PartitionConfig(
        dn=BASE,
        include_ous=("OU=People,DC=contoso,DC=com", "OU=Groups,DC=contoso,DC=com"),
        exclude_ous=("OU=Disabled,OU=People,DC=contoso,DC=com",),
    ),
    PartitionConfig(dn="DC=emea,DC=contoso,DC=com", include_ous=("OU=Groups,DC=emea,DC=contoso,DC=com",)),
    PartitionConfig(dn="DC=fabrikam,DC=net"),
)


@pytest.mark.parametrize(
    "ou",
    [
        "OU=Writeback,OU=Groups,DC=contoso,DC=com",  # in an included OU
        "ou=groups,dc=CONTOSO,dc=com",  # the included OU itself, another spelling
        "OU=Writeback,OU=Groups,DC=emea,DC=contoso,DC=com",  # the child domain's included OU
        "OU=Writeback,DC=fabrikam,DC=net",  # another tree of the forest: outside the base DN, read all the same
    ],
)
def test_with_partitions_the_writeback_ou_may_lie_anywhere_the_import_reads(ou):
    check_writeback_ou(ou, BASE, PARTITIONS)


@pytest.mark.parametrize(
    "ou",
    [
        "OU=Writeback,DC=contoso,DC=com",  # under the base DN, but in no included OU: never read
        "OU=Writeback,OU=Disabled,OU=People,DC=contoso,DC=com",  # in an excluded OU
        "OU=Writeback,DC=emea,DC=contoso,DC=com",  # the child domain, outside its included OU
        "OU=Writeback,DC=fabrikam,DC=com",  # no partition
    ],
)
def test_with_partitions_a_writeback_ou_the_import_does_not_read_is_refused_naming_the_scope(ou):
    with pytest.raises(WritebackSettingsError) as raised:
        check_writeback_ou(ou, BASE, PARTITIONS)
    message = str(raised.value)
    assert f"the group writeback OU {ou!r} lies outside what the AD import of connector ad reads" in message
    assert "partition 'DC=fabrikam,DC=net'" in message and "not 'OU=Disabled,OU=People,DC=contoso,DC=com'" in message
    assert "only 'OU=Groups,DC=emea,DC=contoso,DC=com'" in message and "aadsync_writeback_ou" in message
