"""Issue 13: no expression and no attribute value may hang or crash evaluation; each limit is a clear error.

Compile-time limits are syntax errors with line and column; run-time limits are evaluation errors (one object's
error in a sync run), raised alike by the per-object and the column form.
"""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.expressions import (
    ExpressionEvaluationError,
    ExpressionSyntaxError,
    compile_expression,
    limits,
)
from airflow_provider_aadsync.engine.rules import RuleLoadError, load_rules_text

pytestmark = pytest.mark.timeout(20)


def syntax_error(text: str) -> ExpressionSyntaxError:
    with pytest.raises(ExpressionSyntaxError) as info:
        compile_expression(text)
    return info.value


def evaluation_error(text: str, **attributes) -> str:
    compiled = compile_expression(text)
    with pytest.raises(ExpressionEvaluationError) as info:
        compiled.evaluate(attributes)
    # The column form leaves the same rows to the per-object form, which raises the same error.
    result = compiled.evaluate_column({name: [value] for name, value in attributes.items()}, size=1)
    assert result is None or result.per_row.tolist() == [True]
    return str(info.value)


class TestCompileLimits:
    @pytest.mark.parametrize(
        ("text", "column"),
        [
            ("(" * 65 + "1" + ")" * 65, 66),
            ("-" * 65 + "1", 65),
            ("Trim(" * 65 + "[a]" + ")" * 65, 321),
            ("(" * 100_000 + "1" + ")" * 100_000, None),  # longer than the text limit
        ],
        ids=["parentheses", "unary-minus", "calls", "huge"],
    )
    def test_deep_nesting_is_a_syntax_error_with_its_position(self, text, column):
        error = syntax_error(text)
        if column is None:
            assert "expressions are limited to 65,536" in error.message
        else:
            assert (error.line, error.column) == (1, column)
            assert error.message.startswith("nested deeper than 64 levels")

    def test_the_deepest_allowed_nesting_compiles_and_evaluates_in_both_forms(self):
        text = "Trim(" * 32 + "(" * 32 + "[a]" + ")" * 64
        compiled = compile_expression(text)
        assert compiled.evaluate({"a": " x "}) == "x"
        assert compiled.evaluate_column({"a": [" x ", None]}).values.tolist() == ["x", None]

    def test_a_long_flat_chain_evaluates_without_recursion(self):
        compiled = compile_expression("+".join(["[n]"] * 15_000))
        assert compiled.evaluate({"n": 1}) == 15_000
        assert compiled.evaluate_column({"n": [1, 2]}) is None  # too long for the column form: evaluated per object
        assert compile_expression("[a] && False && [b] || True").evaluate({"a": False, "b": "not a bool"}) is True

    @pytest.mark.parametrize(
        ("text", "digits"),
        [("1" * 5000, 5000), ("1." + "1" * 100, 101), ("&H" + "F" * 65, 65), ('"x" & 9' + "9" * 64, 65)],
        ids=["integer", "decimal", "hex", "inside"],
    )
    def test_huge_number_literals_are_syntax_errors(self, text, digits):
        error = syntax_error(text)
        assert error.message == f"a number of {digits:,} digits; numbers are limited to 64 digits"
        assert error.line == 1 and error.column == (7 if text.startswith('"x"') else 1)

    def test_a_rule_with_a_hostile_expression_names_file_rule_field_line_and_column(self):
        text = (
            "rules:\n  - name: Deep\n    direction: inbound\n    connector: ad\n    source_object_type: user\n"
            "    target_object_type: person\n    link_type: Provision\n    precedence: 1\n"
            f"    flows:\n      - {{type: Expression, target: x, expression: '{'(' * 70}1{')' * 70}'}}\n"
        )
        with pytest.raises(RuleLoadError) as info:
            load_rules_text(text, name="deep.yaml")
        (issue,) = info.value.issues
        assert (issue.file, issue.rule, issue.path, issue.line) == ("deep.yaml", "Deep", "flows[0].expression", 10)
        assert "line 1, column 66 of the expression: nested deeper than 64 levels" in issue.message


class TestValueLimits:
    def test_padleft_of_four_billion_is_an_error_not_a_memory_error(self):
        message = evaluation_error('PadLeft([a], 4000000000, "0")', a="7")
        assert message == (
            "PadLeft: the padded string would be 4,000,000,000 characters long; values are limited to 1,048,576"
        )
        assert "PadRight: the padded string" in evaluation_error('PadRight([a], [n], "0")', a="7", n=2**40)
        assert compile_expression('PadLeft([a], 1048576, "0")').evaluate({"a": "7"}).endswith("07")

    @pytest.mark.parametrize(
        ("text", "attributes", "start"),
        [
            ('Replace([a], "a", [b])', {"a": "a" * 100_000, "b": "x" * 100}, "Replace: the replaced string"),
            ("ReplaceChars([a], [p])", {"a": "a" * 100_000, "p": "a:" + "x" * 100}, "ReplaceChars: the replaced"),
            ("Join([a], [b])", {"a": ["a"] * 100_000, "b": "x" * 100}, "Join: the joined string"),
            ("[a] & [a]", {"a": "x" * 600_000}, "the result of '&' would be 1,200,000"),
            ("[a] + [a]", {"a": "x" * 600_000}, "the result of '+' would be"),
            ("With($x, [a] & [a], $x & $x)", {"a": "x" * 300_000}, "the result of '&' would be 1,200,000"),
        ],
        ids=["Replace", "ReplaceChars", "Join", "concat", "plus", "doubling"],
    )
    def test_string_growth_is_bounded(self, text, attributes, start):
        assert start in evaluation_error(text, **attributes)

    def test_numbers_are_bounded(self):
        square = "".join(f"With($v{i + 1}, $v{i} * $v{i}, " for i in range(30)).replace("$v0", "[n]")
        assert "numbers are limited to 256 bits" in evaluation_error(square + "$v30" + ")" * 30, n=12345)
        assert "numbers are limited to 256 bits" in evaluation_error("[n] + 1", n=2**256 - 1)
        assert evaluation_error("CNum([s])", s="9" * 5000) == (
            "CNum: a number of 5,000 digits; numbers are limited to 64 digits"
        )
        assert evaluation_error("CStr([n])", n=10**5000) == (
            "CStr: the number has 16,610 bits; numbers are limited to 256 bits"
        )
        assert "a number of 100 digits" in evaluation_error("[s] = 1", s="1" * 100)

    def test_nested_binders_are_bounded(self):
        bomb = "".join(f"Select($v{i}, [m], " for i in range(40)) + "$v39" + ")" * 40
        assert "more than 100,000 values bound by Select, Where and With" in evaluation_error(bomb, m=["p", "q"])

    def test_remove_duplicates_of_many_values_is_linear(self):
        values = [str(i % 150_000) for i in range(300_000)]
        assert len(compile_expression("RemoveDuplicates([a])").evaluate({"a": values})) == 150_000

    def test_messages_about_huge_values_are_short(self):
        message = evaluation_error("CNum([s])", s="x" * 1_000_000)
        assert len(message) < 200 and "(1,000,000 long)" in message

    def test_limits_are_documented_numbers(self):
        assert (limits.MAX_NESTING_DEPTH, limits.MAX_VALUE_LENGTH, limits.MAX_NUMBER_DIGITS) == (64, 1_048_576, 64)
