"""Export to Entra ID through Microsoft Graph with the V2 endpoint's capabilities: pending exports → ``$batch`` calls.

The plan is what sync staged (``pending_export`` and ``pending_export_reference``). Writes go in phases, so nothing
refers to an object before it exists: user creates, group creates, updates, member changes, deletes. Every request
travels in a ``$batch`` of up to 20; member adds are packed 20 references per request, so a 250,000-member group
is 625 calls (the protocol minimum). Before each call its operations are marked ``sent`` and after it ``confirmed``
(applied to the connector space and removed from the plan) or ``failed``, each in its own transaction: a task
killed anywhere and retried re-sends only what is not confirmed, and reconciles what it had sent (an object created
before the kill is found and adopted; "already exists" on a member add and 404 on a member remove or a delete count
as done). Writes are paced to the tenant's write budget, so the export runs at the throttle cap instead of into
429s (which are still honoured).

Guards, as the product has them and more: the deletion, disable and member removal thresholds stop the export
before the first write (engine/runs/export_guards.py), staging mode writes nothing, 5,000 errors stop the run; duplicate
attribute resiliency gives a conflicting UPN a placeholder and drops a conflicting SMTP address, records the
conflict, and releases it when the conflict is gone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import logging
import math
import random
import secrets
import string
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from airflow_provider_aadsync.engine.connectors.entra.schema import COLLECTION_PROPERTIES, MEMBERS
from airflow_provider_aadsync.engine.connectors.entra.schema import RESOURCES as _RESOURCES
from airflow_provider_aadsync.engine.connectors.schema import PROVISIONAL_PREFIX
from airflow_provider_aadsync.engine.runs.defaults import (
    DELETION_THRESHOLD,
    DISABLE_THRESHOLD,
    MEMBER_REMOVAL_GROUP_PERCENT,
    MEMBER_REMOVAL_THRESHOLD,
    WRITE_BUDGET,
    WRITE_WINDOW_SECONDS,
)
from airflow_provider_aadsync.engine.runs.export_run import (
    ErrorLimitReached,
    ExportResult,
    adopt_anchor,
    forget_empty_updates,
    record_attributes,
    record_references,
    run_export,
)
from airflow_provider_aadsync.engine.runs.import_run import ERROR_LIMIT
from airflow_provider_aadsync.engine.runs.source import BatchRequest, WriteOutcomeUnknownError
from airflow_provider_aadsync.engine.store import (
    Store,
    as_utc,
    cs_object,
    cs_reference,
    export_conflict,
    link,
    pending_export,
    pending_export_reference,
    utcnow,
)
from airflow_provider_aadsync.engine.store.lock import fenced_writer

log = logging.getLogger(__name__)

#: Graph's limits: requests per ``$batch``, link changes per request.
BATCH_SIZE = 20
LINKS_PER_REQUEST = 20
#: ``$batch`` calls in a row without a readable answer after which an export stops instead of resending.
UNKNOWN_OUTCOME_LIMIT = 3
#: The per-object error of an object that holds our key but that we did not create: never adopted, never written.
NOT_ADOPTED = "not-adopted"
_SENT_AT_TYPE = pending_export.c.sent_at.type


# ============================================================================================== the Graph side
class GraphAnswer(Protocol):
    id: str
    status: int
    body: Any

    @property
    def ok(self) -> bool: ...


class GraphWriter(Protocol):
    """What the export needs from a Graph connection (the EntraHook in production)."""

    counters: dict[str, float]

    def batch(self, requests: Sequence[BatchRequest], *, resend_if_unknown: bool = True) -> Mapping[str, GraphAnswer]:
        """Results by request id; with ``resend_if_unknown=False`` raises WriteOutcomeUnknownError on a drop."""
        ...

    def request(self, method: str, url: str, **kwargs: Any) -> Any: ...

    def directory_object_url(self, object_id: str) -> str: ...


# ============================================================================================== settings
class ExportSettings(BaseModel):
    """How one export run behaves; the operator fills it from task parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Compute and store the plan, write nothing.
    staging: bool = False
    #: More pending deletes than this stops the export before anything is written.
    deletion_threshold: int = Field(DELETION_THRESHOLD, ge=0)
    #: More accounts switched off than this stops the export before anything is written.
    disable_threshold: int = Field(DISABLE_THRESHOLD, ge=0)
    #: More group member removals than this in one run stops the export before anything is written ...
    member_removal_threshold: int = Field(MEMBER_REMOVAL_THRESHOLD, ge=0)
    #: ... and so does a group of 20 or more members losing more than this share (percent) of them.
    member_removal_group_percent: int = Field(MEMBER_REMOVAL_GROUP_PERCENT, ge=0, le=100)
    error_limit: int = Field(ERROR_LIMIT, ge=1)
    #: The tenant's write budget for this app: requests per window (Graph: 3,000 per 150 s per app and tenant).
    write_budget: int = Field(WRITE_BUDGET, ge=1)
    write_window_seconds: float = Field(WRITE_WINDOW_SECONDS, gt=0)
    #: Before looking up creates an interrupted run had sent: Graph may still be processing the cut-off call.
    resend_settle_seconds: float = Field(5.0, ge=0)
    #: Resume adopts an object found by its key only when Graph created it after the create was first sent; this
    #: much earlier still counts, for the difference between our clock and Graph's (createdDateTime has seconds).
    adoption_clock_skew_seconds: float = Field(120.0, ge=0)


