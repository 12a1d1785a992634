"""The per-object compiler: an expression's syntax tree into a tree of Python closures (``Thunk``), with constant
sub-expressions folded, so evaluating an expression for each of many objects walks no syntax tree.

``compiler.compile_expression`` wraps what ``RowCompiler`` builds in a ``CompiledExpression``; the column form
(``columns``) reuses ``RowCompiler`` so that constants fold exactly as they do per object.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from lark import Token, Tree

from airflow_provider_aadsync.engine.expressions import operators
from airflow_provider_aadsync.engine.expressions.errors import (
    ArgumentError,
    ExpressionEvaluationError,
    ExpressionSyntaxError,
    FlowError,
)
from airflow_provider_aadsync.engine.expressions.functions import ENUM_WORDS, FUNCTIONS, FunctionSpec
from airflow_provider_aadsync.engine.expressions.values import (
    SENTINELS,
    AuthoritativeNull,
    IgnoreThisFlow,
    ReferenceValues,
    cell,
    lookup_in,
)

Thunk = Callable[["Env"], Any]

_CONSTANTS: dict[str, Any] = {
    "true": True,
    "false": False,
    "null": None,
    "crlf": "\r\n",
    "authoritativenull": AuthoritativeNull,
    "ignorethisflow": IgnoreThisFlow,
}


class Env:
    """One evaluation: the context and the ``$variables`` bound by Select/Where/With."""

    __slots__ = ("bindings", "context", "variables")

    def __init__(self, context: Any) -> None:
        self.context = context
        self.variables: dict[str, Any] = {}
        self.bindings = 0  # values bound so far by Select/Where/With (limits.MAX_BINDINGS)

    def get(self, name: str) -> Any:
        return cell(lookup_in(self.context, name))


def _constant(value: Any) -> Thunk:
    return lambda env: value


class RowCompiler:
    """Compiles the syntax tree of one expression text; collects the attribute names it reads."""

    def __init__(self, text: str, parameters: Mapping[str, object]) -> None:
        self.text = text
        self.parameters = {str(name).casefold(): value for name, value in parameters.items()}
        self.attributes: set[str] = set()
        self.scope: list[str] = []

    def error(self, message: str, token: Token | Tree) -> ExpressionSyntaxError:
        if isinstance(token, Tree):
            line, column = token.meta.line, token.meta.column
        else:
            line, column = token.line, token.column
        return ExpressionSyntaxError(message, line or 1, column or 1, self.text)

    # Each compile step returns (thunk, is_constant); a constant thunk ignores its env.
    def expression(self, node: Tree) -> tuple[Thunk, bool]:
        kind = node.data
        if kind == "start":
            return self.expression(node.children[0])
        if kind == "expr":
            return self.sequence(node)
        return getattr(self, f"node_{kind}")(node)

    def sequence(self, node: Tree) -> tuple[Thunk, bool]:
        """``a op b op c ...`` left to right: the constant prefix folded, the rest in one loop (a chain of nested
        closures would recurse once per operator when evaluated, and a long chain would overflow the stack)."""
        children = node.children
        thunk, constant = self.expression(children[0])
        position = 1
        while position < len(children) and constant:
            op = str(children[position].children[0])
            right, right_constant = self.expression(children[position + 1])
            thunk, constant = self.binary(op, thunk, constant, right, right_constant)
            position += 2
        if position >= len(children):
            return thunk, constant
        steps = [
            (str(children[index].children[0]), self.expression(children[index + 1])[0])
            for index in range(position, len(children), 2)
        ]
        if len(steps) == 1:
            op, right = steps[0]
            return self.binary(op, thunk, False, right, False)
        return _chain(thunk, steps), False

    def binary(self, op: str, left: Thunk, left_const: bool, right: Thunk, right_const: bool) -> tuple[Thunk, bool]:
        apply = operators.apply
        if op == "&&":

            def thunk(env: Env) -> Any:
                a = left(env)
                if a is False:  # short-circuit: False && anything is False
                    return False
                return apply(op, a, right(env))

        elif op == "||":

            def thunk(env: Env) -> Any:
                a = left(env)
                if a is True:
                    return True
                return apply(op, a, right(env))

        else:

            def thunk(env: Env) -> Any:
                return apply(op, left(env), right(env))

        return self.fold(thunk, left_const and right_const)

    def fold(self, thunk: Thunk, constant: bool) -> tuple[Thunk, bool]:
        """Evaluate a constant sub-expression now; one that fails stays as it is (it fails at run time)."""
        if not constant:
            return thunk, False
        try:
            return _constant(thunk(Env({}))), True
        except ExpressionEvaluationError:
            return thunk, False

    # ------------------------------------------------------------------------------------------ leaves
    def node_string(self, node: Tree) -> tuple[Thunk, bool]:
        return _constant(str(node.children[0])[1:-1].replace('""', '"')), True

    def node_number(self, node: Tree) -> tuple[Thunk, bool]:
        text = str(node.children[0])
        return _constant(float(text) if "." in text else int(text)), True

    def node_hex(self, node: Tree) -> tuple[Thunk, bool]:
        return _constant(int(str(node.children[0])[2:], 16)), True

    def node_name(self, node: Tree) -> tuple[Thunk, bool]:
        token = node.children[0]
        word = str(token).casefold()
        if word in _CONSTANTS:
            return _constant(_CONSTANTS[word]), True
        if word in ENUM_WORDS:
            return _constant(ENUM_WORDS[word]), True
        if word in FUNCTIONS:
            name = FUNCTIONS[word].name
            raise self.error(f"function '{name}' needs an argument list: {name}(...)", token)
        raise self.error(f"unknown name '{token}' (a string needs quotes, an attribute brackets: [{token}])", token)

    def node_parameter(self, node: Tree) -> tuple[Thunk, bool]:
        token = node.children[0]
        name = str(token)[1:-1]
        if name.casefold() not in self.parameters:
            raise self.error(f"unknown parameter '%{name}%'", token)
        return _constant(cell(self.parameters[name.casefold()])), True

    def node_variable(self, node: Tree) -> tuple[Thunk, bool]:
        token = node.children[0]
        key = str(token).casefold()
        if key not in self.scope:
            raise self.error(f"unknown variable '{token}' (Select, Where and With bind variables)", token)
        return (lambda env: env.variables[key]), False

    def node_attribute(self, node: Tree, *, raw: bool = False) -> tuple[Thunk, bool]:
        name = str(node.children[0])[1:-1].strip()
        self.attributes.add(name)
        if raw:
            return (lambda env: env.get(name)), False

        def read(env: Env) -> Any:
            value = env.get(name)
            if value.__class__ is ReferenceValues:
                raise ExpressionEvaluationError(
                    f"attribute {name!r} holds {value.count} reference values that are not loaded; "
                    f'only ValueCount("{name}") (or Count, IsPresent, IsNull, IsNullOrEmpty of [{name}]) can use it'
                )
            return value

        return read, False

    def node_neg(self, node: Tree) -> tuple[Thunk, bool]:
        operand, constant = self.expression(node.children[1])
        negate = operators.negate
        return self.fold(lambda env: negate(operand(env)), constant)

    # ------------------------------------------------------------------------------------------- calls
    def node_call(self, node: Tree) -> tuple[Thunk, bool]:
        token, args_node = node.children
        spec = FUNCTIONS.get(str(token).casefold())
        if spec is None:
            raise self.error(self.unknown_function(str(token)), token)
        args: list[Tree] = list(args_node.children) if args_node is not None else []
        if len(args) < spec.min_args or (spec.max_args is not None and len(args) > spec.max_args):
            raise self.error(f"{spec.name} expects {spec.arity()}, got {len(args)}", token)
        if spec.name == "Switch" and len(args) % 2:
            raise self.error(f"Switch expects pairs of conditions and values, got {len(args)} arguments", token)
        if spec.kind == "binder":
            return self.binder(spec, token, args)
        compiled = [self.argument(spec, arg) for arg in args]
        thunks = [thunk for thunk, _ in compiled]
        constant = all(c for _, c in compiled)
        if spec.name_argument and compiled and compiled[0][1]:
            name = thunks[0](Env({}))
            if isinstance(name, str) and name.strip():
                self.attributes.add(name.strip())
        call = _call(spec, thunks)
        return self.fold(call, constant and spec.pure)

    def argument(self, spec: FunctionSpec, arg: Tree) -> tuple[Thunk, bool]:
        if spec.raw_attribute:
            inner = single_argument(arg)
            if inner is not None and inner.data == "attribute":
                return self.node_attribute(inner, raw=True)
        return self.expression(arg)

    def binder(self, spec: FunctionSpec, token: Token, args: list[Tree]) -> tuple[Thunk, bool]:
        variable_node = single_argument(args[0])
        if variable_node is None or variable_node.data != "variable":
            raise self.error(f"{spec.name}'s first argument must be a variable such as $item", args[0])
        variable = str(variable_node.children[0]).casefold()
        source, _ = self.expression(args[1])
        self.scope.append(variable)
        try:
            body, _ = self.expression(args[2])
        finally:
            self.scope.pop()
        impl, name = spec.impl, spec.name

        def thunk(env: Env) -> Any:
            try:
                return impl(env, variable, source, body)
            except ArgumentError as exc:
                raise ExpressionEvaluationError(f"{name}: {exc.message}", function=name) from None

        return thunk, False

    @staticmethod
    def unknown_function(name: str) -> str:
        known = {spec.name.casefold(): spec.name for spec in FUNCTIONS.values()}
        close = difflib.get_close_matches(name.casefold(), list(known), n=1, cutoff=0.75)
        return f"unknown function '{name}'" + (f"; did you mean {known[close[0]]}?" if close else "")


def _chain(first: Thunk, steps: list[tuple[str, Thunk]]) -> Thunk:
    """Evaluate ``first op1 right1 op2 right2 ...`` left to right in a loop; ``&&``/``||`` skip their right side as
    ``binary`` does (False && x is False, True || x is True)."""
    apply = operators.apply

    def thunk(env: Env) -> Any:
        value = first(env)
        for op, right in steps:
            if (op == "&&" and value is False) or (op == "||" and value is True):
                continue
            value = apply(op, value, right(env))
        return value

    return thunk


def single_argument(arg: Tree) -> Tree | None:
    """The one operand of an argument that is a lone operand (``[member]``, ``$item``), else None."""
    node = arg
    while isinstance(node, Tree) and node.data == "expr" and len(node.children) == 1:
        node = node.children[0]
    return node if isinstance(node, Tree) and node.data != "expr" else None


def _call(spec: FunctionSpec, thunks: list[Thunk]) -> Thunk:
    impl, name, kind = spec.impl, spec.name, spec.kind

    def failed(exc: Exception) -> ExpressionEvaluationError:
        message = exc.message if isinstance(exc, ExpressionEvaluationError) else str(exc)
        return ExpressionEvaluationError(f"{name}: {message}", function=name)

    if kind == "lazy":

        def call(env: Env) -> Any:
            try:
                return impl(env, *thunks)
            except ArgumentError as exc:
                raise failed(exc) from None

        return call

    def call(env: Env) -> Any:
        values = [thunk(env) for thunk in thunks]
        for value in values:
            if value in SENTINELS:
                raise ExpressionEvaluationError(f"{name}: {value!r} cannot be an argument", function=name)
        try:
            return impl(env, *values) if kind == "context" else impl(*values)
        except FlowError:
            raise
        except ArgumentError as exc:
            raise failed(exc) from None
        except ExpressionEvaluationError as exc:
            if exc.function is None:
                raise failed(exc) from None
            raise
        except (TypeError, ValueError, ArithmeticError) as exc:  # a safety net: report, never crash the sync run
            raise failed(exc) from exc

    return call
