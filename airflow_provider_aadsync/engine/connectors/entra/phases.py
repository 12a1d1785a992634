"""The request phases of an Entra export: operations go 20 per ``$batch``, each call bracketed by state writes in the
store. Before a call its operations are marked ``sent`` (committed before the write); the call is paced to the
tenant's write budget; after it every outcome is recorded in one transaction (reconcile.py). A call cut off or
answered in part is reconciled instead of being sent blindly again; retries join the following calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence

import sqlalchemy as sa

from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.connectors.entra.extensions import extension_names, is_extension
from airflow_provider_aadsync.engine.connectors.entra.graph import (
    BATCH_SIZE,
    UNKNOWN_OUTCOME_LIMIT,
    WRITES_SENT,
    GraphAnswer,
    graph_body,
    graph_error,
    initial_password,
    is_unanswered,
    user_url,
)
from airflow_provider_aadsync.engine.connectors.entra.reconcile import Reconciler
from airflow_provider_aadsync.engine.connectors.entra.schema import RESOURCES
from airflow_provider_aadsync.engine.connectors.entra.state import ExportPass, Operation
from airflow_provider_aadsync.engine.runs.source import BatchRequest, BatchStoppedError, WriteOutcomeUnknownError
from airflow_provider_aadsync.engine.store import pending_export, pending_export_reference, utcnow

log = logging.getLogger(__name__)

_SENT_AT_TYPE = pending_export.c.sent_at.type


class Phases:
    """Sends the operations of one export pass in ``$batch`` calls and hands each answer to the reconciler."""

    def __init__(self, state: ExportPass, *, reconciler: Reconciler) -> None:
        self.state = state
        self.reconciler = reconciler
        #: ``$batch`` calls in a row without a readable answer (the export stops at settings.unknown_outcome_limit).
        self._unknown_in_a_row = 0
        #: The run's progress (engine/progress.py): advanced once per call by the units it carried.
        self.progress = progress.current()
        #: How the sync app's directory extensions are named in Graph.
        self.names = extension_names(state.writer)

    def execute(self, operations: Iterator[Operation]) -> None:
        """Send operations 20 per ``$batch``; retries (conflicts, split member packs) join the following calls."""
        chunk: list[Operation] = []
        for operation in operations:
            chunk.append(operation)
            chunk += self._retries()
            while len(chunk) >= BATCH_SIZE:
                self._send(chunk[:BATCH_SIZE])
                chunk = chunk[BATCH_SIZE:] + self._retries()
        chunk += self._retries()
        while chunk:
            self._send(chunk[:BATCH_SIZE])
            chunk = chunk[BATCH_SIZE:] + self._retries()

    def _retries(self) -> list[Operation]:
        """Operations to send again (conflicts, split member packs): more work for the phase's progress."""
        retries = self.state.take_retries()
        if retries:
            self.progress.add_total(sum(units(operation) for operation in retries))
        return retries

    def _request(self, index: int, operation: Operation) -> BatchRequest:
        resource = RESOURCES[operation.object_type]
        if operation.kind in ("create", "update"):
            if any(is_extension(name) for name in operation.changes):
                self.names.ensure(self.state.writer, operation.changes)
            left_out = [name for name in operation.changes if not self.names.is_registered(name)]
            if left_out:
                # The sync app could not register them (permission): written once registered, counted meanwhile.
                self.state.counters["extension_values_not_registered"] += len(left_out)
        request_id = str(index)
        if operation.kind == "create":
            body = graph_body(operation.changes, self.names)
            if operation.object_type == "user":
                body["passwordProfile"] = {"password": initial_password(), "forceChangePasswordNextSignIn": True}
            return BatchRequest(request_id, "POST", f"/{resource}", body)
        if operation.kind == "update":
            return BatchRequest(
                request_id, "PATCH", f"/{resource}/{operation.anchor}", graph_body(operation.changes, self.names)
            )
        if operation.kind == "delete":
            return BatchRequest(request_id, "DELETE", f"/{resource}/{operation.anchor}")
        if operation.kind == "member-add":
            urls = [self.state.writer.directory_object_url(target) for target in operation.targets]
            return BatchRequest(request_id, "PATCH", f"/groups/{operation.anchor}", {"members@odata.bind": urls})
        if operation.kind == "member-add-one":
            url = self.state.writer.directory_object_url(operation.targets[0])
            return BatchRequest(request_id, "POST", f"/groups/{operation.anchor}/members/$ref", {"@odata.id": url})
        if operation.kind == "manager-set":
            body = {"@odata.id": user_url(self.state.writer, operation.targets[0])}
            return BatchRequest(request_id, "PUT", f"/users/{operation.anchor}/manager/$ref", body)
        if operation.kind == "manager-remove":
            return BatchRequest(request_id, "DELETE", f"/users/{operation.anchor}/manager/$ref")
        return BatchRequest(request_id, "DELETE", f"/groups/{operation.anchor}/members/{operation.targets[0]}/$ref")

    def _send(self, operations: list[Operation]) -> None:
        self.state.counters[f"{self.state.phase}_batch_calls"] += 1
        self._mark_sent(operations)
        self.state.pacer.acquire(len(operations))
        sent_before = self.state.writer.counters.get(WRITES_SENT)
        unknown: list[str] = []
        try:
            answers = self.state.writer.batch(
                [self._request(i, op) for i, op in enumerate(operations)], resend_if_unknown=False
            )
        except BatchStoppedError as error:
            # Throttled past the connection's limits: what Graph answered is recorded now, the rest stays 'sent' for
            # the next run to reconcile, and the run stops.
            self._record(operations, error.results, [])
            raise
        except WriteOutcomeUnknownError as error:
            # The call may have been carried out: reconcile what it held instead of sending it blindly again.
            log.warning("%s; reconciling its %d operations", error, len(error.unknown))
            self.state.counters["calls_with_unknown_outcome"] += 1
            self._unknown_in_a_row += 1
            if self._unknown_in_a_row >= self.state.settings.unknown_outcome_limit:
                # Graph's answers cannot be read at all: stop rather than resend forever (the rows stay 'sent',
                # the next run reconciles them).
                raise WriteOutcomeUnknownError(
                    f"{self._unknown_in_a_row} $batch calls in a row got no readable answer, the last: {error}; "
                    "the export stopped, its sent operations are reconciled by the next run"
                ) from error
            answers, unknown = error.results, error.unknown
        else:
            self._unknown_in_a_row = 0
        if any(
            operation.kind == "create" and (str(index) in unknown or is_unanswered(answers[str(index)]))
            for index, operation in enumerate(operations)
        ):
            time.sleep(self.state.settings.resend_settle_seconds)  # let Graph finish what it may be processing
        self.state.pacer.spent(self._writes_sent(sent_before, len(operations)))
        self.progress.advance(sum(units(operation) for operation in operations))
        self._record(operations, answers, unknown)

    def _record(
        self, operations: Sequence[Operation], answers: Mapping[str, GraphAnswer], unknown: Sequence[str]
    ) -> None:
        """Every outcome of a call in one transaction (one commit per call, not per operation): ``unknown`` ones are
        reconciled; an operation without an answer (a call stopped partway) is left as sent."""
        with self.state.store.transaction() as connection:
            self.state.connection = connection
            try:
                for index, operation in enumerate(operations):
                    if str(index) in unknown:
                        self.reconciler.reconcile(operation)
                        continue
                    answer = answers.get(str(index))
                    if answer is None:
                        continue
                    if is_unanswered(answer):
                        self._unanswered(operation, answer)
                        continue
                    handler = getattr(self.reconciler, f"after_{operation.kind.replace('-', '_')}")
                    handler(operation, answer)
            finally:
                self.state.connection = None

    def _writes_sent(self, before: float | None, operations: int) -> int:
        """The writes the call charged to the tenant's budget: every send of each, as Graph charges them (the hook
        sends a call without creates again after a dropped answer or a 504, and an item answered 5xx or 429), at
        least the call's operations (a writer that does not count them)."""
        after = self.state.writer.counters.get(WRITES_SENT)
        if before is None or after is None:
            return operations
        return max(operations, int(after - before))

    def _unanswered(self, operation: Operation, answer: GraphAnswer) -> None:
        """The call's answer left this operation out: it may have been carried out. Reconciled like a cut-off call a
        few times; then a per-object error, and the row stays 'sent' so the next run reconciles it (never a blind
        resend, which could create an object twice)."""
        operation.unanswered += 1
        if operation.unanswered < UNKNOWN_OUTCOME_LIMIT:
            self.reconciler.reconcile(operation)
            return
        code, message = graph_error(answer)
        message = f"{operation.kind} of {operation.dn}: {message}; outcome unknown, reconciled by the next run"
        self.state.error(operation.anchor, operation.dn, code, message)

    def _mark_sent(self, operations: Sequence[Operation]) -> None:
        objects = [op.anchor for op in operations if op.kind in ("create", "update", "delete")]
        now = utcnow()
        with self.state.transaction() as connection:
            if objects:
                connection.execute(
                    sa.update(pending_export)
                    .where(pending_export.c.connector == self.state.connector, pending_export.c.anchor.in_(objects))
                    .values(
                        state="sent",
                        attempts=pending_export.c.attempts + 1,
                        run_id=self.state.run_id,
                        updated_at=now,
                        # the first send, committed before the write: what resume compares createdDateTime with
                        sent_at=sa.func.coalesce(pending_export.c.sent_at, sa.literal(now, _SENT_AT_TYPE)),
                    )
                )
            for operation in operations:
                attribute = operation.reference_attribute
                if attribute is not None:
                    connection.execute(
                        sa.update(pending_export_reference)
                        .where(self.state.references(operation.anchor, operation.reference_targets, attribute))
                        .values(state="sent", run_id=self.state.run_id)
                    )


def units(operation: Operation) -> int:
    """What an operation counts for in the progress: one object, or the member (manager) references it settles."""
    return len(operation.reference_targets) if operation.reference_attribute else 1
