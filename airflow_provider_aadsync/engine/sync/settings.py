"""Sync settings that change what the shipped rules do, and loading the rule set a run uses."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from airflow_provider_aadsync.engine.rules import RuleSet, load_default_rules, load_rules

#: Members a group may have when written through the V2 endpoint's capabilities (the default).
V2_MEMBER_LIMIT = 250_000
#: The V1 endpoint's limit, for tenants that must stay on it.
V1_MEMBER_LIMIT = 50_000

EndpointMode = Literal["v2", "v1"]


def member_limit(mode: EndpointMode) -> int:
    if mode not in ("v1", "v2"):
        raise ValueError(f"endpoint mode must be 'v2' or 'v1', not {mode!r}")
    return V2_MEMBER_LIMIT if mode == "v2" else V1_MEMBER_LIMIT


def rule_parameters(mode: EndpointMode = "v2") -> dict[str, object]:
    """The ``%Name%`` parameters the shipped rules use."""
    return {"MemberLimit": member_limit(mode)}


def load_sync_rules(rule_paths: Iterable[str | Path] | None = None, *, mode: EndpointMode = "v2") -> RuleSet:
    """The rule files at ``rule_paths`` (files or folders), or the shipped default rules when none are given."""
    paths = [Path(path) for path in rule_paths or []]
    if paths:
        return load_rules(paths, parameters=rule_parameters(mode))
    return load_default_rules(rule_parameters(mode))
