"""What the browse modules share: page limits, value cutting, timestamps, conflicts and display names."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.store import as_utc, cs_object, export_conflict

#: Largest page a caller may ask for (runs, errors, search hits, plan rows).
MAX_PAGE = 500
#: Attribute values shown per attribute in a lineage (a 250,000-member group is not sent whole).
MAX_VALUES = 50


class NotFound(LookupError):
    """The run or object asked for is not in the store (the API answers 404 with this message)."""


def iso(value: dt.datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


def page_size(limit: int) -> int:
    return max(1, min(int(limit), MAX_PAGE))


def like_pattern(text: str) -> str:
    """A case-insensitive LIKE pattern containing ``text`` literally (``%``, ``_`` and ``\\`` escaped)."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def cut_values(values: Any) -> dict[str, Any]:
    """An attribute's values cut to MAX_VALUES, with the full count."""
    listed = values if isinstance(values, list) else [values]
    return {"values": listed[:MAX_VALUES], "count": len(listed)}


def conflicts(connection: sa.Connection, condition: Any) -> list[dict[str, Any]]:
    """Duplicate-attribute conflicts with the DN of the object that could not get its value."""
    query = (
        sa.select(
            export_conflict.c.connector,
            export_conflict.c.anchor,
            cs_object.c.dn,
            export_conflict.c.attribute,
            export_conflict.c.wanted_value,
            export_conflict.c.placeholder,
            export_conflict.c.detected_at,
            export_conflict.c.released_at,
            export_conflict.c.run_id,
        )
        .select_from(
            export_conflict.outerjoin(
                cs_object,
                (cs_object.c.connector == export_conflict.c.connector)
                & (cs_object.c.anchor == export_conflict.c.anchor),
            )
        )
        .where(condition)
        .order_by(export_conflict.c.detected_at.desc())
        .limit(MAX_PAGE)
    )
    rows = []
    for row in connection.execute(query).mappings():
        item = dict(row)
        item["detected_at"], item["released_at"] = iso(item["detected_at"]), iso(item["released_at"])
        rows.append(item)
    return rows


def display_name(attrs: dict[str, Any]) -> str | None:
    for name in ("displayName", "cn", "userPrincipalName", "mail", "sAMAccountName", "mailNickname"):
        values = attrs.get(name)
        if values:
            return str(values[0] if isinstance(values, list) else values)
    return None
