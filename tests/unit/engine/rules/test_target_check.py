"""A flow to a target its connector cannot write fails when the rules load (issue 17): the error names the file, the
rule, the flow and the line, instead of one Graph error per object at export. Entra ID's targets are its catalog's
properties for the rule's object type, what Graph cannot write (left out and counted at export) and directory
extensions; AD's are any name that can be an LDAP attribute (the forest's schema is the DC's to judge)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_aadsync.engine.expressions.parser import writes_no_value
from airflow_provider_aadsync.engine.rules import RuleLoadError, load_rules, load_rules_text
from airflow_provider_aadsync.engine.rules.loader import DEFAULT_RULES_DIR
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules, rule_parameters

BAD = Path(__file__).resolve().parents[3] / "support" / "rules" / "unknown-targets.yaml"


def _line_of(text: str) -> int:
    return next(n for n, line in enumerate(BAD.read_text().splitlines(), start=1) if text in line)


def test_unknown_targets_fail_at_load_naming_file_rule_flow_and_line():
    with pytest.raises(RuleLoadError) as caught:
        load_rules([BAD])
    issues = {(issue.rule, issue.path): issue for issue in caught.value.issues}
    assert set(issues) == {
        ("Out to AAD - My User Extras", "flows[1].target"),
        ("Out to AAD - My User Extras", "flows[4].target"),
        ("Out to AD - My Group Extras", "flows[1].target"),
    }  # proxyAddresses, extension_costCentre, the check flow and the AD schema attribute load
    typo = issues[("Out to AAD - My User Extras", "flows[1].target")]
    assert typo.file == str(BAD) and typo.line == _line_of("target: costCenter}") and typo.column is not None
    assert "'costCenter' is not a Graph property the entra connector writes on user objects" in typo.message
    wrong_type = issues[("Out to AAD - My User Extras", "flows[4].target")]
    assert "(a property of group objects)" in wrong_type.message
    assert "cannot be an AD attribute name" in issues[("Out to AD - My Group Extras", "flows[1].target")].message
    assert f"unknown-targets.yaml:{typo.line}:{typo.column}: rule 'Out to AAD - My User Extras': flows[1].target: " in (
        str(caught.value)
    )


def test_a_near_miss_is_named_and_a_bad_extension_name_is_refused():
    rule = """rules:
  - name: Mine
    direction: outbound
    connector: entra
    source_object_type: person
    target_object_type: user
    link_type: Join
    precedence: 500
    flows:
      - {type: Direct, source: department, target: departmentName}
      - {type: Direct, source: x, target: extension_cost-centre.2}
"""
    with pytest.raises(RuleLoadError) as caught:
        load_rules_text(rule, name="mine.yaml")
    first, second = caught.value.issues
    assert (first.line, "did you mean 'department'?" in first.message) == (10, True)
    assert second.line == 11 and "cannot be a directory extension name" in second.message


def test_every_shipped_and_optional_rule_passes_the_check():
    load_sync_rules(directory_extensions="employeeNumber,msDS-cloudExtensionAttribute2")
    parameters = rule_parameters("v2", writeback_enabled=True, writeback_ou="OU=Writeback,DC=corp,DC=example")
    rules = load_rules([DEFAULT_RULES_DIR, DEFAULT_RULES_DIR.parent / "optional"], parameters=parameters)
    assert any(rule.name == "Out to AD - Group Writeback" for rule in rules)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('IIF(ValueCount("member") > 5, Error("too many"), IgnoreThisFlow)', True),
        ("IgnoreThisFlow", True),
        ('IIF([a] = 1, IgnoreThisFlow, IIF([b] = 2, Error("b"), IgnoreThisFlow))', True),
        ('IIF([a] = 1, IgnoreThisFlow, "value")', False),
        ('Error("x") & "y"', False),
        ("[department]", False),
        ("Left([a], ", False),  # a syntax error is reported by the flow's own check
    ],
)
def test_a_check_flow_is_one_whose_every_outcome_stops_the_flow(expression, expected):
    assert writes_no_value(expression) is expected
