"""The SQLite state file: one row per directory object, group link and change-log entry, keyed by tenant, plus the
settings, the delta-token key and each tenant's own facts. ``TenantPersistence`` writes and reads a tenant's rows;
``StatePersistence`` owns the file (new file and rename, or in-place updates of what changed). The format is
``_STATE_VERSION`` 2: files written before the emulator's cut into modules load unchanged
(tests/unit/devkit/graph_emulator/data).
Later additions keep that format: a user's manager is a ``links`` row with ``rel = 'manager'``; directory extension
definitions ride in the tenant header and their values in the objects' properties.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from aadsync_devkit.graph_emulator.apps import App
from aadsync_devkit.graph_emulator.catalog import GROUP, MEMBERS, OWNERS
from aadsync_devkit.graph_emulator.managers import MANAGER
from aadsync_devkit.graph_emulator.records import Change, Deleted, DirectoryObject
from aadsync_devkit.graph_emulator.settings import DEFAULT_TOKEN_LIFETIME, SETTINGS

if TYPE_CHECKING:
    from aadsync_devkit.graph_emulator.tenant import Tenant

_dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


class TenantPersistence:
    """The state-file side of :class:`~aadsync_devkit.graph_emulator.tenant.Tenant`."""

    id: str
    name: str
    display_name: str
    verified_domains: list[str]
    unverified_domains: list[str]
    default_domain: str
    federated_domains: set[str]
    role_members: dict[str, list[str]]
    role_eligible: dict[str, list[str]]
    role_scoped: dict[str, dict[str, list[str]]]
    eligible_scoped: dict[str, dict[str, list[str]]]
    custom_roles: dict[str, str]
    pim_licensed: bool
    initial_domain: str
    created: str
    apps: dict[str, App]
    extensions: dict[str, dict[str, Any]]
    _lock: threading.RLock
    _seq: int
    delta_epoch: int
    delta_gone_epochs: set[int]
    _objects: dict[str, DirectoryObject]
    _deleted: dict[str, Deleted]
    _members: dict[str, dict[str, int]]
    _owners: dict[str, dict[str, int]]
    _managers: dict[str, dict[str, int]]
    _changes: list[Change]
    _dirty_objects: set[str]
    _dirty_links: set[tuple[str, str, str]]
    _saved_changes: int
    _stored: bool

    def _header(self) -> dict[str, Any]:
        """The tenant's own facts and app registrations (with their secrets), without its objects."""
        return {
            "id": self.id,
            "name": self.name,
            "displayName": self.display_name,
            "verifiedDomains": self.verified_domains[1:],
            "created": self.created,
            "apps": [a.to_dict() for a in self.apps.values()],
            "seq": self._seq,
            "deltaEpoch": self.delta_epoch,
            "deltaGoneEpochs": sorted(self.delta_gone_epochs),
            "extensionProperties": list(self.extensions.values()),
            "unverifiedDomains": list(self.unverified_domains),
            "defaultDomain": self.default_domain,
            "federatedDomains": sorted(self.federated_domains),
            "roleMembers": {role: list(members) for role, members in self.role_members.items()},
            "roleEligible": {role: list(principals) for role, principals in self.role_eligible.items()},
            "roleScoped": {scope: dict(roles) for scope, roles in self.role_scoped.items()},
            "eligibleScoped": {scope: dict(roles) for scope, roles in self.eligible_scoped.items()},
            "customRoles": dict(self.custom_roles),
            "pimLicensed": self.pim_licensed,
        }

    @classmethod
    def _from_header(cls, lock: threading.RLock, data: dict[str, Any]) -> Tenant:
        tenant = cls(
            lock,
            tenant_id=data["id"],
            name=data["name"],
            display_name=data.get("displayName"),
            verified_domains=data.get("verifiedDomains", []),
            apps=[App.from_dict(a) for a in data.get("apps", [])],
            created=data.get("created"),
        )
        tenant._seq = data.get("seq", 0)
        tenant.delta_epoch = int(data.get("deltaEpoch", 0))
        tenant.delta_gone_epochs = {int(e) for e in data.get("deltaGoneEpochs", [])}
        # Files written before directory extensions have no "extensionProperties".
        tenant.extensions = {d["name"].lower(): d for d in data.get("extensionProperties", [])}
        tenant.unverified_domains = list(data.get("unverifiedDomains", []))  # and no domain settings
        tenant.default_domain = data.get("defaultDomain") or tenant.initial_domain
        tenant.federated_domains = set(data.get("federatedDomains", []))
        tenant.role_members = {role: list(members) for role, members in data.get("roleMembers", {}).items()}
        tenant.role_eligible = {role: list(ids) for role, ids in data.get("roleEligible", {}).items()}
        tenant.role_scoped = _scoped(data.get("roleScoped", {}))
        tenant.eligible_scoped = _scoped(data.get("eligibleScoped", {}))
        tenant.custom_roles = dict(data.get("customRoles", {}))
        tenant.pim_licensed = data.get("pimLicensed", True) is not False
        return tenant

    def to_dict(self) -> dict[str, Any]:
        """The whole tenant as one JSON-able dict (a copy for tests and tools; the state file has rows)."""
        with self._lock:
            return {
                **self._header(),
                "objects": [{"kind": o.kind, "seq": o.seq, "props": o.props} for o in self._objects.values()],
                "deleted": [
                    {
                        "kind": d.obj.kind,
                        "seq": d.obj.seq,
                        "props": d.obj.props,
                        "memberOf": d.member_of,
                        "members": d.members,
                    }
                    for d in self._deleted.values()
                ],
                "members": {g: dict(m) for g, m in self._members.items()},
                "owners": {g: dict(m) for g, m in self._owners.items()},
                "managers": {u: dict(m) for u, m in self._managers.items()},
                "changes": [c.to_list() for c in self._changes],
            }

    def _object_row(self, object_id: str) -> tuple[Any, ...] | None:
        """The ``objects`` row of a live or deleted object; None when it is gone (purged, or a hard-deleted group)."""
        obj = self._objects.get(object_id)
        if obj is not None:
            return (self.id, obj.id, obj.kind, obj.seq, 0, _dumps(obj.props), None, None)
        deleted = self._deleted.get(object_id)
        if deleted is None:
            return None
        obj = deleted.obj
        return (self.id, obj.id, obj.kind, obj.seq, 1, _dumps(obj.props), _dumps(deleted.member_of),
                _dumps(deleted.members))  # fmt: skip

    def _write_rows(self, db: sqlite3.Connection, *, full: bool) -> None:
        """Write the tenant's rows into *db* inside the caller's transaction: every row (*full*: the tables hold
        none of this tenant's), else only what changed since the last write. ``_saved`` after the commit."""
        if full:
            object_rows: Iterable[tuple[Any, ...] | None] = map(self._object_row, [*self._objects, *self._deleted])
            links: Iterable[tuple[Any, ...]] = (
                (self.id, g, m, rel, seq)
                for rel, table in ((MEMBERS, self._members), (OWNERS, self._owners), (MANAGER, self._managers))
                for g, linked in table.items()
                for m, seq in linked.items()
            )
            changes = self._changes
        else:
            ids = list(self._dirty_objects)
            object_rows = [self._object_row(i) for i in ids]
            gone = [(self.id, i) for i, row in zip(ids, object_rows, strict=True) if row is None]
            db.executemany("DELETE FROM objects WHERE tenant = ? AND id = ?", gone)
            tables = {MEMBERS: self._members, OWNERS: self._owners, MANAGER: self._managers}
            links, unlinked = [], []
            for rel, g, m in self._dirty_links:
                seq = tables[rel].get(g, {}).get(m)
                if seq is None:
                    unlinked.append((self.id, g, m, rel))
                else:
                    links.append((self.id, g, m, rel, seq))
            db.executemany(
                "DELETE FROM links WHERE tenant = ? AND group_id = ? AND member_id = ? AND rel = ?", unlinked
            )
            changes = self._changes[self._saved_changes :]
        db.executemany(
            "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (r for r in object_rows if r is not None)
        )
        db.executemany("INSERT OR REPLACE INTO links VALUES (?, ?, ?, ?, ?)", links)
        db.executemany(
            "INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ((self.id, c.seq, c.kind, c.object_id, c.op, ",".join(c.names), c.member_id, c.member_kind)
             for c in changes),
        )  # fmt: skip

    def _saved(self) -> None:
        """The state file now holds every row of the tenant (its transaction committed)."""
        self._dirty_objects.clear()
        self._dirty_links.clear()
        self._saved_changes = len(self._changes)
        self._stored = True

    @classmethod
    def _load(cls, lock: threading.RLock, db: sqlite3.Connection, header: dict[str, Any]) -> Tenant:
        """A tenant from its header and its rows in the state file *db*."""
        tenant = cls._from_header(lock, header)
        rows = db.execute(
            "SELECT id, kind, seq, deleted, props, member_of, members FROM objects WHERE tenant = ? ORDER BY seq",
            (tenant.id,),
        ).fetchall()
        # One JSON text for all: decoded in one call, the objects share their property-name strings.
        every_props = json.loads("[" + ",".join(row[4] for row in rows) + "]")
        for (object_id, kind, seq, deleted, _, member_of, members), props in zip(rows, every_props, strict=True):
            obj = DirectoryObject(kind, seq, props)
            if deleted:
                tenant._deleted[object_id] = Deleted(obj, json.loads(member_of), json.loads(members))
            else:
                tenant._objects[object_id] = obj
                tenant._index(obj)
                if kind == GROUP:  # every live group has both link tables, empty or not
                    tenant._members[object_id] = {}
                    tenant._owners[object_id] = {}
        tables = {MEMBERS: tenant._members, OWNERS: tenant._owners, MANAGER: tenant._managers}
        links = db.execute(
            "SELECT rel, group_id, member_id, seq FROM links WHERE tenant = ? ORDER BY seq", (tenant.id,)
        )
        for rel, group_id, member_id, seq in links:
            tables[rel].setdefault(group_id, {})[member_id] = seq
        changes = db.execute(
            "SELECT seq, kind, object_id, op, names, member_id, member_kind FROM changes WHERE tenant = ? ORDER BY seq",
            (tenant.id,),
        )
        tenant._changes = [
            Change(seq, kind, object_id, op, tuple(names.split(",")) if names else (), member_id, member_kind)
            for seq, kind, object_id, op, names, member_id, member_kind in changes
        ]
        tenant._saved()
        return tenant


