"""Converters from the stored JSON value of a connector attribute to the typed value rules see.

The store keeps every value as JSON text (GUIDs and SIDs in their text forms, numbers as the directory sent them).
Rules and expressions see typed values, as the product does: AD ``objectGUID`` as its 16 raw bytes (so
``ConvertToBase64([objectGUID])`` is the ImmutableId), ``objectSid`` as a binary SID, ``userAccountControl`` as an
integer. A connector's schema names the converter of each typed attribute (``Attribute.typed``). Conversions run per
column, and only over the columns a rule reads: NULL cells cost nothing, and the shipped converters' common case
(canonical GUID text, decimal integers) is converted for the whole column at once.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

Converter = Callable[[Any], Any]


def guid_bytes(value: Any) -> Any:
    """A GUID's text form as the raw bytes AD stores (``uuid.bytes_le``); other values pass through."""
    if isinstance(value, str):
        try:
            return uuid.UUID(value).bytes_le
        except ValueError:
            return value
    return value


def sid_bytes(value: Any) -> Any:
    """``S-1-5-21-...`` as the binary SID (MS-DTYP 2.4.2); other values pass through."""
    if not isinstance(value, str) or not value.upper().startswith("S-"):
        return value
    parts = value.split("-")
    try:
        revision, authority, subauthorities = int(parts[1]), int(parts[2]), [int(part) for part in parts[3:]]
    except (IndexError, ValueError):
        return value
    return (
        bytes([revision, len(subauthorities)])
        + authority.to_bytes(6, "big")
        + struct.pack(f"<{len(subauthorities)}I", *subauthorities)
    )


def integer(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def boolean(value: Any) -> Any:
    if isinstance(value, str) and value.upper() in ("TRUE", "FALSE"):
        return value.upper() == "TRUE"
    return value


def _convert_cell(cell: Any, convert: Converter) -> Any:
    if cell is None:
        return None
    if isinstance(cell, list):
        return [convert(value) for value in cell]
    return convert(cell)


# Canonical GUID text, 8-4-4-4-12 hex digits: where its hyphens and hex digits are, and where AD's byte order
# (uuid.bytes_le: the first three fields little-endian) takes each of the 16 bytes from.
_GUID_HYPHENS = np.array([8, 13, 18, 23])
_GUID_HEX = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])
_GUID_LE = np.array([3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15])
_NIBBLE = np.full(256, 255, dtype=np.uint8)
for _digit in "0123456789abcdefABCDEF":
    _NIBBLE[ord(_digit)] = int(_digit, 16)


def guid_bytes_column(texts: list[str]) -> list[Any]:
    """``guid_bytes`` of many strings: the canonical ones (8-4-4-4-12 hex digits, all AD sends) decoded together,
    any other text by ``guid_bytes`` itself."""
    size = len(texts)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=size)
    rows = np.flatnonzero(lengths == 36)
    decoded: list[bytes] = []
    valid = np.zeros(0, dtype=bool)
    if rows.size:
        decoded, valid = _decode_guids(texts if rows.size == size else [texts[i] for i in rows.tolist()])
        if rows.size == size and valid.all():
            return decoded
    out: list[Any] = list(texts)
    done = np.zeros(size, dtype=bool)
    for row in np.flatnonzero(valid).tolist():
        out[rows[row]] = decoded[row]
        done[rows[row]] = True
    for position in np.flatnonzero(~done).tolist():
        out[position] = guid_bytes(texts[position])
    return out


