"""The store's behaviours against a real PostgreSQL server (the multi-worker deployment's backend).

SQLite hides what differs on PostgreSQL: timestamptz values come back in the session's time zone, bytea and
JSON round trips, ``SELECT ... FOR UPDATE`` and unique-index waits between concurrent transactions. Each test
gets a fresh database on one session-wide server (see ``postgres_server`` / ``pg_store`` in conftest.py).
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing

import pytest
import sqlalchemy as sa

from aadsync_devkit.world.postgres import LocalPostgres, PostgresNotInstalledError
from airflow_provider_aadsync.engine.connectors.ad.reader import import_active_directory
from airflow_provider_aadsync.engine.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    WRITE_CHUNK_ROWS,
    Store,
    StoreLockedError,
    StoreLockLostError,
    bulk,
    cs_object,
    cs_reference,
    run,
    run_error,
    schema_version,
    watermark,
)
from airflow_provider_aadsync.engine.store.tables import as_utc
from tests.support.fakes import ATTRS, NC, FakeDirectory, guid  # noqa: F401
from tests.unit.engine.connectors.ad import test_reader as unit
from tests.unit.engine.connectors.ad.test_reader import directory, members, rows  # noqa: F401
from tests.unit.engine.store.test_among import (
    check_among_binds_one_parameter_for_any_number_of_keys,
    check_among_finds_what_in_finds,
)
from tests.unit.engine.store.test_store import (  # noqa: F401 - collected here again, with `store` on PostgreSQL
    check_write_columns,
    test_expired_lock_is_taken_over,
    test_lock_excludes_other_holders_but_not_the_same_one,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
def new_database(postgres_server: LocalPostgres) -> Iterator[Callable[[], str]]:
    """Make empty databases (URLs) on the shared server; dropped after the test."""
    names: list[str] = []

    def make() -> str:
        names.append(f"t_{uuid.uuid4().hex[:16]}")
        return postgres_server.create_database(names[-1])

    yield make
    for name in names:
        postgres_server.drop_database(name)


@pytest.fixture
def second_handle(pg_store: Store) -> Iterator[Store]:
    """Another Store on the same database with its own engine and pool: what a second Airflow worker has."""
    with Store(pg_store.url, instance=pg_store.instance) as other:
        yield other


def cs_row(anchor: str = "a", **overrides: object) -> dict[str, object]:
    return {
        "connector": "ad",
        "anchor": anchor,
        "dn": f"CN={anchor}",
        "object_type": "user",
        "attrs": "{}",
        "attrs_hash": "x",
        "refs_hash": "0",
        "is_deleted": False,
        "pending_import": "add",
        "updated_at": dt.datetime.now(dt.UTC),
        **overrides,
    }


def run_together(count: int, action: Callable[[int], None]) -> tuple[list[int], list[BaseException]]:
    """Run ``action(i)`` in ``count`` threads released at the same instant; returns (succeeded, errors)."""
    barrier = threading.Barrier(count)
    succeeded: list[int] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            action(i)
            succeeded.append(i)
        except BaseException as error:  # noqa: B036 - collected and asserted on by the caller
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return succeeded, errors


# ------------------------------------------------------------------------------------------------ the server
def test_server_is_local_trusting_and_disposable(postgres_server):
    with closing(postgres_server.connect()) as connection, connection.cursor() as cursor:
        settings = {}
        for name in ("listen_addresses", "fsync", "synchronous_commit", "server_version_num"):
            cursor.execute(f"SHOW {name}")
            settings[name] = cursor.fetchone()[0]
    assert settings["listen_addresses"] == "127.0.0.1"
    assert (settings["fsync"], settings["synchronous_commit"]) == ("off", "off")
    assert postgres_server.is_running() and postgres_server.url("x").endswith(f"@127.0.0.1:{postgres_server.port}/x")
    assert postgres_server.start() == 0.0  # already running: no-op


def test_missing_binaries_name_the_debian_package(tmp_path):
    with pytest.raises(PostgresNotInstalledError, match="'postgresql'"):
        LocalPostgres(tmp_path / "pg", bin_dir=tmp_path).init()


# --------------------------------------------------------------------------------------------------- schema
def test_open_creates_schema_once(new_database):
    url = new_database()
    with Store.open(url) as first:
        assert first.engine.dialect.name == "postgresql"
        assert first.current_version() == SCHEMA_VERSION
    with Store.open(url) as second:
        assert second.migrate() == SCHEMA_VERSION
        with second.engine.connect() as connection:
            inspector = sa.inspect(connection)
            assert {"cs_object", "cs_reference", "watermark", "run", "run_error", "store_lock"} <= set(
                inspector.get_table_names()
            )
            applied = connection.execute(sa.select(sa.func.count()).select_from(schema_version)).scalar()
            assert applied == len(MIGRATIONS)
            types = {column["name"]: column["type"] for column in inspector.get_columns("watermark")}
            assert isinstance(types["cookie"], sa.LargeBinary)  # bytea
            assert types["updated_at"].timezone  # timestamptz, not a naive timestamp


def test_concurrent_first_opens_migrate_once(new_database):
    """Several workers opening a brand-new database at once: all succeed, the schema is applied once."""
    for _ in range(5):  # the race window is narrow: a few fresh databases make it show up reliably
        url = new_database()
        succeeded, errors = run_together(8, lambda _i, url=url: Store.open(url).close())
        if errors:
            raise errors[0]
        assert len(succeeded) == 8
        with Store(url) as store, store.engine.connect() as connection:
            versions = connection.execute(sa.select(schema_version.c.version).order_by(schema_version.c.version))
            assert versions.scalars().all() == [version for version, _step in MIGRATIONS]


# --------------------------------------------------------------------------------------------------- writes
def test_upsert_replaces_named_columns(pg_store):
    with pg_store.transaction() as connection:
        pg_store.upsert(connection, cs_object, [cs_row()], update=["dn"])
        pg_store.upsert(connection, cs_object, [cs_row(dn="CN=B", attrs_hash="y")], update=["dn"])
    with pg_store.engine.connect() as connection:
        stored = connection.execute(sa.select(cs_object.c.dn, cs_object.c.attrs_hash)).one()
    assert tuple(stored) == ("CN=B", "x")


def test_upsert_in_chunks_inserts_then_updates(pg_store):
    count = 2 * WRITE_CHUNK_ROWS + 17
    with pg_store.transaction() as connection:
        pg_store.upsert(connection, cs_object, [cs_row(f"a{i}") for i in range(count)], update=["dn"])
    with pg_store.transaction() as connection:
        pg_store.upsert(
            connection, cs_object, [cs_row(f"a{i}", dn=f"CN=new{i}") for i in range(0, count, 2)], update=["dn"]
        )
    with pg_store.engine.connect() as connection:
        total = connection.execute(sa.select(sa.func.count()).select_from(cs_object)).scalar()
        renamed = connection.execute(
            sa.select(sa.func.count()).select_from(cs_object).where(cs_object.c.dn.like("CN=new%"))
        ).scalar()
    assert (total, renamed) == (count, (count + 1) // 2)


def test_watermark_commits_with_transaction_or_not_at_all(pg_store):
    with pytest.raises(RuntimeError), pg_store.transaction() as connection:
        pg_store.save_watermark(connection, "ad", "DC=corp", b"cookie-1", "dc1")
        raise RuntimeError("import failed")
    assert pg_store.get_watermark("ad", "DC=corp") is None
    with pg_store.transaction() as connection:
        pg_store.save_watermark(connection, "ad", "DC=corp", b"cookie-2\x00\xff", "dc1")
    with pytest.raises(RuntimeError), pg_store.transaction() as connection:
        pg_store.save_watermark(connection, "ad", "DC=corp", b"cookie-3", "dc2")
        raise RuntimeError("import failed")
    saved = pg_store.get_watermark("ad", "DC=corp")
    assert type(saved.cookie) is bytes and saved.cookie == b"cookie-2\x00\xff"  # bytea comes back as bytes
    assert saved.dc_name == "dc1"
    assert saved.updated_at.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - saved.updated_at) < dt.timedelta(minutes=1)


def test_times_read_back_as_utc_whatever_the_session_time_zone(pg_store, postgres_server):
    """A server configured in local time must not shift lease checks or the UTC times shown in lock errors."""
    database = pg_store.engine.url.database
    with closing(postgres_server.connect()) as connection, connection.cursor() as cursor:
        cursor.execute(f"ALTER DATABASE \"{database}\" SET timezone TO 'Asia/Kathmandu'")  # UTC+05:45
    with Store(pg_store.url, instance="test") as local_time:
        with local_time.engine.connect() as connection:
            assert connection.execute(sa.text("SHOW timezone")).scalar() == "Asia/Kathmandu"
        before = dt.datetime.now(dt.UTC)
        local_time.acquire_lock("dag_run_1")
        with pytest.raises(StoreLockedError) as refused:
            local_time.acquire_lock("dag_run_2")
        # Minutes are enough to tell UTC from UTC+05:45 without racing the clock on seconds.
        assert f"since {before:%Y-%m-%d %H:%M}" in str(refused.value)
        with local_time.transaction() as connection:
            local_time.save_watermark(connection, "ad", NC, b"c", "dc1")
        assert local_time.get_watermark("ad", NC).updated_at.utcoffset() == dt.timedelta(0)


# ----------------------------------------------------------------------------------------------------- lock
def test_two_handles_exclude_each_other(pg_store, second_handle):
    with pg_store.locked("worker_a"):
        with pytest.raises(StoreLockedError, match="locked by 'worker_a'"):
            second_handle.acquire_lock("worker_b")
        # a second worker cannot run an import either, and records nothing while refused
        with pytest.raises(StoreLockedError, match="locked by 'worker_a'"):
            import_active_directory(FakeDirectory(), second_handle, mode="full", attributes=ATTRS, lock_holder="b")
    assert second_handle.list_runs() == []
    with second_handle.locked("worker_b"):
        with pytest.raises(StoreLockedError, match="locked by 'worker_b'"):
            pg_store.acquire_lock("worker_a")


@pytest.mark.parametrize("previous", [None, "expired"], ids=["free", "expired-lease"])
def test_simultaneous_acquires_from_separate_handles_admit_exactly_one(pg_store, previous):
    """Workers racing for a free lock (unique-index wait) or an expired one (row lock): one wins, others refused."""
    if previous:
        pg_store.acquire_lock("killed_task", lease=dt.timedelta(seconds=-1))
    handles = [Store(pg_store.url, instance="test") for _ in range(6)]
    try:
        succeeded, errors = run_together(len(handles), lambda i: handles[i].acquire_lock(f"worker_{i}"))
    finally:
        for handle in handles:
            handle.close()
    assert len(succeeded) == 1, errors
    assert len(errors) == len(handles) - 1 and all(isinstance(error, StoreLockedError) for error in errors)
    with pytest.raises(StoreLockedError, match=f"locked by 'worker_{succeeded[0]}'"):
        pg_store.acquire_lock("someone_else")


def test_imports_of_one_run_write_at_once_and_each_retry_fences_only_its_own(pg_store, second_handle):
    """PostgreSQL lets two imports of one run (their own scope rows) hold open write transactions at the same time;
    a retry of one fences off only its older attempt; the sync step that follows fences off whatever still runs."""
    run_holder = "aadsync_cycle:run_1"
    pg_store.acquire_lock(run_holder, hold=dt.timedelta(minutes=60))
    both_open = threading.Barrier(2, timeout=20)

    def import_into(store: Store, connector: str) -> None:
        with store.locked(run_holder, scope=f"import:{connector}"):
            with store.transaction() as connection:
                store.save_watermark(connection, connector, "DC=corp", connector.encode(), "dc1")
                both_open.wait()  # both transactions are open and fenced here at once

    threads = [
        threading.Thread(target=import_into, args=(store, name))
        for store, name in ((pg_store, "ad"), (second_handle, "entra"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not both_open.broken
    assert {name: pg_store.get_watermark(name, "DC=corp").cookie for name in ("ad", "entra")} == {
        "ad": b"ad",
        "entra": b"entra",
    }
    with pg_store.locked(run_holder, scope="import:ad"), second_handle.locked(run_holder, scope="import:entra"):
        with Store(pg_store.url, instance="test") as retry, retry.locked(run_holder, scope="import:ad"):
            with pytest.raises(StoreLockLostError):
                with pg_store.transaction() as connection:
                    pg_store.save_watermark(connection, "ad", "DC=corp", b"zombie", "dc1")
            with second_handle.transaction() as connection:  # the other import goes on
                second_handle.save_watermark(connection, "entra", "DC=corp", b"entra-2", "dc1")
            with Store(pg_store.url, instance="test") as syncer, syncer.locked(run_holder):
                with pytest.raises(StoreLockLostError):
                    with second_handle.transaction() as connection:
                        second_handle.save_watermark(connection, "entra", "DC=corp", b"late", "dc1")
    assert pg_store.get_watermark("entra", "DC=corp").cookie == b"entra-2"
    assert pg_store.get_watermark("ad", "DC=corp").cookie == b"ad"


# ----------------------------------------------------------------------------------------------------- runs
def test_runs_and_errors(pg_store):
    run_id = pg_store.start_run("full-import", "ad")
    second = pg_store.start_run("delta-import", "ad")
    assert second > run_id
    pg_store.record_errors(
        run_id,
        [
            {"anchor": "a", "dn": "CN=A", "code": "undecodable-value", "message": "m"},
            {"anchor": None, "dn": None, "code": "other", "message": "ünïcode"},
        ],
    )
    pg_store.finish_run(run_id, "completed-import-errors", {"adds": 1, "errors": 2}, "detail")
    stored = pg_store.get_run(run_id)
    assert stored["counters"] == {"adds": 1, "errors": 2}
    assert stored["result"] == "completed-import-errors" and stored["detail"] == "detail"
    assert stored["ended_at"] >= stored["started_at"] and stored["started_at"].utcoffset() is not None
    assert [error["code"] for error in pg_store.run_errors(run_id)] == ["undecodable-value", "other"]
    assert pg_store.run_errors(run_id)[1]["message"] == "ünïcode"
    assert [entry["id"] for entry in pg_store.list_runs()] == [second, run_id]
    assert pg_store.get_run(second)["result"] == "in-progress"
    with pg_store.transaction() as connection:  # run_error rows go with their run
        connection.execute(sa.delete(run).where(run.c.id == run_id))
        assert connection.execute(sa.select(sa.func.count()).select_from(run_error)).scalar() == 0


# --------------------------------------------------------------------------------------------------- import
@pytest.fixture
def store(pg_store: Store) -> Store:
    """The unit tests' ``store``, on PostgreSQL: the inherited import tests below run unchanged against it."""
    return pg_store


