"""Conversion, date/time, evaluation and math functions of the sync functions reference."""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import random
import re
import uuid
from typing import Any

from airflow_provider_aadsync.engine.expressions import dates
from airflow_provider_aadsync.engine.expressions.coerce import (
    enum_name,
    parse_number,
    to_bool,
    to_bytes,
    to_datetime,
    to_int,
    to_number,
    to_text,
)
from airflow_provider_aadsync.engine.expressions.errors import ArgumentError
from airflow_provider_aadsync.engine.expressions.limits import shown
from airflow_provider_aadsync.engine.expressions.registry import function, scalar
from airflow_provider_aadsync.engine.expressions.values import ReferenceValues


# ================================================================================================ conversion
@function("CBool", 1)
def cbool(value: Any) -> bool:
    """True when the expression is non-zero / True; False otherwise (NULL included), as documented."""
    return bool(to_bool(scalar(value, "expression"), "expression"))


@function("CDate", 1, per_value=True)
def cdate(value: Any) -> _dt.datetime | None:
    return to_datetime(value, "value")


@function("CGuid", 1, per_value=True)
def cguid(value: Any) -> bytes | None:
    """The binary form (``uuid.UUID(s).bytes_le``, AD's objectGUID byte order) of ``xxxxxxxx-...`` or ``{...}``."""
    text = to_text(value, "GUID")
    if text is None:
        return None
    guid = _parse_guid(text)
    if guid is None:
        raise ArgumentError(f"{shown(text)} is not a GUID")
    return guid.bytes_le


_GUID = re.compile(r"^(\{)?[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?(1)\})$")


def _parse_guid(text: str) -> uuid.UUID | None:
    text = text.strip()
    return uuid.UUID(text.strip("{}")) if _GUID.match(text) else None


_ENCODINGS = ("Unicode", "ASCII", "UTF8", "Binary")
_CODECS = {"Unicode": "utf-16-le", "ASCII": "ascii", "UTF8": "utf-8"}


@function("ConvertFromBase64", 1, 2, per_value=True)
def convert_from_base64(source: Any, encoding: Any = "Unicode") -> str | bytes | None:
    """Decode base64 to text (Unicode = UTF-16LE by default; ASCII, UTF8). Extension: ``Binary`` returns bytes."""
    text = to_text(source, "source")
    if text is None:
        return None
    codec = enum_name(encoding, _ENCODINGS, "Encoding")
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ArgumentError(f"{shown(text)} is not base64") from None
    if codec == "Binary":
        return raw
    try:
        # surrogatepass: a GUID's 16 bytes read as UTF-16 survive ConvertToBase64(ConvertFromBase64(x)) unchanged
        return raw.decode(_CODECS[codec], errors="surrogatepass" if codec == "Unicode" else "strict")
    except UnicodeDecodeError:
        raise ArgumentError(f"the decoded bytes are not {codec} text") from None


@function("ConvertToBase64", 1, per_value=True)
def convert_to_base64(source: Any) -> str | None:
    """Base64 of a string's UTF-16LE ("Unicode") bytes, or of binary data as it is (objectGUID → ImmutableId)."""
    if source is None:
        return None
    if isinstance(source, bytes):
        return base64.b64encode(source).decode("ascii")
    text = to_text(source, "source")
    return base64.b64encode(text.encode("utf-16-le", errors="surrogatepass")).decode("ascii")  # type: ignore[union-attr]


@function("ConvertFromUTF8Hex", 1, per_value=True)
def convert_from_utf8_hex(source: Any) -> str | None:
    text = to_text(source, "source")
    if text is None:
        return None
    try:
        return bytes.fromhex(text).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise ArgumentError(f"{shown(text)} is not UTF-8 hex") from None


@function("ConvertToUTF8Hex", 1, per_value=True)
def convert_to_utf8_hex(source: Any) -> str | None:
    text = to_text(source, "source")
    return None if text is None else text.encode("utf-8").hex().upper()


@function("CNum", 1, per_value=True)
def cnum(value: Any) -> int | float | None:
    return to_number(value, "value")


@function("CRef", 1, per_value=True)
def cref(value: Any) -> str | None:
    """A reference is its DN string here."""
    return to_text(value, "value")


@function("CStr", 1, per_value=True)
def cstr(value: Any) -> str | None:
    """Numbers, Booleans ("True"/"False"), references and strings as a string; DateTimes as ``yyyy-MM-dd HH:mm:ss``."""
    if isinstance(value, _dt.datetime):
        return dates.format_datetime(value, "yyyy-MM-dd HH:mm:ss")
    if isinstance(value, bytes):
        raise ArgumentError("cannot convert binary to a string; use StringFromGuid, StringFromSid or ConvertToBase64")
    return to_text(value, "value")


