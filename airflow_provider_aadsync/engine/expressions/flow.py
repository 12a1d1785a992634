"""Multi-valued and program-flow functions, and the engine-provided ValueCount and ImportedValue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_provider_aadsync.engine.expressions.coerce import enum_name, to_bool, to_int, to_text
from airflow_provider_aadsync.engine.expressions.errors import ArgumentError, ExpressionEvaluationError, FlowError
from airflow_provider_aadsync.engine.expressions.limits import MAX_BINDINGS, check_length
from airflow_provider_aadsync.engine.expressions.registry import function, scalar
from airflow_provider_aadsync.engine.expressions.values import (
    ReferenceValues,
    as_list,
    cell,
    lookup_in,
    mv_result,
)


# =============================================================================================== multi-valued
def _case(casetype: Any) -> bool:
    return enum_name(casetype, ("CaseSensitive", "CaseInsensitive"), "Casetype") == "CaseInsensitive"


@function("Contains", 2, 3)
def contains(attribute: Any, search: Any, casetype: Any = "CaseSensitive") -> int:
    """The 1-based index of the first value containing ``search`` (case-sensitive unless CaseInsensitive); 0 if
    none does."""
    needle = to_text(scalar(search, "search"), "search")
    if needle is None:
        return 0
    fold = _case(casetype)
    if fold:
        needle = needle.casefold()
    for index, value in enumerate(as_list(attribute), start=1):
        text = to_text(value, "attribute value")
        if text is not None and needle in (text.casefold() if fold else text):
            return index
    return 0


@function("Count", 1, raw_attribute=True)
def count(attribute: Any) -> int:
    if isinstance(attribute, ReferenceValues):
        return attribute.count
    return len(as_list(attribute))


def _item(attribute: Any, index: Any, or_null: bool) -> Any:
    values = as_list(attribute)
    position = to_int(scalar(index, "index"), "index")
    if position is not None and 1 <= position <= len(values):
        return values[position - 1]
    if or_null:
        return None
    raise ArgumentError(f"index {position} is out of range (the attribute has {len(values)} values)")


@function("Item", 2)
def item(attribute: Any, index: Any) -> Any:
    """The ``index``-th value (1-based, as Contains returns it); an error when out of range."""
    return _item(attribute, index, or_null=False)


@function("ItemOrNull", 2)
def item_or_null(attribute: Any, index: Any) -> Any:
    return _item(attribute, index, or_null=True)


@function("Join", 1, 2)
def join(attribute: Any, delimiter: Any = " ") -> str | None:
    if attribute is None:
        return None
    separator = to_text(scalar(delimiter, "Delimiter"), "Delimiter") or ""
    parts = [to_text(v, "attribute value") or "" for v in as_list(attribute)]
    check_length(sum(map(len, parts)) + len(separator) * max(0, len(parts) - 1), "the joined string")
    return separator.join(parts)


@function("RemoveDuplicates", 1)
def remove_duplicates(attribute: Any) -> Any:
    """Each value once, first occurrence kept, case-sensitive."""
    seen: dict[Any, None] = {}  # insertion-ordered; a list's `in` made this quadratic (100,000 values: minutes)
    for value in as_list(attribute):
        seen.setdefault(value, None)
    return mv_result(seen)


@function("Split", 2, 3)
def split(value: Any, delimiter: Any, limit: Any = None) -> Any:
    """Split at ``delimiter``; ``limit`` caps the number of values (the last keeps the rest, as .NET does)."""
    text = to_text(scalar(value, "value"), "value")
    if text is None:
        return None
    separator = to_text(scalar(delimiter, "delimiter"), "delimiter")
    if not separator:
        raise ArgumentError("delimiter must not be empty")
    cap = to_int(scalar(limit, "limit"), "limit")
    if cap is not None and cap < 1:
        raise ArgumentError(f"limit must be at least 1, got {cap}")
    parts = text.split(separator) if cap is None else text.split(separator, cap - 1)
    return mv_result(parts)


# ============================================================================================== program flow
@function("Error", 1)
def error(message: Any) -> None:
    raise FlowError(to_text(scalar(message, "ErrorMessage"), "ErrorMessage") or "")


def truth(value: Any) -> bool:
    """A condition's value as IIF reads it: NULL is False."""
    return bool(to_bool(value, "condition"))


