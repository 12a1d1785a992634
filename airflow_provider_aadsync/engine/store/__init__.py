"""The persistent store of a sync instance: its tables and migrations (tables.py), the handle that opens, migrates
and writes it (store.py), its errors (errors.py), the instance lock that fences its writes (lock.py) and the
marker of the sync instance that owns it (owner.py).

The public names are re-exported here, so ``from airflow_provider_aadsync.engine.store import Store, cs_object``
reads the same as before the store became a package; the lock's functions are used as the ``lock`` module.
"""

from airflow_provider_aadsync.engine.store.errors import StoreError, StoreLockedError, StoreLockLostError
from airflow_provider_aadsync.engine.store.owner import StoreInstanceError
from airflow_provider_aadsync.engine.store.store import (
    WRITE_CHUNK_ROWS,
    Store,
    Watermark,
    apply_sqlite_pragmas,
    create_private_file,
    default_store_url,
    storable_text,
)
from airflow_provider_aadsync.engine.store.tables import (
    MIGRATIONS,
    OPEN_STATES,
    READ_ONLY,
    REFUSED,
    SCHEMA_VERSION,
    as_utc,
    cs_object,
    cs_reference,
    export_conflict,
    ix_pending_export_reference_target,
    link,
    metadata,
    mv_join_key,
    mv_object,
    mv_reference,
    pending_export,
    pending_export_reference,
    run,
    run_error,
    run_notice,
    schema_version,
    store_instance,
    store_lock,
    sync_memo,
    sync_state,
    utcnow,
    watermark,
)

__all__ = [
    "MIGRATIONS",
    "OPEN_STATES",
    "READ_ONLY",
    "REFUSED",
    "SCHEMA_VERSION",
    "WRITE_CHUNK_ROWS",
    "Store",
    "StoreError",
    "StoreInstanceError",
    "StoreLockLostError",
    "StoreLockedError",
    "Watermark",
    "apply_sqlite_pragmas",
    "as_utc",
    "create_private_file",
    "cs_object",
    "cs_reference",
    "default_store_url",
    "export_conflict",
    "ix_pending_export_reference_target",
    "link",
    "metadata",
    "mv_join_key",
    "mv_object",
    "mv_reference",
    "pending_export",
    "pending_export_reference",
    "run",
    "run_error",
    "run_notice",
    "schema_version",
    "storable_text",
    "store_instance",
    "store_lock",
    "sync_memo",
    "sync_state",
    "utcnow",
    "watermark",
]
