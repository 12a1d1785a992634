"""Connector spaces and the metaverse: search, and one object's lineage across them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.browse.common import (
    NotFound,
    conflicts,
    cut_values,
    display_name,
    iso,
    like_pattern,
    page_size,
)
from airflow_provider_aadsync.engine.store import (
    Store,
    cs_object,
    export_conflict,
    link,
    mv_object,
    pending_export,
    pending_export_reference,
    run,
    run_error,
)
from airflow_provider_aadsync.engine.sync.contributions import resolve


# ------------------------------------------------------------------------------------------------------- search
def connectors(store: Store) -> list[str]:
    """The connector spaces the store holds, by name."""
    with store.engine.connect() as connection:
        return list(
            connection.execute(sa.select(cs_object.c.connector).distinct().order_by(cs_object.c.connector)).scalars()
        )


def search_objects(
    store: Store,
    q: str = "",
    *,
    connector: str | None = None,
    metaverse: bool = True,
    pending_export_only: bool = False,
    disconnectors_only: bool = False,
    limit: int = 50,
) -> dict[str, Any]:
    """Find objects by DN, anchor, UPN, mail, display name or any attribute value (a case-insensitive substring of
    the DN, the anchor or the stored attribute document).

    :param connector: search this connector space only, and not the metaverse; None: every connector space and,
        with ``metaverse``, the metaverse.
    :param pending_export_only: only connector-space objects with an export waiting.
    :param disconnectors_only: only connector-space objects joined to no metaverse object.
    :return: ``{"connector_space": [...], "metaverse": [...]}``, each hit with what the lineage link needs.
    """
    q = (q or "").strip()
    page = page_size(limit)
    pattern = like_pattern(q) if q else None
    cs_conditions: list[Any] = [cs_object.c.is_deleted.is_(False)]
    if connector:
        cs_conditions.append(cs_object.c.connector == connector)
    if pattern:
        cs_conditions.append(
            sa.or_(
                sa.func.lower(cs_object.c.dn).like(pattern, escape="\\"),
                sa.func.lower(cs_object.c.anchor).like(pattern, escape="\\"),
                sa.func.lower(cs_object.c.attrs).like(pattern, escape="\\"),
            )
        )
    pending = (
        sa.select(pending_export.c.operation)
        .where(pending_export.c.connector == cs_object.c.connector, pending_export.c.anchor == cs_object.c.anchor)
        .limit(1)
        .scalar_subquery()
    )
    if pending_export_only:
        cs_conditions.append(pending.is_not(None))
    if disconnectors_only:
        cs_conditions.append(link.c.mv_id.is_(None))
    query = (
        sa.select(
            cs_object.c.connector,
            cs_object.c.anchor,
            cs_object.c.dn,
            cs_object.c.object_type,
            cs_object.c.attrs,
            link.c.mv_id,
            link.c.link_type,
            pending.label("pending_export"),
        )
        .select_from(
            cs_object.outerjoin(
                link, (link.c.connector == cs_object.c.connector) & (link.c.anchor == cs_object.c.anchor)
            )
        )
        .where(*cs_conditions)
        .order_by(cs_object.c.connector, cs_object.c.dn)
        .limit(page)
    )
    with store.engine.connect() as connection:
        cs_hits = [
            {
                "connector": row.connector,
                "anchor": row.anchor,
                "dn": row.dn,
                "object_type": row.object_type,
                "display_name": display_name(json.loads(row.attrs)),
                "metaverse_id": row.mv_id,
                "link_type": row.link_type,
                "state": "connector" if row.mv_id is not None else "disconnector",
                "pending_export": row.pending_export,
            }
            for row in connection.execute(query)
        ]
        mv_hits: list[dict[str, Any]] = []
        if metaverse and not connector and not pending_export_only and not disconnectors_only:
            mv_query = sa.select(mv_object.c.id, mv_object.c.object_type, mv_object.c.attrs)
            if pattern:
                matches = sa.func.lower(mv_object.c.attrs).like(pattern, escape="\\")
                mv_query = mv_query.where(sa.or_(matches, mv_object.c.id == int(q)) if _is_row_id(q) else matches)
            rows = connection.execute(mv_query.limit(page)).all()
            ids = [row.id for row in rows]
            links = _links_of(connection, ids)
            for row in sorted(rows, key=lambda r: r.id):
                attrs = json.loads(row.attrs)
                mv_hits.append(
                    {
                        "id": row.id,
                        "object_type": row.object_type,
                        "display_name": display_name(attrs),
                        "links": links.get(row.id, []),
                    }
                )
    return {"q": q, "connector": connector, "connector_space": cs_hits, "metaverse": mv_hits}


def _links_of(connection: sa.Connection, mv_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    ids = list(mv_ids)
    found: dict[int, list[dict[str, Any]]] = {}
    for start in range(0, len(ids), 500):
        rows = connection.execute(
            sa.select(link.c.mv_id, link.c.connector, link.c.anchor).where(link.c.mv_id.in_(ids[start : start + 500]))
        )
        for row in rows:
            found.setdefault(row.mv_id, []).append({"connector": row.connector, "anchor": row.anchor})
    return found


# ------------------------------------------------------------------------------------------------------ lineage
def _cs_row(connection: sa.Connection, connector: str, anchor: str) -> Any:
    return connection.execute(
        sa.select(cs_object).where(cs_object.c.connector == connector, cs_object.c.anchor == anchor)
    ).first()


def _pending_for(connection: sa.Connection, connector: str, anchor: str) -> dict[str, Any] | None:
    row = connection.execute(
        sa.select(pending_export).where(pending_export.c.connector == connector, pending_export.c.anchor == anchor)
    ).first()
    if row is None:
        return None
    references = connection.execute(
        sa.select(pending_export_reference.c.attribute, pending_export_reference.c.operation, sa.func.count())
        .where(pending_export_reference.c.connector == connector, pending_export_reference.c.anchor == anchor)
        .group_by(pending_export_reference.c.attribute, pending_export_reference.c.operation)
    ).all()
    return {
        "operation": row.operation,
        "state": row.state,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "changes": {name: cut_values(values) for name, values in sorted(json.loads(row.changes).items())},
        "reference_changes": [
            {"attribute": attribute, "operation": operation, "count": count}
            for attribute, operation, count in references
        ],
        "updated_at": iso(row.updated_at),
    }


def _errors_for(connection: sa.Connection, pairs: Sequence[tuple[str, str]], limit: int = 20) -> list[dict[str, Any]]:
    """The newest per-object errors recorded for these (connector, anchor) objects, with their run."""
    if not pairs:
        return []
    condition = sa.or_(*[(run.c.connector == c) & (run_error.c.anchor == a) for c, a in pairs])
    rows = connection.execute(
        sa.select(
            run_error.c.run_id,
            run.c.profile,
            run.c.connector,
            run.c.started_at,
            run_error.c.anchor,
            run_error.c.dn,
            run_error.c.code,
            run_error.c.message,
        )
        .select_from(run_error.join(run, run.c.id == run_error.c.run_id))
        .where(condition)
        .order_by(run_error.c.id.desc())
        .limit(limit)
    ).mappings()
    return [{**dict(row), "started_at": iso(row["started_at"])} for row in rows]


def object_lineage(store: Store, connector: str, anchor: str) -> dict[str, Any]:
    """One object across the store: the connector-space object asked for, the metaverse object it is joined to
    (with every attribute, its value and the rule that contributed it, resolved by precedence as the preview
    does), every connector-space object joined to that metaverse object (link rule, link type and time), their
    pending exports, their newest errors and their duplicate-attribute conflicts."""
    with store.engine.connect() as connection:
        row = _cs_row(connection, connector, anchor)
        if row is None:
            raise NotFound(f"no object {anchor!r} in the {connector!r} connector space")
        own_link = connection.execute(
            sa.select(link.c.mv_id).where(link.c.connector == connector, link.c.anchor == anchor)
        ).scalar()
        metaverse_part: dict[str, Any] | None = None
        joined: list[tuple[str, str]] = [(connector, anchor)]
        links: list[dict[str, Any]] = []
        if own_link is not None:
            mv = connection.execute(sa.select(mv_object).where(mv_object.c.id == own_link)).first()
            contributions = json.loads(mv.contributions)
            _attrs, winners = resolve(contributions)
            stored = json.loads(mv.attrs)
            attributes = []
            for name in sorted(set(stored) | set(winners)):
                contributor = winners.get(name) or ""
                source_connector, _, rule = contributor.partition("|")
                entry = contributions.get(name, {}).get(contributor) if contributor else None
                attributes.append(
                    {
                        "name": name,
                        **cut_values(stored.get(name, [])),
                        "connector": source_connector or None,
                        "rule": rule or None,
                        "precedence": entry[0] if entry else None,
                        "merge": entry[1] if entry else None,
                    }
                )
            metaverse_part = {
                "id": mv.id,
                "object_type": mv.object_type,
                "created_at": iso(mv.created_at),
                "updated_at": iso(mv.updated_at),
                "attributes": attributes,
            }
            link_rows = connection.execute(
                sa.select(link, cs_object.c.dn, cs_object.c.object_type)
                .select_from(
                    link.outerjoin(
                        cs_object, (cs_object.c.connector == link.c.connector) & (cs_object.c.anchor == link.c.anchor)
                    )
                )
                .where(link.c.mv_id == own_link)
                .order_by(link.c.created_at, link.c.connector)
            ).mappings()
            for link_row in link_rows:
                joined_pair = (link_row["connector"], link_row["anchor"])
                if joined_pair not in joined:
                    joined.append(joined_pair)
                links.append(
                    {
                        "connector": link_row["connector"],
                        "anchor": link_row["anchor"],
                        "dn": link_row["dn"],
                        "object_type": link_row["object_type"],
                        "rule": link_row["rule"],
                        "link_type": link_row["link_type"],
                        "linked_at": iso(link_row["created_at"]),
                        "pending_export": _pending_for(connection, *joined_pair),
                    }
                )
        # The lineage reads source → metaverse → target: the projecting connector (else the first linked) on the
        # source side, every other connector on the target side (joined or provisioned there).
        sources = {item["connector"] for item in links if item["link_type"] == "projection"}
        sources = sources or ({links[0]["connector"]} if links else set())
        for item in links:
            item["side"] = "source" if item["connector"] in sources else "target"
        attrs = json.loads(row.attrs)
        found_conflicts = conflicts(
            connection,
            sa.or_(*[(export_conflict.c.connector == c) & (export_conflict.c.anchor == a) for c, a in joined]),
        )
        return {
            "connector_space_object": {
                "connector": row.connector,
                "anchor": row.anchor,
                "dn": row.dn,
                "object_type": row.object_type,
                "display_name": display_name(attrs),
                "state": "connector" if own_link is not None else "disconnector",
                "pending_import": row.pending_import,
                "updated_at": iso(row.updated_at),
                "last_run_id": row.last_run_id,
                "attributes": [{"name": name, **cut_values(values)} for name, values in sorted(attrs.items())],
                "pending_export": _pending_for(connection, connector, anchor),
            },
            "metaverse": metaverse_part,
            "lineage": links,
            "errors": _errors_for(connection, joined),
            "conflicts": found_conflicts,
        }


# ------------------------------------------------------------------------------------------------------ preview
def json_safe(value: Any) -> Any:
    """A preview trace as JSON data: binary as base64, times as ISO 8601, anything else unknown as its text."""
    import base64
    import datetime as dt

    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item) for item in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def preview_object(store: Store, rules: Any, connector: str, anchor: str) -> dict[str, Any]:
    """What a sync of this object would do now, from the CLI's ``preview`` (the real sync pass, rolled back:
    nothing is written): rules in scope, join decision, every flow with its value, the winner per metaverse
    attribute and the exports it would stage."""
    from airflow_provider_aadsync.engine.sync import PreviewError, preview

    try:
        return json_safe(preview(store, rules, connector=connector, anchor=anchor))
    except PreviewError as error:
        raise NotFound(str(error)) from None


def _is_row_id(text: str) -> bool:
    """Whether a search text can be a metaverse id: ASCII digits (``"²".isdigit()`` is true, yet no int) that fit the
    store's 64-bit integers (a longer number overflows SQLite's and PostgreSQL's bind)."""
    return text.isascii() and text.isdigit() and len(text) <= 18
