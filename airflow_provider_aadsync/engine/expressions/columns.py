"""Column-wise evaluation: one expression over many objects at once, with exactly the per-object results.

``CompiledExpression.evaluate`` walks its closure tree once per object, a few microseconds each. For a rule over
100,000 objects that is most of the sync's time, so ``CompiledExpression.evaluate_column`` compiles the same
syntax tree a second time, into functions over whole columns (numpy object arrays), and runs each node once.

Exactness comes first; speed is for the common case:

* Every column carries, per row, the value cell, a *kind* (NULL, str, bin, int, float, bool, unloaded references,
  other) and an *ok* flag. A node computes the rows whose kinds it has a fast form for with vectorised code (IsPresent
  of strings, ConvertToBase64 of bytes, ``=`` of two numbers, ...) and calls the function's own implementation for
  every other row, so an odd row (a number given to LCase, a multi-valued cell, a datetime) gets the per-object
  answer too.
* A row whose evaluation raises is not ok: the column path gives no value for it and the caller evaluates that
  object with ``evaluate``, which raises (and reports) the error itself. So errors land on the same objects, with
  the same messages, without this module reproducing any message.
* IIF and Switch evaluate a branch only over the rows that take it; ``&&``/``||`` short-circuit per row. An error
  in a branch a row does not take (``IIF(ValueCount("member") > 5, Error("..."), IgnoreThisFlow)``) never touches
  that row; ``Error`` itself is "not ok" on every row that reaches it.
* Constant sub-expressions are folded by the per-object compiler and used as it folded them.

What has no column form — ``$variables`` and the functions binding them (Select, Where, With), ImportedValue
(reads the context's imported values) and the functions giving another result on each call (Now, GUID,
RandomNum) — makes ``evaluate_column`` return None: the caller evaluates every object per object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from lark import Tree

from airflow_provider_aadsync.engine.expressions import operators
from airflow_provider_aadsync.engine.expressions.column_forms import (
    BOOL,
    FAST_FUNCTIONS,
    FAST_OPERATORS,
    FLOAT,
    INT,
    NULL,
    OTHER,
    REF,
    Col,
    Fast,
    kind_of,
    kinds_of,
    logical_rest,
    nulls,
    objects,
)
from airflow_provider_aadsync.engine.expressions.errors import ExpressionEvaluationError
from airflow_provider_aadsync.engine.expressions.flow import truth
from airflow_provider_aadsync.engine.expressions.functions import FUNCTIONS, FunctionSpec
from airflow_provider_aadsync.engine.expressions.limits import MAX_NESTING_DEPTH
from airflow_provider_aadsync.engine.expressions.parser import parse
from airflow_provider_aadsync.engine.expressions.row_compiler import RowCompiler, single_argument
from airflow_provider_aadsync.engine.expressions.values import SENTINELS, ReferenceValues, cells

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ColumnResult", "Columns", "compile_columns"]


# ------------------------------------------------------------------------------------------------ input
class Columns:
    """The attribute columns that expressions read, for :meth:`CompiledExpression.evaluate_column`.

    Each attribute is read, normalised as a value cell and classified once, then shared by every expression
    evaluated over this object (a rule's flows read ``[cn]`` or ``[objectGUID]`` several times).

    :param read: returns an attribute's cells (a sequence of ``size`` value cells) given its name as the expression
        writes it, or None when there is no such attribute (every object then has NULL)
    :param size: the number of objects (rows)
    :param index: the row labels of the result (a RangeIndex when None)
    """

    def __init__(self, read: Callable[[str], Any], size: int, index: Any = None) -> None:
        self._read = read
        self.size = size
        self.index = index
        self._cells: dict[str, np.ndarray] = {}
        self._leaves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        #: The results of calls an expression writes more than once (``_memoised``), with the rows they hold.
        self.memo: dict[Any, tuple[np.ndarray, Col]] = {}

    @classmethod
    def of(cls, source: Columns | pd.DataFrame | Mapping[str, Sequence[Any]], size: int | None = None) -> Columns:
        """Columns of a DataFrame (pandas' missing markers read as NULL, as the rules engine reads frames) or of a
        mapping of attribute name → cells; names are looked up as the per-object context looks them up (the name as
        written, else the first one equal ignoring case)."""
        if isinstance(source, Columns):
            return source
        if hasattr(source, "columns") and hasattr(source, "index"):  # a DataFrame, without importing pandas here
            frame = source
            labels = {str(label): label for label in frame.columns}

            def read_frame(name: str) -> np.ndarray | None:
                label = _find(labels, name)
                if label is None:
                    return None
                cells = frame[labels[label]].to_numpy(dtype=object)
                return missing_as_null(cells)

            return cls(read_frame, len(frame), frame.index)
        mapping = source
        if size is None:
            size = len(next(iter(mapping.values()))) if mapping else 0

        def read_mapping(name: str) -> Any:
            key = _find(mapping, name)
            return None if key is None else mapping[key]

        return cls(read_mapping, size)

    def cells(self, name: str) -> np.ndarray:
        """The attribute's cells as read (an object array; all None when there is no such attribute)."""
        found = self._cells.get(name)
        if found is None:
            raw = self._read(name)
            if raw is None:
                found = nulls(self.size)
            elif isinstance(raw, np.ndarray) and raw.dtype == object and raw.shape == (self.size,):
                found = raw
            else:
                found = objects(iter(raw), self.size)
            self._cells[name] = found
        return found

    def leaf(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The attribute's value cells as ``env.get`` returns them (``values.cell``) and their kinds."""
        found = self._leaves.get(name)
        if found is None:
            values = self.cells(name)
            kinds = kinds_of(values)
            odd = np.flatnonzero(kinds == OTHER)
            if odd.size:  # lists, tuples, naive datetimes, bytearrays: normalised as the per-object path does
                values = values.copy()
                normalised = objects(cells(values[odd].tolist()), odd.size)  # a list stays one cell
                values[odd] = normalised
                kinds[odd] = kinds_of(normalised)
            found = self._leaves[name] = (values, kinds)
        return found


def _find(names: Mapping[str, Any], name: str) -> str | None:
    if name in names:
        return name
    folded = name.casefold()
    return next((key for key in names if isinstance(key, str) and key.casefold() == folded), None)


def missing_as_null(cells: np.ndarray) -> np.ndarray:
    """Cells as read from a frame, with pandas' missing markers (NaN, NA, NaT) turned into ``None``."""
    import pandas as pd

    missing = pd.isna(cells)
    if missing.any():
        cells = cells.copy()
        cells[missing] = None
    return cells


@dataclass(frozen=True)
class ColumnResult:
    """What :meth:`CompiledExpression.evaluate_column` gives.

    :ivar values: each object's result (an object Series on the input's index); NULL in the rows of ``per_row``
    :ivar per_row: the objects the column path left to ``CompiledExpression.evaluate`` — an error (that call raises
        it), or a case with no column form (a multi-valued IIF condition)
    """

    values: pd.Series
    per_row: np.ndarray


# ----------------------------------------------------------------------------------------------- nodes
Node = Callable[[Columns, np.ndarray], Col]
"""A compiled node: ``node(columns, need)`` evaluates the rows of the mask ``need`` (other rows: anything)."""


class _NoColumnForm(Exception):
    """The expression uses something that has no column form."""


def compile_columns(text: str, parameters: Mapping[str, object]) -> Callable[[Columns], ColumnResult] | None:
    """The column form of an expression that compiles (``compile_expression(text, parameters=...)``), or None."""
    compiler = _ColumnCompiler(RowCompiler(text, parameters))
    try:
        root = compiler.node(parse(text))
    except _NoColumnForm:
        return None

    def run(columns: Columns) -> ColumnResult:
        import pandas as pd

        size = columns.size
        try:
            result = root(columns, np.ones(size, dtype=bool))
        except Exception:  # noqa: BLE001 - a cell nothing here foresaw: then every object goes per object
            result = Col.empty(size)
        values = result.values.copy()  # may be an attribute's own cells ([displayName] alone)
        per_row = ~result.ok
        values[per_row] = None
        index = columns.index if columns.index is not None else pd.RangeIndex(size)
        return ColumnResult(pd.Series(values, index=index, dtype=object, copy=False), per_row)

    return run


def _memoised(node: Node) -> Node:
    """A call node evaluated once per ``Columns`` for the rows asked first, when a later use asks for no other rows:
    the shipped primary SMTP address tests ``Contains([proxyAddresses], "SMTP:")`` and then takes the value it
    points at. Results are read only, as an attribute's shared cells are."""

    def memoised(columns: Columns, need: np.ndarray) -> Col:
        found = columns.memo.get(memoised)
        if found is not None and not (need & ~found[0]).any():
            return found[1]
        result = node(columns, need)
        columns.memo[memoised] = (need.copy(), result)
        return result

    return memoised


def _guarded(node: Node) -> Node:
    """Skip a node no row needs (an IIF branch no object takes)."""

    def guarded(columns: Columns, need: np.ndarray) -> Col:
        if not need.any():
            return Col.empty(columns.size)
        return node(columns, need)

    return guarded


class _ColumnCompiler:
    def __init__(self, rows: RowCompiler) -> None:
        self.rows = rows  # the per-object compiler: folds constants exactly as the per-object form does
        self.calls: dict[str, Node] = {}  # by the call's text: _unsupported leaves only pure calls

    def node(self, tree: Tree) -> Node:
        kind = tree.data
        if kind == "start":
            return self.node(tree.children[0])
        if kind in ("variable", "call") and self._unsupported(tree):
            raise _NoColumnForm
        thunk, constant = self.rows.expression(tree)
        if constant:
            value = thunk(None)  # a folded constant ignores its environment

            def constant_node(columns: Columns, need: np.ndarray) -> Col:
                return Col.constant(value, columns.size)

            return constant_node
        if kind == "expr":
            return self.sequence(tree)
        method = getattr(self, f"node_{kind}", None)
        if method is None:
            raise _NoColumnForm
        if kind != "call":
            return _guarded(method(tree))
        key = repr(tree)  # the same call written twice (with the same arguments): one node, computed once
        if key not in self.calls:
            self.calls[key] = _memoised(_guarded(method(tree)))
        return self.calls[key]

    def _unsupported(self, tree: Tree) -> bool:
        if tree.data == "variable":
            return True
        spec = FUNCTIONS[str(tree.children[0]).casefold()]
        if spec.kind == "binder" or spec.name == "ImportedValue":
            return True
        return not spec.pure and spec.name != "ValueCount"

    def sequence(self, tree: Tree) -> Node:
        children = tree.children
        if len(children) // 2 > MAX_NESTING_DEPTH:  # nested nodes recurse once per operator: the per-object form loops
            raise _NoColumnForm
        node = self.node(children[0])
        for position in range(1, len(children), 2):
            op = str(children[position].children[0])
            node = _guarded(_binary(op, node, self.node(children[position + 1])))
        return node

    def node_attribute(self, tree: Tree, *, raw: bool = False) -> Node:
        name = str(tree.children[0])[1:-1].strip()

        def read(columns: Columns, need: np.ndarray) -> Col:
            values, kinds = columns.leaf(name)
            # Unloaded references are an error except as the argument of IsPresent, Count, ... (``raw``).
            ok = np.ones(columns.size, dtype=bool) if raw else kinds != REF
            return Col(values, kinds, ok)

        return read

    def node_neg(self, tree: Tree) -> Node:
        return _eager(operators.negate, [self.node(tree.children[1])])

    def node_call(self, tree: Tree) -> Node:
        token, args_node = tree.children
        spec = FUNCTIONS[str(token).casefold()]
        args: list[Tree] = list(args_node.children) if args_node is not None else []
        if spec.name == "Error":
            return lambda columns, need: Col.empty(columns.size)  # raises on every row that evaluates it
        if spec.name == "IIF":
            return _iif(*[self.node(arg) for arg in args])
        if spec.name == "Switch":
            return _switch([self.node(arg) for arg in args])
        if spec.name == "ValueCount":
            return self.value_count(args[0])
        nodes = [self.argument(spec, arg) for arg in args]
        return _eager(_checked(spec), nodes, FAST_FUNCTIONS.get(spec.name))

    def argument(self, spec: FunctionSpec, arg: Tree) -> Node:
        if spec.raw_attribute:
            inner = single_argument(arg)
            if inner is not None and inner.data == "attribute":
                return self.node_attribute(inner, raw=True)
        return self.node(arg)

    def value_count(self, arg: Tree) -> Node:
        thunk, constant = self.rows.expression(arg)
        if not constant:
            raise _NoColumnForm  # the attribute's name computed per object: rare enough to leave per object
        spec = FUNCTIONS["valuecount"]
        env = _NameOnly()
        try:
            argument = thunk(None)
            if argument in SENTINELS:
                raise ExpressionEvaluationError(f"ValueCount: {argument!r} cannot be an argument")
            spec.impl(env, argument)  # records the name as ValueCount looks it up
        except Exception:  # noqa: BLE001 - a bad name fails on every object, per object
            return lambda columns, need: Col.empty(columns.size)
        name = env.name

        def count(columns: Columns, need: np.ndarray) -> Col:
            size = columns.size
            if name is None:
                return Col.constant(0, size)
            values, kinds = columns.leaf(name)
            counts = (kinds != NULL).astype(np.int64).astype(object)
            for position in np.flatnonzero((kinds == OTHER) | (kinds == REF)).tolist():
                value = values[position]
                if isinstance(value, ReferenceValues):
                    counts[position] = value.count
                elif isinstance(value, list):
                    counts[position] = len(value)
            return Col(counts, np.full(size, INT, dtype=np.int8), np.ones(size, dtype=bool))

        return count


class _NameOnly:
    """A context that records which attribute ValueCount looks up (its name argument, as ValueCount reads it)."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.context = self
        self.variables: dict[str, Any] = {}

    def get(self, name: str) -> None:
        self.name = name


# ------------------------------------------------------------------------------------------ evaluation
def _per_row(call: Callable[..., Any], args: Sequence[Col], rows: np.ndarray, out: Col) -> None:
    """``out`` at ``rows`` = ``call(*values)`` row by row; a row whose call raises stays not ok (per object)."""
    columns = [arg.values for arg in args]
    values, kinds, ok = out.values, out.kinds, out.ok
    for position in np.flatnonzero(rows).tolist():
        try:
            value = call(*[column[position] for column in columns])
        except Exception:  # noqa: BLE001, S112 - that object's own evaluation raises it again and reports it
            continue
        values[position] = value
        kinds[position] = kind_of(value)
        ok[position] = True


def _checked(spec: FunctionSpec) -> Callable[..., Any]:
    """The function as the per-object path calls it: a sentinel argument is an error (see ``compiler._call``)."""
    impl = spec.impl

    def call(*values: Any) -> Any:
        for value in values:
            if value in SENTINELS:
                raise ExpressionEvaluationError(f"{spec.name}: {value!r} cannot be an argument")
        return impl(*values)

    return call


def _eager(call: Callable[..., Any], nodes: Sequence[Node], fast: Fast | None = None) -> Node:
    def evaluate(columns: Columns, need: np.ndarray) -> Col:
        args = [node(columns, need) for node in nodes]
        rows = need.copy()
        for arg in args:
            rows &= arg.ok
        out = Col.empty(columns.size)
        if fast is not None and rows.any():
            rows &= ~fast(args, rows, out)
        _per_row(call, args, rows, out)
        return out

    return evaluate


def _binary(op: str, left: Node, right: Node) -> Node:
    apply = operators.apply
    fast = FAST_OPERATORS.get(op)

    def call(a: Any, b: Any) -> Any:
        return apply(op, a, b)

    if op not in ("&&", "||"):
        return _eager(call, [left, right], fast)
    stop = op == "||"  # False && anything is False, True || anything is True: the right side is not evaluated

    def short_circuit(columns: Columns, need: np.ndarray) -> Col:
        a = left(columns, need)
        rows = need & a.ok
        bools = rows & (a.kinds == BOOL)
        short = np.zeros(columns.size, dtype=bool)
        short[bools] = a.values[bools] == stop
        rest = rows & ~short
        b = right(columns, rest)
        out = Col.empty(columns.size)
        out.set(short, stop, BOOL)
        rest &= b.ok
        rest &= ~logical_rest(stop, a, b, rest, out)
        _per_row(call, [a, b], rest, out)
        return out

    return short_circuit


def _truth(condition: Col, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``truth`` of a condition at ``rows``: (the flags, the rows where it is defined). A multi-valued condition is
    left undefined (IIF then chooses per value, Switch fails): those objects go per object."""
    kinds, values = condition.kinds, condition.values
    flags = np.zeros(len(kinds), dtype=bool)
    done = rows & ((kinds == NULL) | (kinds == BOOL) | (kinds == INT) | (kinds == FLOAT))
    numbers = done & (kinds != NULL)
    flags[numbers] = values[numbers] != 0  # bool, int, float: True when non-zero (NULL: False)
    for position in np.flatnonzero(rows & ~done).tolist():
        value = values[position]
        if isinstance(value, list):
            continue
        try:
            flags[position] = truth(value)
        except Exception:  # noqa: BLE001, S112 - e.g. IIF("maybe", ...): an error of that object
            continue
        done[position] = True
    return flags, done


def _iif(condition: Node, if_true: Node, if_false: Node) -> Node:
    def evaluate(columns: Columns, need: np.ndarray) -> Col:
        test = condition(columns, need)
        flags, defined = _truth(test, need & test.ok)
        yes, no = defined & flags, defined & ~flags
        a, b = if_true(columns, yes), if_false(columns, no)
        return Col(
            np.where(yes, a.values, b.values),
            np.where(yes, a.kinds, b.kinds),
            (yes & a.ok) | (no & b.ok),
        )

    return evaluate


def _switch(nodes: Sequence[Node]) -> Node:
    pairs = list(zip(nodes[::2], nodes[1::2], strict=True))

    def evaluate(columns: Columns, need: np.ndarray) -> Col:
        out = Col.empty(columns.size)
        undecided = need.copy()
        for condition, value in pairs:
            if not undecided.any():
                break
            test = condition(columns, undecided)
            flags, defined = _truth(test, undecided & test.ok)
            taken = defined & flags
            chosen = value(columns, taken)
            out.values[taken] = chosen.values[taken]
            out.kinds[taken] = chosen.kinds[taken]
            out.ok[taken] = chosen.ok[taken]
            undecided &= defined & ~flags  # the rest: an error, or decided
        out.set(undecided, None, NULL)  # no condition was True
        return out

    return evaluate
