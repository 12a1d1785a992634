"""Scoping filters: every operator on scalar and multi-valued cells, groups, and the frame conventions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_provider_aadsync.engine.dn import dn_key
from airflow_provider_aadsync.engine.rules import FrameView, ScopeClauseModel
from airflow_provider_aadsync.engine.rules.scoping import compile_clause, compile_scope, parse_bit_mask


def scope(*groups: list[dict[str, Any]]):
    return compile_scope([[ScopeClauseModel.model_validate(clause) for clause in group] for group in groups])


def run(frame: pd.DataFrame, *groups: list[dict[str, Any]]) -> list[bool]:
    return scope(*groups).evaluate(FrameView(frame)).tolist()


def one(values: list[Any], operator: str, value: Any = None, attribute: str = "a") -> list[bool]:
    frame = pd.DataFrame({"a": pd.Series(values, dtype=object)})
    clause: dict[str, Any] = {"attribute": attribute, "operator": operator}
    if value is not None:
        clause["value"] = value
    return run(frame, [clause])


class TestTextOperators:
    def test_equal_when_case_differs(self):
        assert one(["Sales", "SALES", "sales ", None, "IT"], "EQUAL", "sales") == [True, True, False, False, False]

    def test_notequal_holds_for_absent_attribute(self):
        assert one(["TRUE", "False", None], "NOTEQUAL", "True") == [False, True, True]

    def test_equal_on_multi_valued_cell_when_any_value_matches(self):
        assert one([["a", "B"], ["c", "d"], "b"], "EQUAL", "b") == [True, False, True]

    def test_notequal_on_multi_valued_cell_when_no_value_matches(self):
        assert one([["a", "B"], ["c", "d"], None], "NOTEQUAL", "b") == [False, True, True]

    def test_equal_compares_numbers_and_booleans_by_text(self):
        assert one([512, "512", True, 5.0], "EQUAL", 512) == [True, True, False, False]
        assert one([True, "TRUE", False], "EQUAL", True) == [True, True, False]

    def test_integral_floats_compare_as_integers(self):
        # what an integer column with gaps becomes after Series.map(int): float64 with NaN
        frame = pd.DataFrame({"a": [512.0, float("nan"), 514.0, 512.5]})
        assert run(frame, [{"attribute": "a", "operator": "EQUAL", "value": "512"}]) == [True, False, False, False]
        assert run(frame, [{"attribute": "a", "operator": "ISBITSET", "value": "&H2"}]) == [False, False, True, False]

    def test_contains_and_notcontains(self):
        values = ["CN=Bob,OU=Sales", "cn=eve,ou=sales", "CN=Al", None, ["x", "OU=SALES,dc"]]
        assert one(values, "CONTAINS", "ou=Sales") == [True, True, False, False, True]
        assert one(values, "NOTCONTAINS", "ou=Sales") == [False, False, True, True, False]

    def test_contains_is_not_a_regex(self):
        assert one(["a.b", "axb"], "CONTAINS", "a.b") == [True, False]

    def test_startswith_and_notstartswith(self):
        values = ["MSOL_1234", "msol_x", "Bob", None, ["bob", "AAD_1"]]
        assert one(values, "STARTSWITH", "msol_") == [True, True, False, False, False]
        assert one(values, "NOTSTARTSWITH", "AAD_") == [True, True, True, True, False]

    def test_endswith_and_notendswith(self):
        values = ["bob@Contoso.com", "eve@fabrikam.com", None, ["x@y", "z@CONTOSO.COM"]]
        assert one(values, "ENDSWITH", "@contoso.com") == [True, False, False, True]
        assert one(values, "NOTENDSWITH", "@contoso.com") == [False, True, True, False]


class TestNullOperators:
    def test_isnull_and_isnotnull(self):
        values = ["x", None, float("nan"), [], ["a", "b"], ""]
        assert one(values, "ISNULL") == [False, True, True, True, False, False]
        assert one(values, "ISNOTNULL") == [True, False, False, False, True, True]

    def test_missing_column_reads_as_all_null(self):
        frame = pd.DataFrame({"other": ["x", "y"]})
        assert run(frame, [{"attribute": "a", "operator": "ISNULL"}]) == [True, True]
        assert run(frame, [{"attribute": "a", "operator": "EQUAL", "value": "x"}]) == [False, False]
        assert run(frame, [{"attribute": "a", "operator": "NOTEQUAL", "value": "x"}]) == [True, True]

    def test_attribute_names_match_ignoring_case(self):
        frame = pd.DataFrame({"SAMAccountName": ["bob", None]})
        assert run(frame, [{"attribute": "samaccountname", "operator": "ISNOTNULL"}]) == [True, False]

    def test_string_dtype_column_with_nan(self):
        frame = pd.DataFrame({"a": ["x", None, "X"]})  # pandas' own string dtype, NaN for missing
        assert run(frame, [{"attribute": "a", "operator": "EQUAL", "value": "x"}]) == [True, False, True]
        assert run(frame, [{"attribute": "a", "operator": "ISNULL"}]) == [False, True, False]


class TestOrdering:
    def test_numeric_when_both_sides_are_numbers(self):
        values = ["9", "10", 10, 11, "abc", None]
        assert one(values, "LESSTHAN", "10") == [True, False, False, False, False, False]
        assert one(values, "LESSTHAN_OR_EQUAL", 10) == [True, True, True, False, False, False]
        assert one(values, "GREATERTHAN", "10") == [False, False, False, True, True, False]
        assert one(values, "GREATERTHAN_OR_EQUAL", 10) == [False, True, True, True, True, False]

    def test_text_when_the_value_is_not_a_number(self):
        assert one(["apple", "Banana", "cherry", "10"], "LESSTHAN", "b") == [True, False, False, True]
        assert one(["apple", "BANANA"], "GREATERTHAN_OR_EQUAL", "banana") == [False, True]

    def test_multi_valued_when_any_value_compares(self):
        assert one([["1", "50"], ["60", "70"]], "LESSTHAN", 5) == [True, False]


class TestIsIn:
    def test_isin_with_a_list(self):
        values = ["Sales", "it", "HR", None, ["x", "HR"]]
        assert one(values, "ISIN", ["sales", "IT"]) == [True, True, False, False, False]
        assert one(values, "ISNOTIN", ["sales", "IT"]) == [False, False, True, True, True]

    def test_isin_with_a_semicolon_separated_string(self):
        assert one(["Sales", "it", "HR"], "ISIN", "sales; IT ;") == [True, True, False]

    def test_isin_on_multi_valued_cells(self):
        values = [["smtp:a@x", "SMTP:B@X"], ["smtp:c@x"], None]
        assert one(values, "ISIN", "smtp:b@x") == [True, False, False]
        assert one(values, "ISNOTIN", "smtp:b@x") == [False, True, True]


class TestBitSet:
    def test_isbitset_with_hex_and_decimal_masks(self):
        values = ["512", "514", 66050, None, "junk"]
        assert one(values, "ISBITSET", "&H2") == [False, True, True, False, False]
        assert one(values, "ISBITSET", 2) == [False, True, True, False, False]
        assert one(values, "ISNOTBITSET", "0x2") == [True, False, False, True, True]

    def test_isbitset_needs_every_bit_of_the_mask(self):
        assert one(["3", "1", "2"], "ISBITSET", "&H3") == [True, False, False]

    def test_negative_group_type_is_twos_complement(self):
        # -2147483646 = global security group: 0x80000000 | 0x2
        values = ["-2147483646", "2", -2147483644]
        assert one(values, "ISBITSET", "&H80000000") == [True, False, True]
        assert one(values, "ISBITSET", "&H80000002") == [True, False, False]

    def test_parse_bit_mask(self):
        assert parse_bit_mask("&H80000000") == 2**31
        assert parse_bit_mask("0x10") == 16
        assert parse_bit_mask(" 512 ") == 512
        for bad in ("x", 0, -1, True, 1.5, "&HZZ"):
            with pytest.raises(ValueError):
                parse_bit_mask(bad)


class TestMemberOf:
    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "memberOf": pd.Series(
                    [
                        ["cn=sync,ou=groups,dc=corp", "cn=other,dc=corp"],
                        "cn=sync,ou=groups,dc=corp",
                        None,
                        ["cn=x,dc=corp", "cn=y,dc=corp"],
                    ],
                    dtype=object,
                )
            }
        )

    def test_ismemberof_compares_the_dn_ignoring_case(self):
        clause = {"operator": "ISMEMBEROF", "value": "CN=Sync,OU=Groups,DC=corp"}
        assert run(self.frame(), [clause]) == [True, True, False, False]

    def test_isnotmemberof(self):
        clause = {"attribute": "dn", "operator": "ISNOTMEMBEROF", "value": "CN=Sync,OU=Groups,DC=corp"}
        assert run(self.frame(), [clause]) == [False, False, True, True]

    def test_needs_member_of(self):
        assert scope([{"operator": "ISMEMBEROF", "value": "cn=g"}]).needs_member_of
        assert not scope([{"attribute": "a", "operator": "ISNULL"}]).needs_member_of
        assert scope([{"operator": "ISMEMBEROF", "value": "cn=g"}]).attributes == ()


class TestGroups:
    frame = pd.DataFrame(
        {
            "department": pd.Series(["IT", "Sales", "Sales", "HR"], dtype=object),
            "c": pd.Series(["DK", "US", "DK", "SE"], dtype=object),
        }
    )

    def test_or_of_and_groups(self):
        # (department = IT) OR (department = Sales AND c = US), the product's documented example
        result = run(
            self.frame,
            [{"attribute": "department", "operator": "EQUAL", "value": "IT"}],
            [
                {"attribute": "department", "operator": "EQUAL", "value": "Sales"},
                {"attribute": "c", "operator": "EQUAL", "value": "US"},
            ],
        )
        assert result == [True, True, False, False]

    def test_no_groups_means_everything_in_scope(self):
        assert run(self.frame) == [True, True, True, True]

    def test_empty_frame(self):
        empty = pd.DataFrame({"a": pd.Series([], dtype=object)})
        assert run(empty, [{"attribute": "a", "operator": "EQUAL", "value": "x"}]) == []
        assert run(empty) == []

    def test_index_is_kept_by_the_rule(self, make_rule):
        rule = make_rule(scoping=[[{"attribute": "c", "operator": "EQUAL", "value": "dk"}]])
        frame = self.frame.set_axis(["g1", "g2", "g3", "g4"])
        result = rule.in_scope(frame)
        assert result.dtype == bool
        assert result.to_dict() == {"g1": True, "g2": False, "g3": True, "g4": False}

    def test_one_view_serves_many_rules(self, make_rule):
        view = FrameView(self.frame)
        first = make_rule(scoping=[[{"attribute": "c", "operator": "EQUAL", "value": "dk"}]])
        second = make_rule(name="r2", scoping=[[{"attribute": "C", "operator": "EQUAL", "value": "us"}]])
        assert first.in_scope(view).tolist() == [True, False, True, False]
        assert second.in_scope(view).tolist() == [False, True, False, False]


class TestCompileClause:
    @pytest.mark.parametrize(
        ("clause", "message"),
        [
            ({"attribute": "a", "operator": "ISNULL", "value": "x"}, "ISNULL takes no value"),
            ({"attribute": "a", "operator": "EQUAL"}, "EQUAL needs a value"),
            ({"attribute": "a", "operator": "EQUAL", "value": ["x", "y"]}, "takes one value, not a list"),
            ({"attribute": "a", "operator": "ISIN", "value": " ; "}, "needs at least one value"),
            ({"attribute": "a", "operator": "ISBITSET", "value": "two"}, "integer bit mask"),
            ({"operator": "ISMEMBEROF", "value": 5}, "DN of a group"),
            ({"attribute": "a", "operator": "EQUAL", "value": {"x": 1}}, "string or a number"),
        ],
    )
    def test_bad_values(self, clause, message):
        with pytest.raises(ValueError, match=message):
            compile_clause(ScopeClauseModel.model_validate(clause))


def test_large_frame_smoke():
    size = 100_000
    rng = np.random.default_rng(7)
    names = np.array([f"user{i}" for i in range(size)], dtype=object)
    names[::50] = None
    frame = pd.DataFrame(
        {
            "sAMAccountName": names,
            "isCriticalSystemObject": np.where(rng.random(size) < 0.01, "TRUE", None).astype(object),
            "userAccountControl": rng.choice(np.array(["512", "514", "66048"], dtype=object), size),
        },
        dtype=object,
    )
    result = run(
        frame,
        [
            {"attribute": "isCriticalSystemObject", "operator": "NOTEQUAL", "value": "True"},
            {"attribute": "sAMAccountName", "operator": "ISNOTNULL"},
            {"attribute": "sAMAccountName", "operator": "NOTSTARTSWITH", "value": "MSOL_"},
            {"attribute": "userAccountControl", "operator": "ISNOTBITSET", "value": "&H2"},
        ],
    )
    assert len(result) == size
    assert 0 < sum(result) < size


def test_ismemberof_matches_any_spelling_of_the_group_dn():
    """The engine fills memberOf with engine.dn.dn_key spellings; the clause's DN is spelled the same way."""
    frame = pd.DataFrame({"memberOf": pd.Series([[dn_key("CN=Sync\\2C All,OU=Groups,DC=corp")], None], dtype=object)})
    clause = {"operator": "ISMEMBEROF", "value": "cn=sync\\, all, ou=GROUPS,dc=corp"}
    assert run(frame, [clause]) == [True, False]
