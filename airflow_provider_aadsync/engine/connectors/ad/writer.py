"""Export to Active Directory (group writeback): pending exports of the ``ad`` connector → LDAP writes.

The same shape as the Entra export (``entra/writer.py``): the plan is what sync staged (``pending_export`` and
``pending_export_reference``); writes go in phases so nothing refers to an object before it exists — deletes, adds,
updates (renames/moves, then attribute replaces), member changes. Object writes go in chunks of the plan's pages
(1,000 rows): one transaction marks the chunk's rows ``sent``, the LDAP operations follow one by one (a refused one
marks its row ``failed`` at once, a per-object error), then one transaction confirms the rest (applied to the
connector space and removed from the plan). Two transactions per object cost more than the LDAP modify itself when
the ConsistencyGuid writeback writes every user once. A task killed anywhere and retried re-sends only what is not
confirmed (a row marked ``sent`` whose write never left is simply sent then): an add it had sent is looked up at its
DN and adopted if it carries our mark (the ``adminDescription`` the writeback rule stamps; an object in the way
without it is a per-object error, never adopted nor overwritten); modifies replace values and member changes are
idempotent (permissive modify, with a read-and-diff fallback in the hook), so re-sending them is harmless; a delete of
an object already gone counts as done. A sent add sync withdrew is looked up the same way and deleted if ours
(withdrawn.py).

Membership travels in modify operations of many values each (``member_chunk``, 5,000 by default): a 250,000-member
group is 50 modifies. Objects that exist are addressed by ``<GUID=...>``, so a group someone renamed in AD is still
found. Guards as in the Entra export: the deletion and member removal thresholds stop the export before the first
write, staging mode writes nothing, 5,000 errors stop the run.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import sqlalchemy as sa
from pydantic import Field, model_validator

from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.batching import chunks
from airflow_provider_aadsync.engine.connectors.ad.schema import GUID_ATTRIBUTES
from airflow_provider_aadsync.engine.connectors.ad.withdrawn import withdrawn_add_object
from airflow_provider_aadsync.engine.connectors.converters import guid_bytes
from airflow_provider_aadsync.engine.connectors.schema import PROVISIONAL_PREFIX
from airflow_provider_aadsync.engine.dn import same_dn, split_rdn
from airflow_provider_aadsync.engine.runs.defaults import (
    MEMBER_CHUNK,
)
from airflow_provider_aadsync.engine.runs.export_guards import GuardSettings
from airflow_provider_aadsync.engine.runs.export_run import (
    ErrorLimitReached,
    ExportResult,
    adopt_anchor,
    forget_empty_updates,
    open_plan_counts,
    open_work,
    record_attributes_many,
    record_references,
    run_export,
)
from airflow_provider_aadsync.engine.store import (
    OPEN_STATES,
    Store,
    cs_object,
    cs_reference,
    failure_text,
    link,
    pending_export,
    pending_export_reference,
    utcnow,
)
from airflow_provider_aadsync.engine.store.fenced import fenced_writer

log = logging.getLogger(__name__)

#: The attribute that marks an object as ours: the writeback rule stamps ``Group_<cloud objectId>`` on every group it
#: creates. An export adopts an object found at its target DN only when it carries the value the add would write.
MARK_ATTRIBUTE = "adminDescription"
#: The per-object error of an object in the way that we did not create: never adopted, never overwritten.
NOT_ADOPTED = "not-adopted"
#: LDAP object class per connector-space object type the export can create.
_OBJECT_CLASSES = {"group": "group"}
#: Plan rows per page, and so per chunk: marked ``sent`` in one transaction and settled in one.
PAGE_ROWS = 1_000
#: What a DC answers for a member modify one of whose values names an object that does not exist: noSuchObject for an
#: add (AD, Samba), invalidAttributeSyntax for a remove (Samba). The whole modify is refused.
_MISSING_MEMBER = frozenset({"noSuchObject", "invalidAttributeSyntax"})


@dataclass
class _Settlement:
    """What one chunk's confirmed writes leave to record in the store, in one transaction after its LDAP writes."""

    #: Anchors of objects deleted (or moved to the holding OU) in AD.
    deleted: list[str] = field(default_factory=list)
    #: (provisional anchor, objectGUID, values written) of objects created or adopted.
    adopted: list[tuple[str, str, dict[str, list[Any]]]] = field(default_factory=list)
    #: (anchor, values written, new DN or None) of objects updated.
    updated: list[tuple[str, Mapping[str, list[Any]], str | None]] = field(default_factory=list)
    #: The run counters these writes add once they are recorded.
    counters: Counter[str] = field(default_factory=Counter)