class WritePacer:
    """Keeps writes within the budget of a sliding window, sleeping before a call that would exceed it.

    A call's writes count from the moment its answer arrived (``spent``), never earlier than Graph charged them,
    so this window always frees up after Graph's does: paced calls are not throttled.
    """

    def __init__(self, budget: int, window: float, *, clock=time.monotonic, sleep=time.sleep):
        self.budget = budget
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self.sent: deque[tuple[float, int]] = deque()
        self.in_window = 0
        self.waited = 0.0

    def acquire(self, writes: int) -> None:
        """Wait until ``writes`` more fit in the window."""
        writes = min(writes, self.budget)
        while True:
            now = self.clock()
            while self.sent and self.sent[0][0] <= now - self.window:
                self.in_window -= self.sent.popleft()[1]
            if self.in_window + writes <= self.budget:
                return
            pause = self.sent[0][0] + self.window - now + 0.001
            self.waited += pause
            self.sleep(pause)

    def spent(self, writes: int) -> None:
        """Charge ``writes`` to the window now (after the call's answer)."""
        self.sent.append((self.clock(), writes))
        self.in_window += writes


# ============================================================================================== results
@dataclass
class _Operation:
    """One Graph request's worth of the plan, and how to record its outcome."""

    kind: str  # create | update | delete | member-add | member-add-one | member-remove
    anchor: str
    object_type: str
    dn: str
    changes: dict[str, list[Any]] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)
    resend: bool = False  # it was sent by an earlier, interrupted attempt
    unanswered: int = 0  # calls of this run that carried it and whose answer left it out


def plan_counts(store: Store, connector: str) -> dict[str, int]:
    """The export plan by operation and object type, plus member changes: what an export would write."""
    open_states = ("pending", "sent", "failed")
    with store.engine.connect() as connection:
        objects = connection.execute(
            sa.select(pending_export.c.operation, pending_export.c.object_type, sa.func.count())
            .where(pending_export.c.connector == connector, pending_export.c.state.in_(open_states))
            .group_by(pending_export.c.operation, pending_export.c.object_type)
        ).all()
        references = connection.execute(
            sa.select(pending_export_reference.c.operation, sa.func.count())
            .where(
                pending_export_reference.c.connector == connector,
                pending_export_reference.c.state.in_(open_states),
            )
            .group_by(pending_export_reference.c.operation)
        ).all()
        add_counts = connection.execute(
            sa.select(sa.func.count())
            .where(
                pending_export_reference.c.connector == connector,
                pending_export_reference.c.operation == "add",
                pending_export_reference.c.state.in_(open_states),
            )
            .group_by(pending_export_reference.c.anchor)
        ).scalars()
        member_add_requests = sum(math.ceil(n / LINKS_PER_REQUEST) for n in add_counts)
    counts: dict[str, int] = {}
    for operation, object_type, number in objects:
        counts[f"planned_{object_type}_{operation}s"] = number
    for operation, number in references:
        counts[f"planned_member_{operation}s"] = number
    counts["planned_deletes"] = sum(n for op, _t, n in objects if op == "delete")
    object_requests = sum(n for op, t, n in objects if op != "update" and t in _RESOURCES)
    object_requests += _count_updates_with_changes(store, connector)
    member_requests = member_add_requests + counts.get("planned_member_removes", 0)
    counts["planned_requests"] = object_requests + member_requests
    # Object writes, then member changes (which need the created ids): the least number of $batch calls.
    counts["batch_calls_minimum"] = math.ceil(object_requests / BATCH_SIZE) + math.ceil(member_requests / BATCH_SIZE)
    return counts


def _count_updates_with_changes(store: Store, connector: str) -> int:
    with store.engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count()).where(
                pending_export.c.connector == connector,
                pending_export.c.operation == "update",
                pending_export.c.changes != "{}",
                pending_export.c.state.in_(("pending", "sent", "failed")),
            )
        ).scalar()


def run_entra_export(
    store: Store,
    writer: GraphWriter,
    *,
    connector: str = "entra",
    settings: ExportSettings | None = None,
    lock_holder: str | None = None,
) -> ExportResult:
    """Export the pending plan of ``connector`` to Entra ID, recorded as a run."""
    settings = settings or ExportSettings()
    return run_export(
        store,
        connector=connector,
        settings=settings,
        plan=lambda: plan_counts(store, connector),
        exporter=lambda run_id: EntraExporter(store, fenced_writer(writer, store), connector, run_id, settings),
        command="export-entra",
        lock_holder=lock_holder,
    )


