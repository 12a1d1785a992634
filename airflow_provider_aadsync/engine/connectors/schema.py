"""The shape every connector describes itself with: its attributes, the schema sync reads them by, its plan counting.

Each connector folder holds ONE list of :class:`Attribute` (``connectors/ad/schema.py``, ``connectors/entra/schema.py``)
from which everything else about its attributes is derived: what its reader asks the directory for, what its writer
sends as a collection, which attributes are references, which hold typed values. ``connectors/registry.py`` hands out
a :class:`Connector` per connector name. This module imports nothing of sync or of any connector, so the writers and
sync can both import it (``PROVISIONAL_PREFIX`` lives here for that reason).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from airflow_provider_aadsync.engine.connectors.converters import Converter, convert_column
from airflow_provider_aadsync.engine.expressions.values import AuthoritativeNull, IgnoreThisFlow

if TYPE_CHECKING:
    from airflow_provider_aadsync.engine.store import Store

#: Anchors of objects sync has provisioned that no export has created yet start with this.
PROVISIONAL_PREFIX = "provisional:"

#: How a reader decodes an attribute's values off the wire: as text, or (AD octet strings) as a GUID's or SID's text
#: form, or as base64.
Syntax = Literal["text", "guid", "sid", "binary"]


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str]:
    """A limit's pattern compiled once (every exported value of a full sync is checked against it)."""
    return re.compile(pattern)


@dataclass(frozen=True)
class Limit:
    """What the target directory accepts for one attribute (Graph's documented lengths and formats), so sync refuses a
    bad value as a per-object error naming the attribute instead of staging a write the server answers 400."""

    max_length: int | None = None
    #: A regular expression every value must match in full ...
    pattern: str | None = None
    #: ... said in words for the error message.
    shape: str = ""
    max_values: int | None = None
    #: The directory's spelling of a text value (AD's generalized time for a Graph DateTimeOffset), or None when the
    #: value is none the directory takes: a value is staged converted; one it cannot convert is refused.
    convert: Callable[[str], str | None] | None = None
    #: A refused value costs only this attribute: it is left out of the write (the directory keeps what it holds),
    #: with a per-object error naming the object, the attribute and the format expected, and the object's other
    #: values are staged. Otherwise a refused value keeps the whole object from being written.
    drop_invalid: bool = False

    def problem(self, values: Iterable[object]) -> str | None:
        """Why *values* are refused, or None when they are acceptable."""
        if type(values) is list and len(values) == 1 and type(values[0]) is str and self.max_values != 0:
            # The common case (one text value), checked without building a list: a full sync checks every
            # exported attribute of every object.
            text = values[0]
            if self.max_length is not None and len(text) > self.max_length:
                return f"value of {len(text)} characters is longer than {self.max_length}"
            if self.pattern is not None and not _pattern(self.pattern).fullmatch(text):
                return f"value {text[:80]!r} is not {self.shape or 'in the accepted format'}"
            return None
        listed = [v for v in values if v is not None]
        if self.max_values is not None and len(listed) > self.max_values:
            return f"holds {len(listed)} values, at most {self.max_values} allowed"
        for value in listed:
            text = str(value)
            if self.max_length is not None and len(text) > self.max_length:
                return f"value of {len(text)} characters is longer than {self.max_length}"
            if self.pattern is not None and not _pattern(self.pattern).fullmatch(text):
                return f"value {text[:80]!r} is not {self.shape or 'in the accepted format'}"
        return None


@dataclass(frozen=True)
class Attribute:
    """One attribute a connector reads or writes, as the connector's own directory names it."""

    name: str
    #: The connector's object types that have it (``{"user"}``, ``{"user", "group"}``, ...).
    object_types: frozenset[str]
    multi_valued: bool = False
    #: Its values are other objects, stored as reference rows (never inside ``attrs``).
    reference: bool = False
    #: Stored JSON value → the typed value rules see (``connectors/converters.py``); None: rules see the JSON value.
    typed: Converter | None = None
    #: In the default attribute list (AD) or ``$select`` (Graph) an import asks for.
    imported: bool = True
    #: How the reader decodes its values (AD octet strings); everything else is text.
    syntax: Syntax = "text"
    #: What the directory accepts (export targets only): values outside it are per-object sync errors.
    limit: Limit | None = None

    @property
    def binary(self) -> bool:
        """An octet string kept as base64 (GUID- and SID-valued ones get their canonical text form instead)."""
        return self.syntax == "binary"


def kinds(*object_types: str) -> frozenset[str]:
    """``frozenset`` of object types, for short attribute lists."""
    return frozenset(object_types)


