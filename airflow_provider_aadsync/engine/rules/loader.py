"""Load sync rules from YAML files: parse, validate, compile, and check the rules against each other.

A file holds ``rules:`` (a list of rules, see :class:`.model.SyncRuleModel`); a directory holds many files
(``*.yaml``/``*.yml``, read in name order). Every problem in every file is collected before anything is raised,
and each :class:`.errors.RuleIssue` names the file (with the YAML line and column of the offending node), the
rule and the field path; expression syntax errors add the line and column inside the expression.
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
from airflow_provider_aadsync.engine.rules.errors import RuleIssue, RuleLoadError
from airflow_provider_aadsync.engine.rules.model import SyncRuleModel

__all__ = ["DEFAULT_RULES_DIR", "load_default_rules", "load_rules", "load_rules_text"]

log = logging.getLogger(__name__)

#: The shipped rule set: every ``*.yaml`` in this folder.
DEFAULT_RULES_DIR = Path(__file__).resolve().parent / "default"

_SUFFIXES = (".yaml", ".yml")
_FILE_KEYS = frozenset({"rules"})


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
        loader = yaml.SafeLoader(text)
        try:
            self.root: yaml.Node | None = loader.get_single_node()
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
        while stack:
            node = stack.pop()
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
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES))
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
        return []
    if not isinstance(data, Mapping):
        issues.add(source, None, (), "a rule file holds a mapping with a 'rules' list", file_parts=())
        return []
    for key in data:
        if key not in _FILE_KEYS:
            issues.add(source, None, (key,), "unknown key (a rule file holds only 'rules')", file_parts=(key,))
    rules = data.get("rules")
    if rules is None:
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


def _build(sources: list[_YamlFile], parameters: Mapping[str, object] | None, issues: _Collector) -> RuleSet:
    parameters = dict(parameters or {})
    compiled: list[tuple[CompiledRule, _YamlFile, int]] = []
    for source in sources:
        compiled.extend(_load_source(source, parameters, issues))
    _check_across(compiled, issues)
    if issues.issues:
        raise RuleLoadError(issues.issues)
    rules = [rule for rule, _, _ in compiled]
    return RuleSet(rules, fingerprint=rule_fingerprint(rules, parameters))


def _parse(label: str, text: str, issues: _Collector) -> _YamlFile | None:
    try:
        return _YamlFile(label, text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        issues.issues.append(
            RuleIssue(
                label,
                None,
                "",
                f"YAML syntax error: {problem}",
                mark.line + 1 if mark else None,
                mark.column + 1 if mark else None,
            )
        )
    except yaml.YAMLError as exc:
        issues.issues.append(RuleIssue(label, None, "", f"YAML error: {exc}"))
    return None


def load_rules(paths: Iterable[Path | str], *, parameters: Mapping[str, object] | None = None) -> RuleSet:
    """Load, validate and compile the rules in the given files and directories.

    :param paths: rule files and/or directories (their ``*.yaml``/``*.yml`` files, in name order)
    :param parameters: values for the expressions' ``%Name%`` parameters; part of the fingerprint
    :return: the compiled rules
    :raise RuleLoadError: listing every problem of every file
    """
    issues = _Collector()
    sources: list[_YamlFile] = []
    for path in _expand(paths, issues):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            issues.issues.append(RuleIssue(str(path), None, "", f"cannot read: {exc}"))
            continue
        source = _parse(str(path), text, issues)
        if source is not None:
            sources.append(source)
    ruleset = _build(sources, parameters, issues)
    log.debug("loaded %d sync rules from %d files (fingerprint %s)", len(ruleset), len(sources), ruleset.fingerprint)
    return ruleset


def load_rules_text(text: str, *, name: str = "<text>", parameters: Mapping[str, object] | None = None) -> RuleSet:
    """Load rules from YAML text (one file's content); ``name`` stands for the file in messages."""
    issues = _Collector()
    source = _parse(name, text, issues)
    return _build([source] if source is not None else [], parameters, issues)


def load_default_rules(parameters: Mapping[str, object] | None = None) -> RuleSet:
    """Load the shipped rule set (every ``*.yaml`` under ``engine/rules/default``; none is an empty set)."""
    if not DEFAULT_RULES_DIR.is_dir():
        return _build([], parameters, _Collector())
    return load_rules([DEFAULT_RULES_DIR], parameters=parameters)
