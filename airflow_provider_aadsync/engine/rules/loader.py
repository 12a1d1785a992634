"""Load sync rules from YAML files: parse, validate, compile, and check the rules against each other.

A file holds ``rules:`` (a list of rules, see :class:`.model.SyncRuleModel`); a directory holds many files
(``*.yaml``/``*.yml``, read in name order). Every problem in every file is collected before anything is raised,
and each :class:`.errors.RuleIssue` names the file (with the YAML line and column of the offending node), the
rule and the field path; expression syntax errors add the line and column inside the expression.

Refused, because a sync would disconnect every object of a connector with no rules: an empty file (or one with
only comments), ``rules:`` with nothing, a folder without rule files, and no rule at all.

Bounded, so a hostile or broken file gives an error instead of a hang or a crash: a file holds at most
:data:`MAX_RULE_FILE_BYTES`, nests at most :data:`MAX_YAML_DEPTH` levels, and expands (through YAML aliases) to at
most :data:`MAX_YAML_NODES` nodes; a recursive alias is an error. Expressions have their own limits
(``expressions.limits``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from airflow_provider_aadsync.engine.rules.compiled import CompiledRule, RuleSet, compile_rule, rule_fingerprint
from airflow_provider_aadsync.engine.rules.errors import RuleIssue, RuleLoadError, RuleSetError
from airflow_provider_aadsync.engine.rules.model import Direction, MergeType, SyncRuleModel

__all__ = [
    "DEFAULT_RULES_DIR",
    "MAX_RULE_FILE_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "load_default_rules",
    "load_rules",
    "load_rules_text",
]

log = logging.getLogger(__name__)

#: The shipped rule set: every ``*.yaml`` in this folder.
DEFAULT_RULES_DIR = Path(__file__).resolve().parent / "default"

_SUFFIXES = (".yaml", ".yml")
_FILE_KEYS = frozenset({"rules"})

#: Largest rule file read (bytes). The shipped rules are a few KB each.
MAX_RULE_FILE_BYTES = 1_048_576
#: Deepest nesting of YAML collections (a rule needs about 8 levels: rules, rule, scoping, group, clause, value).
MAX_YAML_DEPTH = 64
#: Most YAML nodes a file may expand to, counting each use of an alias in full (a "billion laughs" file is a
#: few hundred bytes that expand to billions of nodes).
MAX_YAML_NODES = 200_000

_EMPTY_HINT = "a sync with no rules would disconnect every object and empty the metaverse"

_OPENERS = (
    yaml.BlockMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.FlowSequenceStartToken,
)
_CLOSERS = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


class _YamlLimitError(yaml.MarkedYAMLError):
    """A file beyond one of the loader's limits (reported like a YAML error, with its position)."""


def _check_text_depth(text: str) -> None:
    """Refuse nesting deeper than MAX_YAML_DEPTH before composing (PyYAML composes recursively)."""
    depth = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, _OPENERS):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise _YamlLimitError(
                    problem=f"nested deeper than {MAX_YAML_DEPTH} levels", problem_mark=token.start_mark
                )
        elif isinstance(token, _CLOSERS):
            depth -= 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse recursive aliases, and a node graph that expands past MAX_YAML_NODES nodes or MAX_YAML_DEPTH levels.

    Aliases make the composed nodes a graph that may share (or, with a recursive alias, contain) itself. Each node
    is measured once (iteratively, memoised by identity), so the check costs the size of the file, not of what it
    expands to.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        if leaving:
            open_nodes.discard(key)
            kids = _children(node)
            size[key] = min(MAX_YAML_NODES + 1, 1 + sum(size[id(kid)] for kid in kids))
            depth[key] = 1 + max((depth[id(kid)] for kid in kids), default=0)
            if size[key] > MAX_YAML_NODES:
                raise _YamlLimitError(
                    problem=f"expands to more than {MAX_YAML_NODES:,} nodes (through its aliases)",
                    problem_mark=node.start_mark,
                )
            if depth[key] > MAX_YAML_DEPTH:
                raise _YamlLimitError(
                    problem=f"nested deeper than {MAX_YAML_DEPTH} levels (through its aliases)",
                    problem_mark=node.start_mark,
                )
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise _YamlLimitError(problem="an alias refers to a node that contains it", problem_mark=node.start_mark)
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in _children(node) if id(kid) not in size)


