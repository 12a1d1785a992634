"""Shared helpers of the reliability suite: store copies and snapshots, tenants and their contents."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from aadsync_devkit.graph_emulator.server import EmulatorServer
from aadsync_devkit.world.seed import MAIL_DOMAIN
from airflow_provider_aadsync.engine.store import Store, tables
from airflow_provider_aadsync.hooks.entra import EntraHook
from airflow_provider_aadsync.hooks.entra_settings import EntraConnectionSettings
from tests.support.kill_points import run_killed
from tests.support.servers import GRAPH_CLIENT_ID, GRAPH_SECRET, made_tenants

#: Columns that say when or by which run a row was written, not what it holds; and the sync memo's fingerprints, which
#: cover timestamps and provisional anchors (which objects are memoized is compared, not their fingerprints).
VOLATILE = {
    "updated_at",
    "created_at",
    "last_run_id",
    "run_id",
    "attempts",
    "last_error",
    "applied_at",
    "cookie",
    "fingerprint",
}
#: Provisional anchors of objects not created yet: random per run.
PROVISIONAL = re.compile(r"provisional:[0-9a-fA-F-]{32,36}")
#: Tables of the run history and the lock: every run writes them, killed or not.
HISTORY = {"run", "run_error", "store_lock", "schema_version"}


def tenant_factory(graph_server: EmulatorServer) -> Iterator[Callable[[], dict]]:  # a generator for fixtures
    """Make fresh tenants (the AD users' UPN domain verified, the test app registered); removed at the end."""
    with made_tenants(graph_server, "kill") as make:
        yield lambda: make(MAIL_DOMAIN)


def entra_spec(server: EmulatorServer, tenant: dict) -> dict[str, Any]:
    urls = {"authority_host": server.base_url, "graph_url": server.base_url, "ca_bundle": str(server.ca_cert)}
    return {"tenant_id": tenant["id"], "client_id": GRAPH_CLIENT_ID, "client_secret": GRAPH_SECRET, **urls}


def graph_for(spec: dict[str, Any]) -> EntraHook:
    return EntraHook(settings=EntraConnectionSettings(**spec["entra"]))


def copy_store(source: Path, target: Path) -> str:
    """A consistent copy of a SQLite store (WAL included) through SQLite's backup API; returns its URL."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return f"sqlite:///{target}"


def store_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def points(total: int, soak: bool) -> list[int]:
    """N evenly spaced kill points over ``total`` events (3, or 8 with --soak), each a distinct event."""
    n = 8 if soak else 3
    return sorted({max(1, round(total * i / (n + 1))) for i in range(1, n + 1)})


def kill(spec: dict[str, Any], at: int) -> None:
    """Run ``spec`` in its own process, SIGKILLed at event ``at``; it must really die there."""
    child = run_killed(spec, at)
    assert child.returncode == -signal.SIGKILL, f"not killed at event {at}: {child.returncode}\n{child.stderr[-3000:]}"


def baseline(spec: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """An uninterrupted run of ``spec`` in its own process: (events counted, run summary)."""
    child = run_killed(spec, 0)
    assert child.returncode == 0, child.stderr[-3000:]
    out = json.loads(child.stdout.strip().splitlines()[-1])
    return out["events"], out["summary"]


# ------------------------------------------------------------------------------------------- store comparison
def snapshot(url: str) -> dict[str, list[tuple]]:
    """Every synchronization table's rows without timestamps and run ids; metaverse ids replaced by what links to
    them (a rolled-back or rerun sync may number them differently)."""
    with Store.open(url, instance="test") as store, store.engine.connect() as connection:
        mv_key: dict[int, tuple] = {}
        for row in connection.execute(sa.select(tables.link.c.mv_id, tables.link.c.connector, tables.link.c.anchor)):
            key = (row.connector, _stable(row.anchor))
            mv_key[row.mv_id] = tuple(sorted({*mv_key.get(row.mv_id, ()), key}))
        out: dict[str, list[tuple]] = {}
        for table in tables.metadata.sorted_tables:
            if table.name in HISTORY:
                continue
            rows = []
            for row in connection.execute(sa.select(table)).mappings():
                values = []
                for column, value in row.items():
                    if column in VOLATILE or column.endswith("_at"):
                        continue
                    if column in ("mv_id", "target_mv_id") or (table.name == "mv_object" and column == "id"):
                        value = mv_key.get(value, ("unlinked",))
                    values.append((column, value.hex() if isinstance(value, bytes) else _stable(value)))
                rows.append(tuple(values))
            out[table.name] = sorted(rows, key=repr)
        return out


def _stable(value: Any) -> Any:
    """Provisional anchors are random per run (``provisional:<uuid>``): compared by kind only."""
    return PROVISIONAL.sub("provisional:*", value) if isinstance(value, str) else value


def watermarks(url: str) -> dict[tuple[str, str], bytes | None]:
    with Store.open(url, instance="test") as store, store.engine.connect() as connection:
        return {(r.connector, r.partition): r.cookie for r in connection.execute(sa.select(tables.watermark))}


def open_exports(url: str, connector: str) -> list[tuple]:
    """Pending exports not in a final state (final: confirmed rows are deleted, failed ones carry their error)."""
    with Store.open(url, instance="test") as store, store.engine.connect() as connection:
        objects = connection.execute(
            sa.select(tables.pending_export.c.anchor, tables.pending_export.c.state).where(
                tables.pending_export.c.connector == connector, tables.pending_export.c.state.in_(("pending", "sent"))
            )
        ).all()
        references = connection.execute(
            sa.select(tables.pending_export_reference.c.anchor, tables.pending_export_reference.c.state).where(
                tables.pending_export_reference.c.connector == connector,
                tables.pending_export_reference.c.state == "sent",
            )
        ).all()
    return [tuple(r) for r in [*objects, *references]]


# ---------------------------------------------------------------------------------------- tenant comparison
USER_FIELDS = "id,userPrincipalName,displayName,mailNickname,accountEnabled,onPremisesImmutableId,givenName,surname"
GROUP_FIELDS = "id,displayName,mailNickname,description,securityEnabled,mailEnabled,groupTypes"


def every(graph: EntraHook, path: str, select: str) -> list[dict[str, Any]]:
    return [item for page in graph.paginate(path, params={"$select": select, "$top": "999"}) for item in page["value"]]


def tenant_state(graph: EntraHook) -> dict[str, Any]:
    """A tenant's users and groups (members by UPN or name), ids left out: two tenants compare equal."""
    users = every(graph, "/users", USER_FIELDS)
    groups = every(graph, "/groups", GROUP_FIELDS)
    names = {u["id"]: u["userPrincipalName"] for u in users} | {g["id"]: f"group:{g['displayName']}" for g in groups}
    state_groups = []
    for group in groups:
        members = sorted(names[m["id"]] for m in every(graph, f"/groups/{group['id']}/members", "id"))
        state_groups.append({**{k: v for k, v in group.items() if k != "id"}, "members": members})
    return {
        "users": sorted(json.dumps({k: v for k, v in u.items() if k != "id"}, sort_keys=True) for u in users),
        "groups": sorted(json.dumps(g, sort_keys=True) for g in state_groups),
    }
