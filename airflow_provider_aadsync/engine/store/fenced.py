"""The fenced writer: a connector's writer whose every directory write first makes sure the step still holds the
instance lock (:func:`ensure`, through the store handle's ``check_lease``). The store's own fence cannot stop a
write that never touches the store (Graph, LDAP), so the exporters wrap their writers in this."""

from __future__ import annotations

import time
from typing import Any

from airflow_provider_aadsync.engine import write_guard
from airflow_provider_aadsync.engine.store.errors import StoreLockLostError
from airflow_provider_aadsync.engine.store.lock import Lease, StoreHandle, mark_lost, renew

#: Renewals in a row that may each come back too late to vouch for the lock before a write is refused.
CONFIRM_ATTEMPTS = 3
#: Seconds a confirmation of the lock vouches for a write request (engine/write_guard.py): a takeback by a retry of
#: the same DAG run is found within about a second of writes, for one renewal a second at most.
WRITE_FRESHNESS = 1.0


def ensure(store: StoreHandle, lease: Lease, *, fresh_for: float | None = None) -> None:
    """Before a write outside the store (Graph, LDAP): refuse it unless the lock is surely still held.

    The store's fence cannot stop a write that never touches the store, so the exporters call this first. It costs
    nothing while the token was confirmed less than ``fresh_for`` seconds ago (default half a lease; the heartbeat
    confirms it every third). Half a lease only rules out a takeover of an *expired* lock: a retry of the same DAG
    run takes the lock back at once. So each write request a writer sends checks with :data:`WRITE_FRESHNESS`
    (through engine/write_guard.py), outside any store transaction; the default serves the fenced call's entry,
    which may come inside one (a read during reconciliation: a renewal on its own connection would wait for
    SQLite's write lock).

    A renewal vouches for the lease from the moment it was asked, so its answer counts only if it came back within
    half a lease: a process frozen while the answer was on its way (the renewal committed, then a takeover) would
    otherwise wake up to a "held" that is no longer true, and write. A late answer is asked again. What this cannot
    cover is a freeze in the instant between the check and the request leaving: that write is made, its
    confirmation is refused, and the run that took over reconciles it (creates are looked up, the rest is
    idempotent).
    """
    lease.check()
    half_lease = lease.duration.total_seconds() / 2
    if time.monotonic() - lease.confirmed_at <= (half_lease if fresh_for is None else fresh_for):
        return
    for _ in range(CONFIRM_ATTEMPTS):
        asked_at = time.monotonic()
        if not renew(store, lease):
            raise mark_lost(store, lease)
        if time.monotonic() - asked_at <= half_lease:
            lease.confirmed_at = asked_at
            lease.check()  # the heartbeat may have found it lost meanwhile
            return
    raise StoreLockLostError(
        f"sync instance {lease.instance!r}: the store took more than half the lease ({half_lease:g} s) to confirm "
        f"the lock of {lease.holder!r} {CONFIRM_ATTEMPTS} times in a row, so it cannot vouch that the lock is still "
        "held: this attempt stopped before writing to the directory; the next run reconciles what it had sent"
    )


class FencedWriter:
    """A connector's writer (EntraHook, ActiveDirectoryHook) whose write methods first :func:`ensure` the lock."""

    def __init__(self, writer: Any, store: StoreHandle, methods: tuple[str, ...]):
        self._writer = writer
        self._store = store
        self._methods = methods

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._writer, name)
        if name not in self._methods or not callable(attribute):
            return attribute

        def guarded(*args: Any, **kwargs: Any) -> Any:
            self._store.check_lease()
            # and the store is asked before each write request the call sends, resends after a wait included
            with write_guard.guarding(lambda: self._store.check_lease(fresh_for=WRITE_FRESHNESS)):
                return attribute(*args, **kwargs)

        return guarded


def fenced_writer(writer: Any, store: StoreHandle) -> Any:
    """Wrap an exporter's writer so that no write leaves while the step's lock may be lost (see :func:`ensure`)."""
    return FencedWriter(writer, store, WRITE_METHODS)


#: The methods of the connector writers that change a directory.
WRITE_METHODS = ("batch", "request", "add_object", "modify_object", "modify_references", "move_object", "delete_object")
