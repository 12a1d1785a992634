"""Constants and small frame/value helpers shared by the sync pass modules (no state, no store access)."""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airflow_provider_aadsync.engine.expressions import AuthoritativeNull, IgnoreThisFlow
from airflow_provider_aadsync.engine.store import Store, pending_export
from airflow_provider_aadsync.engine.sync.schema import cell_values

#: Connector-space rows per batch: bounds memory whatever the directory size.
BATCH_ROWS = 20_000
#: Keys per lookup (``store.among``: one bound parameter, whatever the number of keys). Each statement costs SQLAlchemy
#: about a millisecond whatever its size: a full sync of 105,000 objects ran 3,500 of them at 500, and 750 at 2,000
#: still bound 1.5 million parameters one by one. Bounds the rows one lookup returns, not the parameters.
IN_CHUNK = 10_000

LINK_TYPES = {"Join": "join", "StickyJoin": "sticky-join", "Provision": "projection"}
#: Link types that keep a metaverse object alive (an inbound rule joined or projected it).
_SOURCE_LINKS = ("join", "sticky-join", "projection")


_DECODER = msgspec.json.Decoder()

#: The generations collected between the batches of a sync pass (see :func:`collections_between_batches`): the
#: objects allocated since the last batch ended, not the pass's long-lived ones (the oldest generation).
BATCH_GC_GENERATION = 1


@contextmanager
def collections_between_batches() -> Iterator[None]:
    """Collect garbage between the batches of a sync pass, not while one runs; restore the collector after.

    A pass holds hundreds of thousands of live containers (decoded attributes and contributions, outcome rows) and
    allocates millions more, almost none of them in reference cycles. The automatic collector, even at thresholds
    70 times Python's, traversed them again and again: 2.3 of the 37 CPU seconds of a 100,000-user full sync, and
    more in the caches it evicted. So it is off during the pass, and :func:`collect_batch_garbage` frees each
    batch's cycles (pandas frames hold some) when the batch is done: peak memory is what it was."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def collect_batch_garbage() -> None:
    """A batch of the pass is done: free the reference cycles it left, traversing the objects allocated since the
    last batch ended (milliseconds), not the whole heap."""
    gc.collect(BATCH_GC_GENERATION)


#: Provisional-anchor UUIDs made at a time by :func:`time_ordered_uuids`: the 12-bit counter of RFC 9562's method 1.
UUID_BLOCK = 4_096


def time_ordered_uuids() -> Iterator[str]:
    """Endless version-7 UUIDs as text (RFC 9562): a 48-bit millisecond timestamp, a 12-bit counter, 62 random bits
    from ``os.urandom``; each one sorts after the one before.

    Why ordered: the provisional anchors of a first full sync are keys of four tables (connector space, links, pending
    exports and their member rows). Random (version 4) keys put each of 100,000s of new rows on a random page of those
    indexes; ordered ones append at their end. Made 4,096 at a time, as one block of NumPy work, not a ``uuid`` call
    per object."""
    last_millis = 0
    counter = np.arange(UUID_BLOCK, dtype=np.uint16)
    while True:
        millis = max(time.time_ns() // 1_000_000, last_millis + 1)  # each block after the one before
        last_millis = millis
        raw = np.frombuffer(os.urandom(16 * UUID_BLOCK), dtype=np.uint8).reshape(UUID_BLOCK, 16).copy()
        raw[:, :6] = np.frombuffer(millis.to_bytes(6, "big"), dtype=np.uint8)
        raw[:, 6] = 0x70 | (counter >> 8).astype(np.uint8)  # version 7, the counter's high 4 bits
        raw[:, 7] = (counter & 0xFF).astype(np.uint8)
        raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # the RFC 9562 variant
        text = raw.tobytes().hex()
        for at in range(0, len(text), 32):
            hexa = text[at : at + 32]
            yield f"{hexa[:8]}-{hexa[8:12]}-{hexa[12:16]}-{hexa[16:20]}-{hexa[20:]}"


def load_json(text: str | bytes) -> Any:
    """``json.loads``, through msgspec's decoder (the same dicts and lists, 2–4 times faster: a full sync decodes
    every connector-space object and several metaverse columns). msgspec refuses what only Python's json reads
    (NaN, an escaped unpaired surrogate): those fall back to ``json.loads``."""
    try:
        return _DECODER.decode(text)
    except msgspec.DecodeError:
        return json.loads(text)


def cell_key(cell: Any) -> str:
    return json.dumps(cell_values(cell), sort_keys=True, default=str)


def same_values(left: list[Any], right: list[Any]) -> bool:
    if len(left) != len(right):
        return False
    if len(left) <= 1:
        return left == right
    return sorted(map(repr, left)) == sorted(map(repr, right))


def frame_of_rows(rows: Sequence[Any], names: Sequence[str]) -> pd.DataFrame:
    """``pd.DataFrame(rows, columns=names)`` of result rows, built from columns (the same frame): given rows, pandas
    asks every SQLAlchemy Row for namedtuple and dataclass attributes, each a failed key lookup (a second of a
    20,000-object sync)."""
    if not len(rows):
        return pd.DataFrame(rows, columns=list(names))
    columns = zip(*rows, strict=True)
    return pd.DataFrame(dict(zip(names, map(list, columns), strict=True)), columns=list(names))


def write_rows(
    store: Store, connection: Connection, table: sa.Table, rows: Sequence[dict[str, Any]], *, update: Sequence[str] = ()
) -> None:
    """``Store.insert_chunked`` (``update`` empty) or ``Store.upsert`` of rows that all have the same keys, written as
    columns through ``Store.write_columns``: one compiled statement and the driver's executemany, instead of
    SQLAlchemy processing every row's parameters (a tenth of a full sync). Columns the rows leave out get their
    scalar Python default, as an insert of the rows would give them."""
    if not rows:
        return
    keys = list(rows[0])
    # As many keys in every row, and each row has every key (a KeyError below): the same keys, checked without
    # comparing every row's keys as a set. Transposed in C (itemgetter, zip), not a Python loop per column and row.
    width = len(keys)
    try:
        if any(len(row) != width for row in rows):
            raise KeyError(width)
        picked = map(itemgetter(*keys), rows) if width > 1 else ((row[keys[0]],) for row in rows)
        columns: dict[str, Any] = dict(zip(keys, map(list, zip(*picked, strict=True)), strict=True))
    except KeyError:
        raise ValueError(f"rows for {table.name} do not all have the same columns") from None
    for column in table.columns:
        default = column.default
        if column.name not in columns and default is not None and getattr(default, "is_scalar", False):
            columns[column.name] = default.arg  # type: ignore[attr-defined]
    store.write_columns(connection, table, columns, update=list(update) or None)


def column_of(frame: pd.DataFrame, name: str) -> Iterable[Any]:
    """The column of ``frame`` named ``name`` case-insensitively, or Nones when there is none."""
    for label in frame.columns:
        if str(label).lower() == name.lower():
            return frame[label]
    return [None] * len(frame)


def same_object(table: sa.Table | sa.Alias, other: sa.Table | sa.Alias) -> sa.ColumnElement[bool]:
    """The join condition of two tables keyed by connector and anchor."""
    return sa.and_(table.c.connector == other.c.connector, table.c.anchor == other.c.anchor)


def export_key(connector: str, anchor: str) -> sa.ColumnElement[bool]:
    return sa.and_(pending_export.c.connector == connector, pending_export.c.anchor == anchor)


def members_by_rule(scope: pd.DataFrame) -> dict[str, set[Any]]:
    """Per rule column of a boolean scope frame, the set of index labels in scope (set lookups, not .at)."""
    return {str(name): set(scope.index[scope[name].to_numpy(dtype=bool)]) for name in scope.columns if name != "mv_id"}


#: Python types a frame cell already has in the form ``DataFrame.to_dict`` gives it (no boxing needed); a set, so
#: that a cell's type is looked up once, not compared with each in turn.
_NATIVE = frozenset((str, list, tuple, dict, type(None), int, float, bool))


def _boxed(value: Any) -> Any:
    """A cell as ``to_dict`` boxes it: NumPy scalars as Python (datetimes as Timestamps), ``pd.NA`` as None."""
    if value is pd.NA:
        return None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value)
    if isinstance(value, np.timedelta64):
        return pd.Timedelta(value)
    return value


def _stored_cell(cell: Any) -> Any:
    """A flow's value cell as :func:`stored_rows_by_label` gives it (text is handled before this is called)."""
    if cell is None or cell is IgnoreThisFlow or cell is AuthoritativeNull:
        return cell
    if isinstance(cell, float) and cell != cell:  # NaN: pd.isna of a float, without its dispatch
        return None
    return cell_values(cell)