def _format_path(parts: Iterable[Any]) -> str:
    """``("flows", 2, "expression")`` → ``flows[2].expression``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _YamlFile:
    """One parsed file: its data and its node tree (for line/column of any path)."""

    def __init__(self, label: str, text: str) -> None:
        self.label = label
        _check_text_depth(text)
        loader = yaml.SafeLoader(text)
        try:
            self.root: yaml.Node | None = loader.get_single_node()
            if self.root is not None:
                _check_expansion(self.root)
            self.data: Any = loader.construct_document(self.root) if self.root is not None else None
        finally:
            loader.dispose()

    def node_at(self, parts: Iterable[Any]) -> yaml.Node | None:
        """The deepest node found along a path of mapping keys and sequence indexes."""
        node = self.root
        for part in parts:
            child = None
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                        child = value
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                child = node.value[part]
            if child is None:
                break
            node = child
        return node

    def position(self, parts: Iterable[Any]) -> tuple[int | None, int | None]:
        node = self.node_at(parts)
        if node is None:
            return None, None
        return node.start_mark.line + 1, node.start_mark.column + 1

    def duplicate_keys(self) -> Iterator[tuple[yaml.Node, str]]:
        """Mapping keys written twice (YAML would silently keep the last)."""
        stack = [self.root] if self.root is not None else []
        visited: set[int] = set()  # an alias shares its node: walk each node once
        while stack:
            node = stack.pop()
            if id(node) in visited:
                continue
            visited.add(id(node))
            if isinstance(node, yaml.MappingNode):
                seen: set[str] = set()
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode):
                        if key.value in seen:
                            yield key, key.value
                        seen.add(key.value)
                    stack.append(value)
            elif isinstance(node, yaml.SequenceNode):
                stack.extend(node.value)


class _Collector:
    """Gathers issues; knows the file being read so each issue gets its position."""

    def __init__(self) -> None:
        self.issues: list[RuleIssue] = []

    def add(
        self,
        source: _YamlFile | None,
        rule: str | None,
        path_parts: tuple[Any, ...],
        message: str,
        *,
        file_parts: tuple[Any, ...] | None = None,
    ) -> None:
        line = column = None
        if source is not None and file_parts is not None:
            line, column = source.position(file_parts)
        self.issues.append(
            RuleIssue(
                file=source.label if source is not None else None,
                rule=rule,
                path=_format_path(path_parts),
                message=message,
                line=line,
                column=column,
            )
        )


def _pydantic_message(error: Mapping[str, Any]) -> str:
    kind = error.get("type")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key missing"
    return str(error.get("msg", "invalid value"))


def _rule_label(index: int, data: Any) -> str:
    name = data.get("name") if isinstance(data, Mapping) else None
    if isinstance(name, str) and name.strip():
        return name.strip()
    return f"rules[{index}]"


def _expand(paths: Iterable[Path | str], issues: _Collector) -> list[Path]:
    files: list[Path] = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES)
            if not found:
                issues.issues.append(
                    RuleIssue(str(path), None, "", f"the folder holds no *.yaml or *.yml rule file ({_EMPTY_HINT})")
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            issues.issues.append(RuleIssue(str(path), None, "", "no such rule file or directory"))
    return files


def _load_source(
    source: _YamlFile,
    parameters: Mapping[str, object],
    issues: _Collector,
) -> list[tuple[CompiledRule, _YamlFile, int]]:
    """Validate and compile every rule of one parsed file; problems go to ``issues``."""
    for key_node, key in source.duplicate_keys():
        issues.issues.append(
            RuleIssue(
                source.label,
                None,
                "",
                f"key {key!r} is written twice",
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
        )
    data = source.data
    if data is None:
        issues.add(source, None, (), f"the file holds no rules ({_EMPTY_HINT}); add rules or remove the file")
        return []
    if not isinstance(data, Mapping):
        issues.add(source, None, (), "a rule file holds a mapping with a 'rules' list", file_parts=())
        return []
    for key in data:
        if key not in _FILE_KEYS:
            issues.add(source, None, (key,), "unknown key (a rule file holds only 'rules')", file_parts=(key,))
    rules = data.get("rules")
    if rules is None or rules == []:
        issues.add(
            source,
            None,
            ("rules",),
            f"no rule in the list ({_EMPTY_HINT}); add rules or remove the file",
            file_parts=("rules",) if "rules" in data else (),
        )
        return []
    if not isinstance(rules, list):
        issues.add(source, None, ("rules",), "'rules' must be a list of rules", file_parts=("rules",))
        return []
    compiled: list[tuple[CompiledRule, _YamlFile, int]] = []
    for index, raw in enumerate(rules):
        label = _rule_label(index, raw)
        try:
            model = SyncRuleModel.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(error["loc"])
                issues.add(source, label, loc, _pydantic_message(error), file_parts=("rules", index, *loc))
            continue
        problems: list[tuple[tuple[Any, ...], str]] = []
        rule = compile_rule(model, parameters=parameters, problems=problems)
        for loc, message in problems:
            issues.add(source, label, loc, message, file_parts=("rules", index, *loc))
        if rule is not None and not problems:
            compiled.append((rule, source, index))
    return compiled


def _check_across(rules: list[tuple[CompiledRule, _YamlFile, int]], issues: _Collector) -> None:
    """Rule names are unique; enabled rules of one connector have distinct precedences."""
    by_name: dict[str, list[tuple[CompiledRule, _YamlFile, int]]] = defaultdict(list)
    by_precedence: dict[tuple[str, int], list[tuple[CompiledRule, _YamlFile, int]]] = defaultdict(list)
    for entry in rules:
        rule = entry[0]
        by_name[rule.name.casefold()].append(entry)
        if rule.enabled:
            by_precedence[(rule.connector.casefold(), rule.precedence)].append(entry)
    for entries in by_name.values():
        if len(entries) > 1:
            _, first_source, first_index = entries[0]
            where = f"{first_source.label}:{first_source.position(('rules', first_index))[0]}"
            for rule, source, index in entries[1:]:
                issues.add(
                    source,
                    rule.name,
                    ("name",),
                    f"duplicate rule name (also defined in {where})",
                    file_parts=("rules", index, "name"),
                )
    for (_, precedence), entries in by_precedence.items():
        if len(entries) > 1:
            names = ", ".join(f"{rule.name!r} ({source.label})" for rule, source, _ in entries)
            for rule, source, index in entries:
                issues.add(
                    source,
                    rule.name,
                    ("precedence",),
                    f"precedence {precedence} on connector {rule.connector!r} is used by more than one enabled "
                    f"rule: {names}",
                    file_parts=("rules", index, "precedence"),
                )


def _check_merge_types(rules: list[tuple[CompiledRule, _YamlFile, int]], issues: _Collector) -> None:
    """Flows to one attribute of one object type either all Update or all Merge: mixing them fails at load.

    The product refuses a rule set where one rule updates an attribute other rules merge into (precedence picks one
    value, merge unites them: no answer is right), so the second kind met is named with its file, rule and line.
    """
    kinds: dict[tuple[str, str, str, str], dict[bool, list[tuple[CompiledRule, _YamlFile, int, int]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for rule, source, index in rules:
        if not rule.enabled:
            continue
        # Inbound rules meet in the metaverse; outbound rules in their connector's space.
        space = "metaverse" if rule.direction == Direction.INBOUND else rule.connector.casefold()
        for position, flow in enumerate(rule.rule.flows):
            key = (rule.direction.value, space, rule.target_object_type.casefold(), flow.target.casefold())
            kinds[key][flow.merge != MergeType.UPDATE].append((rule, source, index, position))
    for (_, _, object_type, _), by_kind in kinds.items():
        if len(by_kind) < 2:
            continue
        merging = by_kind[True][0]
        merge_where = f"{merging[0].name!r} ({merging[1].label}:{merging[1].position(('rules', merging[2]))[0]})"
        for rule, source, index, position in by_kind[False]:
            target = rule.rule.flows[position].target
            issues.add(
                source,
                rule.name,
                ("flows", position, "merge"),
                f"{object_type} attribute {target!r} is updated here (merge: Update) but merged by rule "
                f"{merge_where} (merge: {merging[0].rule.flows[merging[3]].merge.value}): flows to one attribute "
                "must all be Update or all Merge",
                file_parts=("rules", index, "flows", position, "merge"),
            )


def _check_targets(rules: list[tuple[CompiledRule, _YamlFile, int]], issues: _Collector) -> None:
    """Each outbound flow writes a target its connector can write: a flow to a property the directory does not have
    fails here, with its file, rule and line, instead of once per object at export. The connector says what it
    accepts (``Connector.target_problem``: Entra ID checks its Graph catalog, AD only the name's form, as any schema
    attribute may be written); a connector of no known kind, ``dn`` (the object's name) and a check flow (every
    outcome ``Error()`` or ``IgnoreThisFlow``: it writes nothing) are not checked."""
    from airflow_provider_aadsync.engine.connectors.registry import connector_for
    from airflow_provider_aadsync.engine.expressions.parser import writes_no_value

    for rule, source, index in rules:
        if rule.direction != Direction.OUTBOUND:
            continue
        connector = connector_for(rule.connector)
        check = connector.target_problem if connector is not None else None
        if check is None:
            continue
        for position, flow in enumerate(rule.rule.flows):
            if flow.target.casefold() == "dn":
                continue
            if flow.expression is not None and writes_no_value(flow.expression):
                continue
            problem = check(rule.target_object_type, flow.target)
            if problem is not None:
                issues.add(
                    source,
                    rule.name,
                    ("flows", position, "target"),
                    problem,
                    file_parts=("rules", index, "flows", position, "target"),
                )


def _build(
    sources: list[_YamlFile],
    parameters: Mapping[str, object] | None,
    issues: _Collector,
    given: list[str],
) -> RuleSet:
    parameters = dict(parameters or {})
    compiled: list[tuple[CompiledRule, _YamlFile, int]] = []
    for source in sources:
        compiled.extend(_load_source(source, parameters, issues))
    _check_across(compiled, issues)
    _check_merge_types(compiled, issues)
    _check_targets(compiled, issues)
    if issues.issues:
        raise RuleLoadError(issues.issues)
    for rule, source, index in compiled:
        rule.origin = f"{source.label}#rules[{index}]"
    rules = [rule for rule, _, _ in compiled]
    if not rules:
        raise RuleSetError(f"no sync rule was loaded ({_EMPTY_HINT})", source=", ".join(given) or None)
    return RuleSet(rules, fingerprint=rule_fingerprint(rules, parameters), sources=given)


def _parse(label: str, text: str, issues: _Collector) -> _YamlFile | None:
    if len(text) > MAX_RULE_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_RULE_FILE_BYTES:
        issues.issues.append(RuleIssue(label, None, "", f"the file is larger than {MAX_RULE_FILE_BYTES:,} bytes"))
        return None
    try:
        return _YamlFile(label, text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        kind = "refused" if isinstance(exc, _YamlLimitError) else "syntax error"
        issues.issues.append(
            RuleIssue(
                label,
                None,
                "",
                f"YAML {kind}: {problem}",
                mark.line + 1 if mark else None,
                mark.column + 1 if mark else None,
            )
        )
    except yaml.YAMLError as exc:
        issues.issues.append(RuleIssue(label, None, "", f"YAML error: {exc}"))
    except RecursionError:  # a safety net: the depth checks above should have refused the file first
        issues.issues.append(RuleIssue(label, None, "", f"nested too deeply (at most {MAX_YAML_DEPTH} levels)"))
    return None


def load_rules(paths: Iterable[Path | str], *, parameters: Mapping[str, object] | None = None) -> RuleSet:
    """Load, validate and compile the rules in the given files and directories.

    :param paths: rule files and/or directories (their ``*.yaml``/``*.yml`` files, in name order)
    :param parameters: values for the expressions' ``%Name%`` parameters; part of the fingerprint
    :return: the compiled rules
    :raise RuleLoadError: listing every problem of every file
    """
    given = [str(path) for path in paths]
    issues = _Collector()
    sources: list[_YamlFile] = []
    for path in _expand(given, issues):
        try:
            if path.stat().st_size > MAX_RULE_FILE_BYTES:
                issues.issues.append(
                    RuleIssue(str(path), None, "", f"the file is larger than {MAX_RULE_FILE_BYTES:,} bytes")
                )
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            issues.issues.append(RuleIssue(str(path), None, "", f"cannot read: {exc}"))
            continue
        source = _parse(str(path), text, issues)
        if source is not None:
            sources.append(source)
    ruleset = _build(sources, parameters, issues, given)
    log.debug("loaded %d sync rules from %d files (fingerprint %s)", len(ruleset), len(sources), ruleset.fingerprint)
    return ruleset


def load_rules_text(text: str, *, name: str = "<text>", parameters: Mapping[str, object] | None = None) -> RuleSet:
    """Load rules from YAML text (one file's content); ``name`` stands for the file in messages."""
    issues = _Collector()
    source = _parse(name, text, issues)
    return _build([source] if source is not None else [], parameters, issues, [name])


def load_default_rules(parameters: Mapping[str, object] | None = None) -> RuleSet:
    """Load the shipped rule set (every ``*.yaml`` under ``engine/rules/default``); a missing or empty folder (a
    broken install) is a :class:`RuleLoadError`, as for any rule folder."""
    return load_rules([DEFAULT_RULES_DIR], parameters=parameters)
