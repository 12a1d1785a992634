"""Turn raw Active Directory entries (extended DNs, raw attribute bytes) into SourceObjects.

Pure: takes the bytes an LDAP client returned, so the same code serves paged full imports and DirSync deltas,
and unit tests can feed it entries without a server.
"""

from __future__ import annotations

import base64
import re
import struct
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.dn import parse_dn

from airflow_provider_aadsync.engine.connectors.ad.schema import (
    DEFAULT_BINARY_ATTRIBUTES,
    DEFAULT_REFERENCE_ATTRIBUTES,
    GUID_ATTRIBUTES,
    SID_ATTRIBUTES,
)
from airflow_provider_aadsync.engine.runs.source import ObjectDecodeError, Reference, SourceObject

_EXTENDED_DN = re.compile(r"^(?:<(?P<kind>GUID|SID|WKGUID)=(?P<value>[^>]*)>;)")
_RANGE_OPTION = re.compile(r"^(?P<name>[^;]+);range=(?P<low>\d+)-(?P<high>\d+|\*)$", re.IGNORECASE)


@dataclass(frozen=True)
class ExtendedDn:
    dn: str
    guid: str | None
    sid: str | None


def parse_extended_dn(value: str) -> ExtendedDn:
    """Split ``<GUID=...>;<SID=...>;CN=...`` into its parts (string or hex GUID form)."""
    guid = sid = None
    rest = value
    while match := _EXTENDED_DN.match(rest):
        kind, component = match.group("kind"), match.group("value")
        if kind == "GUID":
            guid = str(uuid.UUID(bytes_le=bytes.fromhex(component))) if len(component) == 32 else component
            guid = guid.lower()
        elif kind == "SID":
            sid = component
        rest = rest[match.end() :]
    return ExtendedDn(dn=rest, guid=guid, sid=sid)


def reference_from_value(value: str) -> Reference:
    """A DN-valued attribute value as a reference; without an extended GUID, the DN stands in as placeholder."""
    parsed = parse_extended_dn(value)
    return (parsed.guid or f"dn:{parsed.dn.lower()}", parsed.dn)


_DN_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2}|.)")


def rdn_value(dn: str, kind: str) -> str | None:
    """The unescaped value of ``dn``'s first RDN when it is of type ``kind`` (``CN=Smith\\, J`` → ``Smith, J``)."""
    try:
        first = parse_dn(dn)[0]
    except (LDAPInvalidDnError, IndexError):
        return None
    if first[0].lower() != kind.lower():
        return None
    raw = bytearray()
    position = 0
    for match in _DN_ESCAPE.finditer(first[1]):
        raw += first[1][position : match.start()].encode()
        escaped = match.group(1)
        raw += bytes.fromhex(escaped) if len(escaped) == 2 else escaped.encode()
        position = match.end()
    raw += first[1][position:].encode()
    return raw.decode("utf-8", "replace")


def split_range_option(attribute: str) -> tuple[str, int | None, str | None]:
    """``member;range=0-1499`` → ("member", 0, "1499"); a plain name → (name, None, None)."""
    if ";" not in attribute:
        return attribute, None, None
    match = _RANGE_OPTION.match(attribute)
    if not match:
        return attribute, None, None
    return match.group("name"), int(match.group("low")), match.group("high")


def classify(object_classes: Iterable[str]) -> str | None:
    """The connector-space object type for an AD objectClass chain; None for types we do not import."""
    classes = {value.lower() for value in object_classes}
    if "computer" in classes:
        return None
    if "group" in classes:
        return "group"
    if "contact" in classes:
        return "contact"
    if "user" in classes:
        return "user"
    if "organizationalunit" in classes:
        return "organizationalUnit"
    if "foreignsecurityprincipal" in classes:  # a member from another forest: joined by its objectSid
        return "foreignSecurityPrincipal"
    return None


_SKIP, _TEXT, _REFERENCE, _GUID, _SID, _BINARY = "skip", "text", "reference", "guid", "sid", "binary"
_utf8 = bytes.decode


#: Attributes the decoder reads before the others (the anchor, the tombstone flag, the type), by lowered name.
_ROLES = {"objectguid": "guid", "isdeleted": "deleted", "objectclass": "class"}


@dataclass(frozen=True, slots=True)
class _AttributePlan:
    name: str  # without range options
    kind: str
    incremental: bool | None  # DirSync incremental values: True added (range=1-1), False removed (0-0)
    window: bool  # a range option other than range=0-* (the whole list): a part of the values, unless incremental
    role: str | None = None  # "guid", "deleted" or "class": one of the attributes read first (_ROLES)
    names_cn: bool = False  # its values land in attrs["cn"] (the naming attribute is present)