class EntraExporter:
    """Runs the phases of one export; every ``$batch`` is bracketed by state writes in the store."""

    def __init__(self, store: Store, writer: GraphWriter, connector: str, run_id: int, settings: ExportSettings):
        self.store = store
        self.writer = writer
        self.connector = connector
        self.run_id = run_id
        self.settings = settings
        self.pacer = WritePacer(settings.write_budget, settings.write_window_seconds)
        self.counters: Counter[str] = Counter()
        self.errors: list[dict[str, Any]] = []
        self._start = dict(writer.counters)
        self._initial_domain: str | None = None
        self._retry: list[_Operation] = []
        self._unknown_in_a_row = 0
        self._settled = False
        self._phase = "object"
        self._connection: sa.Connection | None = None

    # ------------------------------------------------------------------------------------------------ phases
    def run(self) -> None:
        # Object writes share calls; deletes first, so a UPN they free is free for the creates that follow.
        self._phase = "object"
        self._execute(
            itertools.chain(
                self._object_operations("delete"),
                self._creates("user"),
                self._creates("group"),
                self._object_operations("update"),
            )
        )
        self._report_unsupported_creates()
        # Member changes need the ids of the objects created above: Graph's JSON batching cannot hand one
        # request's result to another, so they travel in later calls.
        self._phase = "member"
        self._execute(self._member_operations())
        self._forget_empty_updates()

    def final_counters(self, planned: Mapping[str, int]) -> dict[str, float]:
        calls = self.writer.counters.get("batch_requests", 0) - self._start.get("batch_requests", 0)
        waits = self.writer.counters.get("retry_wait_seconds", 0.0) - self._start.get("retry_wait_seconds", 0.0)
        throttled = self.writer.counters.get("throttled", 0) - self._start.get("throttled", 0)
        result: dict[str, float] = {**planned, **self.counters}
        result["batch_calls"] = calls
        result["round_trips_vs_minimum"] = (
            round(calls / planned["batch_calls_minimum"], 3) if planned["batch_calls_minimum"] else 0.0
        )
        result["throttled_requests"] = throttled
        result["throttle_wait_seconds"] = round(waits, 2)
        result["pacing_wait_seconds"] = round(self.pacer.waited, 2)
        result["errors"] = len(self.errors)
        return result

    def _execute(self, operations: Iterator[_Operation]) -> None:
        """Send operations 20 per ``$batch``; retries (conflicts, split member packs) join the following calls."""
        chunk: list[_Operation] = []
        for operation in operations:
            chunk.append(operation)
            chunk += self._take_retries()
            while len(chunk) >= BATCH_SIZE:
                self._send(chunk[:BATCH_SIZE])
                chunk = chunk[BATCH_SIZE:] + self._take_retries()
        chunk += self._take_retries()
        while chunk:
            self._send(chunk[:BATCH_SIZE])
            chunk = chunk[BATCH_SIZE:] + self._take_retries()

    def _take_retries(self) -> list[_Operation]:
        retries, self._retry = self._retry, []
        return retries

    # ------------------------------------------------------------------------------------------ read the plan
    def _plan_rows(self, operation: str, object_type: str | None = None) -> Iterator[Any]:
        """Open rows of the plan in anchor order, read a page at a time (the plan may be large)."""
        query = sa.select(pending_export).where(
            pending_export.c.connector == self.connector,
            pending_export.c.operation == operation,
            pending_export.c.state.in_(("pending", "sent", "failed")),
        )
        if object_type:
            query = query.where(pending_export.c.object_type == object_type)
        last = ""
        while True:
            with self.store.engine.connect() as connection:
                rows = connection.execute(
                    query.where(pending_export.c.anchor > last).order_by(pending_export.c.anchor).limit(1_000)
                ).all()
            if not rows:
                return
            yield from rows
            last = rows[-1].anchor

    def _creates(self, object_type: str) -> Iterator[_Operation]:
        for row in self._plan_rows("add", object_type):
            operation = _Operation(
                "create", row.anchor, object_type, row.dn, json.loads(row.changes), resend=row.state == "sent"
            )
            if operation.resend:
                self._settle_once()
                if self._resume_create(operation):
                    continue
            yield operation

    def _resume_create(self, operation: _Operation) -> bool:
        """A create that may have been carried out: adopt our object (True), fail it when someone else's user holds
        its ImmutableId (True), or leave it to be sent (False; a group of someone else's with the same names is left
        alone: group names are not unique in Graph, and an uninterrupted export would create ours beside it too)."""
        adopted, foreign = self._adopt_existing(operation)
        if adopted:
            return True
        if foreign and operation.object_type == "user":  # onPremisesImmutableId is unique in a tenant
            self._not_adopted(operation, foreign)
            return True
        if foreign:
            self.counters["foreign_objects_not_adopted"] += len(foreign)
            log.info("%s: %d group(s) of the same names were not created by us; ours is created beside them",
                     operation.dn, len(foreign))  # fmt: skip
        return False

    def _settle_once(self) -> None:
        """An interrupted run left creates in flight: give Graph a moment to finish them before looking them up."""
        if not self._settled:
            self._settled = True
            log.info(
                "reconciling creates an interrupted export had sent (after %.1f s)", self.settings.resend_settle_seconds
            )
            time.sleep(self.settings.resend_settle_seconds)

    def _report_unsupported_creates(self) -> None:
        """Contacts (and any type Graph cannot create) are a per-object error, never silently dropped."""
        for row in self._plan_rows("add"):
            if row.object_type not in ("user", "group"):
                self._fail_rows(
                    [row.anchor],
                    "unsupported-by-graph",
                    f"Graph has no API to create {row.object_type} objects; it stays in the metaverse",
                    dn=row.dn,
                )

    def _object_operations(self, operation: str) -> Iterator[_Operation]:
        for row in self._plan_rows(operation):
            if row.anchor.startswith(PROVISIONAL_PREFIX):
                continue  # its create has not succeeded yet
            changes = json.loads(row.changes)
            if operation == "update" and not changes:
                continue  # a marker for member changes only
            if row.object_type not in ("user", "group"):
                self._fail_rows([row.anchor], "unsupported-by-graph", f"Graph cannot write {row.object_type} objects")
                continue
            kind = "update" if operation == "update" else "delete"
            yield _Operation(kind, row.anchor, row.object_type, row.dn, changes, resend=row.state == "sent")

    def _member_operations(self) -> Iterator[_Operation]:
        """Member adds packed 20 per request; removes one per request (Graph removes one reference per call)."""
        query = sa.select(
            pending_export_reference.c.anchor,
            pending_export_reference.c.target_anchor,
            pending_export_reference.c.operation,
            pending_export_reference.c.state,
        ).where(
            pending_export_reference.c.connector == self.connector,
            pending_export_reference.c.attribute == MEMBERS,
            pending_export_reference.c.state.in_(("pending", "sent", "failed")),
        )
        last = ("", "", "")
        pack: list[str] = []
        pack_group = None
        while True:
            with self.store.engine.connect() as connection:
                rows = connection.execute(
                    query.where(
                        sa.tuple_(
                            pending_export_reference.c.anchor,
                            pending_export_reference.c.operation,
                            pending_export_reference.c.target_anchor,
                        )
                        > last
                    )
                    .order_by(
                        pending_export_reference.c.anchor,
                        pending_export_reference.c.operation,
                        pending_export_reference.c.target_anchor,
                    )
                    .limit(4_000)
                ).all()
            if not rows:
                break
            last = (rows[-1].anchor, rows[-1].operation, rows[-1].target_anchor)
            unresolved = [r.target_anchor for r in rows if r.target_anchor.startswith(PROVISIONAL_PREFIX)]
            for row in rows:
                if row.anchor.startswith(PROVISIONAL_PREFIX):
                    self.counters["member_changes_waiting_for_group_create"] += 1
                    continue
                if row.target_anchor.startswith(PROVISIONAL_PREFIX):
                    continue
                if row.operation == "remove":
                    yield _Operation("member-remove", row.anchor, "group", "", targets=[row.target_anchor])
                    continue
                if pack and (pack_group != row.anchor or len(pack) == LINKS_PER_REQUEST):
                    yield _Operation("member-add", pack_group, "group", "", targets=pack)
                    pack = []
                pack_group = row.anchor
                pack.append(row.target_anchor)
            if unresolved:
                self._fail_references(unresolved, "member-not-created", "the member's create in Entra ID failed")
        if pack:
            yield _Operation("member-add", pack_group, "group", "", targets=pack)

    # ----------------------------------------------------------------------------------------------- requests
    def _request(self, index: int, operation: _Operation) -> BatchRequest:
        resource = _RESOURCES[operation.object_type]
        request_id = str(index)
        if operation.kind == "create":
            body = graph_body(operation.changes)
            if operation.object_type == "user":
                body["passwordProfile"] = {"password": _initial_password(), "forceChangePasswordNextSignIn": True}
            return BatchRequest(request_id, "POST", f"/{resource}", body)
        if operation.kind == "update":
            return BatchRequest(request_id, "PATCH", f"/{resource}/{operation.anchor}", graph_body(operation.changes))
        if operation.kind == "delete":
            return BatchRequest(request_id, "DELETE", f"/{resource}/{operation.anchor}")
        if operation.kind == "member-add":
            urls = [self.writer.directory_object_url(target) for target in operation.targets]
            return BatchRequest(request_id, "PATCH", f"/groups/{operation.anchor}", {"members@odata.bind": urls})
        if operation.kind == "member-add-one":
            url = self.writer.directory_object_url(operation.targets[0])
            return BatchRequest(request_id, "POST", f"/groups/{operation.anchor}/members/$ref", {"@odata.id": url})
        return BatchRequest(request_id, "DELETE", f"/groups/{operation.anchor}/members/{operation.targets[0]}/$ref")

    def _send(self, operations: list[_Operation]) -> None:
        self.counters[f"{self._phase}_batch_calls"] += 1
        self._mark_sent(operations)
        self.pacer.acquire(len(operations))
        unknown: list[str] = []
        try:
            answers = self.writer.batch(
                [self._request(i, op) for i, op in enumerate(operations)], resend_if_unknown=False
            )
        except WriteOutcomeUnknownError as error:
            # The call may have been carried out: reconcile what it held instead of sending it blindly again.
            log.warning("%s; reconciling its %d operations", error, len(error.unknown))
            self.counters["calls_with_unknown_outcome"] += 1
            self._unknown_in_a_row += 1
            if self._unknown_in_a_row >= UNKNOWN_OUTCOME_LIMIT:
                # Graph's answers cannot be read at all: stop rather than resend forever (the rows stay 'sent',
                # the next run reconciles them).
                raise WriteOutcomeUnknownError(
                    f"{self._unknown_in_a_row} $batch calls in a row got no readable answer, the last: {error}; "
                    "the export stopped, its sent operations are reconciled by the next run"
                ) from error
            answers, unknown = error.results, error.unknown
            if any(operations[int(index)].kind == "create" for index in unknown):
                time.sleep(self.settings.resend_settle_seconds)  # let Graph finish what it may be processing
        else:
            self._unknown_in_a_row = 0
        self.pacer.spent(len(operations))
        # Every outcome of this call in one transaction: one commit per call, not per operation.
        with self.store.transaction() as connection:
            self._connection = connection
            try:
                for index, operation in enumerate(operations):
                    if str(index) in unknown:
                        self._reconcile(operation)
                        continue
                    if _unanswered(answers[str(index)]):
                        self._unanswered(operation, answers[str(index)])
                        continue
                    handler = getattr(self, f"_after_{operation.kind.replace('-', '_')}")
                    handler(operation, answers[str(index)])
            finally:
                self._connection = None

    def _unanswered(self, operation: _Operation, answer: GraphAnswer) -> None:
        """The call's answer left this operation out: it may have been carried out. Reconciled like a cut-off call a
        few times; then a per-object error, and the row stays 'sent' so the next run reconciles it (never a blind
        resend, which could create an object twice)."""
        operation.unanswered += 1
        if operation.unanswered < UNKNOWN_OUTCOME_LIMIT:
            self._reconcile(operation)
            return
        code, message = _error(answer)
        self._error(operation.anchor, operation.dn, code, f"{operation.kind} of {operation.dn}: {message}; outcome "
                    "unknown, reconciled by the next run")  # fmt: skip

    def _reconcile(self, operation: _Operation) -> None:
        """An operation whose call was cut off: creates are looked up (and adopted); the rest are idempotent."""
        if operation.kind == "create" and self._resume_create(operation):
            return
        self._retry.append(operation)

    # -------------------------------------------------------------------------------------------- outcomes
    def _after_create(self, operation: _Operation, answer: GraphAnswer) -> None:
        if answer.ok:
            object_id = answer.body.get("id") if isinstance(answer.body, dict) else None
            if not isinstance(object_id, str) or not object_id:
                # Created, but the answer does not say as what: find it as after a cut-off call.
                log.warning("the answer to the create of %s carries no object id; looking it up", operation.dn)
                self._reconcile(operation)
                return
            written = dict(operation.changes)
            self._adopt(operation, object_id, written)
            self.counters[f"{operation.object_type}_creates"] += 1
            return
        if _conflict_target(answer):
            adopted, foreign = self._adopt_existing(operation)
            if adopted:
                return  # our own earlier attempt holds the value: that object is ours
            if foreign:
                self._not_adopted(operation, foreign)  # someone else's object holds our key: never adopted
                return
        if self._resolve_conflict(operation, answer):
            return
        self._fail(operation, answer)

    def _after_update(self, operation: _Operation, answer: GraphAnswer) -> None:
        if answer.ok:
            with self._transaction() as connection:
                record_attributes(connection, self.connector, operation.anchor, operation.changes, run_id=self.run_id)
                self._release_conflicts(connection, operation.anchor, operation.changes)
                connection.execute(sa.delete(pending_export).where(self._row(operation.anchor)))
            self.counters[f"{operation.object_type}_updates"] += 1
            return
        if self._resolve_conflict(operation, answer):
            return
        self._fail(operation, answer)

    def _after_delete(self, operation: _Operation, answer: GraphAnswer) -> None:
        if answer.ok or answer.status == 404:
            with self._transaction() as connection:
                for table in (pending_export, pending_export_reference, cs_reference, cs_object):
                    connection.execute(
                        sa.delete(table).where(table.c.connector == self.connector, table.c.anchor == operation.anchor)
                    )
                connection.execute(
                    sa.delete(cs_reference).where(
                        cs_reference.c.connector == self.connector, cs_reference.c.target_anchor == operation.anchor
                    )
                )
            self.counters[f"{operation.object_type}_deletes"] += 1
            return
        self._fail(operation, answer)

    def _after_member_add(self, operation: _Operation, answer: GraphAnswer) -> None:
        if answer.ok:
            self._confirm_members(operation.anchor, operation.targets, added=True)
            return
        if answer.status == 400 and "already exist" in _message(answer):
            # One of the 20 is already a member (an earlier attempt got through): add them one by one.
            self._retry += [
                _Operation("member-add-one", operation.anchor, "group", "", targets=[target])
                for target in operation.targets
            ]
            self.counters["member_packs_split"] += 1
            return
        self._fail_member(operation, answer)

    def _after_member_add_one(self, operation: _Operation, answer: GraphAnswer) -> None:
        if answer.ok or (answer.status == 400 and "already exist" in _message(answer)):
            self._confirm_members(operation.anchor, operation.targets, added=True)
            return
        self._fail_member(operation, answer)

    def _after_member_remove(self, operation: _Operation, answer: GraphAnswer) -> None:
        if answer.ok or answer.status == 404:
            self._confirm_members(operation.anchor, operation.targets, added=False)
            return
        self._fail_member(operation, answer)

    # ---------------------------------------------------------------------------------------- state in the store
    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        """The open transaction of the call being recorded, or a new one: a call's outcomes commit together."""
        if self._connection is not None:
            yield self._connection
            return
        with self.store.transaction() as connection:
            yield connection

    def _row(self, anchor: str) -> sa.ColumnElement[bool]:
        return sa.and_(pending_export.c.connector == self.connector, pending_export.c.anchor == anchor)

    def _mark_sent(self, operations: Sequence[_Operation]) -> None:
        objects = [op.anchor for op in operations if op.kind in ("create", "update", "delete")]
        now = utcnow()
        with self._transaction() as connection:
            if objects:
                connection.execute(
                    sa.update(pending_export)
                    .where(pending_export.c.connector == self.connector, pending_export.c.anchor.in_(objects))
                    .values(
                        state="sent",
                        attempts=pending_export.c.attempts + 1,
                        run_id=self.run_id,
                        updated_at=now,
                        # the first send, committed before the write: what resume compares createdDateTime with
                        sent_at=sa.func.coalesce(pending_export.c.sent_at, sa.literal(now, _SENT_AT_TYPE)),
                    )
                )
            for operation in operations:
                if operation.kind.startswith("member"):
                    connection.execute(
                        sa.update(pending_export_reference)
                        .where(self._references(operation.anchor, operation.targets))
                        .values(state="sent", run_id=self.run_id)
                    )

    def _references(self, anchor: str, targets: Sequence[str]) -> sa.ColumnElement[bool]:
        return sa.and_(
            pending_export_reference.c.connector == self.connector,
            pending_export_reference.c.anchor == anchor,
            pending_export_reference.c.attribute == MEMBERS,
            pending_export_reference.c.target_anchor.in_(list(targets)),
        )

    def _adopt(self, operation: _Operation, object_id: str, written: Mapping[str, list[Any]]) -> None:
        """The object exists in Entra ID now: its real id replaces the provisional anchor everywhere."""
        attrs = {name: values for name, values in written.items() if values}
        attrs["id"] = [object_id]
        with self._transaction() as connection:
            adopt_anchor(
                connection,
                self.connector,
                operation.anchor,
                object_id,
                attrs,
                run_id=self.run_id,
                dn=f"{_RESOURCES[operation.object_type]}/{object_id}",
            )
        operation.anchor = object_id

    def _adopt_existing(self, operation: _Operation) -> tuple[bool, list[dict[str, Any]]]:
        """A create sent by an interrupted run may have succeeded: find the object and adopt it if it is ours.

        Found by its key (users: ``onPremisesImmutableId``; groups: ``mailNickname`` and ``displayName``), an object
        is ours only if Graph created it after this create was first sent (``sent_at``, committed before the write,
        less ``adoption_clock_skew_seconds``) and no other connector-space object is linked to it. Returns whether
        one was adopted, and the objects holding the key that are not ours (never adopted).
        """
        changes = operation.changes
        if operation.object_type == "user" and changes.get("onPremisesImmutableId"):
            key, value = "onPremisesImmutableId", changes["onPremisesImmutableId"][0]
        elif operation.object_type == "group" and changes.get("mailNickname"):
            key, value = "mailNickname", changes["mailNickname"][0]
        else:
            return False, []
        found = self.writer.request(
            "GET",
            f"/{_RESOURCES[operation.object_type]}",
            params={
                "$filter": f"{key} eq '{_odata_quote(value)}'",
                "$select": f"id,displayName,{key},createdDateTime",
            },
        )["value"]
        # $filter compares strings case-insensitively; base64 ImmutableIds differ by case: keep exact matches only.
        found = [item for item in found if item.get(key) == value]
        if operation.object_type == "group":
            found = [item for item in found if item.get("displayName") == (changes.get("displayName") or [None])[0]]
        if not found:
            return False, []
        sent_at = self._sent_at(operation.anchor)
        ours = [item for item in found if self._created_by_us(item, sent_at)]
        if len(ours) == 1:
            self._adopt(operation, ours[0]["id"], operation.changes)
            self.counters["creates_reconciled"] += 1
            return True, []
        return False, [{**item, "sent_at": sent_at} for item in found]

    def _sent_at(self, anchor: str) -> dt.datetime | None:
        """When the create of ``anchor`` was first sent (rows sent before schema step 6: their last send)."""
        query = sa.select(pending_export.c.sent_at, pending_export.c.updated_at).where(self._row(anchor))
        if self._connection is not None:
            row = self._connection.execute(query).first()
        else:
            with self.store.engine.connect() as connection:
                row = connection.execute(query).first()
        moment = (row.sent_at or row.updated_at) if row is not None else None
        return as_utc(moment) if moment is not None else None

    def _created_by_us(self, item: Mapping[str, Any], sent_at: dt.datetime | None) -> bool:
        created = _parse_time(item.get("createdDateTime"))
        if created is None or sent_at is None:
            return False
        if created < sent_at - dt.timedelta(seconds=self.settings.adoption_clock_skew_seconds):
            return False
        return not self._linked(item["id"])

    def _linked(self, object_id: str) -> bool:
        query = sa.select(link.c.anchor).where(link.c.connector == self.connector, link.c.anchor == object_id)
        if self._connection is not None:
            return self._connection.execute(query).first() is not None
        with self.store.engine.connect() as connection:
            return connection.execute(query).first() is not None

    def _not_adopted(self, operation: _Operation, foreign: Sequence[Mapping[str, Any]]) -> None:
        """Objects that hold our key but that we did not create: a per-object error; none is adopted or written."""
        sent_at = foreign[0].get("sent_at")
        held = "; ".join(
            f"id {item['id']} created {item.get('createdDateTime') or 'at an unknown time'}" for item in foreign[:5]
        )
        key = "onPremisesImmutableId" if operation.object_type == "user" else "mailNickname/displayName"
        message = (
            f"an object we did not create holds this name; not adopted: the {operation.object_type} {key} of "
            f"{operation.dn} is held by {held} (this create was first sent "
            f"{sent_at.strftime('%Y-%m-%dT%H:%M:%SZ') if sent_at else 'at an unknown time'}). Nothing was written to "
            "it: remove or rename it in Entra ID, or match it to this object on purpose"
        )
        self.counters["creates_not_adopted"] += 1
        self._fail_rows([operation.anchor], NOT_ADOPTED, message, dn=operation.dn)

    def _confirm_members(self, group: str, targets: Sequence[str], *, added: bool) -> None:
        with self._transaction() as connection:
            record_references(self.store, connection, self.connector, group, MEMBERS, targets, added=added)
        self.counters["member_adds" if added else "member_removes"] += len(targets)

    def _forget_empty_updates(self) -> None:
        with self._transaction() as connection:
            forget_empty_updates(connection, self.connector)

    # ------------------------------------------------------------------------------------ conflicts and errors
    def _resolve_conflict(self, operation: _Operation, answer: GraphAnswer) -> bool:
        """Duplicate attribute resiliency: placeholder UPN, dropped SMTP address; the write is retried."""
        if operation.object_type != "user":
            return False
        sent_upn = (operation.changes.get("userPrincipalName") or [""])[0]
        if _invalid_target(answer) == "userPrincipalName" and "+" in sent_upn and _is_placeholder(sent_upn):
            # Graph's documented UPN characters exclude "+", which the product's private endpoint accepts: keep the
            # placeholder's digits with an allowed separator.
            local, _, domain = sent_upn.rpartition("@")
            fallback = f"{local[:-5]}_{local[-4:]}@{domain}"
            self._update_placeholder(operation.anchor, fallback)
            operation.changes = {**operation.changes, "userPrincipalName": [fallback]}
            self._retry.append(operation)
            return True
        target = _conflict_target(answer)
        if target is None:
            return False
        if target == "userPrincipalName" and operation.changes.get("userPrincipalName"):
            wanted = operation.changes["userPrincipalName"][0]
            if _is_placeholder(wanted):
                return False
            placeholder = self._placeholder_upn(wanted)
            self._record_conflict(operation.anchor, "userPrincipalName", wanted, placeholder)
            operation.changes = {**operation.changes, "userPrincipalName": [placeholder]}
        elif target == "proxyAddresses" and operation.changes.get("mail"):
            wanted = operation.changes["mail"][0]
            self._record_conflict(operation.anchor, "mail", wanted, None)
            operation.changes = {k: v for k, v in operation.changes.items() if k != "mail"}
        else:
            return False
        self.counters["conflicts_recorded"] += 1
        if operation.kind == "update" and not operation.changes:
            with self._transaction() as connection:
                connection.execute(sa.delete(pending_export).where(self._row(operation.anchor)))
            return True
        self._retry.append(operation)
        return True

    def _placeholder_upn(self, wanted: str) -> str:
        if self._initial_domain is None:
            organization = self.writer.request("GET", "/organization")["value"][0]
            domains = organization.get("verifiedDomains") or []
            initial = [d["name"] for d in domains if d.get("isInitial")]
            self._initial_domain = initial[0] if initial else wanted.rpartition("@")[2]
        prefix = wanted.rpartition("@")[0]
        return f"{prefix}+{random.randint(1000, 9999)}@{self._initial_domain}"

    def _record_conflict(self, anchor: str, attribute: str, wanted: str, placeholder: str | None) -> None:
        with self._transaction() as connection:
            self.store.upsert(
                connection,
                export_conflict,
                [
                    {
                        "connector": self.connector,
                        "anchor": anchor,
                        "attribute": attribute,
                        "wanted_value": wanted,
                        "placeholder": placeholder,
                        "detected_at": utcnow(),
                        "released_at": None,
                        "run_id": self.run_id,
                    }
                ],
                update=["wanted_value", "placeholder", "released_at", "run_id"],
            )
        log.warning("duplicate %s %r on %s: %s", attribute, wanted, anchor, placeholder or "value dropped")

    def _update_placeholder(self, anchor: str, placeholder: str) -> None:
        with self._transaction() as connection:
            connection.execute(
                sa.update(export_conflict)
                .where(
                    export_conflict.c.connector == self.connector,
                    export_conflict.c.anchor == anchor,
                    export_conflict.c.attribute == "userPrincipalName",
                )
                .values(placeholder=placeholder)
            )

    def _release_conflicts(self, connection: sa.Connection, anchor: str, changes: Mapping[str, list[Any]]) -> None:
        """A write of the wanted value went through: the conflict is resolved upstream."""
        released = [
            name
            for name in ("userPrincipalName", "mail")
            if changes.get(name) and not _is_placeholder(str(changes[name][0]))
        ]
        if released:
            connection.execute(
                sa.update(export_conflict)
                .where(
                    export_conflict.c.connector == self.connector,
                    export_conflict.c.anchor == anchor,
                    export_conflict.c.attribute.in_(released),
                    export_conflict.c.released_at.is_(None),
                )
                .values(released_at=utcnow())
            )

    def _source_dn(self, anchor: str) -> str | None:
        """The DN of the object this export comes from (AD), so an error names what people know."""
        target = link.alias("target_link")
        source = link.alias("source_link")
        query = (
            sa.select(cs_object.c.dn)
            .select_from(target)
            .join(source, sa.and_(source.c.mv_id == target.c.mv_id, source.c.connector != self.connector))
            .join(
                cs_object, sa.and_(cs_object.c.connector == source.c.connector, cs_object.c.anchor == source.c.anchor)
            )
            .where(target.c.connector == self.connector, target.c.anchor == anchor, source.c.link_type == "projection")
        )
        with self.store.engine.connect() as connection:
            return connection.execute(query.limit(1)).scalar()

    def _fail(self, operation: _Operation, answer: GraphAnswer) -> None:
        code, message = _error(answer)
        self._fail_rows([operation.anchor], code, f"{operation.kind} of {operation.dn}: {message}", dn=operation.dn)

    def _fail_rows(self, anchors: Sequence[str], code: str, message: str, *, dn: str | None = None) -> None:
        with self._transaction() as connection:
            connection.execute(
                sa.update(pending_export)
                .where(pending_export.c.connector == self.connector, pending_export.c.anchor.in_(list(anchors)))
                .values(state="failed", last_error=f"{code}: {message}"[:2000], updated_at=utcnow())
            )
        for anchor in anchors:
            self._error(anchor, dn, code, message)

    def _fail_member(self, operation: _Operation, answer: GraphAnswer) -> None:
        code, message = _error(answer)
        self._fail_references([], code, message, group=operation.anchor, targets=operation.targets)

    def _fail_references(
        self,
        unresolved_targets: Sequence[str],
        code: str,
        message: str,
        *,
        group: str | None = None,
        targets: Sequence[str] = (),
    ) -> None:
        with self._transaction() as connection:
            if group is not None:
                connection.execute(
                    sa.update(pending_export_reference).where(self._references(group, targets)).values(state="failed")
                )
                self._error(group, None, code, f"member change of {len(targets)} members: {message}")
            for chunk in _chunks(list(unresolved_targets)):
                connection.execute(
                    sa.update(pending_export_reference)
                    .where(
                        pending_export_reference.c.connector == self.connector,
                        pending_export_reference.c.target_anchor.in_(chunk),
                    )
                    .values(state="failed")
                )
        if unresolved_targets:
            self.counters["member_changes_unresolved"] += len(unresolved_targets)

    def _error(self, anchor: str | None, dn: str | None, code: str, message: str) -> None:
        source = self._source_dn(anchor) if anchor else None
        self.errors.append({"anchor": anchor, "dn": source or dn, "code": code, "message": message[:2000]})
        if len(self.errors) >= self.settings.error_limit:
            raise ErrorLimitReached


