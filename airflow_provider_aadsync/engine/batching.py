"""Cutting a list of keys into slices for ``IN (...)`` clauses, the one helper every engine layer uses.

A statement's bound parameters are limited (SQLite allows 32,766 per statement, PostgreSQL 65,535) and a long
``IN`` list plans slowly, so the engine reads and writes keys in slices. The slice size is the caller's: the sync
reads ``IN_CHUNK`` (10,000) keys at a time, bound as one parameter (``store.among``); the connector-space writer and
the exports read 500 through ``IN`` lists.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

#: Keys per ``IN (...)`` list where a caller names no other size.
DEFAULT_CHUNK = 500


def chunks(values: Sequence[T], size: int = DEFAULT_CHUNK) -> Iterator[Sequence[T]]:
    """Yield consecutive slices of *values* of at most *size* items (none for an empty sequence)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]