class TestFullImportOnPostgres(unit.TestFullImport):
    """Every full-import expectation of tests/unit/engine/test_ad_import.py, on PostgreSQL."""


class TestDeltaImportOnPostgres(unit.TestDeltaImport):
    """Every delta-import expectation of tests/unit/engine/test_ad_import.py, on PostgreSQL."""


def test_full_then_delta_import_rows_in_postgres(directory, pg_store):  # noqa: F811 - the imported fixture
    """The connector space as PostgreSQL holds it after a full import and a delta, checked with plain SQL."""
    full = import_active_directory(directory, pg_store, mode="delta", attributes=ATTRS)
    assert (full.mode, full.result, full.counters["adds"]) == ("full", "success", 6)
    with pg_store.engine.connect() as connection:
        objects = connection.execute(
            sa.select(cs_object.c.anchor, cs_object.c.object_type, cs_object.c.pending_import, cs_object.c.last_run_id)
        ).all()
        references = connection.execute(
            sa.select(cs_reference.c.anchor, cs_reference.c.attribute, cs_reference.c.target_anchor)
        ).all()
    assert {(anchor, kind) for anchor, kind, _pending, _run in objects} == {
        *((str(guid(n)), "user") for n in range(1, 6)),
        (str(guid(100)), "group"),
    }
    assert {(pending, run_id) for _anchor, _kind, pending, run_id in objects} == {("add", full.run_id)}
    assert sorted(references) == sorted((str(guid(100)), "member", str(guid(n))) for n in (1, 2, 3))
    assert pg_store.get_watermark("ad", NC).cookie == b"cookie-0"

    directory.delta_batches = [
        [
            (FakeDirectory.ext(1, f"CN=user1,{NC}"), {"objectGUID": [guid(1).bytes_le], "displayName": [b"Changed"]}),
            (
                FakeDirectory.ext(100, f"CN=group1,{NC}"),
                {"objectGUID": [guid(100).bytes_le], "member;range=1-1": [FakeDirectory.ext(4, "CN=user4").encode()]},
            ),
            (
                FakeDirectory.ext(3, f"CN=user3,CN=Deleted Objects,{NC}"),
                {"objectGUID": [guid(3).bytes_le], "isDeleted": [b"TRUE"]},
            ),
        ]
    ]
    delta = import_active_directory(directory, pg_store, mode="delta", attributes=ATTRS)
    assert (delta.mode, delta.result) == ("delta", "success")
    # user1; group1 gaining user4; group1 again when the deleted user3's membership is dropped
    assert (delta.counters["updates"], delta.counters["deletes"]) == (3, 1)
    assert (delta.counters["reference_adds"], delta.counters["reference_removes"]) == (1, 1)
    state = rows(pg_store)
    assert '"displayName":["Changed"]' in state[str(guid(1))]["attrs"]
    assert str(guid(3)) not in state  # never synced: the add vanishes
    assert members(pg_store, 100) == {str(guid(n)) for n in (1, 2, 4)}
    assert pg_store.get_watermark("ad", NC).cookie == b"cookie-0+1"
    assert [entry["result"] for entry in pg_store.list_runs()] == ["success", "success"]


