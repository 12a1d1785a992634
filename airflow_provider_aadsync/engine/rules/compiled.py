"""Compiled sync rules and the rule set: what the sync engine works with.

A :class:`CompiledRule` wraps one validated rule (``.rule``) with its scoping filter, flows and join groups in
evaluation-ready form. A :class:`RuleSet` holds the rules of one configuration, ordered by precedence, with a
fingerprint of their content so the engine can tell "the configuration changed → full sync".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pandas as pd

from airflow_provider_aadsync.engine.connectors.kinds import inbound_rule_applies
from airflow_provider_aadsync.engine.rules.errors import RuleSetError
from airflow_provider_aadsync.engine.rules.flows import (
    FlowResult,
    FlowSpec,
    JoinCondition,
    check_flow_fields,
    evaluate_flows,
)
from airflow_provider_aadsync.engine.rules.model import (
    MEMBER_OF_OPERATORS,
    Direction,
    FlowType,
    LinkType,
    SyncRuleModel,
)
from airflow_provider_aadsync.engine.rules.scoping import CompiledScope, FrameView, compile_clause

__all__ = ["CompiledRule", "RuleSet", "compile_rule", "rule_fingerprint"]

Problems = list[tuple[tuple[Any, ...], str]]


def _dedupe(names: list[str]) -> frozenset[str]:
    """Names with case-insensitive duplicates removed (the first spelling is kept)."""
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.casefold(), name)
    return frozenset(seen.values())


_SCALARS = (str, int, float, bool)


def _is_constant(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(item, _SCALARS) for item in value)
    return isinstance(value, _SCALARS)


def _constant_value(value: Any) -> Any:
    """A Constant flow's value as a value cell: a list of one is that value, an empty list is NULL."""
    if isinstance(value, list):
        if not value:
            return None
        if len(value) == 1:
            return value[0]
    return value


class CompiledRule:
    """One sync rule ready to evaluate. ``rule`` is the validated model as written."""

    def __init__(
        self,
        rule: SyncRuleModel,
        scope: CompiledScope,
        flow_specs: tuple[FlowSpec, ...],
        join_groups: tuple[tuple[JoinCondition, ...], ...],
    ) -> None:
        self.rule = rule
        self.scope = scope
        self.flow_specs = flow_specs
        self.join_groups = join_groups
        #: Where the rule was written: ``file#rules[index]`` when loaded from a file (the sync manager shows it).
        self.origin: str | None = None
        names = list(scope.attributes)
        names += [condition.source for group in join_groups for condition in group]
        names += [name for name in (rule.held_by_other_engine, rule.admin_roles) if name]
        names += rule.hard_match_proof
        for spec in flow_specs:
            if spec.type is FlowType.DIRECT and spec.source:
                names.append(spec.source)
            elif spec.compiled is not None:
                names.extend(sorted(spec.compiled.attributes))
        #: Every source attribute the rule reads: scoping, join sources, Direct sources, expression attributes.
        #: ``memberOf`` (for ISMEMBEROF) is not listed; see ``needs_member_of``.
        self.attributes: frozenset[str] = _dedupe(names)
        #: True when a clause uses ISMEMBEROF/ISNOTMEMBEROF: the frame must then carry a ``memberOf`` column.
        self.needs_member_of: bool = scope.needs_member_of

    # --- the rule's description, as properties of the model
    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def direction(self) -> Direction:
        return self.rule.direction

    @property
    def connector(self) -> str:
        return self.rule.connector

    @property
    def source_object_type(self) -> str:
        return self.rule.source_object_type

    @property
    def target_object_type(self) -> str:
        return self.rule.target_object_type

    @property
    def link_type(self) -> LinkType:
        return self.rule.link_type

    @property
    def precedence(self) -> int:
        return self.rule.precedence

    @property
    def enabled(self) -> bool:
        return self.rule.enabled

    @property
    def targets(self) -> tuple[str, ...]:
        """The flow targets, in flow order."""
        return tuple(spec.target for spec in self.flow_specs)

    # --- evaluation
    def in_scope(self, frame: pd.DataFrame | FrameView) -> pd.Series:
        """Per object (row of ``frame``): is the rule in scope? A boolean Series on the frame's index.

        ``frame`` holds one column per attribute (value cells; a missing column reads as all NULL). Pass a
        :class:`FrameView` to share prepared columns between the rules evaluated over one frame.
        """
        view = frame if isinstance(frame, FrameView) else FrameView(frame)
        return pd.Series(self.scope.evaluate(view), index=view.frame.index, dtype=bool)

    def evaluate_flows(self, frame: pd.DataFrame | FrameView) -> FlowResult:
        """Evaluate every flow for every object of ``frame`` (see :class:`.flows.FlowResult`)."""
        return evaluate_flows(self.name, self.flow_specs, frame)

    def __repr__(self) -> str:
        return (
            f"CompiledRule({self.name!r}, {self.direction.value}, connector={self.connector!r}, "
            f"precedence={self.precedence})"
        )