@dataclass(frozen=True)
class ConnectorSchema:
    """Attribute facts of one connector space (or of the metaverse), as sync reads them."""

    #: Attributes whose values are other objects (stored as reference rows), lower-cased.
    reference_attributes: frozenset[str]
    #: Lower-cased attribute name → converter from the stored JSON value to the typed value rules see.
    typed: Mapping[str, Converter] = field(default_factory=dict)
    #: For objects sync provisions without a ``dn`` flow: object type → DN template with ``{anchor}``.
    dn_templates: Mapping[str, str] = field(default_factory=dict)
    #: Lower-cased attribute name → what the directory accepts for it.
    limits: Mapping[str, Limit] = field(default_factory=dict)
    #: Attribute name as asked → its limit or None, filled as names are met: a full sync checks every exported
    #: attribute of every object, always under the few names the rules spell.
    _limit_of: dict[str, Limit | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_attributes(
        cls, attributes: Iterable[Attribute], *, dn_templates: Mapping[str, str] | None = None
    ) -> ConnectorSchema:
        """The schema of a connector's attribute list: its references and typed attributes, lower-cased."""
        listed = list(attributes)
        return cls(
            reference_attributes=frozenset(a.name.lower() for a in listed if a.reference),
            typed={a.name.lower(): a.typed for a in listed if a.typed is not None},
            dn_templates=dict(dn_templates or {}),
            limits={a.name.lower(): a.limit for a in listed if a.limit is not None},
        )

    def is_reference(self, attribute: str) -> bool:
        return attribute.lower() in self.reference_attributes

    def type_columns(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Convert the typed columns of a value-cell frame in place (column by column)."""
        for column in frame.columns:
            convert = self.typed.get(str(column).lower())
            if convert is not None:
                # An object column, so integers with gaps stay integers (a map would make them floats).
                cells = convert_column(frame[column].to_numpy(dtype=object), convert)
                frame[column] = pd.Series(cells, index=frame.index, dtype=object)
        return frame

    def limit_of(self, name: str) -> Limit | None:
        """The limit of attribute ``name`` (any case), looked up once per name as spelled."""
        try:
            return self._limit_of[name]
        except KeyError:
            limit = self._limit_of[name] = self.limits.get(name.lower())
            return limit

    def possibly_invalid(self, outcomes: pd.DataFrame) -> set[object]:
        """The rows of a frame of flow outcomes (a column per target attribute) that may hold a value the directory
        refuses, or one it takes in another spelling (:attr:`Limit.convert`): a single text value over a length,
        outside a pattern, where no value is allowed or that converts, and every value of another shape (several
        values, a number), for :meth:`invalid_values` to decide. The other rows (no value, NULL, a sentinel, or text
        within every limit) are never refused: a full sync checks them a column at a time instead of an attribute at
        a time per object."""
        flagged: set[object] = set()
        for column in outcomes.columns:
            limit = self.limit_of(str(column))
            if limit is None:
                continue
            matches = _pattern(limit.pattern).fullmatch if limit.pattern is not None else None
            longest = limit.max_length
            convert = limit.convert
            cells = outcomes[column]
            present = cells.notna().to_numpy()  # most targets of most objects are NULL: skipped a column at a time
            for label, value in zip(outcomes.index[present], cells.to_numpy()[present].tolist(), strict=True):
                if type(value) is str:
                    if (
                        limit.max_values == 0
                        or (longest is not None and len(value) > longest)
                        or (matches is not None and matches(value) is None)
                        or (convert is not None and convert(value) != value)  # staged converted, or refused
                    ):
                        flagged.add(label)
                elif value is None or value is pd.NA or value is AuthoritativeNull or value is IgnoreThisFlow:
                    continue  # NULL and the sentinels export no value
                elif not (type(value) is float and value != value):  # NaN is NULL too
                    flagged.add(label)
        return flagged

    def settle(self, values: dict[str, list[Any]]) -> list[str]:
        """Convert in place each value of *values* its limit converts (:attr:`Limit.convert`), and leave out each
        attribute of a :attr:`Limit.drop_invalid` limit whose values are still refused: one sentence per attribute
        left out, naming it and the format expected."""
        dropped = []
        for name in list(values):
            limit = self.limit_of(name)
            if limit is None:
                continue
            unconverted = None
            if limit.convert is not None:
                listed = values[name]
                converted = [limit.convert(value) if type(value) is str else value for value in listed]
                unconverted = next((v for v, c in zip(listed, converted, strict=True) if c is None), None)
                values[name] = [v if c is None else c for v, c in zip(listed, converted, strict=True)]
            if limit.drop_invalid:
                problem = limit.problem(values[name])
                if problem is None and unconverted is not None:
                    problem = f"value {str(unconverted)[:80]!r} is not {limit.shape or 'in the accepted format'}"
                if problem is not None:
                    del values[name]
                    dropped.append(f"{name}: {problem}")
        return dropped

    def invalid_values(self, values: Mapping[str, list[object]]) -> list[str]:
        """One sentence per attribute of *values* the directory would refuse, naming the attribute."""
        problems = []
        for name, listed in values.items():
            limit = self.limit_of(name)
            if limit is None:
                continue
            problem = limit.problem(listed)
            if problem is not None:
                problems.append(f"{name}: {problem}")
        return problems

    def default_dn(self, object_type: str, anchor: str) -> str:
        template = self.dn_templates.get(object_type, "{object_type}/{anchor}")
        return template.format(anchor=anchor, object_type=object_type)


#: An outbound flow target check: ``(object type, target) → a sentence saying why it cannot be written, or None``.
TargetCheck = Callable[[str, str], str | None]

#: A connector's plan counting: ``(store, connector name) → counters`` of its open pending exports.
PlanCounts = Callable[["Store", str], dict[str, int]]


@dataclass(frozen=True)
class Connector:
    """What the registry knows of one kind of connector."""

    #: ``"ad"``, ``"entra"``: which folder under ``connectors/`` implements it.
    kind: str
    schema: ConnectorSchema
    #: The plan by operation and object type, member changes, and the least number of writes it needs.
    plan_counts: PlanCounts
    #: The counter of ``plan_counts`` that holds that least number of writes ...
    cost_counter: str
    #: ... and what its unit is called in reports ("Graph $batch calls", "LDAP writes").
    cost_label: str
    #: ``(object type, flow target) → why an outbound rule cannot flow to it, or None``: checked when rules load, so
    #: a target the directory has no property for fails there (file, rule, line), not once per object at export.
    target_problem: TargetCheck | None = None

    def minimum_writes(self, counts: Mapping[str, int]) -> str:
        """The report line that names the plan's cost in this connector's unit."""
        return f"Minimum {self.cost_label}: {counts.get(self.cost_counter, 0):,}"