@dataclass
class EntryDecoder:
    """Decodes raw entries with a given notion of which attributes are references or binary."""

    reference_attributes: frozenset[str] = DEFAULT_REFERENCE_ATTRIBUTES
    binary_attributes: frozenset[str] = DEFAULT_BINARY_ATTRIBUTES
    _reference_lower: frozenset[str] = field(init=False)
    _plans: dict[str, _AttributePlan] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._reference_lower = frozenset(name.lower() for name in self.reference_attributes)
        self.binary_attributes = frozenset(name.lower() for name in self.binary_attributes)

    def decode(self, extended_dn: str, raw: Mapping[str, list[bytes]], *, partial: bool) -> SourceObject | None:
        """Decode one entry; None when it is of a type we do not import (e.g. a computer).

        :raise ObjectDecodeError: a value cannot be decoded; the caller records it against this object.
        """
        parsed = parse_extended_dn(extended_dn)
        anchor = parsed.guid
        # One look at each attribute's cached plan finds the three read first: a client may hand a plain dict in the
        # server's spelling (python-ldap), where a case-insensitive lookup of each would scan every attribute.
        plans = self._plans
        special: dict[str, list[bytes]] = {}
        for attribute, raw_values in raw.items():
            role = (plans.get(attribute) or self._plan(attribute)).role
            if role is not None and role not in special:
                special[role] = raw_values or []
        raw_guid = next(iter(special.get("guid") or ()), None)
        if raw_guid is not None:
            anchor = str(uuid.UUID(bytes_le=raw_guid))
        if anchor is None:
            raise ObjectDecodeError(
                "entry has neither an objectGUID value nor a GUID in its extended DN",
                dn=parsed.dn,
                code="missing-anchor",
            )
        deleted = (next(iter(special.get("deleted") or ()), None) or b"").upper() == b"TRUE"
        object_classes = [value.decode("ascii", "replace") for value in special.get("class") or ()]
        object_type = classify(object_classes) if object_classes else None
        if object_classes and object_type is None and not deleted:
            return None
        result = SourceObject(anchor=anchor, dn=parsed.dn, object_type=object_type, deleted=deleted, partial=partial)
        attrs = result.attrs
        has_cn = False
        for attribute, raw_values in raw.items():
            plan = plans[attribute]
            name, kind = plan.name, plan.kind
            has_cn = has_cn or plan.names_cn
            values = raw_values or []
            if kind is _SKIP:
                continue
            if plan.window and not (partial and plan.incremental is not None):
                # A window of a ranged value list (member;range=0-1499): more values follow in further ranges. Taken
                # as the attribute's values it would drop the rest (a mass member removal): the caller reads it whole.
                if name not in result.truncated:
                    result.truncated.append(name)
                continue
            if kind is _TEXT:  # the common case: map over bytes.decode (UTF-8, strict) makes no frame per attribute
                try:
                    attrs[name] = list(map(_utf8, values))
                except UnicodeDecodeError:
                    attrs[name] = [self._text(value, name, parsed.dn, anchor) for value in values]
            elif kind is _REFERENCE:
                references = [reference_from_value(self._text(value, name, parsed.dn, anchor)) for value in values]
                if partial and plan.incremental is not None:
                    # DirSync incremental values: range=1-1 are values added, range=0-0 values removed.
                    target = result.reference_adds if plan.incremental else result.reference_removes
                    target.setdefault(name, []).extend(references)
                else:
                    result.references.setdefault(name, []).extend(references)
            else:
                attrs[name] = [self._convert(kind, name, value, parsed.dn, anchor) for value in values]
        if not deleted and not has_cn:
            # DirSync may leave the naming attribute out of an added object; it is the DN's first RDN value.
            rdn = rdn_value(parsed.dn, "CN")
            if rdn is not None:
                attrs["cn"] = [rdn]
        return result

    def is_reference(self, name: str) -> bool:
        """Whether attribute ``name`` (without range options) decodes as references."""
        return name.lower() in self._reference_lower

    def _plan(self, attribute: str) -> _AttributePlan:
        """How to decode one attribute name (as the server spelled it), worked out once and cached."""
        name, low, high = split_range_option(attribute)
        lowered = name.lower()
        incremental = None
        if low is not None and high is not None and high != "*" and low == int(high) and low in (0, 1):
            incremental = low == 1
        window = low is not None and not (low == 0 and high == "*")
        if lowered == "isdeleted":
            kind = _SKIP
        elif lowered in self._reference_lower:
            kind = _REFERENCE
        elif lowered in GUID_ATTRIBUTES:
            kind = _GUID
        elif lowered in SID_ATTRIBUTES:
            kind = _SID
        elif lowered in self.binary_attributes:
            kind = _BINARY
        else:
            kind = _TEXT
        names_cn = lowered == "cn" and kind not in (_SKIP, _REFERENCE)
        plan = _AttributePlan(name, kind, incremental, window, _ROLES.get(attribute.lower()), names_cn)
        self._plans[attribute] = plan
        return plan

    def _convert(self, kind: str, name: str, value: bytes, dn: str, anchor: str) -> str:
        if kind == _GUID and len(value) == 16:
            return str(uuid.UUID(bytes_le=value))
        if kind == _SID:
            try:
                return format_sid(value)
            except ValueError as error:
                raise ObjectDecodeError(str(error), dn=dn, anchor=anchor, code="undecodable-value") from None
        if kind == _BINARY:
            return base64.b64encode(value).decode("ascii")
        return self._text(value, name, dn, anchor)

    @staticmethod
    def _text(value: bytes, name: str, dn: str, anchor: str) -> str:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ObjectDecodeError(
                f"attribute {name!r} has a value that is not valid UTF-8 ({error.reason} at byte {error.start}); "
                "declare it binary in the connection's binary_attributes if it holds bytes",
                dn=dn,
                anchor=anchor,
                code="undecodable-value",
            ) from None


def format_sid(value: bytes) -> str:
    """The text form of a binary SID (MS-DTYP 2.4.2): S-revision-authority-subauthorities."""
    if len(value) < 8 or len(value) != 8 + 4 * value[1]:
        raise ValueError(f"not a SID: {value.hex()}")
    authority = int.from_bytes(value[2:8], "big")
    subauthorities = struct.unpack(f"<{value[1]}I", value[8:])
    return f"S-{value[0]}-{authority}" + "".join(f"-{part}" for part in subauthorities)
