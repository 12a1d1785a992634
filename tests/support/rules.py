"""Sync rules as dictionaries, the way they are written in YAML, for tests that build rules."""

from __future__ import annotations

from typing import Any


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
