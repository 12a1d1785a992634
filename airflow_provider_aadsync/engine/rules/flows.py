"""Attribute flows of one rule, evaluated over a frame of in-scope objects.

Direct flows copy a column, Constant flows (and expressions that use no attribute) broadcast one value; genuine
expressions run column-wise (``CompiledExpression.evaluate_column``) and per object only for the objects the column
form leaves: those whose evaluation fails (the per-object run raises and records the error) and the rare cases
without a column form. Which value wins when several rules flow to one target (precedence, merge,
AuthoritativeNull) is the engine's business, not this one's.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from airflow_provider_aadsync.engine.rules.errors import RuleObjectError
from airflow_provider_aadsync.engine.rules.model import FlowType, MergeType
from airflow_provider_aadsync.engine.rules.scoping import FrameView

if TYPE_CHECKING:
    from airflow_provider_aadsync.engine.expressions import CompiledExpression
    from airflow_provider_aadsync.engine.expressions.columns import Columns

__all__ = ["EXPRESSION_ERROR", "FLOW_ERROR", "FlowResult", "FlowSpec", "JoinCondition", "evaluate_flows"]

#: Run-error code of an object whose expression failed.
EXPRESSION_ERROR = "expression-error"
#: Run-error code of an object for which the rule called ``Error("...")``.
FLOW_ERROR = "flow-error"


class JoinCondition(NamedTuple):
    """One pair of a join group: ``source`` (this side's attribute) must equal ``target`` (the other side's)."""

    source: str
    target: str
    case_sensitive: bool = True
    soft_match: bool = False


@dataclass(frozen=True)
class FlowSpec:
    """One flow as the engine needs it: where it goes and how it merges, plus what it computes."""

    target: str
    type: FlowType
    source: str | None = None  # Direct: the attribute copied
    apply_once: bool = False
    merge: MergeType = MergeType.UPDATE
    value: Any = None  # Constant: the value (a scalar, or a list of two or more for a multi-valued constant)
    expression: str | None = None  # Expression: the text as written
    compiled: CompiledExpression | None = field(default=None, compare=False, repr=False)


@dataclass
class FlowResult:
    """What one rule's flows produce for a frame of objects.

    ``values`` has one row per object that evaluated without error (the frame's index, minus the rows in
    ``errors``) and one column per flow target; cells are value cells (``None`` for NULL) or the sentinels
    ``AuthoritativeNull``/``IgnoreThisFlow``. An object with an error contributes nothing for this rule: its row
    is *dropped* from ``values`` and ``errors`` holds its first error, keyed by its index label.
    """

    values: pd.DataFrame
    errors: dict[Hashable, RuleObjectError] = field(default_factory=dict)


def _broadcast(value: Any, size: int) -> np.ndarray:
    out = np.empty(size, dtype=object)
    out.fill(value)
    return out


def _expression_columns(view: FrameView) -> Columns:
    """The frame's columns as the rule's expressions read them, each prepared once for all of them."""
    from airflow_provider_aadsync.engine.expressions.columns import Columns, missing_as_null

    return Columns(lambda name: missing_as_null(view.cells(name)), view.size, view.frame.index)


def _object_error(rule: str, spec: FlowSpec, exc: BaseException) -> RuleObjectError:
    from airflow_provider_aadsync.engine.expressions import ExpressionError, FlowError

    if isinstance(exc, FlowError):
        code, what = FLOW_ERROR, f"Error(): {exc.message}"
    elif isinstance(exc, ExpressionError):
        code, what = EXPRESSION_ERROR, str(exc)
    else:  # a bug in a function must not stop the run; it shows up per object with its type
        code, what = EXPRESSION_ERROR, f"{type(exc).__name__}: {exc}"
    return RuleObjectError(
        code=code,
        rule=rule,
        target=spec.target,
        message=f"rule {rule!r}, flow to {spec.target!r}: {what}",
    )


def _evaluate_expression(
    rule: str,
    spec: FlowSpec,
    view: FrameView,
    columns: Columns,
    failed: dict[int, RuleObjectError],
) -> np.ndarray:
    expression = spec.compiled
    assert expression is not None, "Expression flows are compiled at load"
    size = view.size
    if expression.is_constant:
        try:
            return _broadcast(expression.evaluate({}), size)
        except Exception as exc:  # noqa: BLE001 - recorded per object, see _object_error
            error = _object_error(rule, spec, exc)
            for position in range(size):
                failed.setdefault(position, error)
            return _broadcast(None, size)
    # Column-wise first: the objects it leaves (errors, cases without a column form) are evaluated one by one
    # below, and raise their errors there.
    result = expression.evaluate_column(columns)
    if result is None:
        out = np.empty(size, dtype=object)
        positions: Iterable[int] = range(size)
    else:
        out = result.values.to_numpy(dtype=object, copy=True)
        positions = np.flatnonzero(result.per_row).tolist()
    names = sorted(expression.attributes)
    cells = [columns.cells(name) for name in names]
    evaluate = expression.evaluate
    for position in positions:
        if position in failed:
            continue
        try:
            out[position] = evaluate({name: column[position] for name, column in zip(names, cells, strict=True)})
        except Exception as exc:  # noqa: BLE001 - recorded per object, see _object_error
            failed[position] = _object_error(rule, spec, exc)
    return out


def evaluate_flows(rule: str, specs: tuple[FlowSpec, ...], frame: pd.DataFrame | FrameView) -> FlowResult:
    """Evaluate a rule's flows for every object (row) of ``frame``; see :class:`FlowResult`."""
    from airflow_provider_aadsync.engine.expressions.columns import missing_as_null

    view = frame if isinstance(frame, FrameView) else FrameView(frame)
    size = view.size
    failed: dict[int, RuleObjectError] = {}
    data: dict[str, np.ndarray] = {}
    columns = _expression_columns(view)
    for spec in specs:
        if spec.type is FlowType.DIRECT:
            data[spec.target] = missing_as_null(view.cells(spec.source or ""))
        elif spec.type is FlowType.CONSTANT:
            data[spec.target] = _broadcast(spec.value, size)
        else:
            data[spec.target] = _evaluate_expression(rule, spec, view, columns, failed)
    index = view.frame.index
    values = pd.DataFrame(data, index=index, columns=[spec.target for spec in specs], dtype=object)
    if not failed:
        return FlowResult(values)
    keep = np.ones(size, dtype=bool)
    keep[list(failed)] = False
    errors = {index[position]: error for position, error in sorted(failed.items())}
    return FlowResult(values.iloc[keep], errors)


def check_flow_fields(spec_type: FlowType, fields_set: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Which fields a flow of ``spec_type`` misses or should not have: ``[(field, message), ...]``."""
    required = {FlowType.DIRECT: "source", FlowType.CONSTANT: "value", FlowType.EXPRESSION: "expression"}[spec_type]
    kind = f"{'an' if spec_type is FlowType.EXPRESSION else 'a'} {spec_type.value} flow"
    problems = []
    if fields_set.get(required) is None:
        problems.append((required, f"{kind} needs '{required}'"))
    for other in ("source", "value", "expression"):
        if other != required and fields_set.get(other) is not None:
            problems.append((other, f"{kind} takes no '{other}' (it uses '{required}')"))
    return problems
