"""What an import source hands the engine: normalized objects, and the errors it may raise.

Connector-agnostic: the Active Directory import fills these from LDAP entries, the Entra ID import from Graph JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: A reference value: (target anchor, target DN as last seen). The anchor is what joins; the DN is for people.
Reference = tuple[str, str | None]

_HASH_MODULUS = 1 << 128


class WatermarkRejectedError(Exception):
    """Raised by a source when the server no longer accepts the saved watermark (DirSync cookie, deltaLink).

    The import then falls back to a full import, as the product does.
    """


#: The error codes a writer gives a ``$batch`` result it has no answer for (the call's answer left it out), and one
#: whose outcome is unknown (a POST answered 500, 502 or 504: it may have created something). Both are reconciled.
UNANSWERED_CODE = "missingResponse"
OUTCOME_UNKNOWN_CODE = "outcomeUnknown"


class WriteOutcomeUnknownError(Exception):
    """Raised by a writer when a call may or may not have been carried out (the connection dropped after sending).

    ``results`` holds the final answers it did get, by request id; ``unknown`` the ids whose outcome is unknown.
    The caller reconciles those instead of blindly sending them again (a create sent twice is two objects).
    """

    def __init__(self, message: str, *, results: dict | None = None, unknown: list[str] | None = None):
        super().__init__(message)
        self.results = results or {}
        self.unknown = unknown or []


class BatchStoppedError(Exception):
    """A writer's ``$batch`` stopped before every request had its final answer (Graph throttled one past the
    connection's limits): ``results`` holds the final answers it did get, by request id, so the caller records
    what was carried out before it stops; the requests without one stay to be reconciled by the next run."""

    #: None answered yet; the writer sets the instance's own when it raises the error out of a batch.
    results: Mapping[str, Any] = MappingProxyType({})


class ObjectDecodeError(Exception):
    """Raised for one object whose values cannot be read; it becomes a per-object run error."""

    def __init__(self, message: str, *, dn: str | None = None, anchor: str | None = None, code: str):
        super().__init__(message)
        self.dn = dn
        self.anchor = anchor
        self.code = code


@dataclass(slots=True)
class SourceObject:
    """One object as a source reports it.

    In a full import ``attrs`` and ``references`` are complete. In a delta (``partial``) they carry only what
    changed, ``reference_adds``/``reference_removes`` carry incremental value changes, and attributes present with
    an empty list were cleared. ``truncated`` names attributes the source sent only part of (an LDAP ranged value
    list's window, more ranges to read): their values are left out of ``attrs`` and ``references``, and the object
    is not to be applied until they are read whole.
    """

    anchor: str
    dn: str
    object_type: str | None
    attrs: dict[str, list[str]] = field(default_factory=dict)
    references: dict[str, list[Reference]] = field(default_factory=dict)
    reference_adds: dict[str, list[Reference]] = field(default_factory=dict)
    reference_removes: dict[str, list[Reference]] = field(default_factory=dict)
    deleted: bool = False
    partial: bool = False
    truncated: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BatchRequest:
    """One request of a Graph JSON batch; ``url`` is relative to the Graph version root (``/users``).

    Defined here, beside the other shapes the engine and the hooks share: the export builds them, the EntraHook's
    ``batch`` sends them.
    """

    id: str
    method: str
    url: str
    body: Any = None
    depends_on: tuple[str, ...] = ()


def reference_digest(attribute: str, target_anchor: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{attribute}\0{target_anchor}".encode(), digest_size=16).digest())


def references_hash(pairs: Iterable[tuple[str, str]]) -> int:
    """An order-independent digest of a set of (attribute, target anchor) pairs.

    A sum modulo 2**128 of per-pair digests, so an incremental member change updates it in O(changes) instead of
    re-reading a 250,000-member group.
    """
    return sum(reference_digest(attribute, target) for attribute, target in pairs) % _HASH_MODULUS


def adjust_references_hash(current: int, added: Iterable[tuple[str, str]], removed: Iterable[tuple[str, str]]):
    return (current + references_hash(added) - references_hash(removed)) % _HASH_MODULUS


def format_hash(value: int) -> str:
    return f"{value:032x}"
