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


def _values_text(values: Any) -> str:
    if values is None:
        return "AuthoritativeNull"
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

    from airflow_provider_aadsync.engine.entra_export import plan_counts
    from airflow_provider_aadsync.engine.store import pending_export, pending_export_reference

    counts = plan_counts(store, connector)
    lines = [f"# Export plan for `{connector}`", "", "| planned | count |", "|---|---:|"]
    lines += [f"| {name} | {value:,} |" for name, value in sorted(counts.items())]
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
