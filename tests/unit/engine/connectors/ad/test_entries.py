from __future__ import annotations

import uuid

import pytest

from airflow_provider_aadsync.engine.connectors.ad.entries import (
    EntryDecoder,
    classify,
    parse_extended_dn,
    split_range_option,
)
from airflow_provider_aadsync.engine.connectors.ad.schema import DEFAULT_AD_ATTRIBUTES
from airflow_provider_aadsync.engine.runs.source import ObjectDecodeError

GUID = uuid.UUID("2c5ae0de-1c33-4a4b-9d3e-0a1b2c3d4e5f")
MEMBER_GUID = uuid.UUID("11111111-2222-3333-4444-555555555555")


def extended(guid: uuid.UUID, dn: str, sid: str = "S-1-5-21-1-2-3-1105") -> str:
    return f"<GUID={guid}>;<SID={sid}>;{dn}"


class TestParseExtendedDn:
    def test_string_form(self):
        parsed = parse_extended_dn(extended(GUID, "CN=Alice,OU=Users,DC=corp,DC=test"))
        assert parsed == parse_extended_dn(extended(GUID, "CN=Alice,OU=Users,DC=corp,DC=test"))
        assert parsed.guid == str(GUID)
        assert parsed.sid == "S-1-5-21-1-2-3-1105"
        assert parsed.dn == "CN=Alice,OU=Users,DC=corp,DC=test"

    def test_hex_form_is_little_endian_guid_bytes(self):
        parsed = parse_extended_dn(f"<GUID={GUID.bytes_le.hex()}>;CN=Alice,DC=corp,DC=test")
        assert parsed.guid == str(GUID)

    def test_plain_dn(self):
        parsed = parse_extended_dn("CN=Alice,DC=corp,DC=test")
        assert (parsed.guid, parsed.dn) == (None, "CN=Alice,DC=corp,DC=test")


def test_split_range_option():
    assert split_range_option("member;range=0-1499") == ("member", 0, "1499")
    assert split_range_option("member;range=1500-*") == ("member", 1500, "*")
    assert split_range_option("member") == ("member", None, None)


@pytest.mark.parametrize(
    ("classes", "expected"),
    [
        (["top", "person", "organizationalPerson", "user"], "user"),
        (["top", "person", "organizationalPerson", "user", "computer"], None),
        (["top", "group"], "group"),
        (["top", "person", "organizationalPerson", "contact"], "contact"),
        (["top", "organizationalUnit"], "organizationalUnit"),
        (["top", "container"], None),
        (["top", "foreignSecurityPrincipal"], "foreignSecurityPrincipal"),
    ],
)
def test_classify(classes, expected):
    assert classify(classes) == expected