def test_write_columns(pg_store):
    check_write_columns(pg_store)


def test_among_finds_what_in_finds(pg_store):
    """``= ANY`` of one array parameter: the rows of an ``IN`` list, text and integer keys alike."""
    check_among_finds_what_in_finds(pg_store)


def test_among_binds_one_parameter_for_any_number_of_keys(pg_store):
    check_among_binds_one_parameter_for_any_number_of_keys(pg_store)


AWKWARD_TEXTS = ["", "a,b", '{"x":["y"]}', "{a,b}", 'quote " and \\ backslash', "tab\tnew\nline\r", "NULL", "é 漢字 🙂"]


def test_rows_written_as_arrays_read_back_as_written_across_statements(pg_store):
    """PostgreSQL takes rows as one array per column (bulk.py): every text (quotes, braces, commas, backslashes, the
    word NULL, non-ASCII), NULLs, booleans and times read back as written, over several statements, upserting."""
    count = bulk.UNNEST_CHUNK_ROWS + 7  # two statements
    when = dt.datetime(2026, 12, 5, 21, 0, 1, 123456, tzinfo=dt.UTC)
    texts = [AWKWARD_TEXTS[i % len(AWKWARD_TEXTS)] for i in range(count)]
    columns = {
        "connector": "ad",
        "anchor": [f"a{i:06d}" for i in range(count)],
        "dn": texts,
        "object_type": "user",
        "attrs": [f'{{"n":[{i}]}}' for i in range(count)],
        "attrs_hash": "x",
        "refs_hash": "0",
        "is_deleted": [i % 3 == 0 for i in range(count)],
        "pending_import": [None if i % 2 else "add" for i in range(count)],
        "updated_at": when,
    }
    with pg_store.transaction() as connection:
        assert bulk.writes_as_arrays(connection, cs_object, columns)
        assert pg_store.write_columns(connection, cs_object, columns) == count
        again = {**columns, "anchor": columns["anchor"][:3], "dn": ["x", "y", None], "is_deleted": [True] * 3}
        again = {name: values[:3] if isinstance(values, list) else values for name, values in again.items()}
        with pytest.raises(sa.exc.IntegrityError):  # dn is NOT NULL: refused as any insert would be
            with connection.begin_nested():
                pg_store.write_columns(connection, cs_object, again, update=["dn", "is_deleted"])
        again["dn"] = ["x", "y", "z"]
        assert pg_store.write_columns(connection, cs_object, again, update=["dn", "is_deleted"]) == 3
    with pg_store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(cs_object.c.anchor, cs_object.c.dn, cs_object.c.attrs, cs_object.c.is_deleted,
                      cs_object.c.pending_import, cs_object.c.updated_at).order_by(cs_object.c.anchor)
        ).all()  # fmt: skip
    expected_dn = ["x", "y", "z", *texts[3:]]
    assert [row.dn for row in rows] == expected_dn
    assert [row.attrs for row in rows] == columns["attrs"]
    assert [row.is_deleted for row in rows] == [True, True, True, *columns["is_deleted"][3:]]
    assert [row.pending_import for row in rows] == columns["pending_import"]
    assert {as_utc(row.updated_at) for row in rows} == {when}


