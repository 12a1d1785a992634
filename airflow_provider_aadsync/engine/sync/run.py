"""A recorded sync run of one connector (full or delta), and preview of one object without writing anything.

Like imports: the store lock keeps two runs of one sync instance apart, the whole pass commits in one transaction
(a killed run leaves the store as it was, and its pending imports are still pending for the retry), per-object errors
are recorded, and 5,000 of them stop the run. A delta sync becomes a full sync when the rule set changed since this
connector's last full sync, or when it never had one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Literal

import sqlalchemy as sa

from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.connectors.schema import ConnectorSchema
from airflow_provider_aadsync.engine.rules import RuleSet
from airflow_provider_aadsync.engine.runs.import_run import (
    ERROR_LIMIT,
    ErrorLimitExceeded,
    ErrorSink,
    StepResult,
    process_holder,
)
from airflow_provider_aadsync.engine.store import Store, cs_object, link, mv_object, sync_state, utcnow
from airflow_provider_aadsync.engine.store.lock import stopped_result
from airflow_provider_aadsync.engine.sync.contributions import resolve
from airflow_provider_aadsync.engine.sync.synchronizer import Synchronizer

log = logging.getLogger(__name__)

Mode = Literal["full", "delta"]

#: Counters every sync run reports, zero or not (the product's sync run history columns).
REPORTED_COUNTERS = (
    "objects_evaluated",
    "connectors",
    "disconnectors",
    "projections",
    "joins",
    "disconnections",
    "metaverse_attribute_changes",
    "metaverse_deletes",
    "provisioned",
    "export_adds_staged",
    "export_updates_staged",
    "export_deletes_staged",
    "export_reference_adds_staged",
    "export_reference_removes_staged",
)


#: A sync run's result.
SyncResult = StepResult


def full_sync_reason(store: Store, connector: str, rules: RuleSet) -> str | None:
    """Why a delta sync of ``connector`` must be a full one now, or None if a delta will do."""
    with store.engine.connect() as connection:
        row = connection.execute(sa.select(sync_state).where(sync_state.c.connector == connector)).first()
    if row is None or row.last_full_sync_at is None:
        return "no full sync has run yet"
    if row.rules_fingerprint != rules.fingerprint:
        return "the sync rules changed since the last full sync"
    return None


def run_sync(
    store: Store,
    rules: RuleSet,
    *,
    connector: str,
    mode: Mode,
    lock_holder: str | None = None,
    error_limit: int = ERROR_LIMIT,
    schemas: Mapping[str, ConnectorSchema] | None = None,
    reevaluate: bool = False,
) -> SyncResult:
    """Run one sync of ``connector`` against the rule set, recorded as a run.

    A full sync skips the objects the sync memo shows unchanged since a pass evaluated them without error
    (sync/memo.py); ``reevaluate=True`` evaluates every object all the same.

    :raise RuleSetError: ``connector`` has no enabled inbound rule (the sync would disconnect everything); raised
        before the store is touched (no lock taken, no run recorded)
    """
    rules.require_inbound(connector)
    with store.locked(lock_holder or process_holder()):
        fallback_reason = full_sync_reason(store, connector, rules) if mode == "delta" else None
        if fallback_reason:
            log.warning("delta sync of %s becomes a full sync: %s", connector, fallback_reason)
            mode = "full"
        run_id = store.start_run(f"{mode}-sync", connector)
        errors = ErrorSink(error_limit)
        synchronizer: Synchronizer | None = None
        try:
            with store.transaction() as connection, progress.track(f"{mode} sync of {connector}"):
                synchronizer = Synchronizer(store, connection, rules, connector, run_id, errors, schemas=schemas)
                synchronizer.run(mode, reevaluate=reevaluate)
                _save_state(store, connection, connector, rules, mode)
        except ErrorLimitExceeded:
            counters = _counters(synchronizer, errors)
            store.record_errors(run_id, errors.errors)
            detail = f"stopped after {len(errors)} object errors; nothing was applied"
            store.finish_run(run_id, "stopped-error-limit", counters, detail)
            return SyncResult(run_id, connector, mode, "stopped-error-limit", counters, fallback_reason)
        except Exception as error:
            store.record_errors(run_id, errors.errors)
            result = stopped_result(error, "stopped-extension-error")
            store.finish_run(run_id, result, _counters(synchronizer, errors), f"{error!r}")
            raise
        counters = _counters(synchronizer, errors)
        result = "completed-sync-errors" if len(errors) else "success"
        store.record_errors(run_id, errors.errors)
        store.finish_run(run_id, result, counters, fallback_reason)
        log.info("%s sync of %s finished: %s %s", mode, connector, result, counters)
        return SyncResult(run_id, connector, mode, result, counters, fallback_reason)


def _save_state(store: Store, connection: sa.Connection, connector: str, rules: RuleSet, mode: Mode) -> None:
    now = utcnow()
    row: dict[str, Any] = {"connector": connector, "last_sync_at": now}
    update = ["last_sync_at"]
    if mode == "full":
        row.update(rules_fingerprint=rules.fingerprint, last_full_sync_at=now)
        update += ["rules_fingerprint", "last_full_sync_at"]
    else:
        row.update(rules_fingerprint=None, last_full_sync_at=None)
    store.upsert(connection, sync_state, [row], update=update)


def _counters(synchronizer: Synchronizer | None, errors: ErrorSink) -> dict[str, int]:
    counters = {name: 0 for name in REPORTED_COUNTERS}
    if synchronizer is not None:
        counters.update(synchronizer.counters)
    counters["errors"] = len(errors)
    return counters


# ------------------------------------------------------------------------------------------------------ preview
class PreviewError(LookupError):
    """The object to preview does not exist in the connector space."""


def preview(
    store: Store,
    rules: RuleSet,
    *,
    connector: str,
    anchor: str | None = None,
    dn: str | None = None,
    schemas: Mapping[str, ConnectorSchema] | None = None,
) -> dict[str, Any]:
    """What a sync of one connector-space object would do, computed by the real pass and rolled back.

    Returns the rules in scope, the join/projection decision, every flow's value and contributing rule, the winning
    contributor per metaverse attribute, and the pending exports it would stage. Nothing is written.
    """
    if (anchor is None) == (dn is None):
        raise ValueError("preview needs exactly one of anchor or dn")
    with store.engine.connect() as connection:
        transaction = connection.begin()
        try:
            condition = (
                cs_object.c.anchor == anchor if anchor is not None else sa.func.lower(cs_object.c.dn) == dn.lower()
            )
            row = connection.execute(
                sa.select(
                    cs_object.c.anchor, cs_object.c.dn, cs_object.c.object_type, cs_object.c.pending_import
                ).where(cs_object.c.connector == connector, condition)
            ).first()
            if row is None:
                raise PreviewError(f"no object {anchor or dn!r} in the {connector!r} connector space")
            trace: dict[str, Any] = {
                "connector": connector,
                "anchor": row.anchor,
                "dn": row.dn,
                "object_type": row.object_type,
                "pending_import": row.pending_import,
            }
            errors = ErrorSink(limit=1_000_000)
            synchronizer = Synchronizer(store, connection, rules, connector, None, errors, schemas=schemas, trace=trace)
            synchronizer.run("full", anchors=[row.anchor])
            trace["counters"] = dict(synchronizer.counters)
            joined = connection.execute(
                sa.select(mv_object.c.id, mv_object.c.contributions)
                .join(link, link.c.mv_id == mv_object.c.id)
                .where(link.c.connector == connector, link.c.anchor == row.anchor)
            ).first()
            if joined is not None:
                attrs, winners = resolve(json.loads(joined.contributions))
                trace["metaverse_id"] = joined.id
                trace["metaverse_after"] = attrs
                trace["winners"] = winners
            return trace
        finally:
            transaction.rollback()
