"""The run history: runs newest first, one run with its errors and conflicts, runs grouped into cycles."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.browse.common import NotFound, conflicts, iso, page_size
from airflow_provider_aadsync.engine.report import changed_count
from airflow_provider_aadsync.engine.store import Store, as_utc, export_conflict, run, run_error


# --------------------------------------------------------------------------------------------------------- runs
def run_summary(row: dict[str, Any]) -> dict[str, Any]:
    """One run as the runs page lists it: what ran, when, how long, its result, counters and objects changed."""
    started, ended = row["started_at"], row.get("ended_at")
    duration = (as_utc(ended) - as_utc(started)).total_seconds() if ended else None
    return {
        "id": row["id"],
        "profile": row["profile"],
        "connector": row["connector"],
        "started_at": iso(started),
        "ended_at": iso(ended),
        "duration_seconds": duration,
        "result": row["result"],
        "counters": row.get("counters") or {},
        "objects_changed": changed_count(row),
        "detail": row.get("detail"),
        "origin": row.get("origin"),
    }


def list_runs(
    store: Store,
    *,
    connector: str | None = None,
    result: str | None = None,
    profile: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> dict[str, Any]:
    """Runs newest first, filtered by connector, result (``stopped`` matches every ``stopped-*``) and profile."""
    conditions = []
    if connector:
        conditions.append(run.c.connector == connector)
    if result:
        conditions.append(run.c.result.like(f"{result}-%") | (run.c.result == result))
    if profile:
        conditions.append(run.c.profile == profile)
    query = sa.select(run).where(*conditions)
    with store.engine.connect() as connection:
        total = connection.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
        rows = connection.execute(
            query.order_by(run.c.id.desc()).offset(max(0, int(offset))).limit(page_size(limit))
        ).mappings()
        runs = [run_summary(dict(row)) for row in rows]
    return {"total": total, "offset": max(0, int(offset)), "limit": page_size(limit), "runs": runs}


def run_detail(store: Store, run_id: int, *, error_offset: int = 0, error_limit: int = 200) -> dict[str, Any]:
    """One run with its per-object errors (DN, anchor, code, message), the duplicate-attribute conflicts it
    recorded (attribute, wanted value, placeholder given), and its notices (what it could not write, grouped: code,
    subject, count, message, examples)."""
    found = store.get_run(run_id)
    if found is None:
        raise NotFound(f"no run {run_id} in this store")
    with store.engine.connect() as connection:
        error_total = connection.execute(
            sa.select(sa.func.count()).select_from(run_error).where(run_error.c.run_id == run_id)
        ).scalar_one()
        errors = connection.execute(
            sa.select(run_error.c.anchor, run_error.c.dn, run_error.c.code, run_error.c.message)
            .where(run_error.c.run_id == run_id)
            .order_by(run_error.c.id)
            .offset(max(0, int(error_offset)))
            .limit(page_size(error_limit))
        ).mappings()
        error_rows = [dict(row) for row in errors]
        found_conflicts = conflicts(connection, export_conflict.c.run_id == run_id)
    return {
        **run_summary(found),
        "errors_total": error_total,
        "errors": error_rows,
        "conflicts": found_conflicts,
        "notices": store.run_notices(run_id),
    }


def cycles(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs (summaries, any order) grouped into sync cycles, oldest first. Runs made by Airflow tasks belong to the
    cycle of their DAG run (``origin``); other runs (the CLI) form a new cycle at each import that follows a sync
    or an export (a cycle's order is imports → syncs → exports). Per cycle: start, runs, objects changed,
    duration (first start to last end), errors and the first result that was not a success."""
    ordered = sorted(runs, key=lambda item: item["id"])
    groups: list[list[dict[str, Any]]] = []
    by_dag_run: dict[tuple[str, str], list[dict[str, Any]]] = {}
    previous_import = False
    for item in ordered:
        origin = item.get("origin") or {}
        if origin.get("dag_id") and origin.get("run_id"):
            key = (origin["dag_id"], origin["run_id"])
            if key not in by_dag_run:
                by_dag_run[key] = []
                groups.append(by_dag_run[key])
            by_dag_run[key].append(item)
            previous_import = False
            continue
        is_import = item["profile"].endswith("import")
        if not groups or (is_import and not previous_import) or groups[-1] in by_dag_run.values():
            groups.append([])
        groups[-1].append(item)
        previous_import = is_import
    result = []
    for group in groups:
        started = min(dt.datetime.fromisoformat(item["started_at"]) for item in group)
        ends = [dt.datetime.fromisoformat(item["ended_at"]) for item in group if item["ended_at"]]
        failed = [item["result"] for item in group if item["result"] not in ("success", "staged")]
        result.append(
            {
                "started_at": started.isoformat(),
                "run_ids": [item["id"] for item in group],
                "objects_changed": sum(item["objects_changed"] for item in group),
                "duration_seconds": (max(ends) - started).total_seconds() if ends else None,
                "errors": sum(int((item["counters"] or {}).get("errors", 0) or 0) for item in group),
                "result": failed[0] if failed else "success",
            }
        )
    return result


def recent_cycles(store: Store, *, days: float = 7, limit: int = 2_000) -> list[dict[str, Any]]:
    """The cycles of the last ``days`` days, oldest first (for the runs page's chart)."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(run).where(run.c.started_at >= since).order_by(run.c.id.desc()).limit(page_size(limit) * 4)
        ).mappings()
        summaries = [run_summary(dict(row)) for row in rows]
    return cycles(summaries)