def test_columns_of_other_types_keep_the_executemany(pg_store):
    """Binary columns, and values of another type than their column's, are not written as arrays; their rows are
    written all the same, row by row."""
    with pg_store.engine.connect() as connection:
        assert not bulk.writes_as_arrays(connection, watermark, {"connector": ["ad"], "cookie": [b"\x00"]})
        assert not bulk.writes_as_arrays(connection, cs_object, {"anchor": ["a", 1]})  # not one array type
        assert not bulk.writes_as_arrays(connection, run, {"id": [True]})
        assert bulk.writes_as_arrays(connection, cs_object, {"anchor": ["a", None], "is_deleted": False})
    with pg_store.transaction() as connection:  # a value of another type: written row by row, converted by the column
        pg_store.write_columns(connection, cs_object, {**cs_row("n1"), "anchor": ["n1", "n2"], "dn": ["CN=1", 2]})
    with pg_store.engine.connect() as connection:
        assert connection.execute(sa.select(cs_object.c.dn).order_by(cs_object.c.anchor)).scalars().all() == [
            "CN=1",
            "2",
        ]


def test_stale_statistics_are_refreshed_and_fresh_ones_left_alone(pg_store):
    """A table whose rows changed by a tenth or more since its last analyze is analyzed (the planner then knows its
    rows); one analyzed since, or barely changed, is not."""
    rows = [cs_row(f"s{i}") for i in range(3 * bulk.STALE_ROWS)]
    with pg_store.transaction() as connection:
        pg_store.upsert(connection, cs_object, rows, update=["dn"])
        connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")  # this transaction's counts, at its commit
    with pg_store.transaction() as connection:
        assert bulk.refresh_statistics(connection, [cs_object, cs_reference]) == ["cs_object"]
        planned = connection.exec_driver_sql("SELECT reltuples FROM pg_class WHERE relname = 'cs_object'").scalar()
        assert planned == len(rows)
    with pg_store.transaction() as connection:
        assert bulk.refresh_statistics(connection, [cs_object, cs_reference]) == []


