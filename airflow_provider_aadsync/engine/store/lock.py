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

**Shared imports, exclusive sync and export.** An import writes only its own connector space and watermarks, so the
imports of one run (AD connectors and Entra ID) may run at once: each takes a scope row of its own
(``<instance>#import:<connector>``, scopes.py) whose token fences its own older attempts, and depends on the instance
row's token (its generation) without bumping it. A sync or export step takes the whole instance as before: its new
instance token fences off any import still running, and its marker row refuses imports of the run while it runs.
Other holders stay out while any of them runs. PostgreSQL lets the imports' transactions overlap; SQLite has one
writer at a time and an import writes in one transaction, so there the imports of a run take turns.
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
from sqlalchemy.engine import Engine

from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.store import scopes
from airflow_provider_aadsync.engine.store.errors import StoreLockedError, StoreLockLostError
from airflow_provider_aadsync.engine.store.scopes import scope_row
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

    def check_lease(self, *, fresh_for: float | None = None) -> None: ...


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
    #: None: the whole instance (``token`` is the instance row's). A scope (``import:<connector>``): ``token`` is the
    #: scope row's and ``generation`` the instance row's token the lease depends on.
    scope: str | None = None
    generation: int = 0

    @property
    def row(self) -> str:
        """The lock row whose token this lease carries."""
        return scope_row(self.instance, self.scope) if self.scope else self.instance

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
    scope: str | None = None,
    step: bool = False,
) -> Lease:
    """:func:`acquire`, waiting up to ``wait`` while another run holds the instance; the wait shows in the run's
    progress (engine/progress.py) with who holds the lock, so a long wait is never a silent one."""
    deadline = time.monotonic() + wait.total_seconds()
    report = progress.current()
    while True:
        try:
            return acquire(store, holder, lease=lease, hold=hold, scope=scope, step=step)
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


#: On SQLite (one writer at a time, and an import writes its connector space in one transaction) imports of one run
#: take turns: an import waits this long at most for the one before it.
SQLITE_TURN_WAIT = CYCLE_HOLD


def acquire(
    store: StoreHandle,
    holder: str,
    *,
    lease: dt.timedelta = STEP_LEASE,
    hold: dt.timedelta | None = None,
    scope: str | None = None,
    step: bool = False,
) -> Lease:
    """Take the instance lock for ``holder`` atomically, bumping its fencing token.

    The same holder takes its own lock back (an Airflow retry of the same DAG run): the new token fences off the
    attempt it replaces. Another holder gets :class:`StoreLockedError` until the lock is released or its lease ran
    out. ``hold`` marks a cycle acquisition: each step of the cycle leaves the instance held that long; a step that
    re-enters its own cycle's lock keeps the hold.

    ``scope`` (:func:`scopes.import_scope`) takes part of the instance only: within a run that holds the instance,
    imports of different connectors hold their own rows and run at once, and each retry fences off the attempt of its
    own scope; a whole-instance acquisition (``scope`` None: a sync, an export, a new cycle) bumps the instance token
    and so fences off every import still running, and while a whole-instance ``step`` of the run runs, an import of
    it is refused. On SQLite the imports of a run take turns (waiting up to :data:`SQLITE_TURN_WAIT`).
    """
    sqlite_turns = scope is not None and store.engine.dialect.name == "sqlite"
    deadline = time.monotonic() + SQLITE_TURN_WAIT.total_seconds()
    while True:
        try:
            granted = _acquire_once(store, holder, lease, hold, scope, step)
            break
        except scopes.Turn:
            if time.monotonic() >= deadline:
                raise StoreLockedError(
                    f"sync instance {store.instance!r}: another import of {holder!r} still runs after "
                    f"{SQLITE_TURN_WAIT.total_seconds():.0f} s; on SQLite the imports of a run take turns"
                ) from None
            time.sleep(0.5)
        except sa.exc.OperationalError as error:
            if not _is_busy(error):
                raise
            if sqlite_turns and time.monotonic() < deadline:
                continue  # SQLite's busy timeout ran out while another import of the run writes: keep waiting
            state = lock_state(store)
            who = state.describe(store.instance) if state and state.held() else f"sync instance {store.instance!r}"
            raise StoreLockedError(f"{who}: the store is busy with another run's write; try again") from error
    log.info(
        "sync instance %r%s locked by %r (token %d)",
        store.instance,
        f" ({scope})" if scope else "",
        holder,
        granted.token,
    )
    return granted


