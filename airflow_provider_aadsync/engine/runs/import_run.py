"""One import run of any connector: lock, delta-or-full decision, one transaction, watermarks, run record.

Connector-specific reading lives in an :class:`ImportSteps` (Active Directory, Entra ID); everything a run must
guarantee whatever the source lives here: rows and watermarks commit together or not at all, a delta without a
usable watermark becomes a full import and says why, per-object errors are recorded and capped (a delta that cannot
read a failed object again later keeps the old watermark of its partition, so the next delta reads its changes
again: ``keep_watermark``; the AD and Entra imports read failed objects again instead, runs/read_again.py), and a
full import keeps, as it was, what it read but could not apply.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.runs.cs_writer import ConnectorSpaceWriter
from airflow_provider_aadsync.engine.runs.import_guard import (
    STOPPED_DELETION_THRESHOLD,
    ImportGuard,
    MassRemovalStopped,
)
from airflow_provider_aadsync.engine.runs.instance_advice import cli_store
from airflow_provider_aadsync.engine.runs.source import ObjectDecodeError, WatermarkRejectedError
from airflow_provider_aadsync.engine.store import Store, Watermark, utcnow
from airflow_provider_aadsync.engine.store.lock import stopped_result
from airflow_provider_aadsync.engine.store.scopes import import_scope

log = logging.getLogger(__name__)

#: A run stops after this many per-object errors, as the product's run profiles do.
ERROR_LIMIT = 5_000

Mode = Literal["full", "delta"]


class ErrorLimitExceeded(Exception):
    """Raised inside an import when the per-object error limit is reached; the transaction rolls back."""


def error_anchors(errors: Sequence[Mapping[str, Any]]) -> set[str]:
    """The anchors ``errors`` name (an error may name none: an entry without an objectGUID, an item without an id)."""
    return {error["anchor"] for error in errors if error.get("anchor")}


class ErrorSink:
    """Collects per-object errors for the run record; raises once there are ``limit`` of them."""

    def __init__(self, limit: int = ERROR_LIMIT):
        self.limit = limit
        self.errors: list[dict[str, Any]] = []

    def add(self, error: ObjectDecodeError) -> None:
        self.record(anchor=error.anchor, dn=error.dn, code=error.code, message=str(error))

    def record(self, *, anchor: str | None, dn: str | None, code: str, message: str) -> None:
        self.errors.append({"anchor": anchor, "dn": dn, "code": code, "message": message})
        if len(self.errors) >= self.limit:
            raise ErrorLimitExceeded(f"{len(self.errors)} object errors")

    def __len__(self) -> int:
        return len(self.errors)

    def anchors(self) -> set[str]:
        """The anchors of the objects with an error (those an error could name)."""
        return error_anchors(self.errors)


class ImportSteps(Protocol):
    """The connector-specific part of an import."""

    #: What the watermark is called in messages ("DirSync cookie", "delta link").
    watermark_name: str
    #: A watermark older than this may have missed deletions: import fully instead.
    watermark_lifetime: dt.timedelta

    def partitions(self) -> Sequence[str]: ...

    def server_name(self) -> str | None: ...

    # Optional, for the import guard's message (read with getattr): ``command`` (the CLI command running this
    # import, "import-ad"), ``describe_scope() -> str`` (what the import reads: "base DN X on server Y") and
    # ``counted`` (what its full import's ``seen`` counts: "user, group or contact"; default "object").

    def full(self, writer: ConnectorSpaceWriter, errors: ErrorSink) -> Mapping[str, bytes]:
        """Read everything into ``writer`` (begin_full … finish_full); return the new watermark per partition."""
        ...

    def delta(self, writer: ConnectorSpaceWriter, errors: ErrorSink, saved: Mapping[str, bytes]) -> Mapping[str, bytes]:
        """Apply the changes since ``saved``; return the new watermark per partition. A partition left out keeps its
        saved watermark and its age: one where an object failed, whose changes the next delta reads again.

        :raise WatermarkRejectedError: the server no longer accepts a saved watermark.
        """
        ...


@dataclass
class StepResult:
    """The outcome of one recorded step (import, sync, export), as the run history and XCom show it."""

    run_id: int
    connector: str
    mode: str
    result: str
    counters: dict[str, Any] = field(default_factory=dict)
    fallback_reason: str | None = None
    detail: str | None = None

    def summary(self) -> dict[str, Any]:
        """A small dict for XCom and logs: never objects, never secrets."""
        return {
            "run_id": self.run_id,
            "connector": self.connector,
            "mode": self.mode,
            "result": self.result,
            "counters": self.counters,
            "fallback_reason": self.fallback_reason,
            "detail": self.detail,
        }


#: An import's result (full or delta).
ImportResult = StepResult


def process_holder() -> str:
    """A lock holder name unique to this process on this host."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_import(
    store: Store,
    steps: ImportSteps,
    *,
    connector: str,
    mode: Mode,
    lock_holder: str | None = None,
    error_limit: int = ERROR_LIMIT,
    guard: ImportGuard | None = None,
) -> ImportResult:
    """Run one import of ``connector``, recorded as a run.

    ``lock_holder`` names who holds the store lock: an Airflow task passes ``dag_id:run_id`` so its retries take the
    lock back; by default it is this process, so two separate processes always exclude each other.

    ``guard`` (default: :class:`ImportGuard`'s defaults) stops an import that would remove too much of the connector
    space before anything changes: result ``stopped-deletion-threshold-exceeded``, watermark kept.
    """
    guard = guard or ImportGuard()
    with store.locked(lock_holder or process_holder(), scope=import_scope(connector)):
        fallback_reason = None
        if mode == "delta":
            saved: dict[str, Watermark | None] = {
                partition: store.get_watermark(connector, partition) for partition in steps.partitions()
            }
            missing = [partition for partition, mark in saved.items() if mark is None or not mark.cookie]
            stale = [
                partition
                for partition, mark in saved.items()
                if mark is not None and utcnow() - mark.updated_at > steps.watermark_lifetime
            ]
            if missing:
                fallback_reason = f"no {steps.watermark_name} saved yet for {', '.join(missing)}"
            elif stale:
                fallback_reason = (
                    f"the {steps.watermark_name} of {', '.join(stale)} is older than "
                    f"{steps.watermark_lifetime.days} days"
                )
            else:
                cookies = {partition: mark.cookie for partition, mark in saved.items() if mark and mark.cookie}
                try:
                    return _execute(store, steps, connector, "delta", cookies, error_limit, guard)
                except WatermarkRejectedError as error:
                    fallback_reason = f"the server rejected the {steps.watermark_name} ({error})"
            log.warning("delta import of %s becomes a full import: %s", connector, fallback_reason)
        result = _execute(store, steps, connector, "full", {}, error_limit, guard)
        result.fallback_reason = fallback_reason
        return result


