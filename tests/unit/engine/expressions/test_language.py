"""Literals, operators, evaluation order, NULL, sentinels, contexts, parameters and syntax errors."""

from __future__ import annotations

import copy
import pickle

import pytest

from airflow_provider_aadsync.engine.expressions import (
    AuthoritativeNull,
    CompiledExpression,
    ExpressionError,
    ExpressionEvaluationError,
    ExpressionSyntaxError,
    FlowError,
    IgnoreThisFlow,
    ReferenceValues,
    compile_expression,
)


class TestLiterals:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('"Contoso"', "Contoso"),
            ('"say ""hi"""', 'say "hi"'),
            ('""', ""),
            ("98052", 98052),
            ("1.5", 1.5),
            ("&HFF", 255),  # docs: "Hexadecimal values are prefixed with &H. For example, 98052, &HFF"
            ("&h2", 2),
            ("True", True),
            ("false", False),
            ("NULL", None),
            ("CRLF", "\r\n"),
            ("-5", -5),
            ("- &H2", -2),
            ("AuthoritativeNull", AuthoritativeNull),
            ("IgnoreThisFlow", IgnoreThisFlow),
            ("vbTextCompare", "vbTextCompare"),
        ],
    )
    def test_literal_evaluates_to_its_value(self, ev, text, expected):
        assert ev(text) == expected or ev(text) is expected

    def test_string_may_span_lines(self, ev):
        assert ev('"a\nb"') == "a\nb"


class TestOperators:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            # DESIGN §4 / docs: "Operators are evaluated left to right and have the same evaluation priority"
            ("3+2*5", 25),
            ("2*5+3", 13),
            ("2*(5+3)", 16),  # docs: "2*(5+3) is not the same as 2*5+3"
            ("10-2-3", 5),
            ("2+3=5", True),
            ("1=1=True", True),
            ('"a" & "b" & 1', "ab1"),
            ('1 + 2 & "x"', "3x"),
            ('"1" & 1 + 2', 13),  # ("1" & 1) + 2 = "11" + 2 = 13
            ("7/2", 3.5),
            ("8/2", 4),
            ("True && False", False),
            ("True || False", True),
        ],
    )
    def test_operators_have_equal_priority_left_to_right(self, ev, text, expected):
        assert ev(text) == expected

    def test_comparison_chain_is_left_to_right_too(self, ev):
        # 1 < 2 && 2 < 3 reads ((1 < 2) && 2) < 3 = True < 3, and 3 as a Boolean is True: True < True is False
        assert compile_expression("1 < 2 && 2 < 3").evaluate({}) is False
        assert compile_expression("(1 < 2) && (2 < 3)").evaluate({}) is True

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("1 < 2", True),
            ("2 <= 2", True),
            ("3 > 2", True),
            ("2 >= 3", False),
            ("1 <> 2", True),
            ('"abc" = "abc"', True),
            ('"abc" = "ABC"', False),  # the language is case-sensitive
            ('"10" = 10', True),
            ('"b" > "a"', True),
            ('"x" = 1', False),
            ('"x" <> 1', True),
        ],
    )
    def test_comparisons(self, ev, text, expected):
        assert ev(text) is expected

    def test_ordering_incomparable_types_is_an_evaluation_error(self, ev):
        with pytest.raises(ExpressionEvaluationError, match="cannot compare"):
            ev('"x" < 1')

    def test_arithmetic_on_text_is_an_evaluation_error(self, ev):
        with pytest.raises(ExpressionEvaluationError, match=r"operator '\*' needs numbers"):
            ev('"x" * 2')

    def test_division_by_zero(self, ev):
        with pytest.raises(ExpressionEvaluationError, match="division by zero"):
            ev("1/[zero]", {"zero": 0})


class TestNull:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('[missing] & "x"', "x"),  # VBA: NULL & "x" is "x"
            ("[missing] & [missing]", None),
            ("[missing] + 1", None),
            ('[missing] = "x"', None),
            ("[missing] && False", False),
            ("[missing] || True", True),
            ("[missing] && True", None),
            ('IIF([missing] = "x", "yes", "no")', "no"),  # a NULL condition counts as False
            ("-[missing]", None),
        ],
    )
    def test_null_propagation(self, ev, text, expected):
        assert ev(text) == expected

    def test_absent_attribute_and_empty_list_are_null(self, ev):
        assert ev("[a]", {}) is None
        assert ev("[a]", {"a": []}) is None
        assert ev("[a]", {"a": ["one"]}) == "one"
        assert ev("[a]", {"a": ("x", "y")}) == ["x", "y"]


