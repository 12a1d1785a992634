"""Scoping filters, compiled once and evaluated as column operations over a frame of objects.

Semantics (Microsoft's "Understanding Declarative Provisioning" page lists the operators; where it is silent or
loose we say what we chose):

- groups are OR-ed, clauses inside a group AND-ed; no groups at all = every object is in scope;
- EQUAL/NOTEQUAL, CONTAINS, STARTSWITH, ENDSWITH and ISIN compare text, ignoring case (casefolded on both sides);
  non-string scalars compare by their text (``512``, ``True``);
- LESSTHAN(_OR_EQUAL)/GREATERTHAN(_OR_EQUAL): the page calls them string compares; we compare numerically when
  both the value and the attribute value are numbers (``"9" < "10"``), and as casefolded text otherwise;
- ISIN/ISNOTIN take a list (or a ``;``-separated string) and hold when any attribute value equals any listed
  value; with one listed value this is the page's "value can be found in any of the attribute values";
- ISBITSET holds when *every* bit of the mask is set in the (integer) attribute value; negative values (AD's
  signed ``groupType``) are read as two's complement, so ``&H80000000`` finds security groups;
- ISMEMBEROF reads the engine-supplied ``memberOf`` column (lower-cased group DNs) and compares it to the
  lower-cased DN of the clause; the clause's own attribute is ignored;
- multi-valued cells: a positive clause holds when any value satisfies it; its NOT form holds when no value
  satisfies the positive form. So every NOT operator holds for an absent attribute, which is what the shipped
  rules rely on (``adminDescription NOTSTARTSWITH Group_`` keeps groups that lack the attribute), and every
  positive operator but ISNULL fails on an absent attribute.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from airflow_provider_aadsync.engine.rules.model import (
    MEMBER_OF_OPERATORS,
    NULL_OPERATORS,
    Operator,
    ScopeClauseModel,
)

__all__ = ["MEMBER_OF_COLUMN", "CompiledClause", "CompiledScope", "FrameView", "compile_clause", "compile_scope"]

#: The frame column the engine fills for ISMEMBEROF/ISNOTMEMBEROF: per object a list (or None) of the group DNs the
#: object is a member of, as ``engine.dn.dn_key`` spells them (so any spelling of a group's DN matches).
MEMBER_OF_COLUMN = "memberOf"

_NEGATED = {
    Operator.NOTEQUAL: Operator.EQUAL,
    Operator.NOTCONTAINS: Operator.CONTAINS,
    Operator.NOTSTARTSWITH: Operator.STARTSWITH,
    Operator.NOTENDSWITH: Operator.ENDSWITH,
    Operator.ISNOTIN: Operator.ISIN,
    Operator.ISNOTBITSET: Operator.ISBITSET,
    Operator.ISNOTMEMBEROF: Operator.ISMEMBEROF,
}
_ORDERING = {
    Operator.LESSTHAN: "__lt__",
    Operator.LESSTHAN_OR_EQUAL: "__le__",
    Operator.GREATERTHAN: "__gt__",
    Operator.GREATERTHAN_OR_EQUAL: "__ge__",
}
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_HEX = re.compile(r"^(?:&[hH]|0[xX])([0-9a-fA-F]+)$")
_TEXT_SCALARS = (str, int, float, bool, datetime, date)
#: infer_dtype kinds whose values all have a text form; others (mixed, bytes, ...) are checked value by value.
_PLAIN_KINDS = frozenset(
    {"string", "empty", "integer", "floating", "mixed-integer-float", "boolean", "datetime", "date"}
)


def _scalar_text(value: Any, what: str) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, _TEXT_SCALARS):
        return str(value)
    raise ValueError(f"{what} must be a string or a number, not {type(value).__name__}")


def _number(text: str) -> int | float | None:
    text = text.strip()
    if _DECIMAL.match(text):
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
    if hex_match := _HEX.match(text):
        return int(hex_match.group(1), 16)
    return None


def parse_bit_mask(value: Any) -> int:
    """A bit mask as written in a rule: an int, or a decimal, ``&H``/``0x`` hex string; 1 ≤ mask < 2**64."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"ISBITSET takes an integer bit mask (e.g. 2 or '&H2'), not {type(value).__name__}")
    if isinstance(value, str):
        text = value.strip()
        hex_match = _HEX.match(text)
        if hex_match:
            mask = int(hex_match.group(1), 16)
        elif re.fullmatch(r"\d+", text):
            mask = int(text)
        else:
            raise ValueError(f"ISBITSET takes an integer bit mask (decimal, &H or 0x hex), not {value!r}")
    else:
        mask = value
    if not 0 < mask < 2**64:
        raise ValueError(f"the bit mask must be between 1 and 2**64 - 1, not {mask}")
    return mask