def _acquire_once(
    store: StoreHandle,
    holder: str,
    duration: dt.timedelta,
    hold: dt.timedelta | None,
    scope: str | None,
    step: bool,
) -> Lease:
    now = utcnow()
    asked_at = time.monotonic()
    instance = store.instance
    with store.engine.begin() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.execute(sa.text(f"SET LOCAL lock_timeout = '{_PG_LOCK_TIMEOUT}'"))
        # On SQLite this first write takes the write lock for the whole transaction, so the read below and the
        # update cannot interleave with another acquisition.
        scopes.ensure_row(connection, instance, now)
        query = sa.select(store_lock).where(store_lock.c.name == instance)
        # PostgreSQL: an import re-entering its run's instance takes the row FOR NO KEY UPDATE, which the running
        # imports' fences (FOR KEY SHARE) let through; taking the instance over waits for them (FOR UPDATE).
        row = connection.execute(query.with_for_update(key_share=scope is not None)).one()
        current = _state(row)
        own = current.holder == holder
        if current.held(now) and not own:
            raise StoreLockedError(f"{current.describe(instance)}; another run is in progress")
        kept_hold = row.hold_seconds if own else None
        hold_seconds = int(hold.total_seconds()) if hold is not None else kept_hold
        hold_delta = dt.timedelta(seconds=hold_seconds) if hold_seconds else None
        expiry = max(duration, hold_delta) if hold_delta else duration
        instance_values = {"expires_at": now + expiry, "renewed_at": now, "hold_seconds": hold_seconds}
        if scope is not None and own and current.held(now):
            scopes.check_turn(connection, instance, holder, scope, current.token, now, postgres)
            generation = current.token
        else:
            if scope is not None and postgres:
                connection.execute(query.with_for_update()).one()  # taking the instance: wait for old fences
            if current.holder and not own:
                log.warning(
                    "taking over the lock of sync instance %r from %r, whose lease ended %s",
                    instance,
                    current.holder,
                    f"{current.expires_at:%Y-%m-%d %H:%M:%S} UTC",
                )
            generation = current.token + 1
            instance_values |= {
                "holder": holder,
                "token": generation,
                "acquired_at": current.acquired_at if own and current.held(now) else now,
            }
            scopes.clear_scopes(connection, instance, holder, now)
        connection.execute(sa.update(store_lock).where(store_lock.c.name == instance).values(**instance_values))
        # A scope row (an import, the step mark) carries the step's lease, not the cycle's hold: a killed step's row
        # goes stale after one lease, like a killed step's instance lock without a cycle.
        if scope is None:
            if step:
                scopes.take_row(connection, scope_row(instance, scopes.STEP_MARK), holder, generation, now, duration)
            return Lease(
                instance, holder, generation, duration, hold_delta, confirmed_at=asked_at, generation=generation
            )
        name = scope_row(instance, scope)
        scopes.ensure_row(connection, name, now)
        scoped = _state(
            connection.execute(sa.select(store_lock).where(store_lock.c.name == name).with_for_update()).one()
        )
        # Its holder is this run (a retry: the new token fences off the attempt it replaces) or nobody: whoever took
        # the instance over cleared the scope rows of the owner before it.
        token = scoped.token + 1
        scopes.take_row(connection, name, holder, token, now, duration)
        return Lease(
            instance, holder, token, duration, hold_delta, confirmed_at=asked_at, scope=scope, generation=generation
        )


def renew(store: StoreHandle, lease: Lease, connection: sa.Connection | None = None) -> bool:
    """Move the lease's end ahead if the row still carries its token; False when the lock was taken over.

    A scoped lease renews its own row and the instance row of its generation (which the imports of a run keep held
    together); a whole-instance step's heartbeat renews its marker row too."""
    now = utcnow()
    values = {"expires_at": now + lease.expiry, "renewed_at": now}
    own_values = {"expires_at": now + lease.duration, "renewed_at": now}  # a scope row: the step lease

    def apply(conn: sa.Connection, mark: bool) -> bool:
        if lease.scope is None:
            held = (
                conn.execute(
                    sa.update(store_lock)
                    .where(store_lock.c.name == lease.instance, store_lock.c.token == lease.token)
                    .values(**values)
                ).rowcount
                == 1
            )
            if held and mark:  # the heartbeat's renewal; a fence stays one statement
                conn.execute(scopes.step_mark(lease.instance, lease.holder, lease.token).values(**own_values))
            return held
        own = conn.execute(
            sa.update(store_lock)
            .where(
                store_lock.c.name == lease.row, store_lock.c.token == lease.token, store_lock.c.holder == lease.holder
            )
            .values(**own_values)
        ).rowcount
        instance = conn.execute(
            sa.update(store_lock)
            .where(store_lock.c.name == lease.instance, store_lock.c.token == lease.generation)
            .values(**values)
        ).rowcount
        return own == 1 and instance == 1

    if connection is not None:
        return apply(connection, mark=False)
    with store.engine.begin() as own_connection:
        return apply(own_connection, mark=True)


