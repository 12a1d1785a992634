"""The store's errors, shared by the store handle and the instance lock."""

from __future__ import annotations


class StoreError(Exception):
    """Raised when the store cannot be opened or migrated."""


class StoreLockedError(StoreError):
    """Raised when another run of the same sync instance holds the store lock."""


class StoreLockLostError(StoreError):
    """Raised by a write of a run whose lock was taken over (its lease ran out, or a newer attempt of the same run
    took the lock back): the write is refused and its transaction rolled back, so a zombie task never writes."""