@function("IIF", 3, kind="lazy")
def iif(
    env: Any, condition: Callable[[Any], Any], if_true: Callable[[Any], Any], if_false: Callable[[Any], Any]
) -> Any:
    """Only the chosen branch is evaluated. A multi-valued condition (``IIF(InStr([proxyAddresses],"SIP:")=1,NULL,
    [proxyAddresses])``) chooses per value: a multi-valued branch gives its value at that position."""
    test = condition(env)
    if not isinstance(test, list):
        return if_true(env) if truth(test) else if_false(env)
    flags = [truth(v) for v in test]
    branches: dict[bool, Any] = {}
    if True in flags:
        branches[True] = if_true(env)
    if False in flags:
        branches[False] = if_false(env)
    out = []
    for position, flag in enumerate(flags):
        chosen = branches[flag]
        if isinstance(chosen, list):
            if len(chosen) != len(flags):
                raise ArgumentError(f"a multi-valued condition has {len(flags)} values but a branch has {len(chosen)}")
            chosen = chosen[position]
        out.append(chosen)
    return mv_result(out)


@function("Switch", 2, None, kind="lazy")
def switch(env: Any, *pairs: Callable[[Any], Any]) -> Any:
    """The value after the first condition that is True; NULL when none is. Conditions are evaluated left to right
    up to the first True one, and only the chosen value (so a final ``True, Error("...")`` is an else-branch)."""
    for position in range(0, len(pairs), 2):
        if truth(scalar(pairs[position](env), "condition")):
            return pairs[position + 1](env)
    return None


def _bind(env: Any, variable: str, value: Any, body: Callable[[Any], Any]) -> Any:
    env.bindings += 1
    if env.bindings > MAX_BINDINGS:
        raise ArgumentError(
            f"more than {MAX_BINDINGS:,} values bound by Select, Where and With in one evaluation (nested binders "
            "multiply their sources)"
        )
    variables = env.variables
    missing = object()
    saved = variables.get(variable, missing)
    variables[variable] = value
    try:
        return body(env)
    finally:
        if saved is missing:
            del variables[variable]
        else:
            variables[variable] = saved


@function("Select", 3, kind="binder")
def select(env: Any, variable: str, source: Callable[[Any], Any], func: Callable[[Any], Any]) -> Any:
    """``Select($item,[otherPhone],Replace($item,"-",""))``: ``func`` of every value; NULL results are dropped."""
    return mv_result(_bind(env, variable, value, func) for value in as_list(source(env)))


@function("Where", 3, kind="binder")
def where(env: Any, variable: str, source: Callable[[Any], Any], condition: Callable[[Any], Any]) -> Any:
    """``Where($item,[proxyAddresses],Left($item,5)="SMTP:")``: the values for which the condition is True."""
    return mv_result(v for v in as_list(source(env)) if truth(scalar(_bind(env, variable, v, condition), "condition")))


@function("With", 3, kind="binder")
def with_(env: Any, variable: str, sub_expression: Callable[[Any], Any], expression: Callable[[Any], Any]) -> Any:
    """``With($v, subExpression, complexExpression)``: ``subExpression`` is evaluated once."""
    return _bind(env, variable, sub_expression(env), expression)


# ===================================================================================== engine-provided functions
@function("ValueCount", 1, kind="context", pure=False, name_argument=True)
def value_count(env: Any, name: Any) -> int:
    """The number of values of the attribute named ``name`` (a string), without loading them (group members)."""
    attribute = to_text(scalar(name, "name"), "name")
    value = cell(lookup_in(env.context, attribute)) if attribute else None
    if isinstance(value, ReferenceValues):
        return value.count
    return len(as_list(value))


@function("ImportedValue", 1, kind="context", pure=False, name_argument=True)
def imported_value(env: Any, name: Any) -> Any:
    """The attribute's value as last imported (``context.imported_value(name)``; without that method, ``get``)."""
    attribute = to_text(scalar(name, "name"), "name")
    if not attribute:
        return None
    reader = getattr(env.context, "imported_value", None)
    value = cell(reader(attribute) if reader is not None else lookup_in(env.context, attribute))
    if isinstance(value, ReferenceValues):
        raise ExpressionEvaluationError(
            f"attribute {attribute!r} holds {value.count} reference values that are not loaded; "
            f'only ValueCount("{attribute}") can use it',
            function="ImportedValue",
        )
    return value