@dataclass(frozen=True)
class CompiledClause:
    """One clause with its value parsed for its operator (see :func:`compile_clause`)."""

    attribute: str | None
    operator: Operator
    text: str | None = None  # casefolded comparand of the text operators
    texts: frozenset[str] = frozenset()  # ISIN/ISNOTIN comparands, casefolded
    number: int | float | None = None  # ordering comparand, when the value is a number
    mask: int | None = None  # ISBITSET mask
    group_dn: str | None = None  # ISMEMBEROF group, as engine.dn.dn_key spells it

    @property
    def reads(self) -> str | None:
        """The attribute this clause reads (None for the memberOf operators)."""
        return None if self.operator in MEMBER_OF_OPERATORS else self.attribute


def compile_clause(clause: ScopeClauseModel) -> CompiledClause:
    """Check a clause's value against its operator and pre-compute its comparand.

    :raise ValueError: with a message fit to follow the clause's field path (``... .value: <message>``)
    """
    op = clause.operator
    value = clause.value
    if op in NULL_OPERATORS:
        if value is not None:
            raise ValueError(f"{op.value} takes no value")
        return CompiledClause(clause.attribute, op)
    if value is None:
        raise ValueError(f"{op.value} needs a value")
    base = _NEGATED.get(op, op)
    if base is Operator.ISIN:
        if isinstance(value, str):
            items: list[Any] = [part.strip() for part in value.split(";") if part.strip()]
        elif isinstance(value, list):
            items = value
        else:
            items = [value]
        texts = frozenset(_scalar_text(item, "each listed value").casefold() for item in items)
        if not texts:
            raise ValueError(f"{op.value} needs at least one value")
        return CompiledClause(clause.attribute, op, texts=texts)
    if isinstance(value, list):
        raise ValueError(f"{op.value} takes one value, not a list (ISIN/ISNOTIN take lists)")
    if base is Operator.ISBITSET:
        return CompiledClause(clause.attribute, op, mask=parse_bit_mask(value))
    if base is Operator.ISMEMBEROF:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{op.value} takes the DN of a group")
        from airflow_provider_aadsync.engine.dn import dn_key  # ldap3's DN parser, only when a rule needs it

        return CompiledClause(None, op, group_dn=dn_key(value.strip()))
    text = _scalar_text(value, "the value")
    number = None
    if op in _ORDERING:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):
            number = _number(value)
    return CompiledClause(clause.attribute, op, text=text.casefold(), number=number)


@dataclass
class _Column:
    """One attribute of a frame, exploded to one row per value, with derived forms computed on demand."""

    raw: np.ndarray  # one cell per object (object dtype)
    values: np.ndarray  # one entry per value (lists exploded; absent → None/NaN)
    positions: np.ndarray | None  # object position of each value; None when values align with raw
    kind: str  # pandas' inferred kind of the values ("string", "integer", "mixed", ...)
    _text: pd.Series | None = field(default=None, repr=False)
    _numbers: pd.Series | None = field(default=None, repr=False)

    @classmethod
    def of(cls, raw: np.ndarray) -> _Column:
        # infer_dtype is a quick C scan; only columns that may hold lists (kind "mixed" and the like) pay for
        # explode(), and explode() itself only repeats the rows that hold lists.
        kind = pd.api.types.infer_dtype(raw, skipna=True)
        if kind in _PLAIN_KINDS:
            return cls(raw, raw, None, kind)
        exploded = pd.Series(raw, dtype=object, copy=False).explode()
        values = exploded.to_numpy(dtype=object)
        kind = pd.api.types.infer_dtype(values, skipna=True)
        if len(values) == len(raw):
            return cls(raw, values, None, kind)
        return cls(raw, values, exploded.index.to_numpy(dtype=np.intp), kind)

    def any(self, hits: np.ndarray) -> np.ndarray:
        """Per object: does any of its values hit?"""
        if self.positions is None:
            return hits
        out = np.zeros(len(self.raw), dtype=bool)
        out[self.positions[hits]] = True
        return out

    @property
    def null(self) -> np.ndarray:
        # explode() turned empty lists into NaN, so "no value at all" = every exploded entry missing.
        missing = pd.isna(self.values)
        if self.positions is None:
            return missing
        return ~self.any(~missing)

    @property
    def text(self) -> pd.Series:
        """Casefolded text of each value (pandas string dtype; NaN where a value has no text form)."""
        if self._text is None:
            series = pd.Series(self.values, dtype=object, copy=False)
            if self.kind not in _PLAIN_KINDS:
                # References, bytes and other non-text cells have no text to compare; str() of them is noise, and
                # bytes that are not UTF-8 would fail to convert: they become NaN first.
                plain = np.fromiter((isinstance(v, _TEXT_SCALARS) for v in self.values), bool, len(self.values))
                series = series.where(plain)
            try:
                text = series.astype(str)
            except ValueError:  # an integer beyond Python's int-to-string digit limit: it has no text form here
                text = pd.Series([_text_or_none(value) for value in series], index=series.index, dtype=object)
                text = text.astype(str).where(text.notna())
            if self.kind in ("floating", "mixed-integer-float"):
                # An integer column with gaps often arrives as float64 (512.0); compare it as the integer it is.
                numbers = self.numbers
                integral = numbers.notna() & (numbers % 1 == 0)
                if integral.any():
                    text = text.where(~integral, numbers[integral].astype("int64").astype(str))
            self._text = text.str.casefold()
        return self._text

    @property
    def numbers(self) -> pd.Series:
        """Each value as a number (NaN when it is not one)."""
        if self._numbers is None:
            series = pd.Series(self.values, dtype=object, copy=False)
            self._numbers = pd.to_numeric(series, errors="coerce")
        return self._numbers


