"""The persistent store: connector spaces, references, watermarks, run history and the instance lock.

SQLAlchemy Core only, so the same code serves the embedded SQLite file (the default, like the product's LocalDB)
and PostgreSQL (for deployments whose tasks run on several workers). The schema is created and migrated by the
code through a small versioned migration table (tables.py); later issues add tables as new migration steps. The
instance lock (lock.py) is a store-level lock: the handle delegates to it and fences its write transactions with it.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from airflow_provider_aadsync.engine.paths import aadsync_home
from airflow_provider_aadsync.engine.secrets import register_secret, scrub, scrub_value
from airflow_provider_aadsync.engine.store import bulk, fenced, lock, owner
from airflow_provider_aadsync.engine.store.among import require_json_functions
from airflow_provider_aadsync.engine.store.errors import StoreError, missing_store, schema_not_ready
from airflow_provider_aadsync.engine.store.lock import Lease
from airflow_provider_aadsync.engine.store.tables import (
    MIGRATIONS,
    SCHEMA_VERSION,
    as_utc,
    metadata,
    run,
    run_error,
    run_notice,
    schema_version,
    utcnow,
    watermark,
)
from airflow_provider_aadsync.engine.store.urls import (
    existing_file_url,
    masked_url,
    refuse_raw_at,
    sqlite_file,
    url_secrets,
)

log = logging.getLogger(__name__)

#: Rows per INSERT/UPSERT statement: large enough to amortise round trips, small enough for SQLite's limits.
WRITE_CHUNK_ROWS = 2_000

#: Longest DN or message kept per run error (a hostile value can be megabytes; the report shows the start).
_ERROR_TEXT_LIMIT = 4_000


def storable_text(text: str | None, limit: int) -> str | None:
    """``text`` as every store backend keeps it: unpaired surrogates (not UTF-8) and NUL (refused by PostgreSQL)
    written as escapes, cut to ``limit`` characters. For per-object error rows, whose text may quote bad data."""
    if text is None:
        return None
    text = str(text)
    if "\x00" in text or not text.isascii():
        text = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 14] + "... (cut here)"


def failure_text(code: str, message: str) -> str:
    """A pending export's ``last_error`` (``code: message``, which the sync manager shows): known secrets scrubbed,
    as in run_error, and storable, cut at 2,000 characters."""
    return str(storable_text(scrub(f"{code}: {message}"), 2_000))


def create_private_file(path: Path, what: str = "store file") -> None:
    """Create ``path`` (a store file, a report) readable by its owner only (0600), and the folders it needs 0700.

    The store holds every identity's attributes and the export state; other local users have no business reading it.
    Folders and files that already exist keep their mode, except a file that others can read: it is warned about.
    """
    missing = [folder for folder in [path.parent, *path.parent.parents] if not folder.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)  # mkdir's mode is cut by the umask; chmod is not
    if path.exists():
        if path.stat().st_mode & 0o077:
            log.warning("%s %s can be read by other local users: chmod 600 it", what, path)
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:  # created concurrently by another process
        return
    os.chmod(path, 0o600)


def default_store_url(instance: str = "default") -> str:
    """The embedded store: one SQLite file per sync instance under AADSYNC_HOME (or ~/.aadsync)."""
    home = aadsync_home()
    return f"sqlite:///{home / 'store' / f'{instance}.sqlite'}"


@functools.lru_cache(maxsize=64)
def _insert_statement(
    dialect_name: str, table: sa.Table, names: tuple[str, ...], update: tuple[str, ...] | None
) -> sa.Insert:
    """An INSERT of ``names`` (one bound parameter each), upserting the ``update`` columns on a key conflict."""
    values = {name: sa.bindparam(name) for name in names}
    if update is None:
        return sa.insert(table).values(values)
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    statement = insert(table).values(values)
    key = [column.name for column in table.primary_key.columns]
    return statement.on_conflict_do_update(index_elements=key, set_={name: statement.excluded[name] for name in update})


#: SQLite's page cache per store connection (``PRAGMA cache_size``; SQLite's default is 2 MiB). A sync pass, an import
#: or an export writes hundreds of thousands of rows in one transaction, into indexes filled in random key order
#: (join keys, links by metaverse id). With 2 MiB SQLite spills the transaction's dirty pages to the write-ahead log
#: again and again and reads them back: measured side by side on a first full sync of 100,000 users, 32 MiB took a
#: sixth off its row writes on a quiet disk (the whole sync about the same, 34–36 s) and, while the disk was busy,
#: the whole sync from 46–54 s to 33–37 s; peak RSS +22 MiB. 64 and 128 MiB gained nothing more. Pages are taken as
#: they are used.
SQLITE_CACHE_MIB = 32


def apply_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """The store's write-ahead log (kept in the file: switched once, by the open that creates the store), then the
    settings of each connection (:func:`apply_connection_pragmas`)."""
    cursor = dbapi_connection.cursor()
    for attempt in range(100):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as error:
            # Several processes opening a new store at once: switching it to WAL needs the file to itself, and
            # SQLite answers "database is locked" at once instead of waiting. Only the first switch can meet this.
            if "locked" not in str(error) or attempt == 99:
                raise
            time.sleep(0.05)
    cursor.close()
    apply_connection_pragmas(dbapi_connection, _record)


def apply_connection_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """The settings of each store connection, none kept in the file: a store opened as it is (the sync manager's)
    gets only these, since switching the journal mode writes the file's header (an empty file grows a page)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_MIB * 1024}")  # in KiB when negative
    cursor.close()


@contextmanager
def larger_page_cache(connection: Connection, mebibytes: int) -> Iterator[None]:
    """SQLite's page cache of ``connection`` raised to ``mebibytes`` for a while, then set back; nothing on other
    stores. For a step that reads many pages in random order once a pass's peak of memory is behind it: the sync
    memo joins 210,000 links of a 100,000-user first full sync with their objects and pending exports, and SQLite's
    default 2 MiB cache missed on most of them (64 MiB took 0.7 of its 3.3 CPU seconds off, peak RSS unchanged)."""
    if connection.dialect.name != "sqlite":
        yield
        return
    before = int(connection.exec_driver_sql("PRAGMA cache_size").scalar_one())
    connection.exec_driver_sql(f"PRAGMA cache_size=-{int(mebibytes) * 1024}")
    try:
        yield
    finally:
        if not connection.invalidated:  # a lost connection is discarded, cache and all: its error is the one to see
            connection.exec_driver_sql(f"PRAGMA cache_size={before}")


def _processed(process: Callable[[Any], Any], values: list[Any]) -> list[Any] | Iterator[Any]:
    """A column's values through its bind processor; a column of one repeated value (a run's timestamp on every row,
    formatted by SQLite's DateTime processor per call) is processed once."""
    first = values[0] if values else None
    if values and all(value is first for value in values):  # the same object, not merely equal values
        return itertools.repeat(process(first), len(values))
    return [process(value) for value in values]


@dataclass(frozen=True)
class Watermark:
    cookie: bytes | None
    dc_name: str | None
    updated_at: dt.datetime


class Store:
    """A handle on one sync instance's store (a SQLite file or a PostgreSQL database)."""

    def __init__(
        self,
        url: str,
        *,
        instance: str = "default",
        engine_options: dict[str, Any] | None = None,
        create: bool = True,
    ):
        """``create=False``: a SQLite file must exist (else :class:`StoreNotReadyError`) and is opened with
        ``mode=rw``, never created (:meth:`open_existing`)."""
        self.url = url
        self.instance = instance
        #: The instance lock of the step running on this handle (lock.py): its write transactions are fenced.
        self.lease: Lease | None = None
        #: Who runs the steps on this handle (an Airflow task instance, as a small dict): recorded on each run.
        self.origin: dict[str, Any] | None = None
        #: Rows written through :meth:`write_columns` on this handle, by table: what a step wrote in bulk so far (a sync
        #: pass refreshes PostgreSQL's statistics of the tables it filled before it reads them, bulk.py).
        self.rows_written: Counter[str] = Counter()
        for secret in url_secrets(url):  # scrubbed from run details and errors, as the hooks' secrets
            register_secret(secret)
        refuse_raw_at(url)  # else the driver takes the password's tail for the host, and its error quotes it
        file = sqlite_file(url)
        if file and create:
            create_private_file(Path(file))
        elif file and not Path(file).is_file():
            raise missing_store(masked_url(url), instance)
        options = dict(engine_options or {})
        if not url.startswith("sqlite"):
            # A server restarted between steps leaves the pool's connections dead: test each before use.
            options.setdefault("pool_pre_ping", True)
        self.engine: Engine = sa.create_engine(existing_file_url(url) if file and not create else url, **options)
        if self.engine.dialect.name == "sqlite":
            require_json_functions()  # the sync's key lookups read their keys with json_each (among.py)
            sa.event.listen(self.engine, "connect", apply_sqlite_pragmas if create else apply_connection_pragmas)

    @classmethod
    def open(cls, url: str | None = None, *, instance: str = "default") -> Store:
        """Open (creating or migrating as needed) the store at ``url`` or the embedded default, for ``instance``:
        a store owned by another sync instance is refused before anything else is read or written
        (:class:`~airflow_provider_aadsync.engine.store.owner.StoreInstanceError`), an unmarked one is claimed for
        ``instance`` (owner.py)."""
        store = cls(url or default_store_url(instance), instance=instance)
        try:
            marked = owner.check(store)
            older = store.current_version() if marked is None else 0
            store.migrate()
            if marked is None:
                owner.claim(store, older_store=0 < older < owner.MARKER_VERSION)
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open_existing(cls, url: str | None = None, *, instance: str = "default") -> Store:
        """Open the store at ``url`` (or the embedded default of ``instance``) as it is, to read it: the sync manager's
        open, which must never write. Unlike :meth:`open` it never creates the SQLite file (SQLite opens it with
        ``mode=rw``: not even a reconnect after the file was removed makes a new one), never claims an unmarked store
        and never migrates. A store owned by another instance is refused as by :meth:`open`; one not ready for this
        package raises :class:`StoreNotReadyError` (missing or empty: the first sync step creates it; an older schema:
        the next sync step migrates it; a newer one: upgrade the package). The handle still writes if asked: the
        preview runs the sync pass in a transaction it rolls back (SQLite's ``mode=ro`` would refuse even that)."""
        store = cls(url or default_store_url(instance), instance=instance, create=False)
        try:
            owner.check(store)
            refusal = schema_not_ready(store.display_url, instance, store.current_version(), SCHEMA_VERSION)
            if refusal is not None:
                raise refusal
        except BaseException:
            store.close()
            raise
        return store

    def check_tenant(self, tenant_id: str | None) -> None:
        """Before an Entra step: record the Entra tenant of the instance's connection the first time, refuse
        (:class:`~airflow_provider_aadsync.engine.store.owner.StoreInstanceError`) another one later (owner.py)."""
        owner.check_tenant(self, tenant_id)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def display_url(self) -> str:
        """The URL with its password masked (also one given as a query parameter), for logs and reports."""
        return masked_url(self.url)

    # ----------------------------------------------------------------------------------------------- schema
    def current_version(self) -> int:
        with self.engine.connect() as connection:
            if not sa.inspect(connection).has_table("schema_version"):
                return 0
            return connection.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0

    def migrate(self) -> int:
        """Bring the schema to SCHEMA_VERSION; safe to call from several processes at once."""
        version = self.current_version()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.display_url} has schema version {version}, newer than this package's "
                f"{SCHEMA_VERSION}: upgrade airflow-provider-aadsync"
            )
        for step_version, step in MIGRATIONS:
            if step_version <= version:
                continue
            try:
                with self.engine.begin() as connection:
                    if connection.dialect.name == "postgresql":
                        # Concurrent CREATE TABLEs race with DuplicateTable, not IntegrityError: take turns instead.
                        connection.execute(
                            sa.text("SELECT pg_advisory_xact_lock(hashtext('aadsync-schema-migration'))")
                        )
                    elif connection.dialect.name == "sqlite":
                        # pysqlite runs DDL outside any transaction: two processes opening a new store at once both
                        # created schema_version. Take SQLite's write lock first, so they take turns here too.
                        connection.exec_driver_sql("BEGIN IMMEDIATE")
                    metadata.create_all(connection, tables=[schema_version])
                    applied = connection.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
                    if applied >= step_version:
                        continue
                    step(connection)
                    connection.execute(sa.insert(schema_version).values(version=step_version, applied_at=utcnow()))
            except (sa.exc.IntegrityError, sa.exc.OperationalError, sa.exc.ProgrammingError):
                # SQLite has no advisory lock: a concurrent opener may have won the race; fine if it finished.
                if self.current_version() < step_version:
                    raise
                log.info("schema step %s was applied concurrently by another process", step_version)
                continue
            log.info("store %s migrated to schema version %s", self.display_url, step_version)
        return SCHEMA_VERSION

    # ------------------------------------------------------------------------------------------------ writes
    def upsert(
        self,
        connection: Connection,
        table: sa.Table,
        rows: Sequence[dict[str, Any]],
        *,
        update: Iterable[str],
    ) -> None:
        """Insert ``rows``, replacing the ``update`` columns of rows whose primary key exists; chunked."""
        if not rows:
            return
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        key = [column.name for column in table.primary_key.columns]
        for start in range(0, len(rows), WRITE_CHUNK_ROWS):
            statement = insert(table)
            statement = statement.on_conflict_do_update(
                index_elements=key, set_={name: statement.excluded[name] for name in update}
            )
            connection.execute(statement, list(rows[start : start + WRITE_CHUNK_ROWS]))

    def write_columns(
        self,
        connection: Connection,
        table: sa.Table,
        columns: Mapping[str, Any],
        *,
        update: Iterable[str] | None = None,
    ) -> int:
        """Insert (``update`` given: upsert) rows given as columns; a non-list value is the same for every row.

        Why columns: a full import writes 100,000s of rows, and building a dict per row and letting SQLAlchemy
        process it parameter by parameter cost more than SQLite's own work. On positional-parameter drivers
        (SQLite) the statement is compiled once, constants are converted once and the rows go to the driver's
        ``executemany`` as tuples; PostgreSQL gets one array per column where the columns' types allow (bulk.py),
        else the usual Core executemany. Returns the number of rows.
        """
        lengths = {len(values) for values in columns.values() if isinstance(values, list)}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths for {table.name}: {sorted(lengths)}")
        count = lengths.pop() if lengths else 0
        if not count:
            return 0
        self.rows_written[table.name] += count
        dialect = connection.dialect
        if bulk.writes_as_arrays(connection, table, columns):  # PostgreSQL: one array per column (bulk.py)
            bulk.write_as_arrays(connection, table, columns, count, list(update) if update else None)
            return count
        statement = _insert_statement(dialect.name, table, tuple(columns), tuple(update) if update else None)
        if dialect.paramstyle != "qmark":  # e.g. psycopg: named parameters, SQLAlchemy's executemany
            names = list(columns)
            series = [values if isinstance(values, list) else itertools.repeat(values) for values in columns.values()]
            rows = [dict(zip(names, row, strict=False)) for row in zip(*series, strict=False)]
            for start in range(0, count, WRITE_CHUNK_ROWS):
                connection.execute(statement, rows[start : start + WRITE_CHUNK_ROWS])
            return count
        compiled = statement.compile(dialect=dialect)
        order = list(compiled.positiontup or [])
        missing = [name for name in order if name not in columns]
        if missing:
            raise ValueError(f"write_columns({table.name}) needs values for {', '.join(missing)}")
        series = []
        for name in order:
            values = columns[name]
            process = table.c[name].type._cached_bind_processor(dialect)
            if isinstance(values, list):
                series.append(values if process is None else _processed(process, values))
            else:
                series.append(itertools.repeat(values if process is None else process(values)))
        rows_iter = zip(*series, strict=False)
        sql = str(compiled)
        while batch := list(itertools.islice(rows_iter, WRITE_CHUNK_ROWS * 10)):
            connection.exec_driver_sql(sql, batch)
        return count

    @staticmethod
    def insert_chunked(connection: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(rows), WRITE_CHUNK_ROWS):
            connection.execute(sa.insert(table), list(rows[start : start + WRITE_CHUNK_ROWS]))

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction. While a step holds the instance lock on this handle, it first checks the lock's
        fencing token inside the transaction: a step whose lock was taken over cannot write (lock.py)."""
        lease = self.lease
        if lease is None:
            with self.engine.begin() as connection:
                yield connection
            return
        lease.open_transactions += 1
        started = time.monotonic()
        try:
            with self.engine.begin() as connection:
                lock.fence(self, lease, connection)
                yield connection
                lock.renew_if_long(self, lease, connection, started)
        finally:
            lease.open_transactions -= 1

    # -------------------------------------------------------------------------------------------- watermarks
    def get_watermark(self, connector: str, partition: str) -> Watermark | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(watermark.c.cookie, watermark.c.dc_name, watermark.c.updated_at).where(
                    watermark.c.connector == connector, watermark.c.partition == partition
                )
            ).first()
        if row is None:
            return None
        return Watermark(cookie=row.cookie, dc_name=row.dc_name, updated_at=as_utc(row.updated_at))

    def save_watermark(
        self,
        connection: Connection,
        connector: str,
        partition: str,
        cookie: bytes | None,
        dc_name: str | None,
        read_at: dt.datetime | None = None,
    ) -> None:
        """Save inside the caller's transaction, so the watermark commits with the imported rows or not at all.
        ``read_at``: when the read that made it started (default now). A watermark's age decides when a delta
        must become a full import (a DirSync cookie past the tombstone lifetime, a Graph delta link past 7 days), so
        it counts from the read, not from the save minutes later: older, never younger, than the server's view."""
        self.upsert(
            connection,
            watermark,
            [
                {
                    "connector": connector,
                    "partition": partition,
                    "cookie": cookie,
                    "dc_name": dc_name,
                    "updated_at": read_at or utcnow(),
                }
            ],
            update=["cookie", "dc_name", "updated_at"],
        )

    # -------------------------------------------------------------------------------------------------- runs
    def start_run(self, profile: str, connector: str) -> int:
        with self.transaction() as connection:
            return connection.execute(
                sa.insert(run)
                .values(
                    profile=profile, connector=connector, started_at=utcnow(), result="in-progress", origin=self.origin
                )
                .returning(run.c.id)
            ).scalar_one()

    # Run details and errors often quote what a server or library said; known secrets are scrubbed out first.
    def update_run(self, run_id: int, counters: dict[str, Any], detail: str | None = None) -> None:
        """Record counters of a run still in progress (an export's plan, before its first write)."""
        counters, detail = scrub_value(counters), scrub_value(detail)
        with self.transaction() as connection:
            connection.execute(sa.update(run).where(run.c.id == run_id).values(counters=counters, detail=detail))

    def finish_run(self, run_id: int, result: str, counters: dict[str, int], detail: str | None = None) -> None:
        counters, detail = scrub_value(counters), scrub_value(detail)
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(run)
                .where(run.c.id == run_id)
                .values(ended_at=utcnow(), result=result, counters=counters, detail=detail)
            )

    def record_errors(self, run_id: int, errors: Sequence[dict[str, Any]]) -> None:
        """Store per-object errors (dicts with anchor, dn, code, message) in their own transaction."""
        if errors:
            rows = [
                {
                    "run_id": run_id,
                    **error,
                    "anchor": storable_text(error.get("anchor"), 255),
                    "dn": storable_text(error.get("dn"), _ERROR_TEXT_LIMIT),
                    "message": storable_text(scrub(str(error.get("message") or "")), _ERROR_TEXT_LIMIT),
                }
                for error in errors
            ]
            with self.engine.begin() as connection:
                self.insert_chunked(connection, run_error, rows)

    def record_notices(self, run_id: int, notices: Sequence[dict[str, Any]]) -> None:
        """Store a run's grouped notices (code, subject, count, message, examples; engine/runs/notices.py)."""
        if notices:
            rows = [
                {
                    "run_id": run_id,
                    "code": notice["code"],
                    "subject": storable_text(notice["subject"], 255),
                    "count": int(notice["count"]),
                    "message": storable_text(scrub(str(notice["message"])), _ERROR_TEXT_LIMIT),
                    "examples": list(notice.get("examples") or []),
                }
                for notice in notices
            ]
            with self.engine.begin() as connection:
                self.insert_chunked(connection, run_notice, rows)

    def run_notices(self, run_id: int) -> list[dict[str, Any]]:
        """A run's notices, in the order recorded (each: code, subject, count, message, examples)."""
        query = sa.select(run_notice).where(run_notice.c.run_id == run_id).order_by(run_notice.c.id)
        with self.engine.connect() as connection:
            return [
                {k: v for k, v in dict(row).items() if k not in ("id", "run_id")}
                for row in connection.execute(query).mappings()
            ]

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(run).where(run.c.id == run_id)).mappings().first()
        return dict(row) if row else None

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(run).order_by(run.c.id.desc()).limit(limit)).mappings()
            return [dict(row) for row in rows]

    def run_errors(self, run_id: int, limit: int | None = None) -> list[dict[str, Any]]:
        query = sa.select(run_error).where(run_error.c.run_id == run_id).order_by(run_error.c.id)
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query.limit(limit)).mappings()]

    # -------------------------------------------------------------------------------------------------- lock
    # The lock itself lives in lock.py (atomic acquisition, renewed lease, fencing token); these delegate.
    # finish_run and record_errors are not fenced: they only touch the run's own rows, so a stopped step can still
    # say why it stopped.
    @contextmanager
    def locked(
        self,
        holder: str,
        *,
        lease: dt.timedelta | None = None,
        hold: dt.timedelta | None = None,
        wait: dt.timedelta | None = None,
        scope: str | None = None,
    ) -> Iterator[Lease]:
        """Hold the instance lock for one step so two runs of one sync instance never interleave.

        The same ``holder`` (an Airflow retry of the same DAG run) takes its own lock back at once, and the attempt
        it replaces can no longer write; the lease is renewed while the step runs; at the end the lock is released,
        or left to the cycle that holds the instance (see :func:`airflow_provider_aadsync.engine.store.lock.locked`).
        ``wait``: how long to wait, with wait lines in the progress, while another run holds the instance (None:
        ``AADSYNC_LOCK_WAIT`` seconds, default 0). ``scope`` (``scopes.import_scope(connector)``) takes only the
        import of one connector: imports of different connectors in one run hold the instance together.
        """
        with lock.locked(self, holder, lease=lease or lock.STEP_LEASE, hold=hold, wait=wait, scope=scope) as granted:
            yield granted

    def acquire_lock(
        self, holder: str, *, lease: dt.timedelta | None = None, hold: dt.timedelta | None = None
    ) -> Lease:
        """Take the instance lock (atomically, bumping its fencing token); see lock.py."""
        return lock.acquire(self, holder, lease=lease or lock.STEP_LEASE, hold=hold)

    def check_lease(self, *, fresh_for: float | None = None) -> None:
        """Before a write outside the store: raise StoreLockLostError unless this handle's step surely still holds
        the instance lock (a no-op without a step lock; ``fresh_for``: see fenced.py ``ensure``)."""
        if self.lease is not None:
            fenced.ensure(self, self.lease, fresh_for=fresh_for)

    def release_lock(self, holder: str) -> bool:
        """Release the instance lock if ``holder`` holds it."""
        return lock.release(self, holder)
