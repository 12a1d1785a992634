"""The instance lock: one sync instance, one writer.

The lock is one row per instance in the store (``store_lock``), so it works the same on SQLite and PostgreSQL and
across workers. Three things make it safe, not only polite:

- **Atomic acquisition.** The row is created if missing and then read and changed inside one write transaction that
  holds the row (SQLite: the first statement is a write, so the transaction holds the database's write lock from its
  start; PostgreSQL: ``SELECT ... FOR UPDATE``). Two processes can never both take an expired lock.
- **A lease that is renewed.** A step holds a short lease (:data:`STEP_LEASE`) that a heartbeat thread on its own
  connection renews every third of the lease; a killed task blocks others for one lease at most, and a long export
  never outlives its lease. When a renewal finds the lock gone, the step stops before its next write.
- **A fencing token.** Every acquisition (a retry of the same holder too) bumps the row's token; each write
  transaction of a step first checks, inside the transaction, that the row still carries the step's token
  (SQLite: an UPDATE of the lock row, which also takes the write lock; PostgreSQL: ``FOR KEY SHARE`` on the row,
  which keeps a takeover out until the transaction ends). A stale token raises :class:`StoreLockLostError` and the
  transaction rolls back: a zombie task and its retry can never both write.

A whole cycle (the DAGs) holds the instance from its first step to its last: the first task acquires it with a
``hold``, each step re-enters it as the same holder and leaves it held for ``hold`` when it ends, and the cycle's last
task releases it. The hold is the lease between steps, so a crashed DAG run blocks the instance for that long at most.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.store.errors import StoreLockedError, StoreLockLostError
from airflow_provider_aadsync.engine.store.tables import as_utc, run, store_lock, utcnow

log = logging.getLogger(__name__)

#: The lease of one running step; renewed every third of it while the step runs.
STEP_LEASE = dt.timedelta(minutes=10)
#: How long a cycle keeps the instance between its steps (longer than Airflow's retry backoff, 30 minutes at most).
CYCLE_HOLD = dt.timedelta(minutes=60)
#: How long PostgreSQL waits for a row lock held by a running write before the acquisition says "busy".
_PG_LOCK_TIMEOUT = "5s"


class StoreHandle(Protocol):
    """What the lock needs of a store handle (:class:`airflow_provider_aadsync.engine.store.Store`): its engine,
    its instance name and the lease of the step running on it. A protocol, so the lock needs no import of the
    handle, which imports the lock."""

    engine: Engine
    instance: str
    lease: Lease | None

    def check_lease(self) -> None: ...


@dataclass
class Lease:
    """One acquisition of the instance lock: who, with which fencing token, for how long."""

    instance: str
    holder: str
    token: int
    duration: dt.timedelta
    #: The cycle hold of the row (None: the lock is released when the step ends).
    hold: dt.timedelta | None = None
    #: Why the lock was lost (a renewal or a fenced write found another token), or None while it is held.
    lost: str | None = None
    #: Write transactions of the step now open (SQLite: the heartbeat leaves the renewal to them).
    open_transactions: int = 0
    #: ``time.monotonic()`` just before the store last confirmed the token (acquisition, renewal, fence).
    confirmed_at: float = field(default_factory=time.monotonic)

    @property
    def expiry(self) -> dt.timedelta:
        """How far ahead each renewal moves the lease: the step lease, or the cycle hold when it is longer."""
        return max(self.duration, self.hold) if self.hold else self.duration

    def check(self) -> None:
        """Raise :class:`StoreLockLostError` when the heartbeat already found the lock taken over."""
        if self.lost:
            raise StoreLockLostError(self.lost)


@dataclass(frozen=True)
class LockState:
    """The lock row as a message shows it."""

    holder: str
    acquired_at: dt.datetime
    expires_at: dt.datetime
    token: int

    def held(self, now: dt.datetime | None = None) -> bool:
        return bool(self.holder) and self.expires_at > (now or utcnow())

    def describe(self, instance: str) -> str:
        return (
            f"sync instance {instance!r} is locked by {self.holder!r} since {self.acquired_at:%Y-%m-%d %H:%M:%S} UTC "
            f"(lease ends {self.expires_at:%Y-%m-%d %H:%M:%S} UTC)"
        )


def _state(row: Any) -> LockState:
    return LockState(row.holder, as_utc(row.acquired_at), as_utc(row.expires_at), int(row.token))


def lock_state(store: StoreHandle) -> LockState | None:
    """The instance's lock row, or None when the instance was never locked."""
    with store.engine.connect() as connection:
        row = connection.execute(sa.select(store_lock).where(store_lock.c.name == store.instance)).first()
    return _state(row) if row is not None else None