def end_step(store: StoreHandle, lease: Lease) -> None:
    """A step is over: leave the instance held for the cycle's hold, or release it (a scoped step: once no other
    scope of its holder runs)."""
    if lease.lost:
        return
    now = utcnow()
    free: dict[str, Any] = {"holder": "", "expires_at": now, "hold_seconds": None}
    instance_row = sa.update(store_lock).where(
        store_lock.c.name == lease.instance, store_lock.c.token == lease.generation
    )
    with store.engine.begin() as connection:
        if lease.scope is None:
            mark = scopes.step_mark(lease.instance, lease.holder, lease.token)
            connection.execute(mark.values(holder="", expires_at=now))
        else:
            connection.execute(
                sa.update(store_lock)
                .where(store_lock.c.name == lease.row, store_lock.c.token == lease.token)
                .values(holder="", expires_at=now)
            )
            if not lease.hold and any(
                row.holder == lease.holder for row in scopes.live_scopes(connection, lease.instance, now)
            ):
                return  # another import of this holder still runs: it keeps the instance and releases it
        if lease.hold:
            # never shorten the lease a sibling import renewed
            connection.execute(
                instance_row.where(store_lock.c.expires_at < now + lease.hold).values(
                    expires_at=now + lease.hold, renewed_at=now
                )
            )
        else:
            connection.execute(instance_row.values(**free))


def release(store: StoreHandle, holder: str) -> bool:
    """Release the instance if ``holder`` holds it (the cycle's last task, whatever token it holds now)."""
    with store.engine.begin() as connection:
        released = connection.execute(
            sa.update(store_lock)
            .where(store_lock.c.name == store.instance, store_lock.c.holder == holder)
            .values(holder="", expires_at=utcnow(), hold_seconds=None)
        ).rowcount
        if released:
            connection.execute(
                sa.update(store_lock)
                .where(scopes.scope_rows(store.instance), store_lock.c.holder == holder)
                .values(holder="", expires_at=utcnow(), hold_seconds=None)
            )
    if released:
        log.info("sync instance %r released by %r", store.instance, holder)
    return bool(released)


def mark_lost(store: StoreHandle, lease: Lease, connection: sa.Connection | None = None) -> StoreLockLostError:
    """The lock was found taken over: mark the lease lost, say by whom, and return the error to raise."""
    if connection is None:
        with store.engine.connect() as own_connection:
            return mark_lost(store, lease, own_connection)
    lease.lost = _lost_message(store, lease, connection)
    log.error("%s", lease.lost)
    return StoreLockLostError(lease.lost)


def _lost_message(store: StoreHandle, lease: Lease, connection: sa.Connection) -> str:
    row = connection.execute(sa.select(store_lock).where(store_lock.c.name == lease.instance)).first()
    now_held = f"now held by {row.holder!r} since {as_utc(row.acquired_at):%Y-%m-%d %H:%M:%S} UTC" if row else "gone"
    what = f"the {lease.scope} lock" if lease.scope else "the lock"
    return (
        f"sync instance {lease.instance!r}: {what} of {lease.holder!r} (token {lease.token}) was taken over "
        f"({now_held}; token {row.token if row else '-'}): its lease ran out or a newer attempt of the same run took "
        "it back. This attempt stopped before writing; the run that holds the lock carries on."
    )


def fence(store: StoreHandle, lease: Lease, connection: sa.Connection) -> None:
    """Inside a write transaction: refuse it unless the lock row still carries the lease's token (a scoped lease:
    its own row its token, and the instance row its generation).

    SQLite: an UPDATE of the row (which renews the lease and takes the database's write lock at once, so nothing
    can change the row before this transaction commits). PostgreSQL: ``FOR KEY SHARE`` on the row(s), which a
    takeover (``FOR UPDATE``) waits for while the heartbeat's renewals (key-preserving updates) go on.
    """
    lease.check()
    asked_at = time.monotonic()
    if connection.dialect.name == "postgresql":
        tokens = dict(
            connection.execute(
                sa.select(store_lock.c.name, store_lock.c.token)
                .where(store_lock.c.name.in_({lease.instance, lease.row}))
                .with_for_update(read=True, key_share=True)
            ).all()
        )
        held = tokens.get(lease.row) == lease.token and tokens.get(lease.instance) == lease.generation
    else:
        held = renew(store, lease, connection)
    if not held:
        raise mark_lost(store, lease, connection)
    lease.confirmed_at = asked_at


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
                mark_lost(self.store, self.lease)
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
    scope: str | None = None,
) -> Iterator[Lease]:
    """Hold the instance (or the ``scope`` of an import, see :func:`acquire`) for one step: acquire (waiting up to
    ``wait`` for another run to end; None: the setting ``AADSYNC_LOCK_WAIT``, default no wait), renew while the body
    runs, fence every write transaction of ``store``, and at the end leave it to the cycle (its hold) or release it."""
    wait = lock_wait_from_env() if wait is None else wait
    granted = acquire_waiting(store, holder, wait=wait, lease=lease, hold=hold, scope=scope, step=True)
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
