"""Declarative sync rules: the YAML model, the loader, and vectorized scoping and flow evaluation.

Pure Python + pandas + pydantic. Typical use::

    ruleset = load_rules(["rules/"], parameters={"Domain.Netbios": "CORP"})
    for rule in ruleset.inbound("ad", "user"):
        frame = frame_from_records(records, rule.attributes)
        scoped = frame[rule.in_scope(frame)]
        result = rule.evaluate_flows(scoped)
"""

from __future__ import annotations

from airflow_provider_aadsync.engine.rules.compiled import CompiledRule, RuleSet, compile_rule, rule_fingerprint
from airflow_provider_aadsync.engine.rules.errors import RuleIssue, RuleLoadError, RuleObjectError, RuleSetError
from airflow_provider_aadsync.engine.rules.flows import (
    EXPRESSION_ERROR,
    FLOW_ERROR,
    FlowResult,
    FlowSpec,
    JoinCondition,
)
from airflow_provider_aadsync.engine.rules.frames import frame_from_records
from airflow_provider_aadsync.engine.rules.loader import (
    DEFAULT_RULES_DIR,
    load_default_rules,
    load_rules,
    load_rules_text,
)
from airflow_provider_aadsync.engine.rules.model import (
    Direction,
    FlowModel,
    FlowType,
    JoinConditionModel,
    LinkType,
    MergeType,
    Operator,
    ScopeClauseModel,
    SyncRuleModel,
)
from airflow_provider_aadsync.engine.rules.scoping import MEMBER_OF_COLUMN, CompiledScope, FrameView

__all__ = [
    "DEFAULT_RULES_DIR",
    "EXPRESSION_ERROR",
    "FLOW_ERROR",
    "MEMBER_OF_COLUMN",
    "CompiledRule",
    "CompiledScope",
    "Direction",
    "FlowModel",
    "FlowResult",
    "FlowSpec",
    "FlowType",
    "FrameView",
    "JoinCondition",
    "JoinConditionModel",
    "LinkType",
    "MergeType",
    "Operator",
    "RuleIssue",
    "RuleLoadError",
    "RuleObjectError",
    "RuleSet",
    "RuleSetError",
    "ScopeClauseModel",
    "SyncRuleModel",
    "compile_rule",
    "frame_from_records",
    "load_default_rules",
    "load_rules",
    "load_rules_text",
    "rule_fingerprint",
]
