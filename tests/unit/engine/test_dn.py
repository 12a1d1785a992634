"""DN comparison RDN by RDN: the spellings a DC accepts but does not return name the same entries."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from airflow_provider_aadsync.engine.dn import (
    DnError,
    DnScope,
    canonical_dn,
    dn_is_under,
    normalize_dn,
    same_dn,
    split_rdn,
    wire_dn,
)

BASE = "DC=corp,DC=example,DC=test"


@pytest.mark.parametrize(
    "spelling",
    [
        "DC=corp,DC=example,DC=test",
        "dc=corp,dc=example,dc=test",
        "dc=corp, dc=example,dc=test",
        "DC = corp , DC = example , DC = test",
        "  DC=CORP,DC=Example,DC=TEST  ",
        "Dc=corp,dC=example,dc=test",
    ],
)
def test_spellings_of_one_base_are_the_same_entry(spelling):
    assert same_dn(spelling, BASE)
    assert canonical_dn(spelling) == "dc=corp,dc=example,dc=test"
    assert dn_is_under(f"CN=Jane Doe,OU=Staff,{BASE}", spelling)
    assert dn_is_under(BASE, spelling)  # the base itself is in its subtree


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("CN=Smith\\, John,OU=Staff,DC=x", "cn=smith\\2c john,ou=staff,dc=x"),  # escaped comma, two ways
        ("CN=Smith\\2C John,DC=x", "CN=Smith\\2c John,DC=x"),  # hex digits in either case
        ("OU=caf\\c3\\a9,DC=x", "OU=Café,DC=x"),  # UTF-8 hex escapes
        ("OU=Cafe\u0301,DC=x", "OU=Café,DC=x"),  # decomposed é (NFD) is the composed one
        ("CN=\\ lead and trail\\ ,DC=x", "cn=\\20lead and trail\\20,dc=x"),  # escaped spaces are significant
        ("CN=a\\+b,DC=x", "CN=a\\2Bb,DC=x"),
        ("CN=a = b,DC=x", "CN=a \\= b,DC=x"),  # '=' in a value may be escaped or not
        ("cn=a+sn=b,dc=x", "SN=B + CN=A,DC=X"),  # a multi-valued RDN is a set
        ("CN=STRASSE,DC=x", "CN=straße,DC=x"),  # case folding, not only lower()
    ],
)
def test_equal_spellings(first, second):
    assert same_dn(first, second)
    assert canonical_dn(first) == canonical_dn(second)
    assert normalize_dn(first) == normalize_dn(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("CN=a b,DC=x", "CN=ab,DC=x"),  # spaces inside a value count
        ("CN=\\ a,DC=x", "CN=a,DC=x"),  # an escaped leading space counts
        ("CN=a+SN=b,DC=x", "CN=a,SN=b,DC=x"),  # one multi-valued RDN is not two RDNs
        ("CN=Smith\\, J,DC=x", "CN=Smith,CN=J,DC=x"),  # an escaped comma is no separator
        ("OU=x,DC=corp", "DC=corp"),
    ],
)
def test_different_entries(first, second):
    assert not same_dn(first, second)
    assert normalize_dn(first) != normalize_dn(second)


def test_under_is_rdn_by_rdn_not_textual():
    scope = DnScope("OU=Staff,DC=corp,DC=test")
    assert scope.contains("CN=u,OU=Staff,DC=corp,DC=test")
    assert scope.contains("CN=u,OU=Team,ou=staff, dc=CORP,dc=test")
    assert scope.contains("ou=STAFF,dc=corp,dc=test")
    # Textually these end with the base, but their RDNs do not:
    assert not scope.contains("CN=u,OU=OldStaff,DC=corp,DC=test")
    assert not scope.contains("CN=u\\,OU=Staff,DC=corp,DC=test")  # CN="u,OU=Staff" directly under DC=corp
    assert not scope.contains("OU=Staff\\,DC=corp,DC=test")
    # Above or beside the base:
    assert not scope.contains("DC=corp,DC=test")
    assert not scope.contains("CN=u,OU=Staff,DC=other,DC=test")
    assert not scope.contains("CN=u,OU=Staff,DC=corp,DC=test,DC=extra")


def test_root_base_contains_everything():
    assert normalize_dn("") == () and normalize_dn("   ") == ()
    assert DnScope("").contains("CN=x,DC=y")


@pytest.mark.parametrize("bad", ["nonsense", "CN=x,,DC=y", "CN=a+", "=x", "CN=x,DC=y\\"])
def test_invalid_dns_are_clear_errors(bad):
    with pytest.raises(DnError, match="is not a valid DN"):
        normalize_dn(bad)
    with pytest.raises(DnError):
        DnScope(bad)


def test_same_dn_falls_back_to_text_for_non_dns():
    assert same_dn("not a dn", "NOT A DN") and not same_dn("not a dn", "CN=x")


def rfc4514(value: str) -> str:
    """A reference escaper (ldap3's escape_rdn doubles the backslash of a value that is one space)."""
    tokens = ["\\" + char if char in '"+,;<>\\=' else char for char in value]
    for position in (0, -1):
        if tokens[position] in (" ", "#") and (position == 0 or tokens[position] == " "):
            tokens[position] = "\\" + tokens[position]
    return "".join(tokens)


values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=30)