class TestSentinels:
    def test_sentinels_are_distinct_singletons_with_readable_repr(self):
        assert AuthoritativeNull is not IgnoreThisFlow
        assert repr(AuthoritativeNull) == "AuthoritativeNull" and repr(IgnoreThisFlow) == "IgnoreThisFlow"
        assert pickle.loads(pickle.dumps(AuthoritativeNull)) is AuthoritativeNull
        assert copy.deepcopy(IgnoreThisFlow) is IgnoreThisFlow

    def test_sentinels_flow_out_of_iif_and_switch(self, ev):
        assert ev("IIF(IsPresent([a]), [a], AuthoritativeNull)", {}) is AuthoritativeNull
        assert ev("IIF(IsPresent([a]), [a], AuthoritativeNull)", {"a": "v"}) == "v"
        assert ev('Switch([a] = "x", IgnoreThisFlow, True, "y")', {"a": "x"}) is IgnoreThisFlow

    def test_sentinel_as_operand_or_argument_is_an_evaluation_error(self, ev):
        with pytest.raises(ExpressionEvaluationError, match="AuthoritativeNull cannot be an operand"):
            ev('AuthoritativeNull & "x"')
        with pytest.raises(ExpressionEvaluationError, match="Trim: IgnoreThisFlow cannot be an argument"):
            ev("Trim(IgnoreThisFlow)")


class TestContext:
    def test_attribute_lookup_is_case_insensitive(self, ev):
        assert ev("[GivenName] & [SN]", {"givenName": "Ann", "sn": "Lee"}) == "AnnLee"

    def test_object_with_get_is_a_context(self):
        class Obj:
            def get(self, name):
                return {"displayname": "Ann"}.get(name.lower())

        assert compile_expression("[displayName]").evaluate(Obj()) == "Ann"

    def test_imported_value_uses_the_context_method_when_present(self, ev):
        class Obj:
            def get(self, name):
                return "current"

            def imported_value(self, name):
                return f"imported {name}"

        expr = compile_expression('ImportedValue("proxyAddresses")')
        assert expr.evaluate(Obj()) == "imported proxyAddresses"
        assert expr.evaluate({"ProxyAddresses": "plain"}) == "plain"
        assert expr.attributes == frozenset({"proxyAddresses"})

    def test_attributes_lists_names_as_written(self):
        expr = compile_expression('IIF(IsPresent([mail]), [Mail], ValueCount("member") & [sn])')
        assert expr.attributes == frozenset({"mail", "Mail", "member", "sn"})
        assert not expr.is_constant

    def test_evaluate_without_context(self):
        assert compile_expression('"x"').evaluate() == "x"


class TestReferenceValues:
    def test_value_count_reads_the_count_without_values(self, ev):
        assert ev('ValueCount("member")', {"member": ReferenceValues(250_000)}) == 250_000
        assert ev('ValueCount("member")', {"member": ["a", "b", "c"]}) == 3
        assert ev('ValueCount("member")', {"member": "a"}) == 1
        assert ev('ValueCount("member")', {}) == 0

    def test_count_and_presence_of_direct_attribute_use_the_count(self, ev):
        context = {"member": ReferenceValues(5)}
        assert ev("Count([member])", context) == 5
        assert ev("IsPresent([member])", context) is True
        assert ev("IsNull([member])", context) is False
        assert ev("IsNullOrEmpty([member])", {"member": ReferenceValues(0)}) is True

    def test_any_other_use_names_the_attribute(self, ev):
        with pytest.raises(ExpressionEvaluationError, match="'member' holds 7 reference values"):
            ev('Join([member], ";")', {"member": ReferenceValues(7)})
        with pytest.raises(ExpressionEvaluationError, match="'member'"):
            ev('ImportedValue("member")', {"member": ReferenceValues(7)})

    def test_group_member_limit_rule(self):
        # the shipped outbound group rule's guard (DESIGN §4: "errors when ValueCount("member") > limit")
        expr = compile_expression(
            'IIF(ValueCount("member") > %MemberLimit%, Error("group has more than " & %MemberLimit% & " members"),'
            " IgnoreThisFlow)",
            parameters={"MemberLimit": 250_000},
        )
        assert expr.evaluate({"member": ReferenceValues(250_000)}) is IgnoreThisFlow
        with pytest.raises(FlowError) as caught:
            expr.evaluate({"member": ReferenceValues(250_001)})
        assert caught.value.message == "group has more than 250000 members"


