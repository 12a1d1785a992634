"""Read ahead from a page iterator in a background thread, so network waits overlap with decoding and writing."""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def prefetch(pages: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield what ``pages`` yields, produced up to ``depth`` items ahead in another thread.

    The producer owns the iterator (and so the LDAP connection behind it) until it is exhausted; an exception in
    it is re-raised here; if the consumer stops early, the producer stops at its next hand-over.
    """
    handover: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        handover.put(page, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handover.put(_DONE)
        except BaseException as error:  # handed to the consumer, which re-raises it
            handover.put(error)

    # In the caller's context: what the reads wait for (Graph throttling) counts in the run's progress.
    context = contextvars.copy_context()
    producer = threading.Thread(target=context.run, args=(produce,), name="aadsync-prefetch", daemon=True)
    producer.start()
    try:
        while True:
            item = handover.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        producer.join()