def compile_rule(
    rule: SyncRuleModel,
    *,
    parameters: Mapping[str, object] | None = None,
    problems: Problems | None = None,
) -> CompiledRule | None:
    """Check what the model alone cannot, and compile the rule.

    Problems are appended to ``problems`` as ``(field path parts, message)``; the rule is returned only when
    there are none. Without a ``problems`` list, the first problem raises ``ValueError``.
    """
    found: Problems = []

    groups = []
    for g, group in enumerate(rule.scoping):
        clauses = []
        for c, clause in enumerate(group):
            if clause.attribute is None and clause.operator not in MEMBER_OF_OPERATORS:
                found.append((("scoping", g, c, "attribute"), f"{clause.operator.value} needs an attribute"))
                continue
            try:
                clauses.append(compile_clause(clause))
            except ValueError as exc:
                found.append((("scoping", g, c, "value"), str(exc)))
        groups.append(tuple(clauses))
    scope = CompiledScope(tuple(groups))

    # An inbound Join/StickyJoin rule without join groups is *not* an error: it is how the product's own
    # "In from AD - User Common"-style rules work (they contribute flows to objects another rule joined or
    # projected), and Microsoft's filtering how-to builds its filter rules that way ("Leave the Join rules empty").
    join_groups = tuple(
        tuple(JoinCondition(pair.source, pair.target, pair.case_sensitive, pair.soft_match) for pair in group)
        for group in rule.join
    )

    specs: list[FlowSpec] = []
    targets: dict[str, int] = {}
    for f, flow in enumerate(rule.flows):
        key = flow.target.casefold()
        if key in targets:
            found.append((("flows", f, "target"), f"flows[{targets[key]}] already flows to {flow.target!r}"))
        else:
            targets[key] = f
        field_problems = check_flow_fields(
            flow.type, {"source": flow.source, "value": flow.value, "expression": flow.expression}
        )
        found.extend((("flows", f, name), message) for name, message in field_problems)
        if field_problems:
            continue
        if flow.type is FlowType.CONSTANT and not _is_constant(flow.value):
            found.append((("flows", f, "value"), "a Constant value is a string, number or boolean, or a list of them"))
            continue
        compiled = None
        if flow.type is FlowType.EXPRESSION:
            compiled = _compile_expression(flow.expression or "", parameters, ("flows", f, "expression"), found)
            if compiled is None:
                continue
        specs.append(
            FlowSpec(
                target=flow.target,
                type=flow.type,
                source=flow.source,
                apply_once=flow.apply_once,
                merge=flow.merge,
                value=_constant_value(flow.value) if flow.type is FlowType.CONSTANT else None,
                expression=flow.expression,
                compiled=compiled,
            )
        )

    if rule.rejoin_on is not None:
        if rule.direction is not Direction.OUTBOUND or rule.link_type is not LinkType.PROVISION:
            found.append((("rejoin_on",), "rejoin_on is for outbound Provision rules"))
        elif rule.rejoin_on.casefold() not in targets:
            found.append((("rejoin_on",), f"{rule.rejoin_on!r} is not a target of this rule's flows"))

    if rule.keep_when_out_of_scope and (
        rule.direction is not Direction.OUTBOUND or rule.link_type is not LinkType.PROVISION
    ):
        found.append((("keep_when_out_of_scope",), "keep_when_out_of_scope is for outbound Provision rules"))

    if problems is not None:
        problems.extend(found)
    elif found:
        loc, message = found[0]
        raise ValueError(f"rule {rule.name!r}: {loc}: {message}")
    if found:
        return None
    return CompiledRule(rule, scope, tuple(specs), join_groups)


def _compile_expression(
    text: str,
    parameters: Mapping[str, object] | None,
    loc: tuple[Any, ...],
    found: Problems,
) -> Any:
    from airflow_provider_aadsync.engine.expressions import (
        ExpressionError,
        ExpressionSyntaxError,
        compile_expression,
    )

    try:
        return compile_expression(text, parameters=parameters)
    except ExpressionSyntaxError as exc:
        message = getattr(exc, "message", None) or str(exc)
        found.append((loc, f"syntax error at line {exc.line}, column {exc.column} of the expression: {message}"))
    except ExpressionError as exc:
        found.append((loc, f"expression error: {exc}"))
    return None


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)


