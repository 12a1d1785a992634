"""Delta queries: a tenant's rounds and pages of changes (``TenantDelta``) and the signed state tokens that carry a
client from page to page and round to round (``DeltaTokens``, a part of the emulator state)."""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from aadsync_devkit.graph_emulator import exceptions as err
from aadsync_devkit.graph_emulator.catalog import (
    DEFAULT_SELECT,
    GROUP,
    MEMBERS,
    ODATA_TYPES,
    PROPERTIES,
    USER,
    b64url,
    unb64url,
)
from aadsync_devkit.graph_emulator.extensions import is_extension
from aadsync_devkit.graph_emulator.managers import MANAGER
from aadsync_devkit.graph_emulator.records import (
    CREATED,
    MEMBER_ADDED,
    MEMBER_REMOVED,
    UPDATED,
    Change,
    Deleted,
    DeltaCursor,
    DeltaPage,
    DirectoryObject,
)

if TYPE_CHECKING:
    from aadsync_devkit.graph_emulator.tenant import Tenant


class TenantDelta:
    """The delta side of :class:`~aadsync_devkit.graph_emulator.tenant.Tenant`: pages of the change log."""

    _lock: threading.RLock
    _seq: int
    _objects: dict[str, DirectoryObject]
    _deleted: dict[str, Deleted]
    _kind_counts: dict[str, int]
    _members: dict[str, dict[str, int]]
    _managers: dict[str, dict[str, int]]
    _changes: list[Change]
    _order_cache: dict[str, tuple[int, list[tuple[int, str]]]]
    _delta_cache: dict[str, tuple[tuple[Any, ...], list[Any]]]

    @property
    def seq(self) -> int:
        return self._seq

    def user_count(self) -> int:
        """Live users (the throttling tier of the tenant)."""
        with self._lock:
            return self._kind_counts.get(USER, 0)

    def _live_order(self, kind: str) -> list[tuple[int, str]]:
        """``(creation seq, id)`` of the live objects of *kind*, sorted; cached until the next change."""
        cached = self._order_cache.get(kind)
        if cached is None or cached[0] != self._seq:
            order = sorted((o.seq, o.id) for o in self._objects.values() if o.kind == kind)
            cached = self._order_cache[kind] = (self._seq, order)
        return cached[1]

    def _render(
        self, obj: DirectoryObject, cur: DeltaCursor, names: Iterable[str] | None, changed: Iterable[str] = ()
    ) -> dict[str, Any]:
        """The tracked properties of *obj* (only *names* of them when given) plus ``id``; a directory extension
        without a value is left out unless it just *changed* (then ``null`` says it was removed)."""
        if names is None:
            wanted = [*cur.select, "id"] if cur.select else list(DEFAULT_SELECT[obj.kind])
        else:
            tracked = set(cur.select or PROPERTIES[obj.kind])
            wanted = [n for n in (cur.select or PROPERTIES[obj.kind]) if n in set(names) & tracked] + ["id"]
        out: dict[str, Any] = {}
        for name in wanted:
            if is_extension(name) and obj.props.get(name) is None and name not in changed:
                continue  # a directory extension without a value is left out, as in a read
            if name not in out and name != "passwordProfile":
                out[name] = obj.props.get(name)
        return out

    def _current_members(self, kind: str, object_id: str, until: int) -> list[tuple[int, str, str, bool]]:
        """``(link seq, kind, id, removed=False)`` of a group's members (a user's manager) linked by *until*, in
        link order; cached."""
        cache_key = ("members", kind, object_id, until, self._seq)
        cached = self._delta_cache.get("members")
        if cached is None or cached[0] != cache_key:
            links = (self._members if kind == GROUP else self._managers).get(object_id, {})
            rows = sorted((seq, self._objects[m].kind, m, False) for m, seq in links.items() if seq <= until)
            cached = self._delta_cache["members"] = (cache_key, rows)
        return cached[1]

    def _window(self, cur: DeltaCursor) -> list[tuple[int, str, dict[str, Any]]]:
        """``(order key, object id, summary)`` of the objects of the cursor's kind changed in ``(since, until]``.

        The log up to *until* never changes, so the last window of each kind is cached for the following pages.
        """
        assert cur.since is not None and cur.until is not None
        cache_key = ("window", cur.kind, cur.since, cur.until)
        cached = self._delta_cache.get(cur.kind)
        if cached is not None and cached[0] == cache_key:
            return cached[1]
        lo = bisect.bisect_right(self._changes, cur.since, key=lambda c: c.seq)
        hi = bisect.bisect_right(self._changes, cur.until, key=lambda c: c.seq)
        found: dict[str, dict[str, Any]] = {}
        for change in self._changes[lo:hi]:
            if change.kind != cur.kind:
                continue
            summary = found.setdefault(
                change.object_id, {"key": change.seq, "created": False, "names": set(), "members": {}}
            )
            if change.op == CREATED:
                summary["created"] = True
            elif change.op == UPDATED:
                summary["names"].update(change.names)
            elif change.op in (MEMBER_ADDED, MEMBER_REMOVED):
                summary["members"].pop(change.member_id, None)
                summary["members"][change.member_id] = (
                    change.seq,
                    change.member_kind,
                    change.member_id,
                    change.op == MEMBER_REMOVED,
                )
        for summary in found.values():
            summary["rows"] = sorted(summary.pop("members").values())
        entries = [(s["key"], object_id, s) for object_id, s in found.items()]
        self._delta_cache[cur.kind] = (cache_key, entries)
        return entries

    def delta_items(
        self, cur: DeltaCursor, *, page_size: int, per_item: int, minimal: bool
    ) -> tuple[list[dict[str, Any]], DeltaCursor | None]:
        """One page of the delta round *cur* and the cursor of the next page (None: the round is complete).

        A group whose ``members@delta`` exceed *per_item* is returned in chunks: the page ends after each partial
        chunk and the next page repeats the group with the following members, as Graph does.
        """
        with self._lock:
            assert cur.until is not None
            entries: list[tuple[int, str]] | list[tuple[int, str, dict[str, Any]]]
            entries = self._live_order(cur.kind) if cur.since is None else self._window(cur)
            end = len(entries)
            if cur.since is None:
                end = bisect.bisect_right(entries, cur.until, key=lambda e: e[0])
            find = bisect.bisect_right if cur.member_after is None else bisect.bisect_left
            index = find(entries, cur.after, 0, end, key=lambda e: e[0])
            items: list[dict[str, Any]] = []
            while index < end and len(items) < page_size:
                entry = entries[index]
                key, object_id = entry[0], entry[1]
                summary = entry[2] if len(entry) == 3 else None
                resume = cur.member_after if cur.member_after is not None and key == cur.after else None
                index += 1
                item, members = self._delta_item(cur, object_id, summary, minimal=minimal)
                if item is None:
                    continue
                if members is None:
                    items.append(item)
                    continue
                start = 0 if resume is None else bisect.bisect_right(members, resume, key=lambda m: m[0])
                chunk = members[start : start + per_item]
                if cur.kind == USER:
                    chunk = chunk[-1:]  # a user has one manager: the last link change is the current state
                if chunk:
                    item["members@delta" if cur.kind == GROUP else "manager@delta"] = [
                        {
                            "@odata.type": ODATA_TYPES[mkind],
                            "id": mid,
                            **({"@removed": {"reason": "deleted"}} if gone else {}),
                        }
                        for _, mkind, mid, gone in chunk
                    ]
                if resume is not None and not chunk:
                    continue  # the rest of the members went away between pages
                items.append(item)
                if len(members) > start + per_item:
                    nxt = DeltaCursor(**{**cur.__dict__, "after": key, "member_after": chunk[-1][0]})
                    return items, nxt
            if index >= end:
                return items, None
            last_key = entries[index - 1][0]
            return items, DeltaCursor(**{**cur.__dict__, "after": last_key, "member_after": None})

    def _delta_item(
        self, cur: DeltaCursor, object_id: str, summary: dict[str, Any] | None, *, minimal: bool
    ) -> tuple[dict[str, Any] | None, list[tuple[int, str, str, bool]] | None]:
        """An object's delta representation and, for groups tracking members (users tracking their manager), its
        link rows (or None)."""
        assert cur.until is not None
        obj = self._objects.get(object_id)
        if obj is None:
            if summary is None:
                return None, None  # gone since the round began: the next round reports it
            reason = "changed" if object_id in self._deleted else "deleted"
            return {"id": object_id, "@removed": {"reason": reason}}, None
        tracks_members = cur.members
        if summary is None or summary["created"]:
            item = self._render(obj, cur, None)
            return item, self._current_members(cur.kind, obj.id, cur.until) if tracks_members else None
        tracked = set(cur.select or PROPERTIES[obj.kind])
        changed = summary["names"] & tracked
        member_rows = summary["rows"] if tracks_members else []
        if not changed and not member_rows:
            return None, None  # only untracked properties changed
        item = self._render(obj, cur, changed if minimal else None, changed)
        return item, member_rows if tracks_members else None