def describe_holder(store: StoreHandle, state: LockState | None = None) -> str:
    """Who holds the instance, for a wait line: ``the run lock of sync instance 'default' held by 'host:42' (run 7,
    export of entra, since 2026-12-04 17:20:01 UTC)``; the run is the newest one still open that started after the
    lock was taken (none between the steps of a cycle)."""
    state = state or lock_state(store)
    name = f"the run lock of sync instance {store.instance!r}"
    if state is None or not state.held():
        return f"{name} (busy with another run's write)"
    with store.engine.connect() as connection:
        row = connection.execute(
            sa.select(run.c.id, run.c.profile, run.c.connector, run.c.started_at)
            .where(run.c.ended_at.is_(None))
            .order_by(run.c.id.desc())
            .limit(1)
        ).first()
    what = ""
    if row is not None and as_utc(row.started_at) >= state.acquired_at - dt.timedelta(seconds=1):
        what = f"run {row.id}, {row.profile} of {row.connector}, "
    return f"{name} held by {state.holder!r} ({what}since {state.acquired_at:%Y-%m-%d %H:%M:%S} UTC)"


#: The environment variable with how long a step waits for the instance another run holds (seconds; default 0).
LOCK_WAIT_ENV = "AADSYNC_LOCK_WAIT"


def lock_wait_from_env() -> dt.timedelta:
    """``AADSYNC_LOCK_WAIT`` as a duration: a CLI run can wait for a cycle's step instead of failing at once."""
    text = os.environ.get(LOCK_WAIT_ENV, "").strip()
    if not text:
        return dt.timedelta(0)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{LOCK_WAIT_ENV}={text!r} is not a number of seconds (0 or more)")
    return dt.timedelta(seconds=seconds)


def acquire_waiting(
    store: StoreHandle,
    holder: str,
    *,
    wait: dt.timedelta,
    poll_seconds: float = 1.0,
    lease: dt.timedelta = STEP_LEASE,
    hold: dt.timedelta | None = None,
) -> Lease:
    """:func:`acquire`, waiting up to ``wait`` while another run holds the instance; the wait shows in the run's
    progress (engine/progress.py) with who holds the lock, so a long wait is never a silent one."""
    deadline = time.monotonic() + wait.total_seconds()
    report = progress.current()
    while True:
        try:
            return acquire(store, holder, lease=lease, hold=hold)
        except StoreLockedError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            pause = min(poll_seconds, left)
            report.wait("lock", pause, describe_holder(store))
            time.sleep(pause)


#: The result of a step stopped by :class:`StoreLockLostError`: transient, Airflow retries it.
LOCK_LOST = "stopped-lock-lost"


def stopped_result(error: BaseException, otherwise: str) -> str:
    """The run result of a step that raised ``error``: ``stopped-lock-lost`` when its lock was taken over."""
    return LOCK_LOST if isinstance(error, StoreLockLostError) else otherwise


def _is_busy(error: sa.exc.OperationalError) -> bool:
    """SQLite's "database is locked" or PostgreSQL's lock_not_available: a running write holds what we need."""
    return "database is locked" in str(error.orig) or getattr(error.orig, "pgcode", None) == "55P03"


