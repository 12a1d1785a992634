"""The store's errors, shared by the store handle and the instance lock, and the messages of a store not ready to be
read as it is (:class:`StoreNotReadyError`)."""

from __future__ import annotations


class StoreError(Exception):
    """Raised when the store cannot be opened or migrated."""


class StoreLockedError(StoreError):
    """Raised when another run of the same sync instance holds the store lock."""


class StoreLockLostError(StoreError):
    """Raised by a write of a run whose lock was taken over (its lease ran out, or a newer attempt of the same run
    took the lock back): the write is refused and its transaction rolled back, so a zombie task never writes."""


class StoreNotReadyError(StoreError):
    """Raised when a store opened as it is (:meth:`~airflow_provider_aadsync.engine.store.Store.open_existing`, the
    sync manager's open) is not ready for this package: it does not exist or has no schema yet (the first sync step
    creates it), or its schema is older (the next sync step migrates it) or newer (upgrade the package). Nothing was
    created, claimed or migrated."""


def _first_step(instance: str) -> str:
    return f"the first sync step of sync instance {instance!r} (its cycle's first import) creates"


def missing_store(display_url: str, instance: str) -> StoreNotReadyError:
    """The error of a store file that does not exist, opened as it is. ``display_url``: password masked."""
    return StoreNotReadyError(
        f"store {display_url} does not exist yet: {_first_step(instance)} it; nothing was created"
    )


def schema_not_ready(display_url: str, instance: str, version: int, schema_version: int) -> StoreNotReadyError | None:
    """Why a store of schema ``version`` (0: no tables) cannot be read as it is by a package of ``schema_version``;
    None when it can. ``display_url``: the store's URL, password masked."""
    if version == 0:
        return StoreNotReadyError(
            f"store {display_url} has no tables yet: {_first_step(instance)} them; nothing was created"
        )
    if version < schema_version:
        return StoreNotReadyError(
            f"store {display_url} has schema version {version}, older than this package's {schema_version}: the next "
            f"sync step of sync instance {instance!r} migrates it; it can be read once migrated (nothing was changed)"
        )
    if version > schema_version:
        return StoreNotReadyError(
            f"store {display_url} has schema version {version}, newer than this package's {schema_version}: upgrade "
            "airflow-provider-aadsync"
        )
    return None