@function("StringFromGuid", 1, per_value=True)
def string_from_guid(value: Any) -> str | None:
    """``str(uuid.UUID(bytes_le=value))``: lowercase, hyphenated, no braces."""
    raw = to_bytes(value, "GUID")
    if raw is None:
        return None
    if len(raw) != 16:
        raise ArgumentError(f"a binary GUID has 16 bytes, got {len(raw)}")
    return str(uuid.UUID(bytes_le=raw))


@function("StringFromSid", 1, per_value=True)
def string_from_sid(value: Any) -> str | None:
    """A binary SID as ``S-1-5-21-...``."""
    raw = to_bytes(value, "ObjectSID")
    if raw is None:
        return None
    if len(raw) < 8 or len(raw) != 8 + 4 * raw[1]:
        raise ArgumentError(f"{len(raw)} bytes are not a binary SID")
    authority = int.from_bytes(raw[2:8], "big")
    subs = [int.from_bytes(raw[8 + 4 * i : 12 + 4 * i], "little") for i in range(raw[1])]
    return "-".join(["S", str(raw[0]), str(authority), *map(str, subs)])


# ================================================================================================= date/time
@function("DateAdd", 3)
def date_add(interval: Any, value: Any, date: Any) -> _dt.datetime | None:
    when = to_datetime(scalar(date, "date"), "date")
    number = to_int(scalar(value, "value"), "value")
    if when is None or number is None:
        return None
    return dates.date_add(to_text(interval, "interval") or "", number, when)


@function("DateFromNum", 1, per_value=True)
def date_from_num(value: Any) -> _dt.datetime | None:
    number = to_int(value, "value")
    return None if number is None else dates.date_from_num(number)


@function("FormatDateTime", 2, per_value=True)
def format_date_time(value: Any, fmt: Any) -> str | None:
    when = to_datetime(value, "value")
    return None if when is None else dates.format_datetime(when, to_text(fmt, "format") or "")


@function("Now", 0, pure=False)
def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


@function("NumFromDate", 1, per_value=True)
def num_from_date(value: Any) -> int | None:
    when = to_datetime(value, "value")
    return None if when is None else dates.num_from_date(when)


# ================================================================================================ evaluation
@function("IsBitSet", 2)
def is_bit_set(value: Any, flag: Any) -> bool | None:
    """True when every bit of ``flag`` is set in ``value`` (``IsBitSet([userAccountControl],2)``: disabled)."""
    number = to_int(scalar(value, "value"), "value")
    mask = to_int(scalar(flag, "flag"), "flag")
    if number is None or mask is None:
        return False
    return number & mask == mask


@function("IsDate", 1)
def is_date(value: Any) -> bool:
    if isinstance(value, _dt.datetime):
        return True
    return isinstance(value, str) and dates.parse_date(value) is not None


@function("IsEmpty", 1, raw_attribute=True)
def is_empty(value: Any) -> bool:
    """True for a present, empty string (an absent attribute is NULL, not empty)."""
    if isinstance(value, list):
        return all(v == "" for v in value)
    return value == "" or value == b""


@function("IsGuid", 1)
def is_guid(value: Any) -> bool:
    return isinstance(value, str) and _parse_guid(value) is not None


@function("IsNull", 1, raw_attribute=True)
def is_null(value: Any) -> bool:
    if isinstance(value, ReferenceValues):
        return value.count == 0
    return value is None


@function("IsNullOrEmpty", 1, raw_attribute=True)
def is_null_or_empty(value: Any) -> bool:
    return not is_present(value)


@function("IsNumeric", 1)
def is_numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    return isinstance(value, str) and parse_number(value) is not None


@function("IsPresent", 1, raw_attribute=True)
def is_present(value: Any) -> bool:
    """True for a value that is not NULL and not an empty string (any such value of a multi-valued one)."""
    if isinstance(value, ReferenceValues):
        return value.count > 0
    if isinstance(value, list):
        return any(is_present(v) for v in value)
    return value is not None and value != "" and value != b""


@function("IsString", 1)
def is_string(value: Any) -> bool:
    return isinstance(value, str | int | float) or isinstance(value, _dt.datetime)


# ====================================================================================================== math
@function("BitAnd", 2)
def bit_and(value1: Any, value2: Any) -> int | None:
    a, b = to_int(scalar(value1, "value1"), "value1"), to_int(scalar(value2, "value2"), "value2")
    return None if a is None or b is None else a & b


@function("BitOr", 2)
def bit_or(value1: Any, value2: Any) -> int | None:
    a, b = to_int(scalar(value1, "value1"), "value1"), to_int(scalar(value2, "value2"), "value2")
    return None if a is None or b is None else a | b


@function("RandomNum", 2, pure=False)
def random_num(start: Any, end: Any) -> int:
    low, high = to_int(scalar(start, "start"), "start"), to_int(scalar(end, "end"), "end")
    if low is None or high is None or low > high:
        raise ArgumentError(f"needs start <= end, got {start!r} and {end!r}")
    return random.randint(low, high)  # noqa: S311 - not for secrets
