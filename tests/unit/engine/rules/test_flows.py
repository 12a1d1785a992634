"""Attribute flows: Direct, Constant, Expression; sentinels; per-object errors; expressions compiled at load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airflow_provider_aadsync.engine.expressions import AuthoritativeNull, IgnoreThisFlow, ReferenceValues
from airflow_provider_aadsync.engine.rules import (
    EXPRESSION_ERROR,
    FLOW_ERROR,
    FlowType,
    FrameView,
    RuleLoadError,
    frame_from_records,
    load_rules,
)
from tests.support.rules import rule_dict


def frame(**columns) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in columns.items()})


class TestDirectAndConstant:
    def test_direct_copies_the_column_with_nulls_as_none(self, make_rule):
        rule = make_rule(flows=[{"type": "Direct", "source": "GivenName", "target": "givenName"}])
        data = pd.DataFrame({"givenname": ["Ann", None, "Bo"]}, index=[10, 11, 12])  # pandas string dtype
        result = rule.evaluate_flows(data)
        assert result.errors == {}
        assert list(result.values.index) == [10, 11, 12]
        assert result.values["givenName"].tolist() == ["Ann", None, "Bo"]
        assert result.values["givenName"].dtype == object

    def test_direct_keeps_multi_valued_cells_and_references(self, make_rule):
        rule = make_rule(
            flows=[
                {"type": "Direct", "source": "proxyAddresses", "target": "proxyAddresses"},
                {"type": "Direct", "source": "member", "target": "member"},
            ]
        )
        data = frame(proxyAddresses=[["smtp:a", "SMTP:b"], "smtp:c"], member=[ReferenceValues(3), None])
        values = rule.evaluate_flows(data).values
        assert values["proxyAddresses"].tolist() == [["smtp:a", "SMTP:b"], "smtp:c"]
        assert values["member"].tolist() == [ReferenceValues(3), None]

    def test_direct_from_a_missing_column_is_null(self, make_rule):
        rule = make_rule(flows=[{"type": "Direct", "source": "absent", "target": "t"}])
        assert rule.evaluate_flows(frame(x=["a", "b"])).values["t"].tolist() == [None, None]

    def test_constant_is_broadcast(self, make_rule):
        rule = make_rule(
            flows=[
                {"type": "Constant", "value": "User", "target": "kind"},
                {"type": "Constant", "value": True, "target": "flag"},
                {"type": "Constant", "value": ["a", "b"], "target": "multi"},
                {"type": "Constant", "value": ["only"], "target": "single"},
            ]
        )
        values = rule.evaluate_flows(frame(x=[1, 2, 3])).values
        assert values["kind"].tolist() == ["User"] * 3
        assert values["flag"].tolist() == [True] * 3
        assert values["multi"].tolist() == [["a", "b"]] * 3
        assert values["single"].tolist() == ["only"] * 3
        assert list(values.columns) == ["kind", "flag", "multi", "single"]

    def test_no_flows(self, make_rule):
        result = make_rule().evaluate_flows(frame(x=[1, 2]))
        assert result.values.shape == (2, 0)

    def test_empty_frame(self, make_rule):
        rule = make_rule(
            flows=[
                {"type": "Direct", "source": "a", "target": "b"},
                {"type": "Expression", "expression": '[a] & "x"', "target": "c"},
            ]
        )
        result = rule.evaluate_flows(frame(a=[]))
        assert result.values.shape == (0, 2)
        assert result.errors == {}


class TestExpressions:
    def test_expression_per_object(self, make_rule):
        rule = make_rule(
            flows=[
                {
                    "type": "Expression",
                    "expression": 'IIF(IsPresent([nickName]), [NickName], [givenName] & " " & [sn])',
                    "target": "displayName",
                }
            ]
        )
        data = frame(givenName=["Ann", "Bo"], sn=["Lee", "Ek"], nickname=[None, "Bobby"])
        assert rule.evaluate_flows(data).values["displayName"].tolist() == ["Ann Lee", "Bobby"]
        assert rule.attributes == {"nickName", "givenName", "sn"} or {a.casefold() for a in rule.attributes} == {
            "nickname",
            "givenname",
            "sn",
        }

    def test_expression_sees_multi_valued_cells(self, make_rule):
        rule = make_rule(flows=[{"type": "Expression", "expression": "Count([proxyAddresses])", "target": "n"}])
        data = frame(proxyAddresses=[["a", "b", "c"], "x", None])
        assert rule.evaluate_flows(data).values["n"].tolist() == [3, 1, 0]

    def test_sentinels_pass_through(self, make_rule):
        rule = make_rule(
            flows=[
                {
                    "type": "Expression",
                    "expression": 'IIF([a]="x", AuthoritativeNull, IIF([a]="y", IgnoreThisFlow, NULL))',
                    "target": "t",
                },
                {"type": "Expression", "expression": "IgnoreThisFlow", "target": "u"},
            ]
        )
        values = rule.evaluate_flows(frame(a=["x", "y", "z"])).values
        assert values["t"].tolist() == [AuthoritativeNull, IgnoreThisFlow, None]
        assert values["u"].tolist() == [IgnoreThisFlow] * 3

    def test_constant_expression_is_broadcast(self, make_rule):
        rule = make_rule(flows=[{"type": "Expression", "expression": '"a" & "b"', "target": "t"}])
        assert rule.flow_specs[0].compiled.is_constant
        assert rule.evaluate_flows(frame(x=[1, 2])).values["t"].tolist() == ["ab", "ab"]

    def test_parameters_are_substituted_at_load(self, make_rule):
        rule = make_rule(
            parameters={"Domain.Netbios": "CORP"},
            flows=[{"type": "Expression", "expression": '%Domain.Netbios% & "\\" & [sAMAccountName]', "target": "t"}],
        )
        assert rule.evaluate_flows(frame(sAMAccountName=["bob"])).values["t"].tolist() == ["CORP\\bob"]

    def test_error_function_is_a_flow_error_for_that_object_only(self, make_rule):
        rule = make_rule(
            name="Out to AAD - Group",
            flows=[
                {"type": "Direct", "source": "cn", "target": "cn"},
                {
                    "type": "Expression",
                    "expression": 'IIF(ValueCount("member") > 2, Error("too many members"), ValueCount("member"))',
                    "target": "memberCount",
                },
            ],
        )
        data = frame(cn=["g1", "g2", "g3"], member=[ReferenceValues(1), ReferenceValues(5), None]).set_axis(
            ["a1", "a2", "a3"]
        )
        result = rule.evaluate_flows(data)
        assert list(result.values.index) == ["a1", "a3"]
        assert result.values["cn"].tolist() == ["g1", "g3"]
        assert result.values["memberCount"].tolist() == [1, 0]
        error = result.errors["a2"]
        assert error.code == FLOW_ERROR
        assert error.rule == "Out to AAD - Group"
        assert error.target == "memberCount"
        assert "Out to AAD - Group" in error.message
        assert "memberCount" in error.message
        assert "too many members" in error.message

    def test_evaluation_error_is_an_expression_error(self, make_rule):
        rule = make_rule(flows=[{"type": "Expression", "expression": "CNum([a]) + 1", "target": "t"}])
        result = rule.evaluate_flows(frame(a=["1", "not a number", "3"]))
        assert result.values["t"].tolist() == [2, 4]
        (position, error), *_ = result.errors.items()
        assert position == 1
        assert error.code == EXPRESSION_ERROR
        assert "'r1'" in error.message and "'t'" in error.message

    def test_only_the_first_error_of_an_object_is_kept(self, make_rule):
        rule = make_rule(
            flows=[
                {"type": "Expression", "expression": 'Error("first")', "target": "a"},
                {"type": "Expression", "expression": 'Error("second")', "target": "b"},
            ]
        )
        result = rule.evaluate_flows(frame(x=[1, 2]))
        assert result.values.empty
        assert [error.message.endswith("first") for error in result.errors.values()] == [True, True]


class TestExpressionLoadErrors:
    def test_syntax_error_names_file_rule_field_and_position(self, write_rules):
        flows = [
            {"type": "Direct", "source": "a", "target": "b"},
            {"type": "Constant", "value": "x", "target": "c"},
            {"type": "Expression", "expression": 'IIF(IsPresent([a]), "x" & , "y")', "target": "d"},
        ]
        path = write_rules("syntax.yaml", [rule_dict(name="In from AD - User Join", flows=flows)])
        with pytest.raises(RuleLoadError) as info:
            load_rules([path])
        (issue,) = info.value.issues
        text = str(info.value)
        assert "syntax.yaml" in text
        assert "rule 'In from AD - User Join'" in text
        assert "flows[2].expression" in text
        assert "syntax error at line 1, column 27 of the expression" in text
        assert issue.line is not None  # the YAML position of the expression too

    def test_multi_line_expression_reports_the_expression_line(self, write_rules):
        text = (
            "rules:\n"
            "  - name: r\n    direction: inbound\n    connector: ad\n    source_object_type: user\n"
            "    target_object_type: person\n    link_type: Join\n    precedence: 1\n"
            "    flows:\n"
            "      - type: Expression\n"
            "        target: t\n"
            "        expression: |\n"
            "          IIF(IsPresent([a]),\n"
            "              [a],\n"
            "              Nope([b]))\n"
        )
        with pytest.raises(RuleLoadError, match=r"flows\[0\]\.expression: syntax error at line 3, column \d+"):
            load_rules([write_rules("multi.yaml", text=text)])

    def test_unknown_parameter_is_a_load_error(self, write_rules):
        flows = [{"type": "Expression", "expression": "%Missing%", "target": "t"}]
        with pytest.raises(RuleLoadError, match=r"rule 'r1': flows\[0\]\.expression: .*Missing"):
            load_rules([write_rules("p.yaml", [rule_dict(flows=flows)])])

    def test_every_expression_error_of_a_file_is_reported(self, write_rules):
        bad = {"type": "Expression", "expression": "IIF(", "target": "t"}
        rules = [rule_dict(name="a", precedence=1, flows=[bad]), rule_dict(name="b", precedence=2, flows=[bad])]
        with pytest.raises(RuleLoadError) as info:
            load_rules([write_rules("two.yaml", rules)])
        assert [issue.rule for issue in info.value.issues] == ["a", "b"]


class TestSpecs:
    def test_flow_specs_and_attributes(self, make_rule):
        rule = make_rule(
            scoping=[[{"attribute": "department", "operator": "EQUAL", "value": "IT"}]],
            join=[[{"source": "employeeID", "target": "employeeID"}], [{"source": "mail", "target": "mail"}]],
            flows=[
                {"type": "Direct", "source": "givenName", "target": "givenName", "apply_once": True},
                {"type": "Expression", "expression": "LCase([Mail])", "target": "mailLower", "merge": "Merge"},
            ],
        )
        assert {a.casefold() for a in rule.attributes} == {"department", "employeeid", "mail", "givenname"}
        assert len(rule.attributes) == 4
        assert [(s.target, s.type, s.source, s.apply_once, s.merge.value) for s in rule.flow_specs] == [
            ("givenName", FlowType.DIRECT, "givenName", True, "Update"),
            ("mailLower", FlowType.EXPRESSION, None, False, "Merge"),
        ]
        assert rule.flow_specs[1].expression == "LCase([Mail])"
        assert [[tuple(c) for c in g] for g in rule.join_groups] == [
            [("employeeID", "employeeID", True, False)],
            [("mail", "mail", True, False)],
        ]


def test_frame_from_records():
    records = [
        {"givenName": ["Ann"], "proxyAddresses": ["a", "b"], "sn": []},
        {"GIVENNAME": ["Bo"], "member": ReferenceValues(4)},
        {},
    ]
    result = frame_from_records(records, ["givenname", "proxyAddresses", "sn", "member", "absent", "GivenName"])
    assert list(result.columns) == ["givenname", "proxyAddresses", "sn", "member", "absent"]
    assert result["givenname"].tolist() == ["Ann", "Bo", None]
    assert result["proxyAddresses"].tolist() == [["a", "b"], None, None]
    assert result["sn"].tolist() == [None, None, None]
    assert result["member"].tolist() == [None, ReferenceValues(4), None]
    assert result["absent"].tolist() == [None, None, None]
    assert all(dtype is np.dtype(object) for dtype in result.dtypes)
    assert frame_from_records([], ["a"]).shape == (0, 1)


def test_hundred_thousand_objects_through_scoping_and_flows(make_rule):
    # A smoke test of the vectorized path at size; speed figures belong to bench/, not here.
    size = 100_000
    rng = np.random.default_rng(3)
    records = [
        {
            "sAMAccountName": [f"user{i}"],
            "givenName": [f"Given{i}"],
            "sn": [f"Sn{i % 977}"],
            "userAccountControl": [str(rng.choice([512, 514]))],
            "proxyAddresses": [f"SMTP:u{i}@corp.example", f"smtp:u{i}@old.example"] if i % 3 else [],
        }
        for i in range(size)
    ]
    rule = make_rule(
        scoping=[
            [
                {"attribute": "isCriticalSystemObject", "operator": "NOTEQUAL", "value": "True"},
                {"attribute": "sAMAccountName", "operator": "NOTSTARTSWITH", "value": "MSOL_"},
                {"attribute": "userAccountControl", "operator": "ISNOTBITSET", "value": "&H2"},
            ]
        ],
        flows=[
            {"type": "Direct", "source": "givenName", "target": "givenName"},
            {"type": "Direct", "source": "sn", "target": "sn"},
            {"type": "Direct", "source": "proxyAddresses", "target": "proxyAddresses"},
            {"type": "Constant", "value": "User", "target": "objectKind"},
        ],
    )
    data = frame_from_records(records, rule.attributes)
    view = FrameView(data)
    scoped = data[rule.in_scope(view).to_numpy()]
    result = rule.evaluate_flows(scoped)
    assert 0 < len(result.values) < size
    assert not result.errors
    assert result.values["objectKind"].eq("User").all()