def _stored_column(values: list[Any]) -> list[Any]:
    # Text and NULL without a call: a full sync's flow outcomes hold millions of cells, most of them one or the other.
    return [[value] if type(value) is str else None if value is None else _stored_cell(value) for value in values]


def stored_rows_by_label(frame: pd.DataFrame) -> dict[Any, dict[str, Any]]:
    """Per index label, a flow outcome row's cells in the form sync keeps them, NULL cells left out: every reader takes
    a missing target as NULL (``.get``), and a rule set flows far more attributes than most objects have (the shipped
    User Join 47, a bench user 17), so rows of only the cells present are a third of the entries to build and read.
    ``AuthoritativeNull`` and ``IgnoreThisFlow`` stay as they are, any other cell becomes ``cell_values(cell)`` (a new
    list); NULL is None, NaN, ``pd.NA`` or ``NaT``. Converted a column at a time, only its non-NULL cells, text
    without a call per cell, instead of once per object and flow where the cells are used."""
    if not frame.index.is_unique:
        raise ValueError("DataFrame index must be unique for orient='index'.")
    rows: list[dict[str, Any]] = [{} for _ in range(len(frame))]
    for position, name in enumerate(frame.columns.tolist()):
        series = frame.iloc[:, position]
        present = np.flatnonzero(series.notna().to_numpy())
        if not len(present):
            continue
        values = (series if len(present) == len(series) else series.iloc[present]).tolist()
        if series.dtype == object or not isinstance(series.dtype, np.dtype):
            values = [v if type(v) in _NATIVE else _boxed(v) for v in values]
        holders = itemgetter(*present)(rows) if len(present) > 1 else (rows[present[0]],)
        for row, value in zip(holders, _stored_column(values), strict=True):
            row[name] = value
    return dict(zip(frame.index, rows, strict=True))


def count_changes(before: Mapping[str, list[Any]], after: Mapping[str, list[Any]]) -> int:
    return sum(1 for name in set(before) | set(after) if before.get(name) != after.get(name))
