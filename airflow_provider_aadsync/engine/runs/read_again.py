"""The objects of an import partition that a run read but could not apply, read again whole by each delta.

A delta reports what changed since its watermark (AD's DirSync: the attributes changed since a cookie; Graph's delta
query: the properties and ``members@delta`` changed since a link). An object whose entry failed (a value the import
cannot decode, a DN it cannot place, a window of a ranged value list it could not complete, a Graph property that is
not valid Unicode) had every change of that entry dropped; a watermark moved past it would never bring those changes
again, only the ones made after (the value the admin fixed). Keeping the watermark instead made every delta of the
partition read everything changed since, for as long as the object kept failing: up to the watermark's lifetime (180
days for a DirSync cookie, 7 for a delta link), then a full import.

So the watermark moves on, and the failed objects' anchors are saved beside it, in the watermark row ``retry
<partition>`` (written in the import's own transaction, as the watermark is). Each delta reads those objects whole, by
anchor (objectGUID in AD, id in Graph), and applies each as a full import's read would (every value and reference
replaced): one that applies leaves the list, one that fails again stays (its per-object error is in every run until
it is fixed), one the directory no longer returns leaves it too (its deletion comes as a change of its own). A full
import starts the lists again from what failed in it.

A delta reads at most :data:`READ_AGAIN_AT_MOST` of them, the ones waiting longest, and puts those that fail again
at the end of the list: a directory with thousands of broken objects neither makes each delta read them all nor
fills its error limit with them (5,000 errors stop a run, and would stop every delta from then on).

A connector whose source cannot read objects whole, or an error that names no object (an entry without an objectGUID,
an item without an id), keeps the partition's old watermark instead (``keep_watermark``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.runs.import_run import ErrorSink, error_anchors, keep_watermark
from airflow_provider_aadsync.engine.store import watermark

if TYPE_CHECKING:
    from airflow_provider_aadsync.engine.runs.cs_writer import ConnectorSpaceWriter

log = logging.getLogger(__name__)

#: The watermark pseudo-partition (``retry <partition key>``) holding a partition's objects to read again whole.
RETRY_PARTITION = "retry "
#: Listed objects one delta reads again (five searches of the AD hook's hundred), the ones waiting longest first.
READ_AGAIN_AT_MOST = 500

#: Reads the listed anchors whole and applies them; a failure is a per-object error in the run's ErrorSink.
ReadAgain = Callable[[Sequence[str]], None]


def retry_key(partition: str) -> str:
    """The watermark row of ``partition``'s list: its key after the prefix, or a digest of it where that would not
    fit the column (a partition key as long as the column allows)."""
    key = f"{RETRY_PARTITION}{partition}"
    if len(key) <= watermark.c.partition.type.length:
        return key
    return f"{RETRY_PARTITION}{hashlib.sha256(partition.encode()).hexdigest()}"


def saved_row(connection: sa.Connection, connector: str, partition: str) -> bytes | None:
    """The value of the watermark row ``partition`` of ``connector`` as the caller's transaction sees it: a row an
    import keeps beside its watermarks (a retry list, the Entra import's role holders); None when there is none."""
    cookie = connection.execute(
        sa.select(watermark.c.cookie).where(watermark.c.connector == connector, watermark.c.partition == partition)
    ).scalar()
    return bytes(cookie) if cookie else None


def saved_retries(connection: sa.Connection, connector: str, partition: str) -> list[str]:
    """The anchors saved to be read again whole in ``partition``, waiting longest first (none when no row)."""
    cookie = saved_row(connection, connector, retry_key(partition))
    return list(json.loads(cookie)) if cookie else []


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


def failed_anchors(errors: Sequence[Mapping[str, Any]]) -> tuple[set[str], bool]:
    """The anchors of ``errors`` (per-object errors of one partition), and whether each error named its object: one
    that did not cannot be read again by anchor."""
    return error_anchors(errors), all(error.get("anchor") for error in errors)


def full_import_list(partition: str, errors: Sequence[Mapping[str, Any]]) -> dict[str, bytes]:
    """The watermark row a full import saves for ``partition``: the objects that failed in it (``errors``, those of
    the partition), read again whole by the next delta; an empty list clears what an earlier run left."""
    return {retry_key(partition): retry_row(sorted(failed_anchors(errors)[0]))}


def settle_delta_partition(
    writer: ConnectorSpaceWriter,
    errors: ErrorSink,
    partition: str,
    failed_before: int,
    watermark_name: str,
    read_again: ReadAgain | None,
) -> dict[str, bytes] | None:
    """After a delta applied the changes of ``partition`` (its errors are those after ``failed_before``): read the
    listed objects again whole and return the partition's new list (``{retry key: row}``; empty when the source
    cannot read objects whole and nothing failed), or None when the partition keeps its old watermark (a failure
    that names no object, or a source without ``read_again``)."""
    failed, named = failed_anchors(errors.errors[failed_before:])
    if len(errors) > failed_before and not (named and read_again is not None):
        keep_watermark(writer, partition, len(errors) - failed_before, watermark_name)
        return None
    if read_again is None:
        return {}
    waiting = [
        anchor for anchor in saved_retries(writer.connection, writer.connector, partition) if anchor not in failed
    ]
    read = waiting[:READ_AGAIN_AT_MOST]
    again_before = len(errors)
    if read:
        writer.counters["objects_read_again"] += len(read)
        read_again(read)
    again = failed_anchors(errors.errors[again_before:])[0]
    listed = next_list(waiting, read, again, failed)
    if listed:
        writer.counters["objects_to_read_again"] += len(listed)
        log.warning(
            "%d object(s) of %s in %s failed: each delta reads them again whole until they apply",
            len(listed),
            partition,
            writer.connector,
        )
    return {retry_key(partition): retry_row(listed)}
