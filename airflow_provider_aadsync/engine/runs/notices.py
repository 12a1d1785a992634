"""Run notices: what a run could not do and does not count as an error, grouped once per run by kind and subject.

A property Graph cannot write, an object type Graph cannot create, a UPN written on the tenant's initial domain: each
is one notice with how many objects it concerned and a few examples, recorded with the run (``run_notice``) and shown
by the run report and the sync manager, never one error per object and never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Examples kept per notice (the count says how many objects in all).
NOTICE_EXAMPLES = 20


@dataclass
class Notice:
    code: str
    subject: str
    message: str
    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


class Notices:
    """The notices of one run, by (code, subject)."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], Notice] = {}

    def add(self, code: str, subject: str, message: str, example: dict[str, Any], *, limit: int = NOTICE_EXAMPLES):
        """Count one object under (code, subject); keep ``example`` (dn, anchor, value...) among the first ``limit``."""
        notice = self._by_key.setdefault((code, subject), Notice(code, subject, message))
        notice.count += 1
        if len(notice.examples) < limit:
            notice.examples.append(example)

    def wants_example(self, code: str, subject: str, *, limit: int = NOTICE_EXAMPLES) -> bool:
        """Whether the next object under (code, subject) is kept as an example (so its DN is worth looking up)."""
        notice = self._by_key.get((code, subject))
        return notice is None or len(notice.examples) < limit

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"code": n.code, "subject": n.subject, "count": n.count, "message": n.message, "examples": n.examples}
            for n in self._by_key.values()
        ]

    def __len__(self) -> int:
        return len(self._by_key)