def test_a_second_instance_is_refused_and_a_claim_moves_the_store_on_postgres(pg_store):
    """The owner marker on PostgreSQL: another instance's open is refused before it writes, the claim (row-locked
    there, BEGIN IMMEDIATE on SQLite) moves the store to the new instance and keeps its rows."""
    from airflow_provider_aadsync.engine.store import StoreInstanceError
    from airflow_provider_aadsync.engine.store import owner as marker

    with pg_store.transaction() as connection:
        connection.execute(sa.insert(cs_object), [cs_row("alice")])
    pg_store.check_tenant("11111111-2222-3333-4444-555555555555")
    with pytest.raises(StoreInstanceError, match="belongs to sync instance 'test' .*not to sync instance 'apac'"):
        Store.open(pg_store.url, instance="apac")
    with Store(pg_store.url, instance="apac") as apac:
        before, after = marker.reclaim(apac, "apac")
    assert (before.instance, after.instance, after.how) == ("test", "apac", "claimed from test")
    assert after.tenant_id == "11111111-2222-3333-4444-555555555555"
    with pytest.raises(StoreInstanceError, match="belongs to sync instance 'apac'"):
        Store.open(pg_store.url, instance="test")
    with Store.open(pg_store.url, instance="apac") as apac, apac.engine.connect() as connection:
        assert connection.execute(sa.select(cs_object.c.anchor)).scalars().all() == ["alice"]


