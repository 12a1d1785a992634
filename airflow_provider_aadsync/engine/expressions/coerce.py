"""Argument coercions shared by the function implementations (VBA-like, but strict where VBA would guess)."""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

from airflow_provider_aadsync.engine.expressions.dates import parse_date
from airflow_provider_aadsync.engine.expressions.errors import ArgumentError
from airflow_provider_aadsync.engine.expressions.limits import MAX_NUMBER_DIGITS, check_integer, shown
from airflow_provider_aadsync.engine.expressions.values import type_name

_NUMERIC = re.compile(r"^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$")
_HEX = re.compile(r"^\s*&H([0-9A-Fa-f]+)\s*$")


def format_number(value: int | float) -> str:
    """A number as CStr writes it: integers without a decimal point, other numbers in their shortest form."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    if value.__class__ is int:
        check_integer(value, "the number")  # also keeps str() below Python's int-to-string digit limit
    return str(value)


def to_text(value: Any, what: str = "argument") -> str | None:
    """A string (numbers and booleans converted as CStr does); NULL stays NULL."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int | float):
        return format_number(value)
    raise ArgumentError(f"{what} must be a string, got {type_name(value)}")


def parse_number(text: str) -> int | float | None:
    """``text`` as a number (decimal or ``&H`` hex), or None when it is not one.

    :raise ArgumentError: a number of more than MAX_NUMBER_DIGITS digits
    """
    match = _HEX.match(text)
    if match:
        _check_digits(len(match.group(1)))
        return int(match.group(1), 16)
    if not _NUMERIC.match(text):
        return None
    _check_digits(sum(c.isdigit() for c in re.split("[eE]", text, maxsplit=1)[0]))
    number = float(text)
    if number.is_integer() and not any(c in text for c in ".eE"):
        return int(text)
    return number


def _check_digits(digits: int) -> None:
    if digits > MAX_NUMBER_DIGITS:
        raise ArgumentError(f"a number of {digits:,} digits; numbers are limited to {MAX_NUMBER_DIGITS} digits")


def to_number(value: Any, what: str = "argument") -> int | float | None:
    """A number; numeric strings are converted, NULL stays NULL."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        number = parse_number(value)
        if number is not None:
            return number
        raise ArgumentError(f"{what} must be a number, got the string {shown(value)}")
    raise ArgumentError(f"{what} must be a number, got {type_name(value)}")


def to_int(value: Any, what: str = "argument") -> int | None:
    """A whole number (a float must be integral)."""
    number = to_number(value, what)
    if number is None or isinstance(number, int):
        return number
    if number.is_integer():
        return int(number)
    raise ArgumentError(f"{what} must be a whole number, got {format_number(number)}")


def to_bool(value: Any, what: str = "condition") -> bool | None:
    """A Boolean: numbers are True when non-zero, the strings "True"/"False" (any case) and numeric strings work."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        folded = value.strip().casefold()
        if folded == "true":
            return True
        if folded == "false":
            return False
        number = parse_number(value)
        if number is not None:
            return number != 0
        raise ArgumentError(f"{what} must be a Boolean, got the string {shown(value)}")
    raise ArgumentError(f"{what} must be a Boolean, got {type_name(value)}")


def to_bytes(value: Any, what: str = "argument") -> bytes | None:
    """Binary data; NULL stays NULL."""
    if value is None or isinstance(value, bytes):
        return value
    raise ArgumentError(f"{what} must be binary, got {type_name(value)}")


def to_datetime(value: Any, what: str = "argument") -> _dt.datetime | None:
    """A UTC DateTime; strings are parsed as CDate does."""
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
    if isinstance(value, str):
        parsed = parse_date(value)
        if parsed is not None:
            return parsed
        raise ArgumentError(f"{what}: cannot read {shown(value)} as a date")
    raise ArgumentError(f"{what} must be a DateTime, got {type_name(value)}")


def enum_name(value: Any, choices: tuple[str, ...], what: str) -> str:
    """One of ``choices`` (case-insensitive), given bare (``UTF8``) or quoted (``"UTF8"``)."""
    text = to_text(value, what)
    for choice in choices:
        if text is not None and text.casefold() == choice.casefold():
            return choice
    raise ArgumentError(f"{what} must be one of {', '.join(choices)}, got {shown(value)}")
