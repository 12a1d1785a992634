"""Run reports: the run history of the store rendered as Markdown, like the product's sync run history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_aadsync.engine.runs.export_guard_check import guard_report_line
from airflow_provider_aadsync.engine.runs.import_guard import STOPPED_DELETION_THRESHOLD
from airflow_provider_aadsync.engine.runs.unconfigured import UnconfiguredSpace, render_unconfigured
from airflow_provider_aadsync.engine.store import Store, as_utc

#: Export counters that are the guards' thresholds and confirmations: shown in the guards line, not in the counter
#: table.
_GUARD_SETTINGS = frozenset(
    {
        "deletion_threshold",
        "disable_threshold",
        "member_removal_threshold",
        "member_removal_group_percent",
        "identity_change_threshold",
        "attribute_clear_threshold",
        # the counts confirmed for the run (engine/runs/export_confirmation.py)
        "confirmed_deletes",
        "confirmed_disables",
        "confirmed_member_removals",
        "confirmed_identity_changes",
        "confirmed_attribute_clears",
    }
)

#: Counters shown first, in this order; any others follow alphabetically.
_COUNTER_ORDER = (
    "objects_read",
    "connector_space_objects",
    "objects_in_scope",
    "deletes_planned",
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
    """One run: its counters and (``max_errors`` > 0) its first per-object errors."""
    counters = run.get("counters") or {}
    guards = guard_report_line(counters)
    shown = {name: value for name, value in counters.items() if not (guards and name in _GUARD_SETTINGS)}
    names = [name for name in _COUNTER_ORDER if name in shown]
    names += sorted(name for name in shown if name not in _COUNTER_ORDER)
    lines = [
        f"## Run {run['id']}: {run['profile']} on `{run['connector']}` — {run['result']}",
        "",
        f"- started: {as_utc(run['started_at']):%Y-%m-%d %H:%M:%S} UTC, duration: {_duration(run)}",
    ]
    if run.get("detail"):
        lines.append(f"- detail: {run['detail']}")
    if guards:
        lines.append(f"- guards (pending of threshold): {guards}")
    lines += ["", "| counter | value |", "|---|---:|"]
    lines += [f"| {name} | {counters[name]:,} |" for name in names]
    lines += render_notices(store.run_notices(run["id"]))
    errors = store.run_errors(run["id"], limit=max_errors) if max_errors > 0 else []
    if errors:
        lines += ["", f"Errors (first {len(errors)} of {counters.get('errors', len(errors)):,}):", ""]
        lines += ["| code | DN | message |", "|---|---|---|"]
        lines += [f"| {e['code']} | {e['dn'] or e['anchor'] or ''} | {e['message']} |" for e in errors]
    return "\n".join(lines) + "\n"


def render_notices(notices: Sequence[dict[str, Any]], *, examples: int = 5, per_object: int = 50) -> list[str]:
    """A run's notices (what it could not write, grouped once per run): a count and the first few examples each;
    substituted values (UPNs on the initial domain) one line per object, up to ``per_object``."""
    if not notices:
        return []
    lines = ["", "Notices (not errors: what this run could not write, once per kind):", ""]
    lines += ["| code | subject | objects | message | examples |", "|---|---|---:|---|---|"]
    for notice in notices:
        shown = [
            (example.get("dn") or example.get("anchor") or "")
            + (f": {example['wanted']} → {example['written']}" if example.get("wanted") else "")
            for example in notice["examples"][:examples]
        ]
        more = notice["count"] - len(shown)
        cell = "; ".join(shown) + (f"; and {more:,} more" if more > 0 else "")
        lines.append(f"| {notice['code']} | {notice['subject']} | {notice['count']:,} | {notice['message']} | {cell} |")
    for notice in notices:
        substituted = [example for example in notice["examples"] if example.get("wanted")][:per_object]
        if substituted:
            # Which object got which UPN: one line each (the run keeps up to 500; the sync manager lists them).
            lines += ["", f"{notice['subject']} written instead (first {len(substituted)} of {notice['count']:,}):", ""]
            lines += [f"- {e.get('dn') or e.get('anchor')}: {e['wanted']} → {e['written']}" for e in substituted]
    return lines


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


def _values_text(values: Any) -> str:
    """A traced value: None is a NULL (contributes nothing); the sentinels are traced by name (strings)."""
    if values is None:
        return "NULL"
    if isinstance(values, str):
        return values
    if not values:
        return "(no value)"
    shown = ", ".join(repr(value) for value in list(values)[:5])
    return shown + (f", … ({len(values)} values)" if len(values) > 5 else "")


def render_preview(trace: dict[str, Any]) -> str:
    """A sync preview of one object (see ``engine.sync.preview``) as readable text."""
    lines = [
        f"Preview of {trace['connector']} {trace['object_type']} {trace['dn']}",
        f"  anchor: {trace['anchor']}   pending import: {trace.get('pending_import') or 'none'}",
        "",
        "Inbound rules in scope: " + (", ".join(trace.get("inbound_rules_in_scope") or []) or "none"),
        f"Decision: {trace.get('decision', 'nothing to do')}",
    ]
    for note in trace.get("metaverse", []):
        lines.append(f"Metaverse: {note}")
    flows = trace.get("inbound_flows") or []
    if flows:
        winners = trace.get("winners") or {}
        lines += ["", "Inbound flows (rule, precedence → metaverse attribute = value):"]
        for flow in flows:
            key = f"{trace['connector']}|{flow['rule']}"
            mark = "  (wins)" if winners.get(flow["target"]) == key else ""
            lines.append(
                f"  {flow['rule']} [{flow['precedence']}] → {flow['target']} = {_values_text(flow['value'])}{mark}"
            )
    if trace.get("metaverse_after") is not None:
        lines += ["", f"Metaverse object {trace.get('metaverse_id', '(new)')} after sync:"]
        for name, values in sorted(trace["metaverse_after"].items()):
            winner = (trace.get("winners") or {}).get(name, "")
            lines.append(f"  {name} = {_values_text(values)}" + (f"   ← {winner}" if winner else ""))
    for connector, outbound in (trace.get("outbound") or {}).items():
        lines += ["", f"Outbound to {connector}: rules in scope: {', '.join(outbound['rules_in_scope']) or 'none'}"]
    for note in trace.get("exports", []):
        lines.append(f"  {note}")
    exports = trace.get("pending_exports") or []
    if exports:
        lines += ["", "Pending exports it would stage:"]
        for export in exports:
            lines.append(f"  {export['connector']}: {export['operation']} {export['dn']}")
            for name, values in sorted(export["changes"].items()):
                lines.append(f"      {name} = {_values_text(values)}")
    for change in trace.get("pending_reference_changes") or []:
        lines.append(
            f"  {change['connector']}: {change['attribute']} +{change['adds']:,} / -{change['removes']:,} references"
        )
    errors = trace.get("errors") or []
    if errors:
        lines += ["", "Errors:"] + [f"  {error['code']}: {error['message']}" for error in errors]
    lines += ["", "Nothing was written."]
    return "\n".join(lines) + "\n"


def render_pending_exports(store: Store, *, connector: str | None = None) -> str:
    """The export plan as the store holds it: pending operations by connector, operation, type and state."""
    import sqlalchemy as sa

    from airflow_provider_aadsync.engine.store import pending_export, pending_export_reference

    objects = sa.select(
        pending_export.c.connector,
        pending_export.c.operation,
        pending_export.c.object_type,
        pending_export.c.state,
        sa.func.count(),
    ).group_by(
        pending_export.c.connector, pending_export.c.operation, pending_export.c.object_type, pending_export.c.state
    )
    references = sa.select(
        pending_export_reference.c.connector,
        pending_export_reference.c.operation,
        pending_export_reference.c.attribute,
        pending_export_reference.c.state,
        sa.func.count(),
    ).group_by(
        pending_export_reference.c.connector,
        pending_export_reference.c.operation,
        pending_export_reference.c.attribute,
        pending_export_reference.c.state,
    )
    if connector:
        objects = objects.where(pending_export.c.connector == connector)
        references = references.where(pending_export_reference.c.connector == connector)
    with store.engine.connect() as connection:
        object_rows = connection.execute(objects.order_by(*objects.selected_columns[:4])).all()
        reference_rows = connection.execute(references.order_by(*references.selected_columns[:4])).all()
    lines = ["## Pending exports", ""]
    if not object_rows and not reference_rows:
        return "\n".join(lines + ["Nothing to export.", ""])
    lines += ["| connector | operation | object type / attribute | state | count |", "|---|---|---|---|---:|"]
    lines += [f"| {c} | {op} | {kind} | {state} | {n:,} |" for c, op, kind, state, n in object_rows]
    lines += [
        f"| {c} | reference {op} | {attribute} | {state} | {n:,} |" for c, op, attribute, state, n in reference_rows
    ]
    return "\n".join(lines) + "\n"


def render_export_plan(store: Store, *, connector: str = "entra", limit: int = 20) -> str:
    """The pending exports in the store: counts, then the first ``limit`` operations with their attribute changes."""
    import json

    import sqlalchemy as sa

    from airflow_provider_aadsync.engine.connectors.registry import connector_for, plan_counts
    from airflow_provider_aadsync.engine.store import pending_export, pending_export_reference

    counts = plan_counts(store, connector)
    lines = [f"# Export plan for `{connector}`", "", "| planned | count |", "|---|---:|"]
    lines += [f"| {name} | {value:,} |" for name, value in sorted(counts.items())]
    found = connector_for(connector)
    if found is not None:  # the plan's cost in the connector's own unit: LDAP writes, Graph $batch calls
        lines += ["", found.minimum_writes(counts)]
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(pending_export)
            .where(pending_export.c.connector == connector)
            .order_by(pending_export.c.operation, pending_export.c.object_type, pending_export.c.dn)
            .limit(limit)
        ).all()
        references = dict(
            connection.execute(
                sa.select(pending_export_reference.c.anchor, sa.func.count())
                .where(pending_export_reference.c.connector == connector)
                .group_by(pending_export_reference.c.anchor)
            ).all()
        )
    if rows:
        lines += ["", f"First {len(rows)} operations:", ""]
        for row in rows:
            changes = json.loads(row.changes)
            extra = f", {references[row.anchor]:,} member changes" if row.anchor in references else ""
            lines.append(f"- {row.operation} {row.object_type} `{row.dn}` ({row.state}{extra})")
            lines += [f"    - {name}: {values}" for name, values in sorted(changes.items())]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- cycle report
#: What a step's summary line shows, by kind of run: (counter, label), in this order, non-zero values only.
_HIGHLIGHTS: dict[str, tuple[tuple[str, str], ...]] = {
    "import": (
        ("adds", "adds"),
        ("updates", "updates"),
        ("renames", "renames"),
        ("deletes", "deletes"),
        ("reference_adds", "member adds"),
        ("reference_removes", "member removes"),
        ("errors", "errors"),
    ),
    "sync": (
        ("projections", "projections"),
        ("joins", "joins"),
        ("disconnections", "disconnections"),
        ("metaverse_attribute_changes", "metaverse changes"),
        ("metaverse_deletes", "metaverse deletes"),
        ("provisioned", "provisioned"),
        ("export_adds_staged", "export adds staged"),
        ("export_updates_staged", "export updates staged"),
        ("export_deletes_staged", "export deletes staged"),
        ("export_reference_adds_staged", "member adds staged"),
        ("export_reference_removes_staged", "member removes staged"),
        ("errors", "errors"),
    ),
    "export": (
        ("user_creates", "user creates"),
        ("group_creates", "group creates"),
        ("group_adds", "group adds"),  # the AD export (group writeback)
        ("user_updates", "user updates"),
        ("group_updates", "group updates"),
        ("user_deletes", "user deletes"),
        ("group_deletes", "group deletes"),
        ("member_adds", "member adds"),
        ("member_removes", "member removes"),
        ("creates_reconciled", "creates reconciled after an interruption"),
        ("throttled_requests", "throttled requests"),
        ("throttle_wait_seconds", "throttle wait s"),
        ("errors", "errors"),
    ),
    "export-staging": (
        ("planned_user_adds", "planned user adds"),
        ("planned_group_adds", "planned group adds"),
        ("planned_user_updates", "planned user updates"),
        ("planned_group_updates", "planned group updates"),
        ("planned_deletes", "planned deletes"),
        ("planned_disables", "planned disables"),
        ("planned_member_adds", "planned member adds"),
        ("planned_member_removes", "planned member removes"),
    ),
}


def _kind(profile: str) -> str:
    if profile.startswith("export"):
        return profile
    return profile.rsplit("-", 1)[-1]


def _number(value: float) -> str:
    return f"{value:,}" if float(value).is_integer() else f"{value:,.2f}"


#: Headline counters that are not objects changed (errors, throttling): left out of :func:`changed_count`.
_NOT_CHANGES = frozenset({"errors", "throttled_requests", "throttle_wait_seconds", "creates_reconciled"})


def changed_count(run: dict[str, Any]) -> int:
    """How many objects (and member values) a run changed or staged: the sum of its headline counters, without
    errors and throttling. The sync manager charts it per cycle."""
    counters = run.get("counters") or {}
    total = 0
    for name, _label in _HIGHLIGHTS.get(_kind(run["profile"]), ()):
        value = counters.get(name)
        if name not in _NOT_CHANGES and isinstance(value, int | float):
            total += int(value)
    return total


def step_highlights(run: dict[str, Any]) -> str:
    """One line of what a run changed: its non-zero headline counters (an Entra export: `$batch` calls vs the
    minimum; an AD export: LDAP writes vs the minimum, and the member modify operations)."""
    counters = run.get("counters") or {}
    if run.get("result") == STOPPED_DELETION_THRESHOLD and "connector_space_objects" in counters:
        # the import guard's stop: nothing was applied, say what would have been removed (the detail says why)
        text = (
            f"stopped before any change: {_number(counters.get('deletes_planned', 0))} planned deletes of "
            f"{_number(counters['connector_space_objects'])} objects"
        )
        if "objects_in_scope" in counters:
            text += f" (objects in scope: {_number(counters['objects_in_scope'])})"
        return text
    parts = [
        f"{label} {_number(counters[name])}"
        for name, label in _HIGHLIGHTS.get(_kind(run["profile"]), ())
        if counters.get(name)
    ]
    if run["profile"] == "export" and "ldap_writes" in counters:  # the AD export (group writeback, ConsistencyGuid)
        if counters.get("member_modify_operations"):
            parts.append(f"member modify operations {_number(counters['member_modify_operations'])}")
        parts.append(
            f"LDAP writes {_number(counters['ldap_writes'])} "
            f"(minimum {_number(counters.get('ldap_writes_minimum', 0))})"
        )
    elif run["profile"] == "export":
        parts.append(
            f"$batch calls {_number(counters.get('batch_calls', 0))} "
            f"(minimum {_number(counters.get('batch_calls_minimum', 0))})"
        )
    return " · ".join(parts) or "no changes"


def render_cycle_report(
    store: Store,
    steps: Sequence[dict[str, Any]],
    *,
    title: str,
    plan_connector: str = "entra",
    plan_limit: int = 10,
    max_rows: int = 100,
    unconfigured: Sequence[UnconfiguredSpace] = (),
) -> str:
    """The report of one sync cycle: a line per step, which deltas ran as full runs and why, what needs a person
    (every per-object error and duplicate-attribute conflict, up to ``max_rows`` of each), each run's counters, and
    what is left to export.

    :param unconfigured: the connector spaces the connectors configuration no longer names (unconfigured.py), shown
        first, under the title.

    :param steps: in cycle order, ``{"task": id, "state": task state or None, "summary": the step's summary or None}``
        (a summary has at least ``run_id``, and ``fallback_reason`` when a delta became a full run).
    """
    runs: list[dict[str, Any]] = []
    lines = [f"# AADSync cycle report: {title}", "", f"Store: `{store.display_url}`", ""]
    lines += render_unconfigured(unconfigured)
    lines += ["| step | run | ran as | result | what it did |", "|---|---:|---|---|---|"]
    fallbacks: list[str] = []
    for step in steps:
        summary = step.get("summary") or {}
        run = store.get_run(summary["run_id"]) if summary.get("run_id") is not None else None
        if run is None:
            state = step.get("state") or "no run"
            why = {
                "failed": "no run recorded: see the task's log",
                "skipped": "skipped, nothing written (the AD export is skipped while group writeback is off)",
            }.get(state, "no run recorded")
            lines.append(f"| {step['task']} | | | {state} | {why} |")
            continue
        runs.append(run)
        lines.append(
            f"| {step['task']} | {run['id']} | {run['profile']} on `{run['connector']}` | {run['result']} "
            f"| {step_highlights(run)} |"
        )
        if summary.get("fallback_reason"):
            fallbacks.append(
                f"- {step['task']}: the delta ran as a **{run['profile']}** because {summary['fallback_reason']}"
            )
    if fallbacks:
        lines += ["", "Deltas that became full runs:", "", *fallbacks]
    lines.append("")
    text = "\n".join(lines) + "\n" + needs_a_person(store, [run["id"] for run in runs], max_rows=max_rows)
    text += "\n" + "\n".join(render_run(store, run, max_errors=0) for run in runs)
    from airflow_provider_aadsync.engine.connectors.registry import plan_counts

    left = {name: value for name, value in plan_counts(store, plan_connector).items() if value}
    if left:
        text += "\n" + render_export_plan(store, connector=plan_connector, limit=plan_limit).replace("# ", "## ", 1)
    else:
        text += f"\n## Export plan for `{plan_connector}`\n\nNothing left to export.\n"
    return text


def _cell(value: Any) -> str:
    """A Markdown table cell: pipes escaped, line breaks flattened, nothing as empty."""
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def needs_a_person(store: Store, run_ids: Sequence[int], *, max_rows: int = 100) -> str:
    """The rows a person must look at, from the sync manager's own queries (engine/browse): every per-object error
    (run, DN, anchor, code, message) and every duplicate-attribute conflict (run, DN, attribute, conflicting value,
    placeholder given) of ``run_ids``, each table capped at ``max_rows`` with a line saying how many more and where
    to see them. The conflicts come from the sync manager's own query (engine/browse/common.py)."""
    import sqlalchemy as sa

    from airflow_provider_aadsync.engine.browse.common import conflicts as conflict_rows
    from airflow_provider_aadsync.engine.store import export_conflict, run_error

    errors: list[dict[str, Any]] = []
    conflicts: list[dict[str, Any]] = []
    error_total = conflict_total = 0
    for run_id in run_ids:
        with store.engine.connect() as connection:
            error_total += connection.execute(
                sa.select(sa.func.count()).select_from(run_error).where(run_error.c.run_id == run_id)
            ).scalar_one()
            found = conflict_rows(connection, export_conflict.c.run_id == run_id)
        conflict_total += len(found)
        errors += [{"run": run_id, **row} for row in store.run_errors(run_id, limit=max(1, max_rows))]
        conflicts += [{"run": run_id, **row} for row in found]
    if not error_total and not conflict_total:
        return "## Needs a person\n\nNo per-object errors and no duplicate-attribute conflicts.\n"
    ids = " ".join(str(run_id) for run_id in run_ids)
    more = "see the sync manager (AADSync in the Airflow navigation) or `aadsync report --json {ids}`"
    lines = ["## Needs a person", ""]
    if error_total:
        lines += [f"Per-object errors ({error_total:,}):", "", "| run | DN | anchor | code | message |"]
        lines.append("|---:|---|---|---|---|")
        lines += [
            f"| {e['run']} | {_cell(e['dn'])} | {_cell(e['anchor'])} | {_cell(e['code'])} | {_cell(e['message'])} |"
            for e in errors[:max_rows]
        ]
        if error_total > min(len(errors), max_rows):
            lines += ["", f"{error_total - min(len(errors), max_rows):,} more errors: {more.format(ids=ids)}"]
        lines.append("")
    if conflict_total:
        lines += [f"Duplicate-attribute conflicts ({conflict_total:,}):", ""]
        lines += ["| run | DN | attribute | conflicting value | placeholder given |", "|---:|---|---|---|---|"]
        lines += [
            f"| {c['run']} | {_cell(c['dn'] or c['anchor'])} | {_cell(c['attribute'])} | {_cell(c['wanted_value'])} "
            f"| {_cell(c['placeholder']) or '(value dropped)'} |"
            for c in conflicts[:max_rows]
        ]
        if conflict_total > max_rows:
            lines += ["", f"{conflict_total - max_rows:,} more conflicts: {more.format(ids=ids)}"]
        lines.append("")
    return "\n".join(lines)