def test_tables_filled_in_the_transaction_are_analyzed_before_it_reads_them(pg_store):
    """PostgreSQL counts a transaction's own rows in its statistics only once it commits: a pass analyzes the tables
    it filled itself (the store counts the rows it writes in bulk), and the planner then knows those rows."""
    count = bulk.STALE_ROWS + 5
    columns = {**cs_row(), "anchor": [f"w{i}" for i in range(count)]}
    with pg_store.transaction() as connection:
        before = pg_store.rows_written["cs_object"]
        pg_store.write_columns(connection, cs_object, columns)
        assert pg_store.rows_written["cs_object"] - before == count
        written = {"cs_object": count, "cs_reference": bulk.STALE_ROWS - 1}
        assert bulk.analyze_written(connection, written, [cs_object, cs_reference]) == ["cs_object"]
        planned = connection.exec_driver_sql("SELECT reltuples FROM pg_class WHERE relname = 'cs_object'").scalar()
        assert planned == count


def test_rows_written_as_arrays_refuse_a_text_over_its_length_as_row_by_row(pg_store):
    """The arrays are of unlimited text, checked when assigned: an anchor over 255 characters in a varchar(255) column
    is refused, not cut (cast to varchar(255)[] it would have been cut silently)."""
    columns = {**cs_row(), "anchor": ["a" * 256, "short"]}
    with pg_store.engine.connect() as connection:
        assert bulk.writes_as_arrays(connection, cs_object, columns)
    with pytest.raises(sa.exc.DataError, match="too long"):
        with pg_store.transaction() as connection:
            pg_store.write_columns(connection, cs_object, columns)