def _decode_guids(texts: list[str]) -> tuple[list[bytes], np.ndarray]:
    """The ``bytes_le`` of 36-character strings, and which of them are canonical GUIDs (the others' are junk)."""
    size = len(texts)
    joined = "".join(texts)
    if not joined.isascii():  # rare enough to leave every one of them to guid_bytes
        return [], np.zeros(size, dtype=bool)
    chars = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(size, 36)
    hyphens = (chars[:, _GUID_HYPHENS] == ord("-")).all(axis=1)
    raw = b""
    if hyphens.all() and joined.count("-") == 4 * size:
        try:
            raw = bytes.fromhex(joined.replace("-", ""))  # whitespace is skipped: then fewer than 16 bytes each
        except ValueError:
            raw = b""
    if len(raw) == 16 * size:
        valid = np.ones(size, dtype=bool)
    else:  # some are not GUIDs: find which, digit by digit
        nibbles = _NIBBLE[chars[:, _GUID_HEX]]
        valid = hyphens & (nibbles != 255).all(axis=1)
        raw = ((nibbles[:, 0::2] << 4) | nibbles[:, 1::2]).tobytes()
    reordered = np.frombuffer(raw, dtype=np.uint8).reshape(size, 16)[:, _GUID_LE]
    # Void items come back as bytes, all 16 of them (an "S16" array would drop trailing NUL bytes).
    return np.frombuffer(reordered.tobytes(), dtype="V16").tolist(), valid


def integer_column(texts: list[str]) -> list[Any]:
    """``integer`` of many strings (``int`` itself, so exactly its reading of each)."""
    try:
        return list(map(int, texts))
    except ValueError:
        return [integer(text) for text in texts]


def sid_bytes_column(texts: list[str]) -> list[Any]:
    """``sid_bytes`` of many strings. A domain's SIDs share all but their last part (the relative id): the domain's
    part is encoded once, by ``sid_bytes`` itself, and each SID adds its relative id as 4 bytes (a third of the
    time per SID); a relative id that is not plain decimal digits below 2**32, or a text without a valid domain
    part, goes through ``sid_bytes`` as it is."""
    heads: dict[str, bytes | None] = {}
    out: list[Any] = []
    for text in texts:
        domain, _, relative_id = text.rpartition("-")
        head = heads.get(domain, b"")
        if head == b"":
            # Only a relative id that is a sub-authority ("S-1-5-500": the authority) is added to a domain's part.
            encoded = sid_bytes(f"{domain}-0") if domain.count("-") >= 2 else None
            head = heads[domain] = encoded[:-4] if isinstance(encoded, bytes) else None
        if head is not None and relative_id.isascii() and relative_id.isdigit() and len(relative_id) <= 9:
            out.append(head + int(relative_id).to_bytes(4, "little"))
        else:
            out.append(sid_bytes(text))
    return out


# Converters that leave every value but a string as it is, and their forms over a column's strings.
_STRING_CONVERTERS: dict[Converter, Callable[[list[str]], list[Any]]] = {
    guid_bytes: guid_bytes_column,
    integer: integer_column,
    sid_bytes: sid_bytes_column,
    boolean: lambda texts: [boolean(text) for text in texts],
}


def convert_column(cells: np.ndarray, convert: Converter) -> np.ndarray:
    """``convert`` applied to every value of a column of value cells (NULL stays NULL, lists value by value)."""
    out = cells.copy()
    column_form = _STRING_CONVERTERS.get(convert)
    if column_form is None:
        for position, cell in enumerate(cells):
            if cell is not None:
                out[position] = _convert_cell(cell, convert)
        return out
    kinds = np.fromiter(map(type, cells), dtype=object, count=len(cells))
    strings = np.flatnonzero(np.equal(kinds, str))  # an array of types: == per item
    if strings.size:
        out[strings] = np.fromiter(column_form(cells[strings].tolist()), dtype=object, count=strings.size)
    for position in np.flatnonzero(np.equal(kinds, list)).tolist():
        out[position] = [convert(value) for value in cells[position]]
    others = ~(np.equal(kinds, str) | np.equal(kinds, list) | np.equal(kinds, type(None)))
    for position in np.flatnonzero(others).tolist():
        if isinstance(cells[position], str | list):  # a subclass: converted as _convert_cell converts it
            out[position] = _convert_cell(cells[position], convert)
    return out