class DeltaTokens:
    """The delta side of :class:`~aadsync_devkit.graph_emulator.state.EmulatorState`: state tokens signed with
    ``delta_key`` (so clients cannot forge them) and the rounds they resume."""

    lock: threading.RLock
    clock: Callable[[], float]
    settings: dict[str, Any]
    delta_key: bytes

    def encode_delta(self, cursor: DeltaCursor) -> str:
        payload = json.dumps(cursor.to_dict(), separators=(",", ":")).encode()
        signature = hmac.new(self.delta_key, payload, hashlib.sha256).digest()[:18]
        return f"{b64url(payload)}.{b64url(signature)}"

    def decode_delta(self, token: str, tenant: Tenant, kind: str) -> DeltaCursor:
        """The cursor a state token carries; ``syncStateNotFound`` when forged, foreign, revoked or expired."""
        try:
            payload_text, _, signature_text = token.partition(".")
            payload = unb64url(payload_text)
            expected = hmac.new(self.delta_key, payload, hashlib.sha256).digest()[:18]
            if not hmac.compare_digest(expected, unb64url(signature_text)):
                raise ValueError("bad signature")
            cursor = DeltaCursor.from_dict(json.loads(payload))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise err.SyncStateNotFound() from None
        lifetime = self.settings["deltaTokenLifetimeSeconds"]
        if cursor.tenant == tenant.id and cursor.kind == kind and cursor.epoch in tenant.delta_gone_epochs:
            raise err.SyncStateGone(cursor.select, cursor.members)
        if (
            cursor.tenant != tenant.id
            or cursor.kind != kind
            or cursor.epoch != tenant.delta_epoch
            or self.clock() - cursor.issued >= lifetime
            or max(cursor.since or 0, cursor.until or 0) > tenant.seq
        ):
            raise err.SyncStateNotFound()
        return cursor

    def delta(self, tenant: Tenant, kind: str, params: dict[str, str], *, minimal: bool) -> DeltaPage:
        """One page of ``GET /{users|groups}/delta`` for *params* (``$select``, tokens; ``$expand`` is ignored)."""
        for name in params:
            if name.startswith("$") and name.lower() not in ("$select", "$expand", "$top", "$skiptoken", "$deltatoken"):
                raise err.UnsupportedQuery(f"The query option '{name}' is not supported with delta queries.")
        with self.lock:
            now = self.clock()
            skiptoken = params.get("$skiptoken")
            deltatoken = params.get("$deltatoken")
            if skiptoken:
                cursor = self.decode_delta(skiptoken, tenant, kind)
                if cursor.until is None:
                    raise err.SyncStateNotFound()
            else:
                select, members = self._delta_select(kind, params, tenant.extension_names(kind))
                if deltatoken and deltatoken.lower() != "latest":
                    cursor = self.decode_delta(deltatoken, tenant, kind)
                    if cursor.until is not None:
                        raise err.SyncStateNotFound()  # a skiptoken passed as a deltatoken
                    if "$select" in params:
                        cursor.select, cursor.members = select, members
                else:
                    since = tenant.seq if deltatoken else None
                    cursor = DeltaCursor(tenant.id, kind, select, members, since, epoch=tenant.delta_epoch)
                if deltatoken and deltatoken.lower() == "latest":
                    cursor.issued = now
                    return DeltaPage([], cursor.select, deltatoken=self.encode_delta(cursor))
                cursor.until = tenant.seq
                cursor.after, cursor.member_after = 0, None
            items, following = tenant.delta_items(
                cursor,
                page_size=int(self.settings["deltaPageSize"]),
                per_item=int(self.settings["deltaMembersPerItem"]),
                minimal=minimal,
            )
            if following is not None:
                following.issued = now
                return DeltaPage(items, cursor.select, skiptoken=self.encode_delta(following))
            done = DeltaCursor(tenant.id, kind, cursor.select, cursor.members, cursor.until, issued=now)
            done.epoch = tenant.delta_epoch
            return DeltaPage(items, cursor.select, deltatoken=self.encode_delta(done))

    @staticmethod
    def _delta_select(
        kind: str, params: dict[str, str], extensions: Iterable[str] = ()
    ) -> tuple[list[str] | None, bool]:
        """The tracked properties (None: all, default set returned) and whether group members (a user's manager) are
        tracked: named in ``$select`` (``members``, ``manager``; answered as ``members@delta``, ``manager@delta``), as
        Graph documents it. Graph ignores ``$expand`` on a delta query ("The $expand operator has always been ignored
        with /delta. It is the $select=manager operator that will include changes to manager", microsoft-graph-docs
        issue 6194, and pull request 6349 took ``$expand`` out of the delta pages): so does the emulator."""
        navigation = MEMBERS if kind == GROUP else MANAGER
        select: list[str] | None = None
        members = kind == GROUP and not params.get("$select")
        if params.get("$select"):
            select = []
            for raw in params["$select"].split(","):
                name = raw.strip()
                if name.lower() == navigation:
                    members = True
                    continue
                match = next(
                    (
                        p
                        for p in [*PROPERTIES[kind], *extensions]
                        if p.lower() == name.lower() and p != "passwordProfile"
                    ),
                    None,
                )
                if match is None:
                    raise err.ODataBadRequest(
                        "Parsing OData Select and Expand failed: Could not find a property named "
                        f"'{name}' on type 'microsoft.graph.{kind}'."
                    )
                if match not in select:
                    select.append(match)
            select = [n for n in select if n != "id"] or ["id"]
        return select, members

    def expire_delta_tokens(self, tenant: Tenant, *, gone: bool = False) -> None:
        """Revoke every delta and skip token issued so far for *tenant*: the next use answers ``400
        syncStateNotFound``, or with *gone* ``410 Gone`` with a ``Location`` to restart the sync from."""
        with self.lock:
            if gone:
                tenant.delta_gone_epochs.add(tenant.delta_epoch)
            tenant.delta_epoch += 1
