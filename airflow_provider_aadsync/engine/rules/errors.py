"""Errors of the sync-rule layer.

::

    Exception
     └── RuleLoadError        a rule file (or a set of them) cannot be loaded; carries every RuleIssue found

    RuleObjectError           not an exception: one object's failure while a rule evaluated it (a run error)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["RuleIssue", "RuleLoadError", "RuleObjectError"]


@dataclass(frozen=True)
class RuleIssue:
    """One problem found while loading rules.

    :param file: the rule file (as given or found), or ``None`` for problems that span files
    :param rule: the rule's name, or ``rules[i]`` when the rule has no usable name
    :param path: the field path inside the rule, e.g. ``flows[2].expression`` (empty for the whole rule/file)
    :param message: what is wrong
    :param line: 1-based line in the YAML file, when known
    :param column: 1-based column in the YAML file, when known
    """

    file: str | None
    rule: str | None
    path: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.file or "<rules>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        parts = [where]
        if self.rule is not None:
            parts.append(f"rule {self.rule!r}" if not self.rule.startswith("rules[") else self.rule)
        if self.path:
            parts.append(self.path)
        return ": ".join(parts) + f": {self.message}"


class RuleLoadError(Exception):
    """Raised when rule files cannot be loaded: bad YAML, a bad rule, a clash between rules.

    The message lists every issue found (all rules of all files are checked before raising), one per line,
    each naming the file, the rule and the field path; ``issues`` holds them as data.
    """

    def __init__(self, issues: Sequence[RuleIssue]) -> None:
        self.issues: tuple[RuleIssue, ...] = tuple(issues)
        count = len(self.issues)
        header = f"{count} error{'s' if count != 1 else ''} in sync rules:"
        super().__init__("\n".join([header, *(f"  {issue}" for issue in self.issues)]))


@dataclass(frozen=True)
class RuleObjectError:
    """One object a rule could not evaluate (recorded as a run error; the run goes on).

    :param code: ``expression-error`` (an expression failed) or ``flow-error`` (the rule called ``Error()``)
    :param rule: the rule's name
    :param target: the flow's target attribute
    :param message: a sentence naming the rule, the flow target and the error
    """

    code: str
    rule: str
    target: str
    message: str
