"""Distinguished names compared the way a directory compares them: parsed, RDN by RDN, not as strings.

A DN has many spellings: ``DC=corp,DC=example,DC=test``, ``dc=corp, dc=example,dc=test``, ``CN=Smith\\, J`` and
``cn=smith\\2C j`` name the same objects. The DC accepts any of them as a search base but returns DNs in its own
spelling, so a textual ``endswith`` between a configured base DN and the DNs the DC returns can see nothing in
scope, and a full import then deletes everything. Every "is X under Y" / "is X the same as Y" check of the engine
goes through this module: attribute types are compared case-insensitively, values after unescaping (``\\,`` and
``\\2C`` are one comma; hex escapes are UTF-8 bytes), Unicode-normalized (NFC) and case-folded, insignificant spaces
around separators dropped, and the AVAs of a multi-valued RDN (``cn=a+sn=b``) compared as a set.

Parsing and validation are ldap3's (:func:`ldap3.utils.dn.parse_dn`); this module only removes the insignificant
spaces ldap3's ``strip`` option mishandles (it strips an escaped trailing space) and normalizes the values.

Not for the rule language's text operators (ENDSWITH etc. compare text by definition).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.dn import parse_dn

__all__ = ["DnError", "DnScope", "canonical_dn", "dn_is_under", "dn_key", "normalize_dn", "same_dn", "wire_dn"]

#: A normalized DN: RDNs leaf first, each a sorted tuple of (attribute type, value) pairs, both case-folded.
NormalizedDn = tuple[tuple[tuple[str, str], ...], ...]

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class DnError(ValueError):
    """A text that is not a valid DN; the message quotes it and says what is wrong."""


def _tidy(dn: str) -> str:
    """Drop the unescaped spaces around ``,``, ``+``, an AVA's first ``=`` and at both ends (RFC 4514 allows them;
    they carry nothing); keep escaped spaces (``\\ ``) and spaces inside values. An unescaped ``=`` or non-leading
    ``#`` inside a value (RFC 4514 does not require escaping them; ldap3 refuses them) is escaped."""
    out: list[str] = []
    pending = ""  # unescaped spaces that matter only if a value character follows
    after_separator = True
    in_value = False
    position = 0
    while position < len(dn):
        char = dn[position]
        if char == "\\":
            out.append(pending)
            pending = ""
            out.append(dn[position : position + 2])
            position += 2
            after_separator = False
            continue
        if char == " ":
            if not after_separator:
                pending += char
        elif char in ",+" or (char == "=" and not in_value):
            pending = ""
            out.append(char)
            after_separator = True
            in_value = char == "="
        else:
            # RFC 4514 needs no escape for "=" in a value nor for "#" after its first character; ldap3 does.
            escape = char == "=" or (char == "#" and not after_separator)
            out.append(pending)
            pending = ""
            out.append("\\" + char if escape else char)
            after_separator = False
        position += 1
    return "".join(out)


def _unescape(value: str) -> str:
    """An RFC 4514 attribute value without its escapes: ``\\2C`` and ``\\,`` are both ``,``; ``\\c3\\a9`` is é."""
    raw = bytearray()
    position = 0
    while position < len(value):
        char = value[position]
        if char == "\\":
            pair = value[position + 1 : position + 3]
            if len(pair) == 2 and pair[0] in _HEX_DIGITS and pair[1] in _HEX_DIGITS:
                raw.append(int(pair, 16))
                position += 3
                continue
            raw += value[position + 1 : position + 2].encode()
            position += 2
            continue
        raw += char.encode()
        position += 1
    return raw.decode("utf-8", errors="surrogateescape")


def _fold(value: str) -> str:
    return unicodedata.normalize("NFC", _unescape(value)).casefold()


@lru_cache(maxsize=65_536)
def normalize_dn(dn: str) -> NormalizedDn:
    """The normalized form of ``dn`` (leaf RDN first); two DNs name the same entry when their forms are equal.

    The empty DN (the root) is the empty tuple.

    :raise DnError: ``dn`` is not a valid DN.
    """
    tidy = _tidy(dn)
    if not tidy:
        return ()
    try:
        avas = parse_dn(tidy, escape=False, strip=False)
    except LDAPInvalidDnError as error:
        raise DnError(f"{dn!r} is not a valid DN: {error}") from None
    rdns: list[tuple[tuple[str, str], ...]] = []
    current: list[tuple[str, str]] = []
    for attribute_type, value, separator in avas:
        current.append((attribute_type.lower(), _fold(value)))
        if separator != "+":
            rdns.append(tuple(sorted(current)))
            current = []
    if current:  # a trailing "+" with nothing after it
        raise DnError(f"{dn!r} is not a valid DN: it ends inside a multi-valued RDN")
    return tuple(rdns)


