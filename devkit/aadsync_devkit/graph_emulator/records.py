"""The records a tenant keeps: directory objects, deleted items, change-log entries, and delta cursors and pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class DirectoryObject:
    kind: str
    seq: int
    props: dict[str, Any]

    @property
    def id(self) -> str:
        return self.props["id"]


@dataclass
class Deleted:
    obj: DirectoryObject
    member_of: list[str]
    members: list[str]


# Change-log operations. A restore is logged as CREATED: the object comes back in its full representation.
CREATED, UPDATED, REMOVED, MEMBER_ADDED, MEMBER_REMOVED = "c", "u", "r", "m+", "m-"


@dataclass(slots=True)
class Change:
    """One entry of a tenant's change log: what happened to a user or group at sequence number ``seq``."""

    seq: int
    kind: str
    object_id: str
    op: str
    names: tuple[str, ...] = ()
    member_id: str = ""
    member_kind: str = ""

    def to_list(self) -> list[Any]:
        return [self.seq, self.kind, self.object_id, self.op, list(self.names), self.member_id, self.member_kind]


@dataclass
class DeltaCursor:
    """What a delta state token carries.

    A ``$deltatoken`` names where the next round starts (``since``); a ``$skiptoken`` names a page inside a round:
    the round's window ``(since, until]`` of change sequence numbers (``since`` None: the initial round, every live
    object as of ``until``), and the position: ``after`` is the order key of the last object returned whole, or of the
    object being returned in member chunks when ``member_after`` (the last member sequence number returned) is set.
    """

    tenant: str
    kind: str
    select: list[str] | None
    members: bool
    since: int | None
    until: int | None = None
    after: int = 0
    member_after: int | None = None
    issued: float = 0.0
    epoch: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.tenant,
            "k": self.kind,
            "sel": self.select,
            "m": self.members,
            "s": self.since,
            "u": self.until,
            "a": self.after,
            "ma": self.member_after,
            "i": self.issued,
            "e": self.epoch,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeltaCursor:
        return cls(
            tenant=str(data["t"]),
            kind=str(data["k"]),
            select=None if data["sel"] is None else [str(n) for n in data["sel"]],
            members=bool(data["m"]),
            since=None if data["s"] is None else int(data["s"]),
            until=None if data["u"] is None else int(data["u"]),
            after=int(data["a"]),
            member_after=None if data["ma"] is None else int(data["ma"]),
            issued=float(data["i"]),
            epoch=int(data["e"]),
        )


@dataclass
class DeltaPage:
    """One page of a delta round: the items and either the next page's skiptoken or the round's deltatoken."""

    items: list[dict[str, Any]]
    select: list[str] | None
    skiptoken: str | None = None
    deltatoken: str | None = None