class TestParameters:
    def test_parameters_are_substituted_case_insensitively(self, ev):
        # docs' parameter names contain dots: %Domain.Netbios%
        assert (
            ev(
                '%Domain.Netbios% & "\\" & [sAMAccountName]',
                {"sAMAccountName": "ann"},
                parameters={"domain.NETBIOS": "CONTOSO"},
            )
            == "CONTOSO\\ann"
        )

    def test_parameter_only_expression_is_constant(self):
        expr = compile_expression("%Limit% * 2", parameters={"Limit": 21})
        assert expr.is_constant and expr.evaluate() == 42

    def test_unknown_parameter_is_a_syntax_error_with_position(self):
        with pytest.raises(ExpressionSyntaxError) as caught:
            compile_expression('Left("x",\n   %Missing%)', parameters={"Other": 1})
        assert (caught.value.line, caught.value.column) == (2, 4)
        assert "unknown parameter '%Missing%'" in str(caught.value)


class TestSyntaxErrors:
    @pytest.mark.parametrize(
        ("text", "line", "column", "message"),
        [
            ('Coalesce([a],"b")', 1, 1, "unknown function 'Coalesce'"),
            ('Left("abc", 1, 2)', 1, 1, "Left expects 2 arguments, got 3"),
            ('IIF(True, "a")', 1, 1, "IIF expects 3 arguments, got 2"),
            ('Trim("a") & Mid("abc")', 1, 13, "Mid expects 2 to 3 arguments, got 1"),
            ('InStr("a","b",1,vbTextCompare,2)', 1, 1, "InStr expects 2 to 4 arguments, got 5"),
            ('Switch(True, "a", False)', 1, 1, "Switch expects pairs"),
            ("Random(100,999)", 1, 1, "unknown function 'Random'; did you mean RandomNum?"),
            ('Left("abc",', 1, 12, "unexpected end of expression"),
            ("3 +* 4", 1, 4, "unexpected '*'"),
            ('"abc', 1, 1, "unterminated string"),
            ("[a", 1, 1, "unterminated [attribute]"),
            ("1 2", 1, 3, "unexpected '2'"),
            ("Left([a],\n  1))", 2, 5, "unexpected ')'"),
            ("IIF([a] = 1,\n   foo, 2)", 2, 4, "unknown name 'foo'"),
            ("Now", 1, 1, "function 'Now' needs an argument list"),
            ("$item", 1, 1, "unknown variable '$item'"),
            ('Select("x", [a], 1)', 1, 8, "Select's first argument must be a variable"),
            ("a ? b", 1, 3, "unexpected character '?'"),
            ("   ", 1, 1, "empty expression"),
        ],
    )
    def test_syntax_error_has_line_column_and_message(self, text, line, column, message):
        with pytest.raises(ExpressionSyntaxError) as caught:
            compile_expression(text)
        error = caught.value
        assert (error.line, error.column) == (line, column), str(error)
        assert message in error.message
        assert str(error).startswith(f"line {line}, column {column}: ")
        assert error.text == text
        assert isinstance(error, ExpressionError)

    def test_function_names_are_case_insensitive(self, ev):
        assert ev('left("abc", 1)') == "a" and ev('LEFT("abc", 1)') == "a"


class TestCompiled:
    def test_constant_sub_expressions_fold(self):
        expr = compile_expression('UCase("a" & "b") & [x]')
        assert isinstance(expr, CompiledExpression) and not expr.is_constant
        assert compile_expression('UCase("a" & "b")').is_constant
        assert not compile_expression("Now()").is_constant
        assert not compile_expression('Error("x")').is_constant  # folding never raises at compile time

    def test_compiled_expression_is_reusable(self):
        expr = compile_expression("[n] + 1")
        assert [expr.evaluate({"n": n}) for n in range(3)] == [1, 2, 3]
