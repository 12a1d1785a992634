"""Size limits of the expression language, so that no expression and no attribute value can hang or crash a run.

A rule file is configuration, but attribute values are data from the directories, and an expression multiplies
what it reads: ``PadLeft([x], 4000000000, "0")`` asks for a 4 GB string, nested ``With`` can square a number at
each level, and a deep expression overflows Python's stack. Each limit below turns such a case into an error that
names it: at compile time an :class:`~.errors.ExpressionSyntaxError` with line and column (the rule loader adds the
file, rule and field), at run time an :class:`~.errors.ExpressionEvaluationError` that becomes that object's error
while the run goes on.

The checks sit where a value can grow without bound, in the implementations both evaluation paths share (and in
the column form of ``&``): PadLeft/PadRight, Replace, ReplaceChars, Join, the operators ``&``, ``+``, ``-``, ``*``,
unary minus, multi-valued results, numeric strings, and the literals of the text. Other functions only shrink their
input or grow it by a fixed factor (ConvertToBase64), so their results stay within reach of their input.

The limits are far above what real rules need (the product's own rules nest a few levels, build values of a few
hundred characters and use 64-bit numbers).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_aadsync.engine.expressions.errors import ExpressionEvaluationError

#: Characters in one expression's text.
MAX_EXPRESSION_LENGTH = 65_536
#: Nesting of parentheses, function calls and unary minus in one expression.
MAX_NESTING_DEPTH = 64
#: Digits of a number: a literal in an expression (``123``, ``&HFF``) or a numeric string a function converts.
MAX_NUMBER_DIGITS = 64
#: Bits of an integer an operator or function may produce (AD and Graph numbers are 64-bit at most).
MAX_INTEGER_BITS = 256
#: Characters of a string (or bytes of binary data) a function or operator may produce.
MAX_VALUE_LENGTH = 1_048_576
#: Values of a multi-valued result (a group of 250,000 members fits four times).
MAX_VALUES = 1_000_000
#: Values Select, Where and With may bind in one evaluation, all nested binders together (nested Selects
#: multiply: 20 levels over 2 values each would evaluate their body a million times).
MAX_BINDINGS = 100_000

_SHOWN = 60


def shown(value: Any) -> str:
    """``repr(value)`` cut to a readable length, for error messages about a value that may be huge."""
    text = repr(value)
    if len(text) <= _SHOWN:
        return text
    size = f"{len(value):,} long" if hasattr(value, "__len__") else "cut"
    return f"{text[:_SHOWN]}... ({size})"


def check_length(length: int, what: str) -> None:
    """Refuse to build a string or binary value of ``length`` (checked before building it)."""
    if length > MAX_VALUE_LENGTH:
        raise ExpressionEvaluationError(
            f"{what} would be {length:,} characters long; values are limited to {MAX_VALUE_LENGTH:,}"
        )


def check_integer(value: int, what: str = "the result") -> int:
    """``value``, unless it has more than MAX_INTEGER_BITS bits."""
    if value.bit_length() > MAX_INTEGER_BITS:
        raise ExpressionEvaluationError(
            f"{what} has {value.bit_length():,} bits; numbers are limited to {MAX_INTEGER_BITS} bits"
        )
    return value


def check_count(count: int) -> None:
    """Refuse a multi-valued result of more than MAX_VALUES values."""
    if count > MAX_VALUES:
        raise ExpressionEvaluationError(
            f"the result would hold more than {MAX_VALUES:,} values; multi-valued results are limited to that"
        )