def acquire(
    store: StoreHandle, holder: str, *, lease: dt.timedelta = STEP_LEASE, hold: dt.timedelta | None = None
) -> Lease:
    """Take the instance lock for ``holder`` atomically, bumping its fencing token.

    The same holder takes its own lock back (an Airflow retry of the same DAG run): the new token fences off the
    attempt it replaces. Another holder gets :class:`StoreLockedError` until the lock is released or its lease ran
    out. ``hold`` marks a cycle acquisition: each step of the cycle leaves the instance held that long; a step that
    re-enters its own cycle's lock keeps the hold.
    """
    now = utcnow()
    asked_at = time.monotonic()
    try:
        with store.engine.begin() as connection:
            dialect = connection.dialect.name
            if dialect == "postgresql":
                connection.execute(sa.text(f"SET LOCAL lock_timeout = '{_PG_LOCK_TIMEOUT}'"))
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            # The row is created once and kept: on SQLite this first write takes the write lock for the whole
            # transaction, so the read below and the update cannot interleave with another acquisition.
            connection.execute(
                insert(store_lock)
                .values(name=store.instance, holder="", token=0, acquired_at=now, expires_at=now)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            row = connection.execute(
                sa.select(store_lock).where(store_lock.c.name == store.instance).with_for_update()
            ).one()
            current = _state(row)
            own = current.holder == holder
            if current.held(now) and not own:
                raise StoreLockedError(f"{current.describe(store.instance)}; another run is in progress")
            if current.holder and not own:
                log.warning(
                    "taking over the lock of sync instance %r from %r, whose lease ended %s",
                    store.instance,
                    current.holder,
                    f"{current.expires_at:%Y-%m-%d %H:%M:%S} UTC",
                )
            kept_hold = row.hold_seconds if own else None
            hold_seconds = int(hold.total_seconds()) if hold is not None else kept_hold
            granted = Lease(
                store.instance,
                holder,
                current.token + 1,
                lease,
                dt.timedelta(seconds=hold_seconds) if hold_seconds else None,
                confirmed_at=asked_at,
            )
            connection.execute(
                sa.update(store_lock)
                .where(store_lock.c.name == store.instance)
                .values(
                    holder=holder,
                    token=granted.token,
                    acquired_at=current.acquired_at if own and current.held(now) else now,
                    expires_at=now + granted.expiry,
                    renewed_at=now,
                    hold_seconds=hold_seconds,
                )
            )
    except sa.exc.OperationalError as error:
        if not _is_busy(error):
            raise
        state = lock_state(store)
        who = state.describe(store.instance) if state and state.held() else f"sync instance {store.instance!r}"
        raise StoreLockedError(f"{who}: the store is busy with another run's write; try again") from error
    log.info("sync instance %r locked by %r (token %d)", store.instance, holder, granted.token)
    return granted


def renew(store: StoreHandle, lease: Lease, connection: sa.Connection | None = None) -> bool:
    """Move the lease's end ahead if the row still carries its token; False when the lock was taken over."""
    now = utcnow()
    statement = (
        sa.update(store_lock)
        .where(store_lock.c.name == lease.instance, store_lock.c.token == lease.token)
        .values(expires_at=now + lease.expiry, renewed_at=now)
    )
    if connection is not None:
        return connection.execute(statement).rowcount == 1
    with store.engine.begin() as own:
        return own.execute(statement).rowcount == 1


def end_step(store: StoreHandle, lease: Lease) -> None:
    """A step is over: leave the instance held for the cycle's hold, or release it."""
    if lease.lost:
        return
    now = utcnow()
    values: dict[str, Any] = (
        {"expires_at": now + lease.hold, "renewed_at": now}
        if lease.hold
        else {"holder": "", "expires_at": now, "hold_seconds": None}
    )
    with store.engine.begin() as connection:
        connection.execute(
            sa.update(store_lock)
            .where(store_lock.c.name == lease.instance, store_lock.c.token == lease.token)
            .values(**values)
        )


def release(store: StoreHandle, holder: str) -> bool:
    """Release the instance if ``holder`` holds it (the cycle's last task, whatever token it holds now)."""
    with store.engine.begin() as connection:
        released = connection.execute(
            sa.update(store_lock)
            .where(store_lock.c.name == store.instance, store_lock.c.holder == holder)
            .values(holder="", expires_at=utcnow(), hold_seconds=None)
        ).rowcount
    if released:
        log.info("sync instance %r released by %r", store.instance, holder)
    return bool(released)


def _lost_message(store: StoreHandle, lease: Lease, connection: sa.Connection) -> str:
    row = connection.execute(sa.select(store_lock).where(store_lock.c.name == lease.instance)).first()
    now_held = f"now held by {row.holder!r} since {as_utc(row.acquired_at):%Y-%m-%d %H:%M:%S} UTC" if row else "gone"
    return (
        f"sync instance {lease.instance!r}: the lock of {lease.holder!r} (token {lease.token}) was taken over "
        f"({now_held}; token {row.token if row else '-'}): its lease ran out or a newer attempt of the same run took "
        "it back. This attempt stopped before writing; the run that holds the lock carries on."
    )


def fence(store: StoreHandle, lease: Lease, connection: sa.Connection) -> None:
    """Inside a write transaction: refuse it unless the lock row still carries the lease's token.

    SQLite: an UPDATE of the row (which renews the lease and takes the database's write lock at once, so nothing
    can change the row before this transaction commits). PostgreSQL: ``FOR KEY SHARE`` on the row, which a takeover
    (``FOR UPDATE``) waits for while the heartbeat's renewals (key-preserving updates) go on.
    """
    lease.check()
    asked_at = time.monotonic()
    if connection.dialect.name == "postgresql":
        token = connection.execute(
            sa.select(store_lock.c.token)
            .where(store_lock.c.name == lease.instance)
            .with_for_update(read=True, key_share=True)
        ).scalar()
        held = token == lease.token
    else:
        held = renew(store, lease, connection)
    if not held:
        lease.lost = _lost_message(store, lease, connection)
        log.error("%s", lease.lost)
        raise StoreLockLostError(lease.lost)
    lease.confirmed_at = asked_at


def ensure(store: StoreHandle, lease: Lease) -> None:
    """Before a write outside the store (Graph, LDAP): refuse it unless the lock is surely still held.

    The store's fence cannot stop a write that never touches the store, so the exporters call this first. It costs
    nothing while the token was confirmed less than half a lease ago (the heartbeat confirms it every third); after
    a longer silence (the process was frozen, the heartbeat could not get through) it asks the store again. What it
    cannot cover is a freeze in the instant between this check and the request leaving: that write is made, its
    confirmation is refused, and the run that took over reconciles it (creates are looked up, the rest is
    idempotent).
    """
    lease.check()
    if time.monotonic() - lease.confirmed_at <= lease.duration.total_seconds() / 2:
        return
    asked_at = time.monotonic()
    if not renew(store, lease):
        with store.engine.connect() as connection:
            lease.lost = _lost_message(store, lease, connection)
        log.error("%s", lease.lost)
        raise StoreLockLostError(lease.lost)
    lease.confirmed_at = asked_at


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
            return attribute(*args, **kwargs)

        return guarded


def fenced_writer(writer: Any, store: StoreHandle) -> Any:
    """Wrap an exporter's writer so that no write leaves while the step's lock may be lost (see :func:`ensure`)."""
    return FencedWriter(writer, store, WRITE_METHODS)


#: The methods of the connector writers that change a directory.
WRITE_METHODS = ("batch", "request", "add_object", "modify_object", "modify_references", "move_object", "delete_object")


class _Heartbeat(threading.Thread):
    """Renews a step's lease every third of it on its own connection; marks the lease lost when it was taken."""

    def __init__(self, store: StoreHandle, lease: Lease):
        super().__init__(name=f"aadsync-lease-{lease.instance}", daemon=True)
        self.store = store
        self.lease = lease
        self.stopped = threading.Event()

    def run(self) -> None:
        interval = max(self.lease.duration.total_seconds() / 3, 0.05)
        sqlite_store = self.store.engine.dialect.name == "sqlite"
        while not self.stopped.wait(interval):
            if sqlite_store and self.lease.open_transactions:
                continue  # the open write transaction holds SQLite's write lock and renews the lease itself
            asked_at = time.monotonic()
            try:
                held = renew(self.store, self.lease)
            except sa.exc.SQLAlchemyError as error:  # the store is briefly unreachable: the fence decides later
                log.warning("could not renew the lease of sync instance %r: %s", self.lease.instance, error)
                continue
            if not held:
                with self.store.engine.connect() as connection:
                    self.lease.lost = _lost_message(self.store, self.lease, connection)
                log.error("%s", self.lease.lost)
                return
            self.lease.confirmed_at = asked_at

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


@contextmanager
def locked(
    store: StoreHandle,
    holder: str,
    *,
    lease: dt.timedelta = STEP_LEASE,
    hold: dt.timedelta | None = None,
    wait: dt.timedelta | None = None,
) -> Iterator[Lease]:
    """Hold the instance for one step: acquire (waiting up to ``wait`` for another run to end; None: the setting
    ``AADSYNC_LOCK_WAIT``, default no wait), renew while the body runs, fence every write transaction of ``store``,
    and at the end leave it to the cycle (its hold) or release it."""
    wait = lock_wait_from_env() if wait is None else wait
    granted = acquire_waiting(store, holder, wait=wait, lease=lease, hold=hold)
    heartbeat = _Heartbeat(store, granted)
    previous = store.lease
    store.lease = granted
    heartbeat.start()
    try:
        yield granted
    finally:
        heartbeat.stop()
        store.lease = previous
        try:
            end_step(store, granted)
        except sa.exc.SQLAlchemyError:  # never hide the step's own outcome; the lease bounds the lock
            log.exception("could not end the lock of sync instance %r", store.instance)


def renew_if_long(store: StoreHandle, lease: Lease, connection: sa.Connection, started: float) -> None:
    """Before a long SQLite write transaction commits, move the lease ahead from now: the heartbeat could not renew
    it while this transaction held the write lock (nor could anyone take it over)."""
    if connection.dialect.name == "sqlite" and time.monotonic() - started > lease.duration.total_seconds() / 3:
        renew(store, lease, connection)


@contextmanager
def cycle(
    store: StoreHandle,
    holder: str,
    *,
    hold: dt.timedelta = CYCLE_HOLD,
    wait: dt.timedelta = dt.timedelta(0),
    poll_seconds: float = 1.0,
) -> Iterator[Lease]:
    """Hold the instance for a whole cycle outside Airflow (the DAGs do the same with a sensor and their report):
    wait up to ``wait`` for it, let every step re-enter it as ``holder``, release it at the end."""
    granted = acquire_waiting(store, holder, wait=wait, poll_seconds=poll_seconds, lease=hold, hold=hold)
    try:
        yield granted
    finally:
        release(store, holder)
