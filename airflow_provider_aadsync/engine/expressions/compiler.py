"""Compile expression text into ``CompiledExpression``: a tree of Python closures (built by ``row_compiler``), once,
with constant sub-expressions folded, so evaluating an expression for each of many objects walks no syntax tree."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_aadsync.engine.expressions.errors import ExpressionSyntaxError
from airflow_provider_aadsync.engine.expressions.parser import parse
from airflow_provider_aadsync.engine.expressions.row_compiler import Env, RowCompiler, Thunk

if TYPE_CHECKING:
    import pandas as pd

    from airflow_provider_aadsync.engine.expressions.columns import ColumnResult, Columns

_NOT_COMPILED = object()


class CompiledExpression:
    """A compiled expression.

    :ivar text: the expression's source text.
    :ivar attributes: the attribute names the expression reads, as written (``[givenName]`` → ``givenName``),
        including the names given to ValueCount/ImportedValue as string constants.
    :ivar is_constant: True when the expression reads nothing and folded to one value (a Constant flow).
    """

    __slots__ = ("text", "attributes", "is_constant", "_thunk", "_parameters", "_columns")

    def __init__(
        self,
        text: str,
        attributes: frozenset[str],
        is_constant: bool,
        thunk: Thunk,
        parameters: Mapping[str, object] | None = None,
    ) -> None:
        self.text = text
        self.attributes = attributes
        self.is_constant = is_constant
        self._thunk = thunk
        self._parameters = dict(parameters or {})
        self._columns: Any = _NOT_COMPILED

    def evaluate(self, context: Mapping[str, Any] | Any = None) -> Any:
        """Evaluate against ``context`` (a Mapping, searched case-insensitively, or an object with ``get(name)``)
        and return a value cell, ``AuthoritativeNull`` or ``IgnoreThisFlow``.

        :raise ExpressionEvaluationError: a value of the wrong type, an index out of range, ...
        :raise FlowError: the expression called ``Error("...")``.
        """
        return self._thunk(Env({} if context is None else context))

    def evaluate_column(
        self, columns: Columns | pd.DataFrame | Mapping[str, Sequence[Any]], size: int | None = None
    ) -> ColumnResult | None:
        """Evaluate for many objects at once: row ``i`` of ``columns`` is one object's context.

        The result holds, for every object, what ``evaluate`` returns for it, except for the objects it marks
        ``per_row`` — those whose evaluation raises (``evaluate`` raises the same error) and the few cases with no
        column form (a multi-valued IIF condition): evaluate those with ``evaluate``. None when the expression has
        no column form at all (Select, Where, With, ImportedValue, Now, GUID, RandomNum); see ``columns``.

        :param columns: a ``Columns`` (shared by several expressions: each attribute is prepared once), a DataFrame
            (pandas' missing markers are NULL) or a mapping of attribute name → cells; names are matched as
            ``evaluate`` matches them
        :param size: the number of objects, for a mapping with no columns
        """
        if self._columns is _NOT_COMPILED:
            from airflow_provider_aadsync.engine.expressions.columns import compile_columns

            self._columns = compile_columns(self.text, self._parameters)
        if self._columns is None:
            return None
        from airflow_provider_aadsync.engine.expressions.columns import Columns

        return self._columns(Columns.of(columns, size))

    def __repr__(self) -> str:
        return f"CompiledExpression({self.text!r})"


def compile_expression(text: str, *, parameters: Mapping[str, object] | None = None) -> CompiledExpression:
    """Compile ``text``; ``%Name%`` placeholders are replaced by ``parameters[Name]`` (names case-insensitive).

    :raise ExpressionSyntaxError: bad syntax, an unknown function, name, variable or parameter, or a wrong number
        of arguments — with the line and column of the offending token.
    """
    compiler = RowCompiler(text, parameters or {})
    tree = parse(text)
    try:
        thunk, constant = compiler.expression(tree)
    except RecursionError:  # a safety net: parse() refuses nesting deeper than limits.MAX_NESTING_DEPTH first
        raise ExpressionSyntaxError("nested too deeply to compile", 1, 1, text) from None
    return CompiledExpression(text, frozenset(compiler.attributes), constant, thunk, parameters)