def _escape(value: str) -> str:
    """RFC 4514 escaping of an attribute value: the special characters, a leading space or ``#``, a trailing space.
    (ldap3's ``escape_rdn`` turns a value of one space into an escaped backslash and a bare space.)"""
    if not value:
        return ""
    tokens = ["\\00" if char == "\x00" else "\\" + char if char in '"+,;<>\\=' else char for char in value]
    if tokens[0] in (" ", "#"):
        tokens[0] = "\\" + tokens[0]
    if tokens[-1] == " ":
        tokens[-1] = "\\ "
    return "".join(tokens)


def wire_dn(dn: str) -> str:
    """``dn`` as written, minus the insignificant spaces around separators, for sending to a server: ldap3 refuses
    ``dc=corp, dc=example`` as a search base although RFC 4514 and the DC accept it.

    :raise DnError: ``dn`` is not a valid DN.
    """
    normalize_dn(dn)
    return _tidy(dn)


def canonical_dn(dn: str) -> str:
    """One spelling per entry: lower-case types, case-folded unescaped values escaped again the one RFC 4514 way,
    no spaces around separators. For keys and equality lookups (``ISMEMBEROF``), never for writing to a directory.

    :raise DnError: ``dn`` is not a valid DN.
    """
    return ",".join(
        "+".join(f"{attribute_type}={_escape(value)}" for attribute_type, value in rdn) for rdn in normalize_dn(dn)
    )


def dn_key(text: str) -> str:
    """A lookup key for a DN-valued text: its canonical spelling, or, for a text that is no DN (an Entra connector
    space's ``groups/<id>``), the case-folded text."""
    try:
        return canonical_dn(text)
    except DnError:
        return text.casefold()


def same_dn(first: str, second: str) -> bool:
    """Do both DNs name the same entry? Texts that are not DNs compare case-insensitively as text."""
    try:
        return normalize_dn(first) == normalize_dn(second)
    except DnError:
        return first.casefold() == second.casefold()


def dn_is_under(dn: str, base: str) -> bool:
    """Is ``dn`` the entry ``base`` or an entry below it?

    :raise DnError: one of them is not a valid DN.
    """
    return DnScope(base).contains(dn)


def split_rdn(dn: str) -> tuple[str, str]:
    """The leaf RDN of ``dn`` and its parent's DN, as written (minus insignificant spaces): ``CN=Back\\\\,OU=W`` is
    ``CN=Back\\\\`` under ``OU=W`` (ldap3's ``to_dn`` splits a value ending in an escaped backslash or space wrongly).

    :raise DnError: ``dn`` is not a valid DN.
    """
    tidy = wire_dn(dn)
    comma = _first_unescaped_comma(tidy)
    return (tidy, "") if comma < 0 else (tidy[:comma], tidy[comma + 1 :])


def _first_unescaped_comma(dn: str) -> int:
    position = 0
    while position < len(dn):
        char = dn[position]
        if char == "\\":
            position += 2
            continue
        if char == ",":
            return position
        position += 1
    return -1


class DnScope:
    """A subtree (``base`` and everything below it), tested against many DNs.

    A full import tests every object it reads; objects share few parents, so the test parses only each object's
    parent (cached) and compares its last RDNs with the base's.

    :raise DnError: ``base`` is not a valid DN.
    """

    def __init__(self, base: str):
        self.base_text = base
        self.base = normalize_dn(base)

    def is_base(self, dn: str) -> bool:
        """Is ``dn`` the base entry itself? Cheap for entries below it (their parent is parsed once and cached).

        :raise DnError: ``dn`` is not a valid DN.
        """
        comma = _first_unescaped_comma(dn)
        if comma >= 0 and len(normalize_dn(dn[comma + 1 :])) != len(self.base) - 1:
            return False
        return normalize_dn(dn) == self.base

    def contains(self, dn: str) -> bool:
        """Is ``dn`` the base or below it?

        :raise DnError: ``dn`` is not a valid DN.
        """
        depth = len(self.base)
        if depth == 0:
            normalize_dn(dn)  # validates
            return True
        comma = _first_unescaped_comma(dn)
        if comma < 0:
            return normalize_dn(dn) == self.base
        if "=" not in dn[:comma]:
            raise DnError(f"{dn!r} is not a valid DN: its first RDN has no attribute type")
        parent = normalize_dn(dn[comma + 1 :])
        if len(parent) >= depth:
            return parent[len(parent) - depth :] == self.base
        if len(parent) == depth - 1:
            return normalize_dn(dn) == self.base
        return False
