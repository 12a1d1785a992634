"""Directory functions: DNComponent, DNComponentRev, EscapeDNComponent (and the DN splitting they share)."""

from __future__ import annotations

import re
from typing import Any

from airflow_provider_aadsync.engine.expressions.coerce import enum_name, to_int, to_text
from airflow_provider_aadsync.engine.expressions.errors import ArgumentError
from airflow_provider_aadsync.engine.expressions.limits import shown
from airflow_provider_aadsync.engine.expressions.registry import function, scalar


# ================================================================================================= directory
def split_dn(dn: str) -> list[tuple[str, str]]:
    """A DN as (attribute type, unescaped value) pairs, left to right; escaped and quoted commas are kept."""
    components: list[tuple[str, str]] = []
    current: list[str] = []
    i, quoted = 0, False
    while i < len(dn):
        char = dn[i]
        if char == "\\" and i + 1 < len(dn):
            current.append(dn[i : i + 2])
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char in ",;" and not quoted:
            components.append(_rdn("".join(current)))
            current = []
            i += 1
            continue
        current.append(char)
        i += 1
    if current or components:
        components.append(_rdn("".join(current)))
    return components


def _rdn(text: str) -> tuple[str, str]:
    kind, sep, value = text.strip().partition("=")
    if not sep:
        raise ArgumentError(f"{shown(text.strip())} is not a DN component (type=value)")
    return kind.strip(), _unescape_dn_value(value.strip())


def _unescape_dn_value(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    out = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 2 < len(value) + 1:
            pair = value[i + 1 : i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                out.append(int(pair, 16))
                i += 3
                continue
            out.extend(value[i + 1].encode())
            i += 2
            continue
        out.extend(value[i].encode())
        i += 1
    return out.decode("utf-8", errors="replace")


@function("DNComponent", 2, per_value=True)
def dn_component(dn: Any, number: Any) -> str | None:
    """The (unescaped) value of the ``number``-th component from the left; NULL when there is none."""
    text = to_text(dn, "dn")
    index = to_int(scalar(number, "ComponentNumber"), "ComponentNumber")
    if text is None or index is None:
        return None
    components = split_dn(text)
    return components[index - 1][1] if 1 <= index <= len(components) else None


@function("DNComponentRev", 2, 3, per_value=True)
def dn_component_rev(dn: Any, number: Any, options: Any = None) -> str | None:
    """The ``number``-th component from the right; option ``"DC"`` skips the ``dc=`` components."""
    text = to_text(dn, "dn")
    index = to_int(scalar(number, "ComponentNumber"), "ComponentNumber")
    if text is None or index is None:
        return None
    components = split_dn(text)
    if options is not None:
        enum_name(options, ("DC",), "Options")
        components = [c for c in components if c[0].casefold() != "dc"]
    return components[-index][1] if 1 <= index <= len(components) else None


_DN_SPECIALS = set(',+"\\<>;=')


@function("EscapeDNComponent", 1, per_value=True)
def escape_dn_component(value: Any) -> str | None:
    """Escape the value of ``type=value`` (or a bare value) for LDAP: ``,+"\\<>;=`` get a backslash, a leading
    ``#`` or space and a trailing space too, control characters become ``\\XX``."""
    text = to_text(value, "value")
    if text is None:
        return None
    kind, sep, rest = text.partition("=")
    if not sep or not re.fullmatch(r"\s*[A-Za-z][A-Za-z0-9-]*\s*", kind):
        kind, sep, rest = "", "", text
    out = []
    for position, char in enumerate(rest):
        if char in _DN_SPECIALS:
            out.append("\\" + char)
        elif ord(char) < 0x20 or char == "\x7f":
            out.append(f"\\{ord(char):02X}")
        elif (char in "# " and position == 0) or (char == " " and position == len(rest) - 1):
            out.append("\\" + char)
        else:
            out.append(char)
    return f"{kind}{sep}{''.join(out)}"
