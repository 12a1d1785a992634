"""Parse expression text into a Lark tree, turning Lark's errors into ``ExpressionSyntaxError`` with a position.

The parse also enforces the limits of the text (``limits``): its length, its nesting depth (the compilers walk the
tree recursively) and the digits of its number literals; each is a syntax error at the offending token.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from airflow_provider_aadsync.engine.expressions.errors import ExpressionSyntaxError
from airflow_provider_aadsync.engine.expressions.grammar import GRAMMAR
from airflow_provider_aadsync.engine.expressions.limits import (
    MAX_EXPRESSION_LENGTH,
    MAX_NESTING_DEPTH,
    MAX_NUMBER_DIGITS,
    shown,
)

# What the user should read for Lark's terminal names in "expected ..." lists.
_TERMINAL_WORDS = {
    "STRING": "a string",
    "NUMBER": "a number",
    "HEX": "a hex number",
    "ATTRIBUTE": "an [attribute]",
    "PARAMETER": "a %parameter%",
    "VARIABLE": "a $variable",
    "NAME": "a name",
    "OP": "an operator",
    "MINUS": "'-'",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
}


@cache
def _lark() -> Lark:
    return Lark(GRAMMAR, parser="lalr", lexer="contextual", propagate_positions=True, maybe_placeholders=True)


def parse(text: str) -> Tree:
    """Parse ``text``; raise ``ExpressionSyntaxError`` (with the offending token's line and column) when it is bad."""
    if not text.strip():
        raise ExpressionSyntaxError("empty expression", 1, 1, text)
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionSyntaxError(
            f"the expression is {len(text):,} characters long; expressions are limited to {MAX_EXPRESSION_LENGTH:,}",
            1,
            1,
            text,
        )
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text) from None
    _check_limits(tree, text)
    return tree


def writes_no_value(text: str) -> bool:
    """Whether every outcome of the expression is ``Error(...)`` or ``IgnoreThisFlow`` (through IIF branches): a
    check such as the member limit's, which never writes its flow's target. False for a bad expression."""
    try:
        return _no_value(parse(text))
    except ExpressionSyntaxError:
        return False


def _no_value(node: Any) -> bool:
    if not isinstance(node, Tree):
        return False
    if node.data in ("start", "expr"):  # an operand alone (no operator): its outcomes are the expression's
        return len(node.children) == 1 and _no_value(node.children[0])
    if node.data == "name":
        return str(node.children[0]).casefold() == "ignorethisflow"
    if node.data == "call":
        function = str(node.children[0]).casefold()
        args = node.children[1].children if len(node.children) > 1 and node.children[1] is not None else []
        if function == "error":
            return True
        return function == "iif" and len(args) == 3 and _no_value(args[1]) and _no_value(args[2])
    return False


def _check_limits(tree: Tree, text: str) -> None:
    """Nesting depth and number literals, walked without recursion (the tree may be deeper than the stack)."""
    stack: list[tuple[Tree | Token, int, str]] = [(tree, 0, "")]
    while stack:
        node, depth, parent = stack.pop()
        if isinstance(node, Token):
            if node.type in ("NUMBER", "HEX"):
                digits = len(node.value.lstrip("&Hh").replace(".", ""))
                if digits > MAX_NUMBER_DIGITS:
                    raise ExpressionSyntaxError(
                        f"a number of {digits:,} digits; numbers are limited to {MAX_NUMBER_DIGITS} digits",
                        node.line or 1,
                        node.column or 1,
                        text,
                    )
            continue
        if node.data in ("call", "neg") or (node.data == "expr" and parent == "expr"):  # parentheses
            depth += 1
            if depth > MAX_NESTING_DEPTH:
                meta = node.meta
                raise ExpressionSyntaxError(
                    f"nested deeper than {MAX_NESTING_DEPTH} levels (parentheses, function calls, unary minus)",
                    getattr(meta, "line", 1) or 1,
                    getattr(meta, "column", 1) or 1,
                    text,
                )
        stack.extend((child, depth, node.data) for child in node.children if child is not None)


def _expected(names: set[str] | frozenset[str]) -> str:
    words = sorted({_TERMINAL_WORDS.get(name, name.lower()) for name in names if not name.startswith("$")})
    return ", ".join(words)


def _syntax_error(exc: UnexpectedInput, text: str) -> ExpressionSyntaxError:
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        line, column = _end_position(text)
        expected = _expected(exc.expected)
        return ExpressionSyntaxError(
            "unexpected end of expression" + (f"; expected {expected}" if expected else ""), line, column, text
        )
    if isinstance(exc, UnexpectedToken):
        token: Token = exc.token
        expected = _expected(exc.expected)
        return ExpressionSyntaxError(
            f"unexpected {shown(str(token))}" + (f"; expected {expected}" if expected else ""),
            token.line or 1,
            token.column or 1,
            text,
        )
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        if char == '"':
            message = "unterminated string"
        elif char == "[":
            message = "unterminated [attribute]"
        elif char == "%":
            message = "unterminated %parameter%"
        else:
            message = f"unexpected character {char!r}"
        return ExpressionSyntaxError(message, exc.line, exc.column, text)
    return ExpressionSyntaxError(str(exc), getattr(exc, "line", 1) or 1, getattr(exc, "column", 1) or 1, text)


def _end_position(text: str) -> tuple[int, int]:
    """Line and column just past the last non-blank character."""
    stripped = text.rstrip()
    line = stripped.count("\n") + 1
    column = len(stripped) - (stripped.rfind("\n") + 1) + 1
    return line, column