class StatePersistence:
    """The state-file side of :class:`~aadsync_devkit.graph_emulator.state.EmulatorState`."""

    #: The tenant class :meth:`load` builds tenants with (set by ``EmulatorState``).
    tenant_type: ClassVar[type[TenantPersistence]]
    lock: threading.RLock
    state_file: Path | None
    settings: dict[str, Any]
    delta_key: bytes
    token_lifetime: int
    tenants: dict[str, Tenant]
    _last_save: float
    _save_cost: float
    _save_timer: threading.Timer | None
    _file_generation: str | None
    _dropped_tenants: set[str]

    def save_soon(self) -> None:
        """Persist after a write, at most about once a second: writing the whole state after every request would
        make bulk writes (a 100,000-user export) quadratic. ``flush`` on shutdown writes what is pending."""
        if not self.state_file:
            return
        with self.lock:
            wait = self._last_save + max(1.0, 5 * self._save_cost) - time.monotonic()
            if wait <= 0:
                self.save()
            elif self._save_timer is None:
                self._save_timer = threading.Timer(wait, self.flush)
                self._save_timer.daemon = True
                self._save_timer.start()

    def flush(self) -> None:
        """Write pending state now (timer, shutdown)."""
        with self.lock:
            if self._save_timer is not None:
                self._save_timer.cancel()
                self._save_timer = None
                self.save()

    def save(self) -> None:
        """Write the state to the SQLite ``state_file`` (mode 0600: it holds the apps' secrets), crash-safe.

        One row per directory object (its properties as JSON text), group link and change-log entry, keyed by
        tenant; the settings, the delta-token key and each tenant's own facts are small and rewritten every time.
        The first save (or one after a reset, or when the file is not the one last written) builds a new file beside
        it and renames it over; later saves write only the rows that changed since, in one transaction.
        """
        if not self.state_file:
            return
        with self.lock:
            started = time.monotonic()
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            db = self._open_current()
            if db is None:
                self._write_new_file()
            else:
                with contextlib.closing(db):
                    self._write_changes(db)
            self._last_save = time.monotonic()
            self._save_cost = self._last_save - started

    def _open_current(self) -> sqlite3.Connection | None:
        """A connection to the state file if it is the one this state last wrote or loaded, else None."""
        assert self.state_file is not None
        if self._file_generation is None or not self.state_file.exists():
            return None
        db = sqlite3.connect(self.state_file, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA cache_size = {_CACHE_KIB}")
            row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        except sqlite3.DatabaseError:
            row = None
        if row is None or json.loads(row[0]) != self._file_generation:
            db.close()
            return None
        return db

    def _meta_rows(self, generation: str) -> list[tuple[str, str]]:
        meta = {
            "version": _STATE_VERSION,
            "generation": generation,
            "tokenLifetime": self.token_lifetime,
            "settings": self.settings,
            "deltaKey": self.delta_key.hex(),
        }
        return [(key, _dumps(value)) for key, value in meta.items()]

    def _write_tenant_headers(self, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM tenants")
        db.executemany(
            "INSERT INTO tenants VALUES (?, ?, ?)",
            [(pos, t.id, _dumps(t._header())) for pos, t in enumerate(self.tenants.values())],
        )

    def _write_changes(self, db: sqlite3.Connection) -> None:
        """Update the current file in place, in one transaction: the rows that changed since the last save."""
        generation = self._file_generation
        assert generation is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", self._meta_rows(generation))
            self._write_tenant_headers(db)
            fresh = [t for t in self.tenants.values() if not t._stored]
            for tenant_id in self._dropped_tenants | {t.id for t in fresh}:
                for table in ("objects", "links", "changes"):
                    db.execute(f"DELETE FROM {table} WHERE tenant = ?", (tenant_id,))  # noqa: S608 - fixed names
            for tenant in self.tenants.values():
                tenant._write_rows(db, full=not tenant._stored)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite rolls some failures (disk full, I/O errors) back by itself
                db.execute("ROLLBACK")
            raise
        self._saved_all(generation)

    def _write_new_file(self) -> None:
        """Build the whole state in a new file beside the state file, then rename it over (atomic)."""
        assert self.state_file is not None
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.unlink(missing_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        generation = secrets.token_hex(8)
        try:
            with contextlib.closing(sqlite3.connect(tmp, isolation_level=None, check_same_thread=False)) as db:
                # A file nobody reads yet: no journal, no syncs; one fsync before the rename makes it durable.
                db.execute("PRAGMA journal_mode = OFF")
                db.execute("PRAGMA synchronous = OFF")
                db.execute(f"PRAGMA cache_size = {_CACHE_KIB}")
                db.executescript(_STATE_SCHEMA)
                db.execute("BEGIN")
                db.executemany("INSERT INTO meta VALUES (?, ?)", self._meta_rows(generation))
                self._write_tenant_headers(db)
                for tenant in self.tenants.values():
                    tenant._write_rows(db, full=True)
                db.execute("COMMIT")
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            # A journal left by a crash belongs to the file being replaced (opening it rolled the journal back).
            Path(f"{self.state_file}-journal").unlink(missing_ok=True)
            os.replace(tmp, self.state_file)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_directory(self.state_file.parent)
        self._saved_all(generation)

    def _saved_all(self, generation: str) -> None:
        self._file_generation = generation
        self._dropped_tenants.clear()
        for tenant in self.tenants.values():
            tenant._saved()

    def load(self) -> None:
        """Read the state saved in the SQLite ``state_file`` (tenants, settings, delta-token key)."""
        assert self.state_file is not None
        try:
            with contextlib.closing(sqlite3.connect(self.state_file)) as db:
                tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if "meta" not in tables:  # an empty file: nothing saved yet
                    return
                meta = {key: json.loads(value) for key, value in db.execute("SELECT key, value FROM meta")}
                headers = [json.loads(row[0]) for row in db.execute("SELECT header FROM tenants ORDER BY pos")]
                with self.lock:
                    self.settings.update({k: v for k, v in meta.get("settings", {}).items() if k in SETTINGS})
                    self.token_lifetime = int(meta.get("tokenLifetime", DEFAULT_TOKEN_LIFETIME))
                    if meta.get("deltaKey"):
                        self.delta_key = bytes.fromhex(meta["deltaKey"])
                    self.tenants = {h["id"]: self.tenant_type._load(self.lock, db, h) for h in headers}
                    self._file_generation = meta.get("generation")
                    self._dropped_tenants.clear()
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{self.state_file} is not an emulator state file (SQLite): {exc}") from None


_STATE_VERSION = 2
_CACHE_KIB = -65536  # SQLite's page cache while saving (negative: KiB), so bulk writes do not spill mid-transaction
_STATE_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE tenants (pos INTEGER NOT NULL, id TEXT PRIMARY KEY, header TEXT NOT NULL);
CREATE TABLE objects (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    deleted INTEGER NOT NULL,  -- 1: in deleted items (member_of, members: what a restore links again)
    props TEXT NOT NULL,  -- the Graph properties, JSON
    member_of TEXT,
    members TEXT,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE links (
    tenant TEXT NOT NULL,
    group_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    rel TEXT NOT NULL,  -- members | owners
    seq INTEGER NOT NULL,
    PRIMARY KEY (tenant, group_id, member_id, rel)
) WITHOUT ROWID;
CREATE TABLE changes (
    tenant TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    op TEXT NOT NULL,
    names TEXT NOT NULL,  -- the changed property names, comma-separated
    member_id TEXT NOT NULL,
    member_kind TEXT NOT NULL,
    PRIMARY KEY (tenant, seq)
) WITHOUT ROWID;
"""


def _fsync_directory(directory: Path) -> None:
    """Make a rename in *directory* durable (where the platform allows opening a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _scoped(saved: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
    """Role holders by scope and role, as saved (a copy)."""
    return {scope: {role: list(ids) for role, ids in by.items()} for scope, by in saved.items()}