def rule_fingerprint(rules: Sequence[CompiledRule], parameters: Mapping[str, object] | None = None) -> str:
    """sha256 of the rules' normalized content (defaults filled in, key order and file layout ignored) and the
    parameters: equal for equal configurations, different after any change that could change a sync result."""
    documents = sorted((rule.rule.model_dump(mode="json") for rule in rules), key=lambda doc: doc["name"].casefold())
    payload = _canonical_json({"rules": documents, "parameters": dict(parameters or {})})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class RuleSet:
    """The rules of one configuration, ordered by precedence (lower first), with their fingerprint.

    ``rules`` holds every rule, disabled ones included; ``inbound``/``outbound`` return enabled rules only.
    """

    def __init__(
        self,
        rules: Sequence[CompiledRule],
        *,
        fingerprint: str | None = None,
        sources: Sequence[str] = (),
    ) -> None:
        self.rules: tuple[CompiledRule, ...] = tuple(
            sorted(rules, key=lambda r: (r.precedence, r.connector.casefold(), r.name.casefold()))
        )
        self.fingerprint: str = fingerprint if fingerprint is not None else rule_fingerprint(self.rules)
        #: The files or folders the rules came from (as given), named in errors about the whole set.
        self.sources: tuple[str, ...] = tuple(sources)
        self._by_name = {rule.name.casefold(): rule for rule in self.rules}

    @property
    def source_label(self) -> str:
        """The rule files or folders as one phrase for messages."""
        return ", ".join(self.sources) if self.sources else "<rules given in code>"

    def require_inbound(self, connector: str) -> None:
        """Refuse a sync of ``connector`` when no enabled inbound rule reads it.

        Without one, a sync finds every connector-space object out of scope: it would disconnect them all, and the
        metaverse objects they fed would be deleted (and their exports staged). That is never what an operator
        means, so it is a :class:`RuleSetError` before anything is written.
        """
        if self.inbound(connector):
            return
        others = sorted({rule.connector for rule in self.rules if rule.enabled and rule.direction is Direction.INBOUND})
        known = f" (inbound rules exist for: {', '.join(others)})" if others else ""
        raise RuleSetError(
            f"connector {connector!r} has no enabled inbound rule{known}; a sync would disconnect every object of "
            f"its connector space and empty the metaverse of what it feeds, so it is refused. Check the rules "
            f"path and the rules' 'connector' names, or enable an inbound rule for {connector!r}",
            source=self.source_label,
            connector=connector,
        )

    @property
    def connectors(self) -> frozenset[str]:
        """Every connector a rule names."""
        return frozenset(rule.connector for rule in self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[CompiledRule]:
        return iter(self.rules)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.casefold() in self._by_name

    def get(self, name: str) -> CompiledRule | None:
        """The rule of that name (ignoring case), or None."""
        return self._by_name.get(name.casefold())

    def _select(
        self,
        direction: Direction,
        connector: str | None,
        source_object_type: str | None,
        target_object_type: str | None,
    ) -> tuple[CompiledRule, ...]:
        def matches(value: str, wanted: str | None) -> bool:
            return wanted is None or value.casefold() == wanted.casefold()

        def reads(rule_connector: str) -> bool:
            # Inbound rules written for a kind (``ad``) read every connector of it (``ad_fabrikam``): kinds.py.
            if connector is None or direction is not Direction.INBOUND:
                return matches(rule_connector, connector)
            return inbound_rule_applies(rule_connector, connector)

        return tuple(
            rule
            for rule in self.rules
            if rule.enabled
            and rule.direction is direction
            and reads(rule.connector)
            and matches(rule.source_object_type, source_object_type)
            and matches(rule.target_object_type, target_object_type)
        )

    def inbound(
        self, connector: str, source_object_type: str | None = None, target_object_type: str | None = None
    ) -> tuple[CompiledRule, ...]:
        """Enabled inbound rules of a connector (optionally of one CS/MV object type), by precedence."""
        return self._select(Direction.INBOUND, connector, source_object_type, target_object_type)

    def outbound(
        self,
        connector: str | None = None,
        source_object_type: str | None = None,
        target_object_type: str | None = None,
    ) -> tuple[CompiledRule, ...]:
        """Enabled outbound rules (optionally of one connector, MV object type, CS object type), by precedence."""
        return self._select(Direction.OUTBOUND, connector, source_object_type, target_object_type)

    def __repr__(self) -> str:
        return f"RuleSet({len(self.rules)} rules, fingerprint={self.fingerprint[:12]})"