# ================================================================================================== helpers
def graph_body(changes: Mapping[str, list[Any]]) -> dict[str, Any]:
    """Connector-space values as a Graph JSON body: collections as lists, other properties as one value or null."""
    body: dict[str, Any] = {}
    for name, values in changes.items():
        if name in COLLECTION_PROPERTIES:
            body[name] = list(values)
        else:
            body[name] = values[0] if values else None
    return body


def _initial_password() -> str:
    """A random initial password meeting Entra ID's complexity rules; never logged or stored."""
    alphabet = string.ascii_letters + string.digits
    core = "".join(secrets.choice(alphabet) for _ in range(20))
    return f"{core}!{secrets.choice(string.ascii_uppercase)}{secrets.choice(string.digits)}a"


def _parse_time(value: Any) -> dt.datetime | None:
    """A Graph timestamp (``2026-12-04T10:31:05Z``) as an aware datetime, or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _odata_quote(value: str) -> str:
    return str(value).replace("'", "''")


def _is_placeholder(upn: str) -> bool:
    """``prefix+1234@...`` (the product's form) or ``prefix_1234@...`` (its Graph-valid fallback)."""
    local = upn.rpartition("@")[0]
    return len(local) > 5 and local[-5] in "+_" and local[-4:].isdigit()


def _unanswered(answer: GraphAnswer) -> bool:
    """Whether the writer had no answer for the request (its ``$batch`` answer left it out)."""
    return answer.status == 502 and _error_body(answer).get("code") == "missingResponse"


def _error_body(answer: GraphAnswer) -> dict[str, Any]:
    body = answer.body if isinstance(answer.body, dict) else {}
    return body.get("error") or {}


def _message(answer: GraphAnswer) -> str:
    return str(_error_body(answer).get("message", ""))


def _invalid_target(answer: GraphAnswer) -> str | None:
    if answer.status != 400:
        return None
    for detail in _error_body(answer).get("details") or []:
        if detail.get("code") == "InvalidValue":
            return detail.get("target")
    return None


def _conflict_target(answer: GraphAnswer) -> str | None:
    if answer.status != 400:
        return None
    for detail in _error_body(answer).get("details") or []:
        if detail.get("code") == "ObjectConflict":
            return detail.get("target")
    return None


def _error(answer: GraphAnswer) -> tuple[str, str]:
    error = _error_body(answer)
    details = error.get("details") or []
    code = (details[0].get("code") if details else None) or error.get("code") or f"http-{answer.status}"
    request_id = (error.get("innerError") or {}).get("request-id")
    message = f"Graph {answer.status} {error.get('code', '')}: {error.get('message', '')}".strip()
    return code, message + (f" (request-id {request_id})" if request_id else "")


def _chunks(values: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