def test_an_upsert_of_one_key_twice_keeps_the_last_row_as_row_by_row(pg_store):
    """PostgreSQL refuses to update one row twice in one statement: of several rows with one key, the last wins, as
    the row by row upsert (and SQLite) gives it."""
    columns = {**cs_row(), "anchor": ["k", "other", "k", "k"], "dn": ["CN=1", "CN=o", "CN=2", "CN=3"]}
    with pg_store.transaction() as connection:
        assert pg_store.write_columns(connection, cs_object, columns, update=["dn"]) == 4
    with pg_store.engine.connect() as connection:
        rows = connection.execute(sa.select(cs_object.c.anchor, cs_object.c.dn).order_by(cs_object.c.anchor)).all()
    assert [tuple(row) for row in rows] == [("k", "CN=3"), ("other", "CN=o")]


def test_wide_rows_go_fewer_to_a_statement():
    """A statement carries about UNNEST_CHUNK_BYTES of text: wide rows go fewer at a time, narrow ones 2,000."""
    narrow = {"anchor": ["a" * 10] * 5_000, "connector": "ad"}
    wide = {"anchor": ["a" * 10] * 5_000, "attrs": ["x" * 100_000] * 5_000}
    assert bulk._rows_per_statement(narrow, 5_000) == bulk.UNNEST_CHUNK_ROWS
    assert bulk._rows_per_statement(wide, 5_000) == bulk.UNNEST_CHUNK_BYTES // 100_010
    assert bulk._rows_per_statement({"attrs": ["x" * (64 * 1024 * 1024)]}, 1) == 1
