"""One recorded export run of any connector: the guards every export has, around a connector's exporter.

The plan is on the run record before the first write (`aadsync report` shows it while the export runs); more pending
deletes than the threshold stop the run before anything is written; staging stores the plan and writes nothing;
the error limit stops the exporter; every outcome is recorded with its counters and per-object errors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from airflow_provider_aadsync.engine.import_run import StepResult, process_holder
from airflow_provider_aadsync.engine.store import Store

log = logging.getLogger(__name__)

#: An export run's result (mode ``export``; ``detail`` says why it stopped).
ExportResult = StepResult


class ErrorLimitReached(Exception):
    """Raised by an exporter when it has recorded as many object errors as the run allows."""


class ExportGuards(Protocol):
    staging: bool
    deletion_threshold: int


class Exporter(Protocol):
    errors: list[dict[str, Any]]

    def run(self) -> None: ...

    def final_counters(self, planned: Mapping[str, int]) -> dict[str, Any]: ...


def run_export(
    store: Store,
    *,
    connector: str,
    settings: ExportGuards,
    plan: Callable[[], dict[str, int]],
    exporter: Callable[[int], Exporter],
    command: str,
    lock_holder: str | None = None,
) -> ExportResult:
    """Run one export of ``connector``: ``plan()`` counts what is pending (with ``planned_deletes``),
    ``exporter(run_id)`` writes it; ``command`` names the CLI command in the deletion threshold's advice."""
    with store.locked(lock_holder or process_holder()):
        run_id = store.start_run("export-staging" if settings.staging else "export", connector)
        counts = plan()
        store.update_run(run_id, counts, "export plan recorded; writing")
        deletes = counts["planned_deletes"]
        if deletes > settings.deletion_threshold:
            detail = (
                f"{deletes:,} deletes are pending, more than the deletion threshold of "
                f"{settings.deletion_threshold:,}; nothing was written. If the deletes are intended, run the export "
                f"again with a deletion threshold of at least {deletes:,} (task parameter `deletion_threshold`, or "
                f"`aadsync {command} --deletion-threshold {deletes}`)"
            )
            return _finish(store, run_id, connector, "stopped-deletion-threshold-exceeded", counts, [], detail)
        if settings.staging:
            detail = "staging mode: the plan is stored and nothing was written"
            return _finish(store, run_id, connector, "staged", counts, [], detail)
        writer = exporter(run_id)
        try:
            writer.run()
        except ErrorLimitReached:
            detail = f"stopped after {len(writer.errors)} object errors"
            final = writer.final_counters(counts)
            return _finish(store, run_id, connector, "stopped-error-limit", final, writer.errors, detail)
        except Exception as error:
            _finish(
                store, run_id, connector, "stopped-extension-error", writer.final_counters(counts), writer.errors,
                repr(error),
            )  # fmt: skip
            raise
        result = "completed-export-errors" if writer.errors else "success"
        final = writer.final_counters(counts)
        log.info("export to %s finished: %s %s", connector, result, final)
        return _finish(store, run_id, connector, result, final, writer.errors, None)


def _finish(
    store: Store,
    run_id: int,
    connector: str,
    result: str,
    counters: dict[str, Any],
    errors: list[dict[str, Any]],
    detail: str | None,
) -> ExportResult:
    store.record_errors(run_id, errors)
    store.finish_run(run_id, result, counters, detail)
    return ExportResult(run_id, connector, "export", result, counters, detail=detail)
