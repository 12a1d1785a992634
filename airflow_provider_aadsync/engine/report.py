"""Run reports: the run history of the store rendered as Markdown, like the product's sync run history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_aadsync.engine.store import Store, as_utc

#: Counters shown first, in this order; any others follow alphabetically.
_COUNTER_ORDER = (
    "objects_read",
    "adds",
    "updates",
    "renames",
    "deletes",
    "unchanged",
    "reference_adds",
    "reference_removes",
    "errors",
)


def _duration(run: dict[str, Any]) -> str:
    if not run.get("ended_at"):
        return "running"
    seconds = (as_utc(run["ended_at"]) - as_utc(run["started_at"])).total_seconds()
    return f"{seconds:.2f} s"


def render_run(store: Store, run: dict[str, Any], *, max_errors: int = 20) -> str:
    counters = run.get("counters") or {}
    names = [name for name in _COUNTER_ORDER if name in counters]
    names += sorted(name for name in counters if name not in _COUNTER_ORDER)
    lines = [
        f"## Run {run['id']}: {run['profile']} on `{run['connector']}` — {run['result']}",
        "",
        f"- started: {as_utc(run['started_at']):%Y-%m-%d %H:%M:%S} UTC, duration: {_duration(run)}",
    ]
    if run.get("detail"):
        lines.append(f"- detail: {run['detail']}")
    lines += ["", "| counter | value |", "|---|---:|"]
    lines += [f"| {name} | {counters[name]:,} |" for name in names]
    errors = store.run_errors(run["id"], limit=max_errors)
    if errors:
        lines += ["", f"Errors (first {len(errors)} of {counters.get('errors', len(errors)):,}):", ""]
        lines += ["| code | DN | message |", "|---|---|---|"]
        lines += [f"| {e['code']} | {e['dn'] or e['anchor'] or ''} | {e['message']} |" for e in errors]
    return "\n".join(lines) + "\n"


def render_runs(store: Store, run_ids: Sequence[int] | None = None, *, last: int = 2) -> str:
    """Render the given runs, or the ``last`` runs of the store, oldest first."""
    if run_ids:
        runs = [run for run in (store.get_run(run_id) for run_id in run_ids) if run]
    else:
        runs = list(reversed(store.list_runs(limit=last)))
    if not runs:
        return "No runs recorded in this store yet.\n"
    header = f"# AADSync run report\n\nStore: `{store.display_url}`\n\n"
    return header + "\n".join(render_run(store, run) for run in runs)
