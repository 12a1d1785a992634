"""The shipped rules' flows give the same values and errors with and without the column-wise expression path."""

from __future__ import annotations

import random
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_provider_aadsync.engine.expressions import CompiledExpression, ReferenceValues
from airflow_provider_aadsync.engine.rules import frame_from_records, load_default_rules

PARAMETERS = {"MemberLimit": 2, "WritebackLimit": 3, "WritebackOU": "OU=Writeback,DC=x", "WritebackNaming": "objectId"}
# What a messy directory can put in the attributes the shipped expressions read, stored or already typed.
ODD: list[Any] = [None, [], "", "x", 0, 514, "514", True, b"", ["a", "b"], ReferenceValues(7), 1.5]


def _cells(name: str, rng: random.Random) -> Any:
    if rng.random() < 0.3:
        return rng.choice(ODD)
    key = name.casefold()
    if key in ("objectguid", "ms-ds-consistencyguid"):
        return uuid.UUID(int=rng.getrandbits(128)).bytes_le if rng.random() < 0.8 else None
    if key in ("useraccountcontrol", "grouptype"):
        return rng.choice([512, 514, -(2**31) + 2, 2])
    if key in ("securityenabled", "mailenabled"):
        return rng.choice([True, False, None])
    if key == "member":
        return rng.choice([None, ReferenceValues(1), ReferenceValues(3), ["CN=a", "CN=b", "CN=c"]])
    return rng.choice([None, "", f"{name}-{rng.randrange(100)}"])


def _flows(rule, frame: pd.DataFrame):
    result = rule.evaluate_flows(frame)
    return result.values.to_dict("index"), {key: error.message for key, error in result.errors.items()}


@pytest.mark.parametrize("seed", [1, 2])
def test_shipped_rules_when_cells_are_messy(seed, monkeypatch):
    rules = [rule for rule in load_default_rules(PARAMETERS) if any(spec.compiled for spec in rule.flow_specs)]
    assert rules
    rng = random.Random(seed)
    for rule in rules:
        names = sorted(rule.attributes)
        frame = pd.DataFrame(
            {name: np.array([_cells(name, rng) for _ in range(400)] + [None], dtype=object) for name in names},
            index=pd.RangeIndex(5, 406),
            dtype=object,
        )
        column_wise = _flows(rule, frame)
        with monkeypatch.context() as patch:
            patch.setattr(CompiledExpression, "evaluate_column", lambda self, columns, size=None: None)
            per_object = _flows(rule, frame)
        assert column_wise == per_object, rule.name


def test_the_user_join_rule_over_stored_records():
    rule = load_default_rules(PARAMETERS).get("In from AD - User Join")
    records = [
        {"objectGUID": [str(uuid.uuid4())], "cn": [f"u{n}"], "sAMAccountName": [f"u{n}"], "userAccountControl": ["514"]}
        for n in range(3)
    ]
    frame = frame_from_records(records, rule.attributes)
    values = rule.evaluate_flows(frame).values
    assert values["accountEnabled"].tolist() == [False, False, False]  # a string: BitAnd converts it itself
    assert values["displayName"].tolist() == ["u0", "u1", "u2"]
