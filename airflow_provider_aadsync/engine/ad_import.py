"""Run an Active Directory import (full or DirSync delta) into the store, as one recorded run.

The directory is reached through any object satisfying :class:`DirectorySource` (the ActiveDirectoryHook in
production, fakes in unit tests), so this module stays free of Airflow and of network code.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from airflow_provider_aadsync.engine.ad_entries import EntryDecoder
from airflow_provider_aadsync.engine.importer import ConnectorSpaceWriter
from airflow_provider_aadsync.engine.prefetch import prefetch
from airflow_provider_aadsync.engine.source import ObjectDecodeError, SourceObject, WatermarkRejectedError
from airflow_provider_aadsync.engine.store import Store, utcnow

log = logging.getLogger(__name__)

#: A DirSync cookie older than AD's default tombstone lifetime may have missed deletions: import fully instead.
TOMBSTONE_LIFETIME = dt.timedelta(days=180)

#: A run stops after this many per-object errors, as the product's run profiles do.
ERROR_LIMIT = 5_000

RawEntry = tuple[str, dict[str, list[bytes]]]


class DirectorySource(Protocol):
    """What the import needs from a directory connection."""

    def naming_context(self) -> str: ...

    def server_name(self) -> str: ...

    def full_import_pages(self, attributes: Sequence[str]) -> Iterator[list[RawEntry]]: ...

    def dirsync_watermark(self) -> bytes: ...

    def dirsync_pages(self, attributes: Sequence[str], cookie: bytes) -> Iterator[tuple[list[RawEntry], bytes]]: ...


@dataclass
class ImportResult:
    run_id: int
    connector: str
    mode: Literal["full", "delta"]
    result: str
    counters: dict[str, int] = field(default_factory=dict)
    fallback_reason: str | None = None

    def summary(self) -> dict[str, Any]:
        """A small dict for XCom and logs: never objects, never secrets."""
        return {
            "run_id": self.run_id,
            "connector": self.connector,
            "mode": self.mode,
            "result": self.result,
            "counters": self.counters,
            "fallback_reason": self.fallback_reason,
        }


class ErrorLimitExceeded(Exception):
    """Raised inside an import when the per-object error limit is reached; the transaction rolls back."""


def import_active_directory(
    source: DirectorySource,
    store: Store,
    *,
    connector: str = "ad",
    mode: Literal["full", "delta"] = "delta",
    attributes: Sequence[str],
    decoder: EntryDecoder | None = None,
    scope_dn: str | None = None,
    lock_holder: str | None = None,
    error_limit: int = ERROR_LIMIT,
) -> ImportResult:
    """Import the directory into connector space ``connector``.

    ``lock_holder`` names who holds the store lock: an Airflow task passes ``dag_id:run_id`` so its retries take the
    lock back; by default it is this process, so two separate processes always exclude each other.

    ``mode="delta"`` uses the saved DirSync cookie; without one, with one older than the tombstone lifetime, or
    when the DC rejects it, the run becomes a full import and says why. Rows and the new cookie commit in one
    transaction: a failed import keeps the old cookie and leaves the connector space untouched.
    """
    decoder = decoder or EntryDecoder()
    partition = source.naming_context()
    scope = (scope_dn or partition).lower()
    with store.locked(lock_holder or process_holder()):
        fallback_reason = None
        saved = store.get_watermark(connector, partition) if mode == "delta" else None
        if mode == "delta":
            if saved is None or not saved.cookie:
                fallback_reason = "no DirSync cookie saved for this partition yet"
            elif utcnow() - saved.updated_at > TOMBSTONE_LIFETIME:
                fallback_reason = (
                    f"the DirSync cookie is older than the tombstone lifetime ({TOMBSTONE_LIFETIME.days} days)"
                )
        if mode == "delta" and fallback_reason is None:
            assert saved is not None and saved.cookie is not None
            try:
                return _run(
                    store,
                    source,
                    connector,
                    "delta",
                    attributes,
                    decoder,
                    scope,
                    partition,
                    saved.cookie,
                    error_limit,
                )
            except WatermarkRejectedError as error:
                fallback_reason = f"the domain controller rejected the DirSync cookie ({error})"
        if fallback_reason:
            log.warning("delta import of %s becomes a full import: %s", connector, fallback_reason)
        result = _run(store, source, connector, "full", attributes, decoder, scope, partition, None, error_limit)
        result.fallback_reason = fallback_reason
        return result


def process_holder() -> str:
    """A lock holder name unique to this process on this host."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _run(
    store: Store,
    source: DirectorySource,
    connector: str,
    mode: Literal["full", "delta"],
    attributes: Sequence[str],
    decoder: EntryDecoder,
    scope: str,
    partition: str,
    cookie: bytes | None,
    error_limit: int,
) -> ImportResult:
    run_id = store.start_run(f"{mode}-import", connector)
    errors: list[dict[str, Any]] = []
    writer: ConnectorSpaceWriter | None = None
    try:
        with store.transaction() as connection:
            writer = ConnectorSpaceWriter(store, connection, connector, run_id)
            if mode == "full":
                # Take the watermark before reading: changes made while we page are seen again by the next delta.
                new_cookie = source.dirsync_watermark()
                writer.begin_full()
                for entries in prefetch(source.full_import_pages(attributes)):
                    writer.write_full_page(_decode(entries, decoder, scope, errors, error_limit, partial=False))
                writer.finish_full()
            else:
                assert cookie is not None
                new_cookie = cookie
                for entries, page_cookie in source.dirsync_pages(attributes, cookie):
                    writer.write_delta_page(_decode(entries, decoder, scope, errors, error_limit, partial=True))
                    new_cookie = page_cookie
            store.save_watermark(connection, connector, partition, new_cookie, source.server_name())
    except ErrorLimitExceeded:
        counters = _counters(writer, errors)
        store.record_errors(run_id, errors)
        store.finish_run(run_id, "stopped-error-limit", counters, f"stopped after {len(errors)} object errors")
        return ImportResult(run_id, connector, mode, "stopped-error-limit", counters)
    except WatermarkRejectedError:
        store.finish_run(run_id, "stopped-watermark-rejected", _counters(writer, errors), "DirSync cookie rejected")
        raise
    except Exception as error:
        store.record_errors(run_id, errors)
        store.finish_run(
            run_id,
            "stopped-server-down" if _is_connection_error(error) else "stopped-extension-error",
            _counters(writer, errors),
            f"{type(error).__name__}: {error}",
        )
        raise
    counters = _counters(writer, errors)
    result = "completed-import-errors" if errors else "success"
    store.record_errors(run_id, errors)
    store.finish_run(run_id, result, counters)
    log.info("%s import of %s finished: %s %s", mode, connector, result, counters)
    return ImportResult(run_id, connector, mode, result, counters)


