"""The objects of an AD partition that an import read but could not apply, read again whole by each delta.

DirSync reports the attributes changed since a cookie. An object whose entry failed (a value the import cannot
decode, a DN it cannot place, a window of a ranged value list it could not complete) had every change of that entry
dropped; a cookie moved past it would never bring those changes again, only the ones made after (the value the admin
fixed). Keeping the cookie instead made every delta of the partition read everything changed since, for as long as
the object kept failing: up to the cookie's lifetime (180 days), then a full import.

So the cookie moves on, and the failed objects' anchors are saved beside it, in the watermark row ``retry
<partition>`` (written in the import's own transaction, as the cookie is). Each delta reads those objects whole, by
objectGUID, and applies each as a full import's read would (every value and reference replaced): one that applies
leaves the list, one that fails again stays (its per-object error is in every run until it is fixed), one the
directory no longer returns leaves it too (its deletion or move comes as a DirSync change of its own). A full import
starts the lists again from what failed in it.

A delta reads at most :data:`READ_AGAIN_AT_MOST` of them, the ones waiting longest, and puts those that fail again
at the end of the list: a directory with thousands of broken objects neither makes each delta read them all nor
fills its error limit with them (5,000 errors stop a run, and would stop every delta from then on).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.runs.import_run import error_anchors
from airflow_provider_aadsync.engine.store import watermark

#: The watermark pseudo-partition (``retry <partition key>``) holding a partition's objects to read again whole.
RETRY_PARTITION = "retry "
#: Listed objects one delta reads again (five searches of the hook's hundred), the ones waiting longest first.
READ_AGAIN_AT_MOST = 500


def retry_key(partition: str) -> str:
    """The watermark row of ``partition``'s list: its key after the prefix, or a digest of it where that would not
    fit the column (a partition key as long as the column allows)."""
    key = f"{RETRY_PARTITION}{partition}"
    if len(key) <= watermark.c.partition.type.length:
        return key
    return f"{RETRY_PARTITION}{hashlib.sha256(partition.encode()).hexdigest()}"


def saved_retries(connection: sa.Connection, connector: str, partition: str) -> list[str]:
    """The anchors saved to be read again whole in ``partition``, waiting longest first (none when no row)."""
    cookie = connection.execute(
        sa.select(watermark.c.cookie).where(
            watermark.c.connector == connector, watermark.c.partition == retry_key(partition)
        )
    ).scalar()
    return list(json.loads(bytes(cookie))) if cookie else []


def retry_row(anchors: Iterable[str]) -> bytes:
    """The watermark value listing ``anchors`` in their order (waiting longest first), each once."""
    return json.dumps(list(dict.fromkeys(anchors))).encode()


def next_list(
    waiting: Sequence[str], read: Sequence[str], failed_again: set[str], failed_now: Iterable[str]
) -> list[str]:
    """The list after a delta: those it did not read (still first), those it read that failed again (to the end),
    then the objects that failed in its own changes."""
    unread = waiting[len(read) :]
    return [*unread, *(anchor for anchor in read if anchor in failed_again), *sorted(failed_now)]


def failed_anchors(errors: Sequence[dict[str, Any]]) -> tuple[set[str], bool]:
    """The anchors of ``errors`` (per-object errors of one partition), and whether each error named its object: one
    that did not cannot be read again by anchor."""
    return error_anchors(errors), all(error.get("anchor") for error in errors)
