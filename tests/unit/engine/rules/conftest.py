"""Fixtures of the rule tests: rules built from dictionaries (tests/support/rules.py), rule files in a tmp folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_provider_aadsync.engine.rules import CompiledRule, SyncRuleModel, compile_rule
from tests.support.rules import rule_dict


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