def _decode(
    entries: list[RawEntry],
    decoder: EntryDecoder,
    scope: str,
    errors: list[dict[str, Any]],
    error_limit: int,
    *,
    partial: bool,
) -> list[SourceObject]:
    objects = []
    for dn, raw in entries:
        try:
            obj = decoder.decode(dn, raw, partial=partial)
        except ObjectDecodeError as error:
            errors.append({"anchor": error.anchor, "dn": error.dn, "code": error.code, "message": str(error)})
            if len(errors) >= error_limit:
                raise ErrorLimitExceeded from error
            continue
        if obj is None:
            continue
        # DirSync reads the whole naming context: scope by DN here. Tombstones live elsewhere and are kept; in a
        # delta, an object now outside the scope was moved out of it, which for the connector space is a delete.
        if not obj.deleted and not obj.dn.lower().endswith(scope):
            if not partial:
                continue
            obj.deleted = True
        objects.append(obj)
    return objects


def _counters(writer: ConnectorSpaceWriter | None, errors: list[dict[str, Any]]) -> dict[str, int]:
    counters = dict(writer.counters) if writer else {}
    counters["errors"] = len(errors)
    for name in ("adds", "updates", "renames", "deletes"):
        counters.setdefault(name, 0)
    return counters


def _is_connection_error(error: Exception) -> bool:
    return any(word in type(error).__name__ for word in ("Socket", "Connection", "Communication", "Unreachable"))
