"""Errors of the sync-rule layer.

::

    Exception
     └── RuleLoadError        a rule file (or a set of them) cannot be loaded; carries every RuleIssue found
          └── RuleSetError    the rules loaded but cannot drive this run: an empty rule set, a connector being
                              synced without an enabled inbound rule (a sync would disconnect every object)

Both are deterministic: the same files fail the same way, so a retry cannot help (the operators fail the task at
once; ``operators.base.CONFIGURATION_ERRORS``).

    RuleObjectError           not an exception: one object's failure while a rule evaluated it (a run error)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["RuleIssue", "RuleLoadError", "RuleObjectError", "RuleSetError"]


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


class RuleSetError(RuleLoadError):
    """The rule set cannot drive this run, although every file in it may be valid on its own.

    Raised for a rule set with no rule at all (an empty folder, an empty file, ``rules:`` with nothing) and by a
    sync of a connector that has no enabled inbound rule: either would let a sync disconnect every object of the
    connector space and empty the metaverse. The message is one line that names the connector (when there is
    one) and the rule files; ``issues`` holds the same as one :class:`RuleIssue`.

    :param message: what is wrong and how to fix it
    :param source: the rule files or folders, as the operator or the CLI gave them
    :param connector: the connector being synced, when the problem is about one
    """

    def __init__(self, message: str, *, source: str | None = None, connector: str | None = None) -> None:
        super().__init__([RuleIssue(source, None, "", message)])
        self.args = (f"{source}: {message}" if source else message,)
        self.source = source
        self.connector = connector


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
