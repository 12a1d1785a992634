"""The binary operators. All have the same priority and group left to right; the compiler folds them in order.

NULL follows VBA: ``&`` treats NULL as "" (NULL & NULL is NULL), arithmetic and comparisons with NULL are NULL
(a NULL condition counts as False), ``&&``/``||`` use three-valued logic (False && NULL is False, True || NULL is
True). A multi-valued operand applies the operator to each of its values against the other (single) operand, so
``Word([proxyAddresses],1,"@") & "@contoso.com"`` works per value; two multi-valued operands may only be compared
with ``=``/``<>`` (equal when they hold the same values, in any order).
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from collections.abc import Callable
from typing import Any

from airflow_provider_aadsync.engine.expressions.coerce import format_number, parse_number, to_bool, to_number
from airflow_provider_aadsync.engine.expressions.dates import format_datetime, parse_date
from airflow_provider_aadsync.engine.expressions.errors import ExpressionEvaluationError
from airflow_provider_aadsync.engine.expressions.limits import (
    MAX_INTEGER_BITS,
    MAX_VALUE_LENGTH,
    check_integer,
    check_length,
)
from airflow_provider_aadsync.engine.expressions.values import SENTINELS, mv_result, type_name


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _concat_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if _is_number(value):
        return format_number(value)
    if isinstance(value, _dt.datetime):
        return format_datetime(value, "yyyy-MM-dd HH:mm:ss")
    raise ExpressionEvaluationError(f"operator '&' cannot concatenate {type_name(value)}")


def _joined(a: str, b: str, op: str) -> str:
    if len(a) + len(b) > MAX_VALUE_LENGTH:
        check_length(len(a) + len(b), f"the result of '{op}'")
    return a + b


def _whole(value: int | float, op: str) -> int | float:
    """An integer result within MAX_INTEGER_BITS (floats overflow to inf on their own)."""
    if value.__class__ is int and value.bit_length() > MAX_INTEGER_BITS:
        check_integer(value, f"the result of '{op}'")
    return value


def concat(a: Any, b: Any) -> Any:
    if a is None and b is None:
        return None
    return _joined(_concat_text(a), _concat_text(b), "&")


def _numbers(op: str, a: Any, b: Any) -> tuple[int | float, int | float]:
    try:
        return to_number(a), to_number(b)  # type: ignore[return-value]
    except ExpressionEvaluationError:
        raise ExpressionEvaluationError(
            f"operator '{op}' needs numbers, got {type_name(a)} and {type_name(b)}"
        ) from None


def add(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if isinstance(a, str) and isinstance(b, str):
        return _joined(a, b, "+")  # VBA: + of two strings concatenates
    x, y = _numbers("+", a, b)
    return _whole(x + y, "+")


def subtract(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    x, y = _numbers("-", a, b)
    return _whole(x - y, "-")


def multiply(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    x, y = _numbers("*", a, b)
    if x.__class__ is int and y.__class__ is int and x.bit_length() + y.bit_length() > MAX_INTEGER_BITS + 1:
        # checked before multiplying: two huge numbers take long to multiply
        raise ExpressionEvaluationError(
            f"the result of '*' would be a number of about {x.bit_length() + y.bit_length():,} bits; numbers are "
            f"limited to {MAX_INTEGER_BITS} bits"
        )
    return _whole(x * y, "*")


def divide(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    x, y = _numbers("/", a, b)
    if y == 0:
        raise ExpressionEvaluationError("operator '/': division by zero")
    if isinstance(x, int) and isinstance(y, int) and x % y == 0:
        return x // y
    return x / y


def _comparable(op: str, a: Any, b: Any) -> tuple[Any, Any] | None:
    """Both operands in one comparable type, or None when their types cannot be compared."""
    if _is_number(a) and _is_number(b):
        return a, b
    if type(a) is type(b) and isinstance(a, str | bool | bytes | _dt.datetime):
        return a, b
    if isinstance(a, _dt.datetime) or isinstance(b, _dt.datetime):
        other = b if isinstance(a, _dt.datetime) else a
        when = parse_date(other) if isinstance(other, str) else None
        if when is None:
            return None
        return (a, when) if isinstance(a, _dt.datetime) else (when, b)
    if (_is_number(a) and isinstance(b, str)) or (isinstance(a, str) and _is_number(b)):
        text = b if isinstance(b, str) else a
        number = parse_number(text)
        if number is not None:
            return (a, number) if isinstance(b, str) else (number, b)
        return None
    if isinstance(a, bool) or isinstance(b, bool):
        try:
            return bool(to_bool(a)), bool(to_bool(b))
        except ExpressionEvaluationError:
            return None
    return None


def _comparison(op: str, test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
    def compare(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        pair = _comparable(op, a, b)
        if pair is None:
            if op == "=":
                return False
            if op == "<>":
                return True
            raise ExpressionEvaluationError(f"operator '{op}' cannot compare {type_name(a)} with {type_name(b)}")
        return test(*pair)

    return compare


def logical_and(a: Any, b: Any) -> Any:
    x, y = to_bool(a, "operand of '&&'"), to_bool(b, "operand of '&&'")
    if x is False or y is False:
        return False
    if x is None or y is None:
        return None
    return True


def logical_or(a: Any, b: Any) -> Any:
    x, y = to_bool(a, "operand of '||'"), to_bool(b, "operand of '||'")
    if x is True or y is True:
        return True
    if x is None or y is None:
        return None
    return False


OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "&": concat,
    "+": add,
    "-": subtract,
    "*": multiply,
    "/": divide,
    "=": _comparison("=", lambda a, b: a == b),
    "<>": _comparison("<>", lambda a, b: a != b),
    "<": _comparison("<", lambda a, b: a < b),
    "<=": _comparison("<=", lambda a, b: a <= b),
    ">": _comparison(">", lambda a, b: a > b),
    ">=": _comparison(">=", lambda a, b: a >= b),
    "&&": logical_and,
    "||": logical_or,
}


def apply(op: str, a: Any, b: Any) -> Any:
    """``a op b`` with the sentinel checks and multi-valued broadcasting described above."""
    if a in SENTINELS or b in SENTINELS:
        culprit = a if a in SENTINELS else b
        raise ExpressionEvaluationError(f"{culprit!r} cannot be an operand of '{op}'")
    function = OPERATORS[op]
    a_many, b_many = isinstance(a, list), isinstance(b, list)
    if a_many and b_many:
        if op in ("=", "<>"):
            try:
                same = Counter(a) == Counter(b)
            except TypeError:
                same = sorted(map(repr, a)) == sorted(map(repr, b))
            return same if op == "=" else not same
        raise ExpressionEvaluationError(f"operator '{op}' cannot combine two multi-valued operands")
    if a_many:
        return mv_result(function(value, b) for value in a)
    if b_many:
        return mv_result(function(a, value) for value in b)
    return function(a, b)


def negate(value: Any) -> Any:
    """Unary minus."""
    if value is None:
        return None
    if isinstance(value, list):
        return mv_result(negate(v) for v in value)
    if value in SENTINELS:
        raise ExpressionEvaluationError(f"{value!r} cannot be negated")
    number = to_number(value, "operand of unary '-'")
    return _whole(-number, "unary '-'")  # type: ignore[operator]
