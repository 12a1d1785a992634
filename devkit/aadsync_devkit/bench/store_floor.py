"""The store's write floor of a sync: what SQLite alone takes to write the rows a sync added.

A first full sync of 105,000 objects adds about 1.4 million rows (metaverse objects, join keys, links, provisional
objects, pending exports, member rows, the memo). However the engine computes them, the store must write them: the
floor is those rows, read from the store after the sync and written by ``sqlite3``'s ``executemany`` into a copy of
the store as it was before it, in one transaction with the store's pragmas (its page cache too), committed and closed
(the write-ahead log's checkpoint included) — no Python beyond handing the driver the rows, none of the pass's reads.
The sync's time over the floor is the engine's own work; the floor is what a faster engine cannot go under without
writing fewer or smaller rows (a change of the store's format).
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from airflow_provider_aadsync.engine.store import apply_sqlite_pragmas

#: Rows read from the synced store and handed to the driver at a time (only the writes are timed).
FLOOR_CHUNK_ROWS = 20_000


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _tables(connection: sqlite3.Connection) -> list[str]:
    query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    return [name for (name,) in connection.execute(query)]


def _columns(connection: sqlite3.Connection, table: str) -> tuple[list[str], list[str]]:
    """The table's columns and its key's (every column when it has no primary key)."""
    info = connection.execute(f"PRAGMA main.table_info({_quoted(table)})").fetchall()
    columns = [row[1] for row in info]
    return columns, [row[1] for row in info if row[5]] or columns


def _added_rows(reader: sqlite3.Connection, table: str, columns: list[str], key: list[str]) -> sqlite3.Cursor:
    """The rows of the synced store's ``table`` whose key the store before the sync does not hold."""
    same_key = " AND ".join(f"old.{_quoted(name)} IS new.{_quoted(name)}" for name in key)
    selected = ", ".join(f"new.{_quoted(name)}" for name in columns)
    return reader.execute(
        f"SELECT {selected} FROM synced.{_quoted(table)} AS new "
        f"WHERE NOT EXISTS (SELECT 1 FROM main.{_quoted(table)} AS old WHERE {same_key})"
    )


def _changed_rows(reader: sqlite3.Connection, table: str, columns: list[str], key: list[str]) -> int:
    """Rows of the synced store's ``table`` that differ from the row of the same key before (not in the floor)."""
    if key == columns:
        return 0
    names, keys = ", ".join(map(_quoted, columns)), ", ".join(map(_quoted, key))
    changed = f"SELECT {names} FROM synced.{_quoted(table)} EXCEPT SELECT {names} FROM main.{_quoted(table)}"
    query = f"SELECT count(*) FROM ({changed}) WHERE ({keys}) IN (SELECT {keys} FROM main.{_quoted(table)})"
    return int(reader.execute(query).fetchone()[0])


def sqlite_write_floor(before: Path, after: Path, work: Path) -> dict[str, Any]:
    """Write the rows of ``after`` whose key ``before`` lacks (per table) into a copy of ``before`` at ``work`` and time
    it: ``{"seconds", "rows", "tables": {name: {"rows", "seconds"}}, "commit_seconds", "changed_rows"}``. Rows the
    sync changed in place (a first full sync clears the imported objects' pending imports) or deleted are not written:
    the floor is a lower bound; ``changed_rows`` counts the changed ones."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{work}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(before, work)
    # The rows are read from ``before`` (left as it is) and the synced store; the writes go to the copy.
    reader = sqlite3.connect(f"file:{before}?mode=ro", uri=True)
    reader.execute("ATTACH DATABASE ? AS synced", (f"file:{after}?mode=ro",))
    target = sqlite3.connect(work, isolation_level=None)
    figures: dict[str, Any] = {"tables": {}, "rows": 0, "changed_rows": 0}
    try:
        apply_sqlite_pragmas(target, None)  # the store's own: write-ahead log, its synchronous level, its page cache
        write_seconds = 0.0
        target.execute("BEGIN")
        for table in _tables(reader):
            columns, key = _columns(reader, table)
            statement = (
                f"INSERT INTO {_quoted(table)} ({', '.join(map(_quoted, columns))}) "
                f"VALUES ({', '.join('?' * len(columns))})"
            )
            added = _added_rows(reader, table, columns, key)
            rows, seconds = 0, 0.0
            while chunk := added.fetchmany(FLOOR_CHUNK_ROWS):
                started = time.perf_counter()
                target.executemany(statement, chunk)
                seconds += time.perf_counter() - started
                rows += len(chunk)
            if rows:
                figures["tables"][table] = {"rows": rows, "seconds": seconds}
            figures["rows"] += rows
            figures["changed_rows"] += _changed_rows(reader, table, columns, key)
            write_seconds += seconds
        started = time.perf_counter()
        target.execute("COMMIT")
        target.close()  # the last connection's checkpoint of the write-ahead log, as the store's own close does
        figures["commit_seconds"] = time.perf_counter() - started
    finally:
        target.close()
        reader.close()
    figures["seconds"] = write_seconds + figures["commit_seconds"]
    return figures
