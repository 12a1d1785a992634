"""Fresh SQLite stores for unit tests, copied from one migrated template instead of migrated each time.

Opening a new store runs every schema migration (about 0.1 s); a copy of a store that was opened once is ready at
once, which keeps test modules that want a fresh store per test fast.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from airflow_provider_aadsync.engine.store import Store, cs_object, schema_version
from airflow_provider_aadsync.engine.store.owner import MARKER_VERSION


@functools.cache
def _template(instance: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="aadsync-store-template-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "store.sqlite"
    with Store.open(f"sqlite:///{path}", instance=instance):
        pass
    return path


@contextlib.contextmanager
def fresh_store(folder: Path, instance: str = "test") -> Iterator[Store]:
    """A new, empty store in ``folder`` (a test's ``tmp_path``), opened for ``instance``."""
    path = folder / "store.sqlite"
    shutil.copyfile(_template(instance), path)
    with Store.open(f"sqlite:///{path}", instance=instance) as store:
        yield store


def live_objects(store: Store) -> dict[str, dict]:
    """The connector spaces' live (not deleted) objects by anchor, every column."""
    with store.engine.connect() as connection:
        query = sa.select(cs_object).where(cs_object.c.is_deleted == sa.false())
        return {row.anchor: dict(row._mapping) for row in connection.execute(query)}


def make_older_store(url: str, instance: str = "emea") -> None:
    """A store at ``url`` as a version before the owner marker (schema step 10) left it: schema version 9, unmarked."""
    with Store.open(url, instance=instance) as store, store.engine.begin() as connection:
        connection.execute(sa.delete(schema_version).where(schema_version.c.version >= MARKER_VERSION))
        connection.execute(sa.text("DROP TABLE store_instance"))


def store_digest(path: Path) -> str:
    """A SQLite store file's bytes with its WAL folded in: equal digests, nothing written."""
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return hashlib.sha256(path.read_bytes()).hexdigest()
