"""The write guard: a check a directory writer runs right before each write request leaves.

The fenced writer (store/fenced.py) checks the instance lock when an exporter calls a write method, but a writer may
send more than once within that call: EntraHook waits out Graph's throttling (``Retry-After``, up to
``max_retry_wait``) and sends again, and a process frozen or stalled in that wait may have lost its lock by the time
it wakes up. So the fenced writer also installs its check here for the length of the call, and the writer calls
:func:`check` before each write it sends, resends included. A context variable, as ``progress.current()``: the writer
needs no reference to the store, and outside a fenced call (reads, the CLI's checks) there is nothing to check.
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
