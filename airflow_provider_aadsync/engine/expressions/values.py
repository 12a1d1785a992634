"""Values of the expression language and the value-cell convention shared with the rules engine.

A *value cell* (an attribute's value in a context, and every value an expression produces) is one of:

* ``None`` — NULL: the attribute is absent (an empty multi-valued attribute is NULL too);
* a scalar — ``str``, ``int``, ``float`` (decimal literals, ``/``), ``bool``, ``bytes`` (binary attributes such as
  ``objectGUID``: the 16 raw bytes, i.e. ``uuid.UUID(s).bytes_le``), ``datetime.datetime`` (UTC);
* a ``list`` of two or more scalars — a multi-valued attribute. Functions that return multi-valued results
  normalise them the same way: no values → ``None``, one value → that scalar, more → a list (``mv_result``);
* ``ReferenceValues(count)`` — a reference attribute the engine did not load (e.g. 250,000 group members).

Two sentinels may be returned by an expression (from IIF, Switch, ...): ``AuthoritativeNull`` and
``IgnoreThisFlow``. They are singletons with readable reprs; NULL is Python ``None``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any, Protocol, runtime_checkable

from airflow_provider_aadsync.engine.expressions.errors import ExpressionEvaluationError
from airflow_provider_aadsync.engine.expressions.limits import MAX_VALUES, check_count

UTC = _dt.UTC


class _Sentinel:
    """A named singleton (``AuthoritativeNull``, ``IgnoreThisFlow``); pickles back to the same object."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    __str__ = __repr__

    def __reduce__(self) -> str:
        return self._name

    def __copy__(self) -> _Sentinel:
        return self

    def __deepcopy__(self, memo: object) -> _Sentinel:
        return self


AuthoritativeNull = _Sentinel("AuthoritativeNull")
"""Flow result: the attribute is NULL and lower-precedence rules may not contribute a value."""

IgnoreThisFlow = _Sentinel("IgnoreThisFlow")
"""Flow result: this flow contributes nothing (as if the rule had no flow for the attribute)."""

SENTINELS = (AuthoritativeNull, IgnoreThisFlow)


@dataclass(frozen=True, slots=True)
class ReferenceValues:
    """Stands in for a reference attribute whose ``count`` values the engine does not load.

    ``ValueCount("member")`` (and ``Count``/``IsPresent``/``IsNull``/``IsNullOrEmpty`` of ``[member]``) use the
    count; any other use raises ``ExpressionEvaluationError`` naming the attribute.
    """

    count: int


@runtime_checkable
class EvaluationContext(Protocol):
    """What ``CompiledExpression.evaluate`` reads attributes from.

    ``get(name)`` returns the attribute's value cell (``None`` when absent). A plain ``Mapping`` works and is
    searched case-insensitively; other objects should look names up case-insensitively themselves. An object may
    also offer ``imported_value(name)`` (the value as last imported, for ``ImportedValue("name")``); without it,
    ``ImportedValue`` reads ``get``.
    """

    def get(self, name: str) -> Any: ...


# ------------------------------------------------------------------------------------------- normalising
def mv_result(values: Iterable[Any]) -> Any:
    """A multi-valued result as a value cell: NULLs dropped, multi-valued items flattened (cells do not nest);
    none → ``None``, one → that value, more → a list."""
    kept: list[Any] = []
    for value in values:
        if isinstance(value, list):
            kept.extend(v for v in value if v is not None)
            if len(kept) > MAX_VALUES:
                check_count(len(kept))
        elif value is not None:
            kept.append(value)
            if len(kept) > MAX_VALUES:
                check_count(len(kept))
    if not kept:
        return None
    if len(kept) == 1:
        return kept[0]
    return kept


def cell(value: Any) -> Any:
    """A value read from a context as a value cell (tuples/sets/empty lists accepted; naive datetimes are UTC)."""
    if type(value) is list and 1 < len(value) <= MAX_VALUES and all(type(item) is str for item in value):
        return value[:]  # already a cell (proxyAddresses, say): what mv_result makes of it, without its loop
    if isinstance(value, list | tuple | set | frozenset):
        return mv_result(cell(v) for v in value)
    if isinstance(value, _dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


def cells(values: list[Any]) -> list[Any]:
    """``[cell(value) for value in values]``: when all are lists of 2 to MAX_VALUES strings (a multi-valued attribute
    such as proxyAddresses, read for a batch of objects), their types and lengths checked by C-level maps over all
    of them and the lists copied, instead of a call per list."""
    if (
        values
        and set(map(type, values)) == {list}
        and 1 < min(map(len, values))
        and max(map(len, values)) <= MAX_VALUES
        and set(map(type, chain.from_iterable(values))) == {str}
    ):
        return list(map(list.copy, values))
    return [cell(value) for value in values]


def as_list(value: Any) -> list[Any]:
    """The values of a cell as a list (NULL → no values, a scalar → one value)."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def type_name(value: Any) -> str:
    """The language's name for the type of ``value``, for messages."""
    if value is None:
        return "NULL"
    if isinstance(value, _Sentinel):
        return repr(value)
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "num"
    if isinstance(value, str):
        return "str"
    if isinstance(value, bytes):
        return "bin"
    if isinstance(value, _dt.datetime):
        return "dt"
    if isinstance(value, list):
        return "multi-valued"
    if isinstance(value, ReferenceValues):
        return "unloaded reference values"
    return type(value).__name__


def lookup_in(context: Any, name: str) -> Any:
    """``name``'s raw value in ``context`` (a Mapping, searched case-insensitively, or an object with ``get``)."""
    try:
        value = context.get(name)
    except AttributeError:
        raise ExpressionEvaluationError(
            f"the evaluation context ({type(context).__name__}) has no get(name) method"
        ) from None
    if value is None and isinstance(context, Mapping) and name not in context:
        folded = name.casefold()
        for key in context:
            if isinstance(key, str) and key.casefold() == folded:
                return context[key]
    return value