def _text_or_none(value: object) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    try:
        return str(value)
    except ValueError:
        return None


class FrameView:
    """A frame seen through case-insensitive attribute names, caching each column's exploded form.

    One view can serve many rules over the same frame, so an attribute read by several rules is prepared once.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.size = len(frame)
        self._names = {str(name).casefold(): name for name in frame.columns}
        self._columns: dict[str, _Column] = {}

    def column_name(self, attribute: str) -> Any | None:
        """The frame's own label for an attribute (matched ignoring case), or None when absent."""
        return self._names.get(attribute.casefold())

    def cells(self, attribute: str) -> np.ndarray:
        """An attribute's cells as an object array (all None when the frame lacks the column)."""
        name = self.column_name(attribute)
        if name is None:
            return np.full(self.size, None, dtype=object)
        return self.frame[name].to_numpy(dtype=object)

    def column(self, attribute: str) -> _Column:
        key = attribute.casefold()
        column = self._columns.get(key)
        if column is None:
            column = self._columns[key] = _Column.of(self.cells(attribute))
        return column


def _positive(clause: CompiledClause, column: _Column, op: Operator) -> np.ndarray:
    """Per value: does it satisfy the positive form of the clause?"""
    if op is Operator.ISMEMBEROF:
        return (pd.Series(column.values, dtype=object, copy=False) == clause.group_dn).to_numpy(dtype=bool)
    if op is Operator.ISBITSET:
        numbers = column.numbers
        valid = numbers.notna().to_numpy()
        # uint64 view of two's complement: negative groupType values keep their high bits.
        ints = numbers.fillna(0).to_numpy().astype(np.int64).view(np.uint64)
        mask = np.uint64(clause.mask)
        return valid & ((ints & mask) == mask)
    text = column.text
    if op is Operator.EQUAL:
        hits = text == clause.text
    elif op is Operator.ISIN:
        hits = text.isin(clause.texts)
    elif op is Operator.CONTAINS:
        hits = text.str.contains(clause.text, regex=False)
    elif op is Operator.STARTSWITH:
        hits = text.str.startswith(clause.text)
    elif op is Operator.ENDSWITH:
        hits = text.str.endswith(clause.text)
    else:
        compare = _ORDERING[op]
        hits = getattr(text, compare)(clause.text)
        if clause.number is not None:
            numbers = column.numbers
            numeric = numbers.notna()
            if numeric.any():
                hits = hits.where(~numeric, getattr(numbers, compare)(clause.number))
    return hits.fillna(False).to_numpy(dtype=bool)


def evaluate_clause(clause: CompiledClause, view: FrameView) -> np.ndarray:
    """Per object of the view: does the clause hold?"""
    op = clause.operator
    if op in MEMBER_OF_OPERATORS:
        column = view.column(MEMBER_OF_COLUMN)
    else:
        column = view.column(clause.attribute or "")
    if op is Operator.ISNULL:
        return column.null
    if op is Operator.ISNOTNULL:
        return ~column.null
    base = _NEGATED.get(op)
    if base is not None:
        return ~column.any(_positive(clause, column, base))
    return column.any(_positive(clause, column, op))


@dataclass(frozen=True)
class CompiledScope:
    """A scoping filter: groups OR-ed, clauses AND-ed; no groups = everything in scope."""

    groups: tuple[tuple[CompiledClause, ...], ...] = ()

    @property
    def attributes(self) -> tuple[str, ...]:
        """Attributes read by the clauses, in order of first use (memberOf operators excluded)."""
        seen: dict[str, str] = {}
        for group in self.groups:
            for clause in group:
                if clause.reads is not None:
                    seen.setdefault(clause.reads.casefold(), clause.reads)
        return tuple(seen.values())

    @property
    def needs_member_of(self) -> bool:
        return any(clause.operator in MEMBER_OF_OPERATORS for group in self.groups for clause in group)

    def evaluate(self, view: FrameView) -> np.ndarray:
        """Per object of the view: is it in scope?"""
        if not self.groups:
            return np.ones(view.size, dtype=bool)
        result = np.zeros(view.size, dtype=bool)
        for group in self.groups:
            holds = np.ones(view.size, dtype=bool)
            for clause in group:
                holds &= evaluate_clause(clause, view)
                if not holds.any():
                    break
            result |= holds
            if result.all():
                break
        return result


def compile_scope(groups: Iterable[Sequence[ScopeClauseModel]]) -> CompiledScope:
    """Compile validated scoping groups (:raise ValueError: from :func:`compile_clause`)."""
    return CompiledScope(tuple(tuple(compile_clause(clause) for clause in group) for group in groups))
