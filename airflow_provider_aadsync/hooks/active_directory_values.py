"""The values the AD hook puts on the wire: filter assertion values, ``<GUID=...>`` DNs and member modifications,
and the GUID read back from an extended-DN value."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import ldap3
from ldap3.utils.conv import escape_filter_chars

from airflow_provider_aadsync.engine.connectors.ad.entries import parse_extended_dn


def filter_value(value: str) -> str:
    """An LDAP filter assertion value: ldap3's escape_filter_chars for ``*()\\`` and NUL, and leading or trailing
    whitespace as ``\\XX`` escapes too (ldap3 strips it from an unescaped filter value before sending)."""
    escaped = escape_filter_chars(value)
    core = escaped.strip()
    start = len(escaped) - len(escaped.lstrip())
    lead, trail = escaped[:start], escaped[start + len(core) :]

    def hexed(text: str) -> str:
        return "".join(f"\\{byte:02x}" for byte in text.encode())

    return hexed(lead) + core + hexed(trail)


def reference_operations(add: Sequence[str], remove: Sequence[str]) -> list[tuple[str, list[str]]]:
    operations: list[tuple[str, list[str]]] = []
    if remove:
        operations.append((ldap3.MODIFY_DELETE, [guid_dn(target) for target in remove]))
    if add:
        operations.append((ldap3.MODIFY_ADD, [guid_dn(target) for target in add]))
    return operations


def value_guid(value: bytes) -> str | None:
    """The GUID of a value read with the extended-DN control (``<GUID=...>;<SID=...>;CN=...``)."""
    return parse_extended_dn(value.decode("utf-8", "replace")).guid


def guid_dn(guid: str) -> str:
    """The ``<GUID=...>`` form that addresses an object by objectGUID whatever its DN."""
    return f"<GUID={guid}>"


def guid_filter(guid: str) -> str:
    """``(objectGUID=...)`` matching the object of ``guid`` (its bytes as AD stores them, little-endian, escaped)."""
    return "(objectGUID=" + "".join(f"\\{byte:02x}" for byte in uuid.UUID(guid).bytes_le) + ")"