class ADWriteRefused(Exception):
    """Raised by a writer when the DC refuses one operation (the hook's ActiveDirectoryWriteError is one).

    ``code`` is the LDAP result's name: ``entryAlreadyExists``, ``noSuchObject``, ``constraintViolation``, ...
    """

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


class ADWriter(Protocol):
    """What the export needs from an LDAP connection (the ActiveDirectoryHook in production)."""

    counters: Mapping[str, int]

    def add_object(self, dn: str, object_class: str, attributes: dict[str, list[Any]]) -> str:
        """Create the object; return its objectGUID."""
        ...

    def modify_object(self, guid: str, replace: dict[str, list[Any]]) -> None: ...

    def modify_references(
        self, guid: str, attribute: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> None: ...

    def move_object(self, guid: str, new_dn: str) -> None: ...

    def delete_object(self, guid: str) -> None: ...

    def object_guid(self, dn: str) -> str | None: ...

    def object_mark(self, dn: str, attribute: str = MARK_ATTRIBUTE) -> tuple[str, str | None] | None:
        """The objectGUID of the object at ``dn`` and the value of its mark attribute, or None when none is there."""
        ...

    def object_dn(self, guid: str) -> str | None: ...


class ADExportSettings(GuardSettings):
    """How one AD export run behaves; the operator fills it from task parameters."""

    #: Member values per modify operation.
    member_chunk: int = Field(MEMBER_CHUNK, ge=1, le=100_000)
    #: What deprovisioning does: delete the object, or move it to ``holding_ou`` (outside the import's base DN).
    deprovision: Literal["delete", "move"] = "delete"
    holding_ou: str | None = None

    @model_validator(mode="after")
    def _holding_ou_for_move(self) -> ADExportSettings:
        if self.deprovision == "move" and not (self.holding_ou or "").strip():
            raise ValueError("deprovision='move' needs a holding_ou (an OU outside the AD connection's base DN)")
        return self


def plan_counts(store: Store, connector: str, member_chunk: int) -> dict[str, int]:
    """The plan by operation and object type, member changes, and the least number of LDAP writes it needs."""
    with store.engine.connect() as connection:
        counts, objects = open_plan_counts(connection, connector)
        updates = connection.execute(
            sa.select(pending_export.c.changes).where(
                pending_export.c.connector == connector,
                pending_export.c.operation == "update",
                pending_export.c.changes != "{}",
                pending_export.c.state.in_(OPEN_STATES),
            )
        ).scalars()
        update_writes = 0
        for changes in updates:
            parsed = json.loads(changes)
            update_writes += ("dn" in parsed) + bool(set(parsed) - {"dn"})
        # One modify per chunk of a group's member changes of one kind.
        references = connection.execute(
            sa.select(sa.func.count())
            .where(pending_export_reference.c.connector == connector, pending_export_reference.c.state.in_(OPEN_STATES))
            .group_by(pending_export_reference.c.anchor, pending_export_reference.c.operation)
        ).scalars()
        member_writes = sum(math.ceil(n / member_chunk) for n in references)
    counts.setdefault("planned_member_adds", 0)
    counts.setdefault("planned_member_removes", 0)
    object_writes = sum(n for op, _t, n in objects if op in ("add", "delete")) + update_writes
    counts["ldap_writes_minimum"] = object_writes + member_writes
    return counts


def run_ad_export(
    store: Store,
    writer: ADWriter,
    *,
    connector: str = "ad",
    settings: ADExportSettings | None = None,
    lock_holder: str | None = None,
) -> ExportResult:
    """Export the pending plan of ``connector`` to Active Directory, recorded as a run."""
    settings = settings or ADExportSettings()
    return run_export(
        store,
        connector=connector,
        settings=settings,
        plan=lambda: plan_counts(store, connector, settings.member_chunk),
        exporter=lambda run_id: ADExporter(store, fenced_writer(writer, store), connector, run_id, settings),
        command="export-ad",
        lock_holder=lock_holder,
    )


class ADExporter:
    """Runs the phases of one AD export; every LDAP write is bracketed by state writes in the store."""

    def __init__(self, store: Store, writer: ADWriter, connector: str, run_id: int, settings: ADExportSettings):
        self.store = store
        self.writer = writer
        self.connector = connector
        self.run_id = run_id
        self.settings = settings
        self.counters: Counter[str] = Counter()
        self.errors: list[dict[str, Any]] = []
        self._start = dict(writer.counters)
        #: What the chunk being written has confirmed so far (``_write_chunk``).
        self._chunk = _Settlement()

    def run(self) -> None:
        objects, references = open_work(self.store, self.connector)
        report = progress.current()
        with report.phase("object writes", objects):
            for operation, write in (("delete", self._delete), ("add", self._add), ("update", self._update)):
                for rows in self._plan_pages(operation):
                    self._write_chunk(operation, rows, write, report.advance)
        with report.phase("member changes", references, unit="references"):
            self._members()
        self._forget_empty_updates()

    def _write_chunk(
        self, operation: str, rows: Sequence[Any], write: Callable[[Any], None], advance: Callable[[], None]
    ) -> None:
        """One page of the plan: its rows marked ``sent`` in one transaction, written one by one, and what was
        confirmed settled in one transaction, also when the run stops in between (the error limit, a lost LDAP
        connection): rows it did not reach stay ``sent`` and are written by the next run."""
        self._mark_sent([row.anchor for row in rows if self._sends(operation, row)])
        self._chunk = _Settlement()
        try:
            for row in rows:
                write(row)
                advance()
        finally:
            chunk, self._chunk = self._chunk, _Settlement()
            self._settle(chunk)

    def _sends(self, operation: str, row: Any) -> bool:
        """Whether the row's write will leave (what the chunk marks ``sent``); an add a killed run had sent is
        looked up first and marked again only when it has to be sent again."""
        if operation == "add":
            return row.object_type in _OBJECT_CLASSES and row.state != "sent"
        if row.anchor.startswith(PROVISIONAL_PREFIX):
            return False
        return operation == "delete" or bool(json.loads(row.changes))

    def final_counters(self, planned: Mapping[str, int]) -> dict[str, float]:
        result: dict[str, float] = {**planned, **self.counters}
        for name in ("ldap_writes", "ldap_reconcile_reads"):
            result[name] = self.writer.counters.get(name, 0) - self._start.get(name, 0)
        minimum = planned.get("ldap_writes_minimum", 0)
        result["ldap_writes_vs_minimum"] = round(result["ldap_writes"] / minimum, 3) if minimum else 0.0
        result["errors"] = len(self.errors)
        return result

    # ------------------------------------------------------------------------------------------ read the plan
    def _plan_pages(self, operation: str) -> Iterator[Sequence[Any]]:
        query = sa.select(pending_export).where(
            pending_export.c.connector == self.connector,
            pending_export.c.operation == operation,
            pending_export.c.state.in_(OPEN_STATES),
        )
        last = ""
        while True:
            with self.store.engine.connect() as connection:
                rows = connection.execute(
                    query.where(pending_export.c.anchor > last).order_by(pending_export.c.anchor).limit(PAGE_ROWS)
                ).all()
            if not rows:
                return
            yield rows
            last = rows[-1].anchor

    # ---------------------------------------------------------------------------------------------- objects
    def _delete(self, row: Any) -> None:
        target = row.anchor
        if row.anchor.startswith(PROVISIONAL_PREFIX):  # an add sent, then withdrawn: deleted if made (withdrawn.py)
            target = withdrawn_add_object(self.writer, row, MARK_ATTRIBUTE, self._ours)
            if target is None:  # never made, or not ours: its provisional rows are forgotten, nothing is written
                self._chunk.deleted.append(row.anchor)
                self._chunk.counters["withdrawn_adds_forgotten"] += 1
                return
        try:
            if self.settings.deprovision == "move":
                rdn, _parent = split_rdn(self.writer.object_dn(target) or row.dn)  # honours escapes
                self.writer.move_object(target, f"{rdn},{self.settings.holding_ou}")
            else:
                self.writer.delete_object(target)
        except ADWriteRefused as error:
            # Gone already counts as done; but AD answers noSuchObject for a move whose new parent (the holding OU)
            # does not exist too, so the object is looked up first.
            if error.code != "noSuchObject" or self.writer.object_dn(target) is not None:
                self._fail(row, error)
                return
        self._chunk.deleted.append(row.anchor)
        if target != row.anchor:  # the group a withdrawn add made: any row an import read of it goes too
            self._chunk.deleted.append(target)
        self._chunk.counters[
            f"{row.object_type}_{'moves_to_holding' if self.settings.deprovision == 'move' else 'deletes'}"
        ] += 1

    def _add(self, row: Any) -> None:
        object_class = _OBJECT_CLASSES.get(row.object_type)
        if object_class is None:
            self._fail(row, None, code="unsupported", message=f"the AD export cannot create {row.object_type} objects")
            return
        changes = json.loads(row.changes)
        if row.state == "sent":
            # An interrupted run sent this add: the object may exist already; adopted only if it carries our mark.
            found = self.writer.object_mark(row.dn, MARK_ATTRIBUTE)
            if found is not None:
                if self._ours(found, changes):
                    self._adopt(row, found[0], changes)
                    self._chunk.counters["adds_reconciled"] += 1
                else:
                    self._not_adopted(row, found, changes)
                return
            self._mark_sent([row.anchor])  # not there: sent again
        try:
            guid = self.writer.add_object(row.dn, object_class, ldap_values({k: v for k, v in changes.items() if v}))
        except ADWriteRefused as error:
            found = self.writer.object_mark(row.dn, MARK_ATTRIBUTE) if error.code == "entryAlreadyExists" else None
            if found is None:
                self._fail(row, error)
                return
            if not self._ours(found, changes):
                self._not_adopted(row, found, changes)
                return
            # Our mark, at our DN, and linked to nothing else: a create of ours whose answer was lost.
            guid = found[0]
            self._chunk.counters["adds_reconciled"] += 1
        self._adopt(row, guid, changes)
        self._chunk.counters[f"{row.object_type}_adds"] += 1

    def _ours(self, found: tuple[str, str | None], changes: Mapping[str, list[Any]]) -> bool:
        """Whether the object found at the target DN is the one this add creates: it carries the mark the add writes
        (compared without case, as AD compares the attribute) and no other connector-space object is linked to it."""
        guid, mark = found
        wanted = _first(changes.get(MARK_ATTRIBUTE))
        if wanted is None or mark is None or str(wanted).casefold() != mark.casefold():
            return False
        return not self._linked_elsewhere(guid)

    def _not_adopted(self, row: Any, found: tuple[str, str | None], changes: Mapping[str, list[Any]]) -> None:
        """An object we did not create holds the target DN: a per-object error; it is neither adopted nor written."""
        guid, mark = found
        wanted = _first(changes.get(MARK_ATTRIBUTE))
        why = (
            f"its {MARK_ATTRIBUTE} is {mark!r}, ours would be {wanted!r}"
            if wanted is not None
            else f"this add writes no {MARK_ATTRIBUTE} mark, so nothing at its DN can be recognised as ours"
        )
        if wanted is not None and mark is not None and str(wanted).casefold() == mark.casefold():
            why = "it carries our mark but another connector-space object is already linked to it"
        message = (
            f"an object we did not create holds this name; not adopted: {row.dn} (objectGUID {guid}; {why}). "
            "Nothing was written to it: rename or remove it in AD, or change the writeback OU or naming"
        )
        self.counters["adds_not_adopted"] += 1
        self._fail(row, None, code=NOT_ADOPTED, message=message)

    def _update(self, row: Any) -> None:
        if row.anchor.startswith(PROVISIONAL_PREFIX):
            return
        changes = json.loads(row.changes)
        if not changes:
            return  # a marker for member changes only
        new_dn = (changes.pop("dn", None) or [None])[0]
        try:
            if new_dn and not same_dn(self.writer.object_dn(row.anchor) or "", new_dn):
                self.writer.move_object(row.anchor, new_dn)
                self.counters[f"{row.object_type}_renames"] += 1
            if changes:
                self.writer.modify_object(row.anchor, ldap_values(changes))
        except ADWriteRefused as error:
            self._fail(row, error)
            return
        self._chunk.updated.append((row.anchor, changes, new_dn))
        self._chunk.counters[f"{row.object_type}_updates"] += 1

    # ---------------------------------------------------------------------------------------------- members
    def _members(self) -> None:
        """Per group and operation, chunks of ``member_chunk`` values, each one modify operation."""
        query = (
            sa.select(
                pending_export_reference.c.anchor,
                pending_export_reference.c.attribute,
                pending_export_reference.c.operation,
                sa.func.count(),
            )
            .where(
                pending_export_reference.c.connector == self.connector,
                pending_export_reference.c.state.in_(OPEN_STATES),
            )
            .group_by(
                pending_export_reference.c.anchor,
                pending_export_reference.c.attribute,
                pending_export_reference.c.operation,
            )
            .order_by(pending_export_reference.c.anchor, pending_export_reference.c.operation.desc())
        )
        with self.store.engine.connect() as connection:
            work = connection.execute(query).all()
        for group, attribute, operation, _count in work:
            if group.startswith(PROVISIONAL_PREFIX):
                self.counters["member_changes_waiting_for_group_add"] += _count
                continue
            for targets in self._reference_chunks(group, attribute, operation):
                self._member_chunk(group, attribute, operation, targets)
                progress.current().advance(len(targets))

    def _reference_chunks(self, group: str, attribute: str, operation: str) -> Iterator[list[str]]:
        last = ""
        size = self.settings.member_chunk
        while True:
            with self.store.engine.connect() as connection:
                targets = (
                    connection.execute(
                        sa.select(pending_export_reference.c.target_anchor)
                        .where(
                            pending_export_reference.c.connector == self.connector,
                            pending_export_reference.c.anchor == group,
                            pending_export_reference.c.attribute == attribute,
                            pending_export_reference.c.operation == operation,
                            pending_export_reference.c.state.in_(OPEN_STATES),
                            pending_export_reference.c.target_anchor > last,
                        )
                        .order_by(pending_export_reference.c.target_anchor)
                        .limit(size)
                    )
                    .scalars()
                    .all()
                )
            if not targets:
                return
            last = targets[-1]
            unresolved = [t for t in targets if t.startswith(PROVISIONAL_PREFIX)]
            if unresolved:
                self.counters["member_changes_unresolved"] += len(unresolved)
            yield [t for t in targets if not t.startswith(PROVISIONAL_PREFIX)]

    def _member_chunk(self, group: str, attribute: str, operation: str, targets: list[str]) -> None:
        if not targets:
            return
        with self.store.transaction() as connection:
            self._set_reference_state(connection, group, attribute, targets, "sent")
        try:
            if operation == "add":
                self.writer.modify_references(group, attribute, add=targets)
            else:
                self.writer.modify_references(group, attribute, remove=targets)
        except ADWriteRefused as error:
            if error.code in _MISSING_MEMBER and self.writer.object_dn(group) is not None:
                if len(targets) > 1:
                    # One value names an object gone from AD since the import (the group is there): the DC refuses
                    # the whole modify. Halve the chunk until only the missing members fail.
                    self.counters["member_chunks_split"] += 1
                    half = len(targets) // 2
                    self._member_chunk(group, attribute, operation, targets[:half])
                    self._member_chunk(group, attribute, operation, targets[half:])
                    return
                if operation == "remove" and self.writer.object_dn(targets[0]) is None:
                    # A deleted object is nobody's member (AD drops its links): its removal is done.
                    self._confirm_members(group, attribute, targets, added=False)
                    return
            with self.store.transaction() as connection:
                self._set_reference_state(connection, group, attribute, targets, "failed")
            which = f" ({targets[0]})" if len(targets) == 1 else ""
            self._error(group, None, error.code, f"member {operation} of {len(targets)} values{which}: {error}")
            return
        self._confirm_members(group, attribute, targets, added=operation == "add")
        self.counters["member_modify_operations"] += 1

    def _confirm_members(self, group: str, attribute: str, targets: Sequence[str], *, added: bool) -> None:
        with self.store.transaction() as connection:
            record_references(self.store, connection, self.connector, group, attribute, targets, added=added)
        self.counters["member_adds" if added else "member_removes"] += len(targets)

    # ----------------------------------------------------------------------------------- state in the store
    def _row(self, anchor: str) -> sa.ColumnElement[bool]:
        return sa.and_(pending_export.c.connector == self.connector, pending_export.c.anchor == anchor)

    def _references(self, group: str, attribute: str, targets: Sequence[str]) -> sa.ColumnElement[bool]:
        return sa.and_(
            pending_export_reference.c.connector == self.connector,
            pending_export_reference.c.anchor == group,
            pending_export_reference.c.attribute == attribute,
            pending_export_reference.c.target_anchor.in_(list(targets)),
        )

    def _set_reference_state(
        self, connection: sa.Connection, group: str, attribute: str, targets: Sequence[str], state: str
    ) -> None:
        for part in chunks(targets):
            connection.execute(
                sa.update(pending_export_reference)
                .where(self._references(group, attribute, part))
                .values(state=state, run_id=self.run_id)
            )

    def _mark_sent(self, anchors: Sequence[str]) -> None:
        if not anchors:
            return
        with self.store.transaction() as connection:
            for part in chunks(anchors):
                connection.execute(
                    sa.update(pending_export)
                    .where(pending_export.c.connector == self.connector, pending_export.c.anchor.in_(list(part)))
                    .values(
                        state="sent", attempts=pending_export.c.attempts + 1, run_id=self.run_id, updated_at=utcnow()
                    )
                )

    def _settle(self, chunk: _Settlement) -> None:
        """One transaction for what a chunk's writes did: deleted objects leave the connector space, created ones
        take their objectGUID, updated ones take the values written; their plan rows go. The counters follow the
        commit, so a run stopped before it counts nothing it did not record."""
        if chunk.deleted or chunk.adopted or chunk.updated:
            with self.store.transaction() as connection:
                for part in chunks(chunk.deleted):
                    for table in (pending_export, pending_export_reference, cs_reference, cs_object):
                        connection.execute(
                            sa.delete(table).where(table.c.connector == self.connector, table.c.anchor.in_(list(part)))
                        )
                for provisional, guid, attrs in chunk.adopted:
                    adopt_anchor(connection, self.connector, provisional, guid, attrs, run_id=self.run_id)
                record_attributes_many(connection, self.connector, chunk.updated, run_id=self.run_id)
                for part in chunks([anchor for anchor, _changes, _dn in chunk.updated]):
                    connection.execute(
                        sa.delete(pending_export).where(
                            pending_export.c.connector == self.connector, pending_export.c.anchor.in_(list(part))
                        )
                    )
        self.counters.update(chunk.counters)

    def _linked_elsewhere(self, guid: str) -> bool:
        if any(adopted == guid for _provisional, adopted, _attrs in self._chunk.adopted):
            return True  # adopted earlier in this chunk, not settled yet
        with self.store.engine.connect() as connection:
            return (
                connection.execute(
                    sa.select(link.c.anchor).where(link.c.connector == self.connector, link.c.anchor == guid)
                ).first()
                is not None
            )

    def _adopt(self, row: Any, guid: str, written: Mapping[str, list[Any]]) -> None:
        """The object exists in AD now: its objectGUID replaces the provisional anchor everywhere (when the chunk
        settles)."""
        attrs = {name: values for name, values in written.items() if values}
        attrs["objectGUID"] = [guid]
        self._chunk.adopted.append((row.anchor, guid, attrs))

    def _forget_empty_updates(self) -> None:
        with self.store.transaction() as connection:
            forget_empty_updates(connection, self.connector)

    # ------------------------------------------------------------------------------------------------ errors
    def _fail(self, row: Any, error: Exception | None, *, code: str = "", message: str = "") -> None:
        code = code or getattr(error, "code", "ldap-error")
        message = message or f"{row.operation} of {row.dn}: {error}"
        with self.store.transaction() as connection:
            connection.execute(
                sa.update(pending_export)
                .where(self._row(row.anchor))
                .values(state="failed", last_error=failure_text(code, message), updated_at=utcnow())
            )
        self._error(row.anchor, row.dn, code, message)

    def _error(self, anchor: str | None, dn: str | None, code: str, message: str) -> None:
        self.errors.append({"anchor": anchor, "dn": dn, "code": code, "message": message[:2000]})
        if len(self.errors) >= self.settings.error_limit:
            raise ErrorLimitReached


def ldap_values(changes: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
    """The values as LDAP takes them: a GUID-syntax attribute (mS-DS-ConsistencyGuid) is kept in the store in its
    text form, as the import reads it, and written as its 16 raw bytes (objectGUID byte order)."""
    return {
        name: [guid_bytes(value) for value in values] if name.lower() in GUID_ATTRIBUTES else list(values)
        for name, values in changes.items()
    }


def _first(values: Sequence[Any] | None) -> Any:
    return values[0] if values else None