def _execute(
    store: Store,
    steps: ImportSteps,
    connector: str,
    mode: Mode,
    saved: Mapping[str, bytes],
    error_limit: int,
    guard: ImportGuard,
) -> ImportResult:
    with progress.track(f"{mode} import of {connector}"):
        return _import(store, steps, connector, mode, saved, error_limit, guard)


def _import(
    store: Store,
    steps: ImportSteps,
    connector: str,
    mode: Mode,
    saved: Mapping[str, bytes],
    error_limit: int,
    guard: ImportGuard,
) -> ImportResult:
    run_id = store.start_run(f"{mode}-import", connector)
    read_at = utcnow()  # the watermarks' age counts from here (Store.save_watermark)
    errors = ErrorSink(error_limit)
    writer: ConnectorSpaceWriter | None = None
    try:
        with store.transaction() as connection:
            check = _removal_check(guard, steps, connector, store)
            writer = ConnectorSpaceWriter(
                store, connection, connector, run_id, removal_check=check, unreadable=errors.anchors
            )
            if mode == "full":
                watermarks = steps.full(writer, errors)  # finish_full runs the check before its deletes
            else:
                space_size = writer.live_objects()
                progress.current().start_phase("reading changes", unit="changes")
                watermarks = steps.delta(writer, errors, saved)
                check(mode="delta", deletes=writer.counters["deletes"], space_size=space_size)
            for partition, cookie in watermarks.items():
                store.save_watermark(connection, connector, partition, cookie, steps.server_name(), read_at)
    except MassRemovalStopped as stop:  # raised inside the transaction: every write of the run was rolled back
        counters = {"adds": 0, "updates": 0, "renames": 0, "deletes": 0, **stop.counters(), "errors": len(errors)}
        store.record_errors(run_id, errors.errors)
        store.finish_run(run_id, STOPPED_DELETION_THRESHOLD, counters, stop.detail)
        log.warning("%s import of %s stopped: %s", mode, connector, stop.detail)
        return ImportResult(run_id, connector, mode, STOPPED_DELETION_THRESHOLD, counters, detail=stop.detail)
    except ErrorLimitExceeded:
        counters = _counters(writer, errors)
        store.record_errors(run_id, errors.errors)
        store.finish_run(run_id, "stopped-error-limit", counters, f"stopped after {len(errors)} object errors")
        return ImportResult(run_id, connector, mode, "stopped-error-limit", counters)
    except WatermarkRejectedError:
        store.finish_run(run_id, "stopped-watermark-rejected", _counters(writer, errors), steps.watermark_name)
        raise
    except Exception as error:
        store.record_errors(run_id, errors.errors)
        store.finish_run(
            run_id,
            stopped_result(error, _stop_of(error)),
            _counters(writer, errors),
            f"{type(error).__name__}: {error}",
        )
        raise
    counters = _counters(writer, errors)
    result = "completed-import-errors" if len(errors) else "success"
    store.record_errors(run_id, errors.errors)
    store.finish_run(run_id, result, counters)
    log.info("%s import of %s finished: %s %s", mode, connector, result, counters)
    return ImportResult(run_id, connector, mode, result, counters)