class TestEntryDecoder:
    def test_full_entry(self):
        raw = {
            "objectGUID": [GUID.bytes_le],
            "objectSid": [bytes.fromhex("010500000000000515000000a1b2c3d4a1b2c3d4a1b2c3d451040000")],
            "objectClass": [b"top", b"person", b"organizationalPerson", b"user"],
            "displayName": ["Zoë Ünal".encode()],
            "proxyAddresses": [b"SMTP:zoe@corp.test", b"smtp:z@corp.test"],
            "member": [extended(MEMBER_GUID, "CN=Bob,DC=corp,DC=test").encode()],
        }
        obj = EntryDecoder().decode(extended(GUID, "CN=Zoe,DC=corp,DC=test"), raw, partial=False)
        assert obj is not None
        assert obj.anchor == str(GUID)
        assert obj.object_type == "user"
        assert obj.attrs["objectGUID"] == [str(GUID)]
        assert obj.attrs["objectSid"][0].startswith("S-1-5-21-")
        assert obj.attrs["displayName"] == ["Zoë Ünal"]
        assert obj.references == {"member": [(str(MEMBER_GUID), "CN=Bob,DC=corp,DC=test")]}
        assert "member" not in obj.attrs

    def test_incremental_member_values(self):
        raw = {
            "objectGUID": [GUID.bytes_le],
            "member;range=1-1": [extended(MEMBER_GUID, "CN=Bob,DC=corp,DC=test").encode()],
            "member;range=0-0": [extended(GUID, "CN=Carol,DC=corp,DC=test").encode()],
        }
        obj = EntryDecoder().decode(extended(GUID, "CN=G,DC=corp,DC=test"), raw, partial=True)
        assert obj.object_type is None
        assert obj.reference_adds == {"member": [(str(MEMBER_GUID), "CN=Bob,DC=corp,DC=test")]}
        assert obj.reference_removes == {"member": [(str(GUID), "CN=Carol,DC=corp,DC=test")]}
        assert obj.references == {}

    @pytest.mark.parametrize("partial", [True, False])
    def test_a_window_of_a_ranged_list_is_marked_truncated_and_its_values_left_out(self, partial):
        """``member;range=0-1`` is the first two values of more: never the attribute's value set (the import reads
        the object whole); ``range=0-*`` is the whole list; in a delta, 1-1 and 0-0 are DirSync's incremental values."""
        bob = extended(MEMBER_GUID, "CN=Bob,DC=corp,DC=test").encode()
        raw = {
            "objectGUID": [GUID.bytes_le],
            "member;range=0-1": [bob, bob],
            "proxyAddresses;range=1500-2999": [b"smtp:a@corp.test"],
            "otherTelephone;range=0-*": [b"1", b"2"],
        }
        obj = EntryDecoder().decode(extended(GUID, "CN=G,DC=corp,DC=test"), raw, partial=partial)
        assert obj.truncated == ["member", "proxyAddresses"]
        assert obj.references == {} and obj.reference_adds == {} and obj.reference_removes == {}
        assert "proxyAddresses" not in obj.attrs and obj.attrs["otherTelephone"] == ["1", "2"]
        incremental = {"objectGUID": [GUID.bytes_le], "member;range=1-1": [bob], "member;range=0-0": [bob]}
        obj = EntryDecoder().decode(extended(GUID, "CN=G,DC=corp,DC=test"), incremental, partial=partial)
        # a full read's range=0-0 is a window of one value (more follow), not a removal
        assert obj.truncated == ([] if partial else ["member"])

    def test_added_object_without_cn_gets_it_from_its_dn(self):
        """DirSync may leave the naming attribute out of an added object; rules read it (displayName fallback)."""
        raw = {"objectGUID": [GUID.bytes_le], "objectClass": [b"top", b"user"], "sAMAccountName": [b"new"]}
        obj = EntryDecoder().decode(extended(GUID, "CN=Smith\\, J\\C3\\BCrgen,OU=X,DC=corp,DC=test"), raw, partial=True)
        assert obj.attrs["cn"] == ["Smith, Jürgen"]

    def test_tombstone(self):
        raw = {"objectGUID": [GUID.bytes_le], "isDeleted": [b"TRUE"], "objectClass": [b"top", b"user"]}
        dn = extended(GUID, "CN=Alice\\0ADEL:2c5ae0de,CN=Deleted Objects,DC=corp,DC=test")
        obj = EntryDecoder().decode(dn, raw, partial=True)
        assert obj.deleted and obj.anchor == str(GUID)

    def test_plain_dict_in_any_spelling(self):
        """python-ldap hands a plain dict in the server's spelling: anchor, tombstone flag, type and the naming
        attribute are found whatever the case, with one decoder reused across entries as the import does."""
        decoder = EntryDecoder()
        raw = {"OBJECTGUID": [GUID.bytes_le], "objectclass": [b"top", b"user"], "CN": [b"Alice"], "isdeleted": []}
        obj = decoder.decode(extended(MEMBER_GUID, "CN=Alice,DC=corp,DC=test"), raw, partial=False)
        assert (obj.anchor, obj.object_type, obj.deleted, obj.attrs["CN"]) == (str(GUID), "user", False, ["Alice"])
        assert "cn" not in obj.attrs  # the naming attribute was there: no second copy from the DN
        tomb = {"objectGUID": [GUID.bytes_le], "ISDELETED": [b"TRUE"], "OBJECTCLASS": [b"top", b"user"]}
        assert decoder.decode(extended(GUID, "CN=Alice\\0ADEL:x,DC=corp,DC=test"), tomb, partial=True).deleted

    def test_computer_is_skipped(self):
        raw = {"objectGUID": [GUID.bytes_le], "objectClass": [b"top", b"user", b"computer"]}
        assert EntryDecoder().decode(extended(GUID, "CN=PC1,DC=corp,DC=test"), raw, partial=False) is None

    def test_undecodable_value_names_attribute_and_object(self):
        raw = {"objectGUID": [GUID.bytes_le], "objectClass": [b"user"], "jpegPhoto": [b"\xff\xd8\xff"]}
        decoder = EntryDecoder(binary_attributes=frozenset())
        with pytest.raises(ObjectDecodeError) as caught:
            decoder.decode(extended(GUID, "CN=Alice,DC=corp,DC=test"), raw, partial=False)
        assert "jpegPhoto" in str(caught.value)
        assert caught.value.dn == "CN=Alice,DC=corp,DC=test"
        assert caught.value.code == "undecodable-value"

    def test_linked_mailbox_master_sid_is_decoded_like_object_sid(self):
        """msExchMasterAccountSid (a linked mailbox's owner in another forest) joins on objectSid: same text form."""
        sid = bytes.fromhex("010500000000000515000000a1b2c3d4a1b2c3d4a1b2c3d451040000")
        raw = {"objectGUID": [GUID.bytes_le], "objectClass": [b"user"], "msExchMasterAccountSid": [sid]}
        obj = EntryDecoder().decode(extended(GUID, "CN=Mailbox,DC=fabrikam,DC=test"), raw, partial=False)
        assert obj.attrs["msExchMasterAccountSid"] == ["S-1-5-21-3569595041-3569595041-3569595041-1105"]
        assert "msExchMasterAccountSid" in DEFAULT_AD_ATTRIBUTES
        bad = {**raw, "msExchMasterAccountSid": [b"\x01\x05"]}
        with pytest.raises(ObjectDecodeError, match="not a SID"):
            EntryDecoder().decode(extended(GUID, "CN=Mailbox,DC=fabrikam,DC=test"), bad, partial=False)

    def test_binary_attribute_kept_as_base64(self):
        raw = {"objectGUID": [GUID.bytes_le], "objectClass": [b"user"], "jpegPhoto": [b"\xff\xd8\xff"]}
        obj = EntryDecoder().decode(extended(GUID, "CN=Alice,DC=corp,DC=test"), raw, partial=False)
        assert obj.attrs["jpegPhoto"] == ["/9j/"]


def test_format_sid_matches_ldap3():
    from ldap3.protocol.formatters.formatters import format_sid as ldap3_format_sid

    from airflow_provider_aadsync.engine.connectors.ad.entries import format_sid

    raw = bytes.fromhex("010500000000000515000000a1b2c3d4a1b2c3d4a1b2c3d451040000")
    assert format_sid(raw) == ldap3_format_sid(raw) == "S-1-5-21-3569595041-3569595041-3569595041-1105"
    with pytest.raises(ValueError, match="not a SID"):
        format_sid(b"\x01\x05\x00")
