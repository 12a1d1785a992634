"""Helpers for the rule tests: rules built from dictionaries, rule files written to a temporary folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_provider_aadsync.engine.rules import CompiledRule, SyncRuleModel, compile_rule


def rule_dict(**overrides: Any) -> dict[str, Any]:
    """A minimal valid inbound rule as written in YAML, with overrides."""
    rule: dict[str, Any] = {
        "name": "r1",
        "direction": "inbound",
        "connector": "ad",
        "source_object_type": "user",
        "target_object_type": "person",
        "link_type": "Provision",
        "precedence": 100,
    }
    rule.update(overrides)
    return rule


@pytest.fixture
def make_rule() -> Callable[..., CompiledRule]:
    def make(parameters: dict[str, object] | None = None, **overrides: Any) -> CompiledRule:
        rule = compile_rule(SyncRuleModel.model_validate(rule_dict(**overrides)), parameters=parameters)
        assert rule is not None
        return rule

    return make


@pytest.fixture
def write_rules(tmp_path: Path) -> Callable[..., Path]:
    """Write ``rules`` (dicts, dumped as YAML) or raw ``text`` to ``tmp_path/name``."""

    def write(name: str, rules: list[dict[str, Any]] | None = None, *, text: str | None = None) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text if text is not None else yaml.safe_dump({"rules": rules}, sort_keys=False))
        return path

    return write
