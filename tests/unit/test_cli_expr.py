from __future__ import annotations

import base64
import json
import uuid

import pytest
from click.testing import CliRunner

from airflow_provider_aadsync.cli import main


def run(*args: str):
    return CliRunner().invoke(main, ["expr", *args])


class TestExprCommand:
    def test_expr_prints_the_result_as_json(self):
        result = run("Left([givenName],1) & [sn]", "--set", "givenName=John", "--set", "sn=Doe")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == "JDoe"

    def test_expr_when_a_name_repeats_makes_a_multi_valued_attribute(self):
        result = run(
            'Where($item,[proxyAddresses],Left($item,5)="smtp:")',
            "--set",
            "proxyAddresses=SMTP:a@x.com",
            "--set",
            "proxyAddresses=smtp:b@x.com",
            "--set",
            "proxyAddresses=smtp:c@x.com",
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == ["smtp:b@x.com", "smtp:c@x.com"]

    def test_expr_with_typed_values(self):
        guid = uuid.uuid4()
        result = run("ConvertToBase64([objectGUID])", "--set", f"objectGUID=guid:{guid}")
        assert json.loads(result.stdout) == base64.b64encode(guid.bytes_le).decode()
        result = run("IsBitSet([userAccountControl],2)", "--set", "userAccountControl=int:514")
        assert json.loads(result.stdout) is True
        result = run("StringFromSid([objectSid])", "--set", "objectSid=sid:S-1-5-21-1-2-3-1104")
        assert json.loads(result.stdout) == "S-1-5-21-1-2-3-1104"
        result = run('ValueCount("member")', "--set", "member=refs:250001")
        assert json.loads(result.stdout) == 250001

    def test_expr_prints_null_bytes_and_sentinels(self):
        assert json.loads(run("[missing]").stdout) is None
        assert (
            json.loads(run('CGuid("00001111-aaaa-2222-bbbb-3333cccc4444")').stdout)
            == base64.b64encode(uuid.UUID("00001111-aaaa-2222-bbbb-3333cccc4444").bytes_le).decode()
        )
        assert json.loads(run("IIF(IsPresent([a]),[a],AuthoritativeNull)").stdout) == "AuthoritativeNull"
        assert json.loads(run("DateFromNum(129699324000000000)").stdout) == "2012-01-01T23:00:00+00:00"

    def test_expr_with_a_parameter(self):
        result = run('ValueCount("member") > %MemberLimit%', "--set", "member=refs:3", "--param", "MemberLimit=int:2")
        assert json.loads(result.stdout) is True

    def test_expr_when_syntax_is_bad_exits_2_with_position(self):
        result = run('Left("abc", 1, 2)')
        assert result.exit_code == 2
        assert "line 1, column 1: Left expects 2 arguments, got 3" in result.stderr

    def test_expr_when_evaluation_fails_exits_1(self):
        result = run('Error("AccountName is required")')
        assert result.exit_code == 1
        assert "AccountName is required" in result.stderr

    @pytest.mark.parametrize("value", ["int:x", "guid:nope", "bool:maybe"])
    def test_expr_when_a_typed_value_is_bad(self, value):
        result = run("[a]", "--set", f"a={value}")
        assert result.exit_code == 2 and "Invalid value" in result.output

    def test_expr_help_documents_the_prefixes(self):
        result = run("--help")
        assert "int:42" in result.output and "guid:" in result.output and "b64:" in result.output


class TestExprBadInput:
    """Issue 13: bad input is one line on stderr and an exit code, never a traceback."""

    @pytest.mark.parametrize(
        ("expression", "code", "start"),
        [
            ('PadLeft("a", 4000000000, "x")', 1, "evaluation error: PadLeft: the padded string would be 4,000,000,000"),
            ("(" * 100 + "1" + ")" * 100, 2, "syntax error: line 1, column 66: nested deeper than 64 levels"),
            ("1" * 5000, 2, "syntax error: line 1, column 1: a number of 5,000 digits"),
            ("x" * 70_000, 2, "syntax error: line 1, column 1: the expression is 70,000 characters long"),
            ('CNum("' + "9" * 5000 + '")', 1, "evaluation error: CNum: a number of 5,000 digits"),
        ],
        ids=["padleft-4e9", "deep", "huge-literal", "too-long", "huge-numeric-string"],
    )
    def test_bad_expression_is_one_line(self, expression, code, start):
        result = run(expression)
        assert result.exit_code == code
        assert result.stdout == "" and result.stderr.startswith(start)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr

    def test_unpaired_surrogate_in_a_value_prints_valid_json(self):
        result = run('[a] & "x"', "--set", "a=b\udcedc")
        assert result.exit_code == 0
        assert json.loads(result.stdout) == "b\udcedcx"

    def test_overflowing_typed_value_is_a_usage_error(self):
        result = run("[a]", "--set", "a=sid:S-1-99999999999999999999-1")
        assert result.exit_code == 2 and "int too big to convert" in result.output
