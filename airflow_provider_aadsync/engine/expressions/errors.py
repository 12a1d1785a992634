"""Errors of the expression language.

::

    ExpressionError
     ├── ExpressionSyntaxError       compile time: bad syntax, unknown function/name/parameter/variable,
     │                               wrong argument count (carries line and column, 1-based)
     └── ExpressionEvaluationError   run time: a value of the wrong type, an index out of range, ...
          ├── ArgumentError          a function got a value it cannot use (the compiler adds the function's name)
          └── FlowError              raised on purpose by the expression's ``Error("message")``
"""

from __future__ import annotations


class ExpressionError(Exception):
    """Base of every error of the expression language."""


class ExpressionSyntaxError(ExpressionError):
    """The expression text cannot be compiled; ``line`` and ``column`` (1-based) point at the offending token."""

    def __init__(self, message: str, line: int, column: int, text: str) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message = message
        self.line = line
        self.column = column
        self.text = text


class ExpressionEvaluationError(ExpressionError):
    """Evaluating a compiled expression against one object failed (the engine records it as that object's error).

    ``function`` names the function that failed, when one did.
    """

    def __init__(self, message: str, *, function: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.function = function


class ArgumentError(ExpressionEvaluationError):
    """A function got a value it cannot use; the compiler prefixes the function's name."""


class FlowError(ExpressionEvaluationError):
    """Raised by the expression itself through ``Error("message")``; ``message`` is the expression's text."""

    def __init__(self, message: str) -> None:
        super().__init__(message, function="Error")
