"""Runs grouped into sync cycles for the sync manager's charts: by DAG run when Airflow made them, else by the
cycle's order (imports, then syncs, then exports)."""

from __future__ import annotations

from airflow_provider_aadsync.engine.browse import cycles


def summary(run_id: int, profile: str, dag_run: str | None = None, *, changed: int = 1, result: str = "success"):
    minute = f"{run_id:02d}"
    return {
        "id": run_id,
        "profile": profile,
        "connector": "ad",
        "started_at": f"2026-12-04T10:{minute}:00+00:00",
        "ended_at": f"2026-12-04T10:{minute}:30+00:00",
        "result": result,
        "counters": {"errors": 1} if result != "success" else {},
        "objects_changed": changed,
        "origin": {"dag_id": "aadsync_cycle", "run_id": dag_run, "task_id": "t"} if dag_run else None,
    }


def test_runs_of_one_dag_run_are_one_cycle_even_when_two_dag_runs_interleave():
    runs = [
        summary(1, "delta-import", "r1"),
        summary(2, "delta-import", "r2"),
        summary(3, "delta-sync", "r1", changed=5),
        summary(4, "export", "r1", result="completed-export-errors"),
        summary(5, "delta-sync", "r2"),
    ]
    found = cycles(runs)
    assert [cycle["run_ids"] for cycle in found] == [[1, 3, 4], [2, 5]]
    first = found[0]
    assert first["objects_changed"] == 7 and first["errors"] == 1 and first["result"] == "completed-export-errors"
    assert first["started_at"] == "2026-12-04T10:01:00+00:00" and first["duration_seconds"] == 3 * 60 + 30


def test_cli_runs_start_a_new_cycle_at_an_import_after_a_sync_or_export():
    runs = [
        summary(1, "full-import"),
        summary(2, "full-import"),
        summary(3, "full-sync"),
        summary(4, "export"),
        summary(5, "delta-import"),
        summary(6, "delta-sync"),
        summary(7, "delta-import", "r9"),
        summary(8, "delta-sync"),
    ]
    assert [cycle["run_ids"] for cycle in cycles(runs)] == [[1, 2, 3, 4], [5, 6], [7], [8]]
