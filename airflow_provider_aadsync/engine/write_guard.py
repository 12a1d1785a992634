"""The write guard: a check a directory writer runs right before each write request leaves.

The fenced writer (store/fenced.py) checks the instance lock when an exporter calls a write method, but a writer may
send more than once within that call: EntraHook waits out Graph's throttling (``Retry-After``, up to
``max_retry_wait``) and sends again, ActiveDirectoryHook's member change may take two writes, and the lock may have
been taken over meanwhile (the process was frozen, or a retry of the same DAG run took it back). So the fenced writer
also installs its check here for the length of the call (one that asks the store unless it confirmed the lock
within the last second), and the writers call :func:`check` right before each write request they send, resends
included. A context variable, as ``progress.current()``: the writer needs no reference to the store, and outside a
fenced call (reads, the CLI's checks) there is nothing to check. It does not cross into other threads: the writers
send from the calling thread.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_guard: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar("aadsync_write_guard", default=None)


@contextmanager
def guarding(check_write: Callable[[], None]) -> Iterator[None]:
    """Run ``check_write`` before each write the writer sends inside this block (it raises to stop the write)."""
    token = _guard.set(check_write)
    try:
        yield
    finally:
        _guard.reset(token)


def check() -> None:
    """Before a write request leaves: the check of the enclosing :func:`guarding` block, if any."""
    check_write = _guard.get()
    if check_write is not None:
        check_write()
