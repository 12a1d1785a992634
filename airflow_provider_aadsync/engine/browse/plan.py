"""What the next export would write, and the loaded rule set."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.browse.common import conflicts, cut_values, page_size
from airflow_provider_aadsync.engine.rules import RuleSet
from airflow_provider_aadsync.engine.store import Store, export_conflict, pending_export, pending_export_reference


# ---------------------------------------------------------------------------------------------------- the plan
def export_plan(store: Store, *, connector: str = "entra", offset: int = 0, limit: int = 100) -> dict[str, Any]:
    """What the next export of ``connector`` would write: the counts an export plans by (``plan_counts``, as the
    CLI's ``export-plan`` prints them) and the operations, each with its attribute changes and member changes."""
    from airflow_provider_aadsync.engine.connectors.registry import plan_counts

    counts = plan_counts(store, connector)
    with store.engine.connect() as connection:
        total = connection.execute(
            sa.select(sa.func.count()).select_from(pending_export).where(pending_export.c.connector == connector)
        ).scalar_one()
        rows = connection.execute(
            sa.select(pending_export)
            .where(pending_export.c.connector == connector)
            .order_by(pending_export.c.operation, pending_export.c.object_type, pending_export.c.dn)
            .offset(max(0, int(offset)))
            .limit(page_size(limit))
        ).all()
        anchors = [row.anchor for row in rows]
        references: dict[str, dict[str, int]] = {}
        for start in range(0, len(anchors), 500):
            for anchor, operation, count in connection.execute(
                sa.select(pending_export_reference.c.anchor, pending_export_reference.c.operation, sa.func.count())
                .where(
                    pending_export_reference.c.connector == connector,
                    pending_export_reference.c.anchor.in_(anchors[start : start + 500]),
                )
                .group_by(pending_export_reference.c.anchor, pending_export_reference.c.operation)
            ):
                references.setdefault(anchor, {})[operation] = count
        found_conflicts = conflicts(
            connection, (export_conflict.c.connector == connector) & export_conflict.c.released_at.is_(None)
        )
    operations = [
        {
            "anchor": row.anchor,
            "dn": row.dn,
            "object_type": row.object_type,
            "operation": row.operation,
            "state": row.state,
            "attempts": row.attempts,
            "last_error": row.last_error,
            "changes": {name: cut_values(values) for name, values in sorted(json.loads(row.changes).items())},
            "member_adds": references.get(row.anchor, {}).get("add", 0),
            "member_removes": references.get(row.anchor, {}).get("remove", 0),
        }
        for row in rows
    ]
    return {
        "connector": connector,
        "counts": dict(sorted(counts.items())),
        "total": total,
        "offset": max(0, int(offset)),
        "operations": operations,
        "open_conflicts": found_conflicts,
    }


# ------------------------------------------------------------------------------------------------------- rules
def _scope_text(clause: Any) -> dict[str, Any]:
    return {"attribute": clause.attribute, "operator": str(clause.operator), "value": clause.value}


def rules_view(rules: RuleSet) -> dict[str, Any]:
    """The loaded rule set in precedence order: each rule's direction, connector, types, link type, scope (groups
    OR-ed, clauses AND-ed), join groups, flows and the file it came from."""
    listed = []
    for position, compiled in enumerate(rules.rules, start=1):
        model = compiled.rule
        listed.append(
            {
                "order": position,
                "name": model.name,
                "description": model.description,
                "direction": str(model.direction),
                "connector": model.connector,
                "source_object_type": model.source_object_type,
                "target_object_type": model.target_object_type,
                "link_type": str(model.link_type),
                "precedence": model.precedence,
                "enabled": model.enabled,
                "scoping": [[_scope_text(clause) for clause in group] for group in model.scoping],
                "join": [
                    [{"source": c.source, "target": c.target, "case_sensitive": c.case_sensitive} for c in group]
                    for group in model.join
                ],
                "flows": [
                    {
                        "type": str(flow.type),
                        "target": flow.target,
                        "source": flow.source,
                        "value": flow.value,
                        "expression": flow.expression,
                        "apply_once": flow.apply_once,
                        "merge": str(flow.merge),
                    }
                    for flow in model.flows
                ],
                "source_file": compiled.origin,
            }
        )
    return {"fingerprint": rules.fingerprint, "sources": list(rules.sources), "rules": listed}
