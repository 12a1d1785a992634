"""Column-wise evaluation equals per-object evaluation, cell by cell, errors on the same objects.

Property-style without a property library: seeded random frames mixing NULL, scalars of the right and of the wrong
types, multi-valued cells, binary data, unloaded references, datetimes and sentinels; every expression is evaluated
both ways over each frame.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_provider_aadsync.engine.expressions import (
    AuthoritativeNull,
    IgnoreThisFlow,
    ReferenceValues,
    compile_expression,
)
from airflow_provider_aadsync.engine.expressions.column_forms import FAST_FUNCTIONS
from airflow_provider_aadsync.engine.expressions.columns import Columns
from airflow_provider_aadsync.engine.expressions.values import cell, cells

SHIPPED_PRIMARY_SMTP = (
    'IIF(Contains([proxyAddresses], "SMTP:") > 0,'
    ' Mid(Item([proxyAddresses], Contains([proxyAddresses], "SMTP:")), 6), [mail])'
)
SHIPPED = [
    "IIF(IsPresent([mS-DS-ConsistencyGuid]), ConvertToBase64([mS-DS-ConsistencyGuid]), ConvertToBase64([objectGUID]))",
    "IIF(IsNullOrEmpty([displayName]), [cn], [displayName])",
    "IIF(IsPresent([mailNickname]), [mailNickname], [sAMAccountName])",
    "IIF(BitAnd([userAccountControl], 2) = 0, True, False)",
    "IIF(BitAnd([groupType], &H80000000) = 0, False, True)",
    "IIF(IsPresent([mail]), True, False)",
    "ConvertToBase64([objectGUID])",
    "IIF([securityEnabled] = True, False, [mailEnabled])",
    'IIF(IsPresent([mailNickname]), [mailNickname], Replace([sAMAccountName], " ", ""))',
    "IIF(IsPresent([userAccountControl]), IIF(BitAnd([userAccountControl], 2) = 0, True, False), NULL)",
    'IIF(([sAMAccountName] = "SUPPORT_388945a0") || (Left([mailNickname], 14) = "SystemMailbox{")'
    ' || ((Left([mailNickname], 4) = "CAS_") && (InStr([mailNickname], "}") > 0))'
    ' || ((Left([sAMAccountName], 4) = "CAS_") && (InStr([sAMAccountName], "}") > 0))'
    " || IIF(IsPresent([msExchRecipientTypeDetails]), BitAnd([msExchRecipientTypeDetails], &H21C07000) > 0, False),"
    " True, NULL)",
    SHIPPED_PRIMARY_SMTP,
]
MEMBER_LIMIT = (
    'IIF(ValueCount("member") > %MemberLimit%, Error("Maximum member count exceeded: more than " & '
    'CStr(%MemberLimit%) & " members"), IgnoreThisFlow)'
)

CONSTRUCTS = [
    # attribute references, literals, NULL, booleans, sentinels
    "[a]",
    "[A] & [a]",
    '"text"',
    "NULL",
    "True",
    "IgnoreThisFlow",
    "-[a]",
    # IIF, with sentinels, errors and failing constants in branches
    "IIF([a], [b], [c])",
    "IIF([a] = 1, AuthoritativeNull, IgnoreThisFlow)",
    'IIF(IsPresent([a]), [a], Error("no a"))',
    "IIF([a] = 1, 1/0, [b])",
    'IIF(InStr([a], "b") = 1, NULL, [a])',  # a multi-valued condition chooses per value
    'IIF(IIF([a], [b], "x"), LCase([c]), UCase([c]))',
    # presence
    'IIF(IsPresent([a]), [b], "none")',
    "IsNullOrEmpty([a])",
    "IsNull([a])",
    "IsEmpty([a])",
    "Count([a])",
    "IsPresent(Trim([a]))",
    'ValueCount("a")',
    'ValueCount("A") + ValueCount("nothing")',
    # conversion, bits
    "ConvertToBase64([a])",
    "BitAnd([a], 2)",
    "BitOr([a], [b])",
    "BitAnd([a], &H80000000) = 0",
    # comparisons, concatenation, other operators
    "[a] = [b]",
    '[a] <> "x"',
    "[a] < [b]",
    "[a] <= 5",
    "[a] > [b]",
    '[a] >= "m"',
    "[a] & [b]",
    '"<" & [a] & ">"',
    "IgnoreThisFlow & [a]",
    "[a] && [b]",
    "[a] || [b]",
    "([a] = 1) || ([b] = 2)",
    "([a] = 1) && IsPresent([b])",
    "IsNull([a]) || IsNull([b]) || [c]",
    "[a] + [b] * 2",
    "[a] / [b]",
    # text
    "LCase([a])",
    "UCase([a])",
    "Trim([a])",
    "Len([a])",
    "Left([a], 2)",
    "Left([a], -1)",
    "Right([a], [b])",
    "Right([a], 0)",
    'Replace([a], "a", "b")',
    'Replace([a], " ", "")',
    'Replace([a], "b", "longer")',  # a longer replacement: left to the function (the value limit)
    "Replace([a], [b], [c])",
    'Replace([a], "\\t", "\\n")',
    'InStr([a], "b")',
    "InStr([a], [b])",
    'InStr([a], "b", 2)',
    'Contains([a], "b")',
    "Contains([a], [b])",
    'Contains([a], "B", "CaseInsensitive")',  # the three-argument form: left to the function
    "Item([a], 1)",
    "Item([a], 2)",
    "Item([a], [b])",  # an index out of range or not a number: the function's error, per object
    "Mid([a], 2)",
    "Mid([a], 2, 1)",
    "Mid([a], [b], [c])",
    'Mid(Item([a], Contains([a], "b")), 2)',
    # a call written twice is computed once, for the rows first asked (then fewer, or others: computed again)
    "IIF(Len([a]) > 2, Len([a]) + Len([a]), Len([b]))",
    'Switch(Contains([a], "b") > 0, Item([a], Contains([a], "b")), Contains([a], "b") = 0, [c])',
    "IIF(IsPresent([b]), Len([a]), IIF(Len([a]) > 1, Len([a]), 0))",
    # functions with no fast form (their own implementation per object, inside the column form)
    "CStr([a])",
    'Word([a], 1, " ")',
    'Split([a], ",")',
    'Join([a], ",")',
    "StringFromGuid([a])",
    # Switch
    'Switch([a] = 1, "one", [b], [c], True, Error("none"))',
    'Switch([a], "a")',
]

GUID = uuid.UUID("3f2504e0-4f89-11d3-9a0c-0305e82c3301").bytes_le
POOL: list[Any] = [
    None,
    "",
    "abc",
    " Mixed Case ",
    "0",
    "12",
    "True",
    "false",
    "maybe",
    "&H10",
    "a,b",
    "b-side",
    "ä€😀",
    "\ud800",  # a lone surrogate: UTF-16 of it needs surrogatepass
    0,
    1,
    2,
    512,
    514,
    -1,
    2**40,
    2**70,
    -(2**31),
    0.0,
    1.5,
    -2.0,
    True,
    False,
    b"",
    GUID,
    b"\x00\x01",
    ["a", "b"],
    ["b1", "c"],
    [1, 2],
    [b"x", b"y"],
    ["x"],  # one value in a list: the cell is that scalar
    [],
    ["", None, "z"],
    ("t", "u"),
    bytearray(b"ab"),
    ReferenceValues(0),
    ReferenceValues(3),
    dt.datetime(2024, 1, 2, 3, 4, 5),  # naive: read as UTC
    dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
    AuthoritativeNull,
    IgnoreThisFlow,
    Decimal("1.5"),
    np.int64(3),
]


def _canonical(value: Any) -> Any:
    """A value with its type, comparable with ==: True is not 1, b"a" is not "a", NaN equals NaN."""
    if isinstance(value, list):
        return ("list", [_canonical(v) for v in value])
    return (type(value).__name__, repr(value))


def _per_object(expression, rows: list[dict[str, Any]]) -> list[Any]:
    results = []
    for row in rows:
        try:
            results.append(("value", _canonical(expression.evaluate(row))))
        except Exception as exc:  # noqa: BLE001 - the outcome being compared
            results.append(("error", type(exc).__name__, str(exc)))
    return results


def _column_wise(expression, columns: dict[str, list[Any]], rows: list[dict[str, Any]]) -> list[Any]:
    """As the rules engine does it: the column form, then ``evaluate`` for the objects it leaves."""
    result = expression.evaluate_column(columns, size=len(rows))
    assert result is not None, f"{expression.text} has a column form"
    assert len(result.values) == len(rows)
    values = result.values.tolist()
    out = []
    for position, row in enumerate(rows):
        if result.per_row[position]:
            out.append(_per_object(expression, [row])[0])
        else:
            out.append(("value", _canonical(values[position])))
    return out


def _frame(names: list[str], size: int, rng: random.Random, typical: dict[str, list[Any]]) -> list[dict[str, Any]]:
    rows = []
    for _ in range(size):
        row = {}
        for name in names:
            choices = typical.get(name.casefold())
            row[name] = rng.choice(choices) if choices and rng.random() < 0.6 else rng.choice(POOL)
        rows.append(row)
    return rows


def _check(text: str, seed: int, *, size: int = 300, parameters=None, typical=None) -> np.ndarray:
    expression = compile_expression(text, parameters=parameters)
    names = sorted({name.casefold() for name in expression.attributes})
    rows = _frame(names, size, random.Random(seed), typical or {})
    columns = {name: [row[name] for row in rows] for name in names}
    expected = _per_object(expression, rows)
    got = _column_wise(expression, columns, rows)
    for position, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert have == want, f"{text}, row {position} {rows[position]!r}: column {have!r}, per object {want!r}"
    return expression.evaluate_column(columns, size=size).per_row


def _user(rng: random.Random) -> dict[str, list[Any]]:
    return {
        "ms-ds-consistencyguid": [None, uuid.UUID(int=rng.getrandbits(128)).bytes_le],
        "objectguid": [uuid.UUID(int=rng.getrandbits(128)).bytes_le for _ in range(5)],
        "displayname": [None, "", "Ann Lee", "Bo"],
        "cn": ["Ann", "Bob Smith"],
        "mailnickname": [None, "", "ann", "SystemMailbox{1}", "CAS_{2}"],
        "samaccountname": ["ann", "bob", "Ann Lee", "CAS_{x}", "SUPPORT_388945a0"],
        "msexchrecipienttypedetails": [None, 1, 2, 2**31],
        "useraccountcontrol": [512, 514, 66048, None],
        "grouptype": [-(2**31) + 2, 2, 8, -(2**31) + 8],
        "mail": [None, "a@example.com"],
        "proxyaddresses": [None, "SMTP:a@example.com", ["smtp:a@example.com", "SMTP:b@example.com"], ["X500:/o=x"]],
        "securityenabled": [True, False, None],
        "mailenabled": [True, False, None],
        "member": [None, "CN=x", ["CN=x", "CN=y"], ReferenceValues(2), ReferenceValues(9)],
    }


class TestEquivalence:
    @pytest.mark.parametrize("text", CONSTRUCTS)
    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_construct_when_cells_are_mixed(self, text, seed):
        _check(text, seed)

    @pytest.mark.parametrize("text", SHIPPED)
    @pytest.mark.parametrize("seed", [1, 2, 3, 4])
    def test_shipped_expression_when_cells_are_mixed(self, text, seed):
        _check(text, seed, typical=_user(random.Random(seed)))

    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_member_limit_expression(self, seed):
        per_row = _check(MEMBER_LIMIT, seed, parameters={"MemberLimit": 3}, typical=_user(random.Random(seed)))
        assert per_row.any()  # the Error() branch: those groups go per object, which raises the flow error

    def test_a_frame_and_a_shared_columns_object_read_like_a_mapping(self):
        frame = pd.DataFrame(
            {"CN": ["a", None, np.nan], "displayName": ["", "d", None]}, index=[10, 20, 30], dtype=object
        )
        expression = compile_expression(SHIPPED[1])
        result = expression.evaluate_column(frame)
        assert result.values.index.tolist() == [10, 20, 30]
        assert result.values.tolist() == ["a", "d", None]  # NaN reads as NULL, [cn] finds "CN"
        shared = Columns.of(frame)
        assert compile_expression("Len([cn])").evaluate_column(shared).values.tolist() == [1, None, None]
        assert shared.leaf("cn") is shared.leaf("cn")  # prepared once


class TestSharedCalls:
    def test_a_call_written_twice_is_computed_once_for_the_rows_first_asked(self, monkeypatch):
        asked: list[int] = []
        contains = FAST_FUNCTIONS["Contains"]

        def counted(args, rows, out):
            asked.append(int(rows.sum()))
            return contains(args, rows, out)

        monkeypatch.setitem(FAST_FUNCTIONS, "Contains", counted)
        expression = compile_expression(SHIPPED_PRIMARY_SMTP)
        proxies = [["smtp:a@x", "SMTP:b@x"], "SMTP:c@x", None, ["X500:/o=x"]]
        result = expression.evaluate_column({"proxyAddresses": proxies, "mail": ["m1", "m2", "m3", "m4"]}, size=4)
        assert result.values.tolist() == ["b@x", "c@x", "m3", "m4"] and not result.per_row.any()
        assert asked == [4]  # the condition's rows; Item's index is the same call, on two of them

    def test_cells_are_what_cell_makes_of_each_value(self):
        naive = dt.datetime(2026, 12, 7, 12, 0)
        mixed = [["a", "b"], ["a"], [], ("a", "b"), ["a", None, "b"], ["a", 1], naive, bytearray(b"x"), "s", None]
        lists = [["a", "b"], ["c", "d", "e"]]
        for values in (mixed, lists, []):
            made = cells(values)
            assert made == [cell(value) for value in values]
            assert all(new is not old for new, old in zip(made, values, strict=True) if type(old) is list)


class TestCoverage:
    """The column form covers the clean majority; only failing objects and cases without a form are left."""

    def test_shipped_expressions_leave_no_clean_object(self):
        rng = random.Random(7)
        typical = _user(rng)
        typical["member"] = [None]
        for text in SHIPPED:
            expression = compile_expression(text)
            rows = [{name: rng.choice(typical[name.casefold()]) for name in expression.attributes} for _ in range(200)]
            columns = {name: [row[name] for row in rows] for name in expression.attributes}
            result = expression.evaluate_column(columns)
            assert not result.per_row.any(), text

    def test_error_in_the_taken_branch_is_left_per_object(self):
        expression = compile_expression(MEMBER_LIMIT, parameters={"MemberLimit": 2})
        result = expression.evaluate_column({"member": [ReferenceValues(1), ReferenceValues(5), ["a", "b"], None]})
        assert result.per_row.tolist() == [False, True, False, False]
        assert result.values[0] is IgnoreThisFlow

    @pytest.mark.parametrize(
        "text",
        ["Select($x, [a], $x)", 'Where($x, [a], $x = "b")', "With($v, [a], $v & $v)", 'ImportedValue("a")', "Now()"],
    )
    def test_no_column_form(self, text):
        assert compile_expression(text).evaluate_column({"a": ["x"]}) is None

    def test_wrong_types_go_per_object(self):
        expression = compile_expression(SHIPPED[3])
        result = expression.evaluate_column({"userAccountControl": [512, "514", "x", [512, 2], ReferenceValues(1)]})
        assert result.values.tolist()[:2] == [True, False]  # "514" is converted by BitAnd itself
        assert result.per_row.tolist() == [False, False, True, True, True]

    def test_a_cell_the_column_path_cannot_read_sends_every_object_per_object(self):
        loop: list[Any] = []
        loop.append(loop)  # cell() recurses without end, in the column path as in evaluate
        result = compile_expression("Trim([a])").evaluate_column({"a": [loop, " ok "]})
        assert result.per_row.tolist() == [True, True]
        assert result.values.tolist() == [None, None]