@given(value=values, parent=st.sampled_from(["OU=Staff,DC=corp,DC=test", "ou=staff, dc=corp,dc=TEST"]))
@example(value=" ", parent="OU=Staff,DC=corp,DC=test")  # ldap3's escape_rdn gets this one wrong
@example(value="#a ", parent="OU=Staff,DC=corp,DC=test")
def test_any_escaped_value_round_trips(value, parent):
    """Whatever a value holds, its RFC 4514 escaping gives a DN that parses, is under its parent and has one
    canonical spelling that is itself the same entry."""
    dn = f"CN={rfc4514(value)},{parent}"
    assert DnScope("OU=Staff,DC=corp,DC=test").contains(dn)
    assert same_dn(canonical_dn(dn), dn)
    hex_escaped = "CN=" + "".join(f"\\{byte:02x}" for byte in value.encode()) + "," + parent
    assert same_dn(hex_escaped, dn)


def test_wire_dn_drops_only_insignificant_spaces():
    assert wire_dn(" dc=corp, dc=example ,dc=test ") == "dc=corp,dc=example,dc=test"
    assert wire_dn("CN=\\ John  Smith\\ , OU = A B,DC=x") == "CN=\\ John  Smith\\ ,OU=A B,DC=x"
    with pytest.raises(DnError):
        wire_dn("nonsense")


def test_is_base_recognizes_only_the_base_entry():
    scope = DnScope("OU=Staff,DC=corp,DC=test")
    assert scope.is_base("ou=STAFF, dc=corp,dc=test")
    assert not scope.is_base("CN=u,OU=Staff,DC=corp,DC=test") and not scope.is_base("OU=Other,DC=corp,DC=test")
    assert DnScope("DC=test").is_base("dc=TEST")


@pytest.mark.parametrize(
    ("dn", "rdn", "parent"),
    [("CN=Back\\\\,OU=W,DC=c", "CN=Back\\\\", "OU=W,DC=c"), ("CN=Trail\\ ,OU=W", "CN=Trail\\ ", "OU=W"),
     ("CN=a\\,b, OU=W", "CN=a\\,b", "OU=W"), ("DC=c", "DC=c", "")],
)  # fmt: skip
def test_split_rdn_cuts_at_the_first_unescaped_comma(dn, rdn, parent):
    """ldap3's ``to_dn`` keeps ``CN=Back\\\\,OU=W`` as one component: a value may end in an escaped ``\\`` or space."""
    assert split_rdn(dn) == (rdn, parent)