def keep_watermark(writer: ConnectorSpaceWriter, partition: str, failed: int, what: str) -> None:
    """Say that a delta keeps the old watermark of ``partition``, where ``failed`` objects could not be applied: the
    next delta reads their changes again (counter ``watermarks_kept``)."""
    writer.counters["watermarks_kept"] += 1
    log.warning(
        "the %s of %s in %s is kept: %d object(s) failed, the next delta reads their changes again",
        what,
        partition,
        writer.connector,
        failed,
    )


def _removal_check(guard: ImportGuard, steps: ImportSteps, connector: str, store: Store) -> Callable[..., None]:
    """The guard's check with what its message names: the connector, the import's scope, CLI command, sync
    instance and store."""
    instance, store_option = store.instance, cli_store(store.url, store.instance)

    def check(
        *, mode: Mode, deletes: int, space_size: int, seen: int | None = None, gone: Mapping[str, int] | None = None
    ) -> None:
        if guard.confirms(deletes):
            return
        describe = getattr(steps, "describe_scope", None)
        guard.check(
            connector=connector,
            mode=mode,
            deletes=deletes,
            space_size=space_size,
            seen=seen,
            scope=describe() if describe else None,
            command=getattr(steps, "command", None),
            seen_what=getattr(steps, "counted", "object"),
            gone=gone,
            instance=instance,
            store=store_option,
        )

    return check


def _counters(writer: ConnectorSpaceWriter | None, errors: ErrorSink) -> dict[str, int]:
    counters = dict(writer.counters) if writer else {}
    counters["errors"] = len(errors)
    for name in ("adds", "updates", "renames", "deletes"):
        counters.setdefault(name, 0)
    return counters


def _stop_of(error: Exception) -> str:
    """The run result of an import stopped by ``error``: a refused configuration (a referral, a base DN outside the
    naming context, a bind in clear: the hooks' ``...ConfigurationError``, never retried) says so, before a server
    that could not be reached (``stopped-server-down``, which a retry may get past); anything else is an extension
    error. By class name: the engine does not import the hooks."""
    names = {klass.__name__ for klass in type(error).__mro__}
    if any(name.endswith("ConfigurationError") for name in names):
        return "stopped-configuration-error"
    connection_words = ("Socket", "Connection", "Communication", "Transport", "Unreachable")
    if any(word in name for name in names for word in connection_words):
        return "stopped-server-down"
    return "stopped-extension-error"
