"""Fresh SQLite stores for unit tests, copied from one migrated template instead of migrated each time.

Opening a new store runs every schema migration (about 0.1 s); a copy of a store that was opened once is ready at
once, which keeps test modules that want a fresh store per test fast.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from airflow_provider_aadsync.engine.store import Store, cs_object


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
