"""The sync memo: a full sync skips the objects whose inputs are exactly those of a pass that evaluated them.

A full sync exists to evaluate every object again, for the inputs a delta sync does not look at: changed rules, an
edit on the target side (a cloud edit that the next export corrects), a metaverse object another connector changed, a
pending export someone withdrew. Evaluating an object whose inputs are all unchanged since a pass that evaluated it
without error can only give the same result again: the same metaverse values and the same pending exports, which
staging leaves alone. That is most of a full sync's time in a steady directory.

So at the end of every pass the metaverse objects it evaluated without error get a fingerprint of everything a pass of
this connector reads for them, and a later full sync skips this connector's objects of a metaverse object whose
fingerprint is unchanged; a skipped object is treated exactly as a delta sync treats an object without a pending
import. The fingerprint covers:

- the pass: the rule set's fingerprint (rules and parameters), the connector schemas, the provider and pandas versions
  (a skip is only as good as the code that would have evaluated the object);
- the metaverse object: its type and ``updated_at`` (every write of its values or contributions sets it), and its
  reference rows (group members, manager);
- every link of the metaverse object, of every connector, with the linked connector-space object's DN, type,
  ``attrs_hash``, ``refs_hash`` and deletion mark (an import or an export that changes a connector-space object
  changes those), and that object's pending export (operation, state, DN, and ``updated_at``, which staging, the only
  writer of its changes, sets) and member changes;
- with rules that read ``memberOf``: the groups (anchor and DN) whose member rows point at this connector's object.

An object with an error recorded in the pass is not memoized: every full sync evaluates it (and reports it) again.
Rules with a function that gives another result on each call (``Now``, ``GUID``, ``RandomNum``) turn the memo off.
``reevaluate`` (``aadsync sync --reevaluate``, the DAGs' ``reevaluate`` param) evaluates everything all the same.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from airflow_provider_aadsync import __version__
from airflow_provider_aadsync.engine.batching import chunks
from airflow_provider_aadsync.engine.connectors.schema import ConnectorSchema
from airflow_provider_aadsync.engine.expressions.registry import FUNCTIONS
from airflow_provider_aadsync.engine.rules import RuleSet
from airflow_provider_aadsync.engine.store import (
    cs_object,
    cs_reference,
    larger_page_cache,
    link,
    mv_object,
    mv_reference,
    pending_export,
    pending_export_reference,
    sync_memo,
)
from airflow_provider_aadsync.engine.store.among import among
from airflow_provider_aadsync.engine.sync.frames import IN_CHUNK, same_object, write_rows
from airflow_provider_aadsync.engine.sync.state import SyncPass

#: SQLite's page cache while a pass writes its memo (store.larger_page_cache): its reads join every link with its
#: connector-space object and pending export in random order. More raised a 100,000-user first full sync's peak RSS.
MEMO_CACHE_MIB = 64

#: Bumped when what the fingerprint covers changes: every stored fingerprint is then stale.
MEMO_FORMAT = 4

#: The parts of a fingerprint (SyncMemo._queries): each reads, per row, a metaverse id and the row's fields as one text.
_PARTS = ("object", "links", "references", "member_changes", "member_of")


class _row_text(FunctionElement[str]):  # noqa: N801 - a SQL function, spelled as one
    """A row's fields as one text, built by the store: a JSON array of them (SQLite's ``json_array``, PostgreSQL's
    ``json_build_array``), so that no two different rows give the same text (text is quoted and escaped, a NUL too;
    NULL, a number and the same number as text all read differently). The fingerprint hashes this one column instead
    of fetching every field as a Python object of its own; SQLite builds it in half the time of length-prefixed
    fields concatenated (memo format 3)."""

    type = sa.String()
    inherit_cache = True


@compiles(_row_text)
def _row_text_default(element: _row_text, compiler: Any, **kw: Any) -> str:
    return f"CAST(json_build_array({compiler.process(element.clauses, **kw)}) AS TEXT)"


@compiles(_row_text, "sqlite")
def _row_text_sqlite(element: _row_text, compiler: Any, **kw: Any) -> str:
    return f"json_array({compiler.process(element.clauses, **kw)})"


@functools.cache
def _impure_call() -> re.Pattern[str]:
    """A call of a function that gives another result on each call (``Now``, ``GUID``, ``RandomNum``); the context
    functions (``ValueCount``, ``ImportedValue``) read the object's own values, which the fingerprint covers."""
    names = sorted(spec.name for spec in FUNCTIONS.values() if not spec.pure and spec.kind != "context")
    return re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\s*\(", re.IGNORECASE)


def pass_digest(rules: RuleSet, connector: str, schemas: Mapping[str, ConnectorSchema] | None) -> int | None:
    """What every fingerprint of a pass of ``connector`` shares, as an unsigned 64-bit number; None when the rules
    read a function that gives another result on each call (the memo is off: nothing may be skipped)."""
    for compiled in rules.rules:
        if _impure_call().search(json.dumps(compiled.rule.model_dump(mode="json"), default=repr)):
            return None
    described = {name: _schema_description(schema) for name, schema in sorted((schemas or {}).items())}
    payload = json.dumps(
        [MEMO_FORMAT, __version__, pd.__version__, connector, rules.fingerprint, described], default=repr
    )
    return int.from_bytes(hashlib.sha256(payload.encode()).digest()[:8], "big")


def _schema_description(schema: ConnectorSchema) -> list[object]:
    """A schema as text that is equal in every process (its converters by name, not by address)."""
    return [
        sorted(schema.reference_attributes),
        sorted((name, getattr(convert, "__qualname__", repr(convert))) for name, convert in schema.typed.items()),
        sorted(schema.dn_templates.items()),
        sorted((name, repr(limit)) for name, limit in schema.limits.items()),
    ]


#: Rows fetched at a time while a fingerprint part is read: its texts are hashed and dropped chunk by chunk.
FETCH_ROWS = 20_000


def _row_hashes(result: sa.CursorResult[Any]) -> pd.Series:
    """Per metaverse id, an order-free digest of the texts of its rows in ``result`` (the sum of their 64-bit hashes,
    wrapping), read a chunk at a time so that a whole metaverse's texts are never held at once."""
    mv_ids: list[np.ndarray] = []
    hashes: list[np.ndarray] = []
    try:
        for rows in _chunks_of(result):
            ids, texts = zip(*rows, strict=True)
            mv_ids.append(np.array(ids, dtype=np.int64))
            hashes.append(pd.util.hash_array(np.array(texts, dtype=object), categorize=False))
    finally:
        result.close()
    if not mv_ids:
        return pd.Series(dtype="uint64")
    return pd.Series(np.concatenate(hashes), index=np.concatenate(mv_ids)).groupby(level=0).sum()


def _chunks_of(result: sa.CursorResult[Any]) -> Iterator[Sequence[Any]]:
    """A result's rows, :data:`FETCH_ROWS` at a time. SQLite's are read from the driver's cursor (only hashed, they
    need no SQLAlchemy row, a few microseconds each); a server-side cursor's through the result, which may hold rows
    it fetched ahead (psycopg2 fetches one to learn the columns: read from the cursor, they would be lost)."""
    if result.context.execution_options.get("stream_results"):
        yield from result.partitions(FETCH_ROWS)
        return
    cursor = result.cursor
    while cursor is not None and (rows := cursor.fetchmany(FETCH_ROWS)):
        yield rows


def forget_memo(connection: sa.Connection, connector: str) -> None:
    """Drop the memo of ``connector`` (a pass with the memo off: what it evaluated is not memoized)."""
    connection.execute(sa.delete(sync_memo).where(sync_memo.c.connector == connector))


class SyncMemo:
    """Reads, compares and writes the sync memo of one pass (see the module's text)."""

    def __init__(self, state: SyncPass, digest: int) -> None:
        self.state = state
        self.digest = np.uint64(digest)
        self.member_of = any(rule.needs_member_of for rule in state.inbound_rules)
        self._stored: dict[int, int] | None = None
        #: The fingerprint reads stream through server-side cursors where the store has them (PostgreSQL: psycopg2
        #: would fetch a whole-metaverse read into memory at once); SQLite reads row by row as it is.
        self._streamed = state.connection.dialect.supports_server_side_cursors
        self._read_to_the_end = False

    # ----------------------------------------------------------------------------------------------- reading
    def unchanged(self, first: str, last: str, mv_ids: Iterable[int]) -> set[int]:
        """Those of ``mv_ids`` (linked to objects of this connector with anchors from ``first`` to ``last``, a batch)
        whose fingerprint is the one stored: their objects of this connector can be skipped."""
        stored = self._stored_fingerprints()
        candidates = {mv_id for mv_id in mv_ids if mv_id in stored}
        if not candidates:
            return set()
        current = self.fingerprints(self._linked_between(first, last))
        return {mv_id for mv_id in candidates if current.get(mv_id) == stored[mv_id]}

    def _stored_fingerprints(self) -> dict[int, int]:
        if self._stored is None:
            rows = self.state.connection.execute(
                sa.select(sync_memo.c.mv_id, sync_memo.c.fingerprint).where(
                    sync_memo.c.connector == self.state.connector
                )
            ).all()
            self._stored = dict(rows)  # type: ignore[arg-type]
        return self._stored

    def _linked_between(self, first: str | None, last: str | None) -> sa.Select[Any]:
        """The metaverse ids linked to this connector's objects with anchors from ``first`` to ``last``: a subquery
        over the link table's key, instead of thousands of bound ids."""
        query = sa.select(link.c.mv_id).where(link.c.connector == self.state.connector)
        if first is not None:
            query = query.where(link.c.anchor >= first)
        if last is not None:
            query = query.where(link.c.anchor <= last)
        return query

    def fingerprints(self, selection: Sequence[int] | sa.Select[Any] | None) -> dict[int, int]:
        """The current fingerprint (a signed 64-bit number, as the store keeps it) of each metaverse object of
        ``selection``: a list of ids, a query of them, or None for every metaverse object (each table read once in
        its own order, instead of its rows looked up by metaverse id)."""
        selections: Iterable[Any] = (
            [selection]
            if selection is None or isinstance(selection, sa.Select)
            else chunks(sorted(set(selection)), IN_CHUNK)
        )
        parts: dict[str, list[pd.Series]] = {}
        if self._streamed and not self._read_to_the_end:
            # PostgreSQL plans a cursor to return its first tenth fast (nested loops over whole tables: a 20,000-user
            # first full sync took 32 s instead of 8.6); these reads go to the end (hash joins), as the pass's do.
            self.state.connection.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
            self._read_to_the_end = True
        for part in selections:
            for name, query in self._queries(part).items():
                streamed = query.execution_options(stream_results=self._streamed)
                parts.setdefault(name, []).append(_row_hashes(self.state.connection.execute(streamed)))
        if not parts:  # no ids
            return {}
        digests = {name: pd.concat(series) if len(series) > 1 else series[0] for name, series in parts.items()}
        index = digests["object"].index
        combined = pd.DataFrame(
            {
                name: digest.reindex(index, fill_value=0).astype(np.uint64).to_numpy()
                for name, digest in digests.items()
            },
            index=index,
        )
        combined["pass"] = self.digest
        values = pd.util.hash_pandas_object(combined, index=True).to_numpy(dtype=np.uint64).view(np.int64)
        return dict(zip(index.tolist(), values.tolist(), strict=True))

    # ----------------------------------------------------------------------------------------------- writing
    def remember(self, evaluated: set[int], full: bool) -> None:
        """After the pass: memoize the metaverse objects it evaluated without error, forget the others' memo (and, in
        a full sync, the memo of objects no longer linked to this connector). A full sync that evaluated most of the
        metaverse reads every fingerprint, each table once in its own order (a 100,000-user first full sync's memo
        read links by metaverse id, a range of anchors at a time, in 1.6 CPU seconds, and scans them in 0.6); else
        they are read by id, so the objects it skipped are not fingerprinted again."""
        connection = self.state.connection
        connector = self.state.connector
        settled = evaluated - self._failed()
        selections: list[Any] = list(chunks(sorted(settled), self.state.batch_rows))
        if full and settled:
            everything = connection.execute(sa.select(sa.func.count()).select_from(mv_object)).scalar_one()
            if len(settled) * 2 > everything:
                selections = [None]
        memoized = 0
        with larger_page_cache(connection, MEMO_CACHE_MIB):  # the pass's peak of memory is behind it
            for selection in selections:
                found = self.fingerprints(selection)
                ids = sorted(settled.intersection(found))
                for chunk in chunks(ids, self.state.batch_rows):  # a batch's rows at a time, not the metaverse's
                    rows = [{"connector": connector, "mv_id": mv_id, "fingerprint": found[mv_id]} for mv_id in chunk]
                    write_rows(self.state.store, connection, sync_memo, rows, update=["fingerprint"])
                memoized += len(ids)
        for chunk in chunks(sorted(evaluated - settled), IN_CHUNK):
            connection.execute(
                sa.delete(sync_memo).where(sync_memo.c.connector == connector, among(sync_memo.c.mv_id, chunk))
            )
        if full:
            connection.execute(
                sa.delete(sync_memo).where(
                    sync_memo.c.connector == connector, sync_memo.c.mv_id.not_in(self._linked_between(None, None))
                )
            )
        self.state.counters["objects_memoized"] += memoized

    def _failed(self) -> set[int]:
        """Metaverse objects with an error recorded in this pass (on any of their linked objects)."""
        connection = self.state.connection
        failed = {
            int(anchor.split(":", 1)[1]) for anchor in self.state.error_anchors if anchor.startswith("metaverse:")
        }
        for chunk in chunks(sorted(self.state.error_anchors), IN_CHUNK):
            failed.update(connection.execute(sa.select(link.c.mv_id).where(among(link.c.anchor, chunk))).scalars())
        return failed

    def _queries(self, chunk: Sequence[int] | sa.Select[Any] | None) -> dict[str, sa.Select[Any]]:
        """The reads of :meth:`fingerprints` for some metaverse ids (None: all), by part (``_PARTS``): per row, the
        metaverse id and the row's fields as one text (:func:`_row_text`). Times are read as the store keeps them:
        only compared."""

        def of_chunk(column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
            if chunk is None:
                return sa.true()
            return column.in_(chunk) if isinstance(chunk, sa.Select) else among(column, chunk)

        linked = cs_object.alias("linked")
        group = cs_object.alias("group_object")
        queries: dict[str, sa.Select[Any]] = {
            "object": sa.select(mv_object.c.id, _row_text(mv_object.c.object_type, mv_object.c.updated_at)).where(
                of_chunk(mv_object.c.id)
            ),
            "links": sa.select(
                link.c.mv_id,
                _row_text(
                    link.c.connector,
                    link.c.anchor,
                    link.c.link_type,
                    link.c.rule,
                    linked.c.dn,
                    linked.c.object_type,
                    linked.c.attrs_hash,
                    linked.c.refs_hash,
                    linked.c.is_deleted,
                    pending_export.c.operation,
                    pending_export.c.state,
                    pending_export.c.dn,
                    # not the changes (a whole object's values for an add): staging, their only writer, sets updated_at
                    pending_export.c.updated_at,
                ),
            )
            .select_from(
                link.outerjoin(linked, same_object(linked, link)).outerjoin(
                    pending_export, same_object(pending_export, link)
                )
            )
            .where(of_chunk(link.c.mv_id)),
            "references": sa.select(
                mv_reference.c.mv_id, _row_text(mv_reference.c.attribute, mv_reference.c.target_mv_id)
            ).where(of_chunk(mv_reference.c.mv_id)),
            "member_changes": sa.select(
                link.c.mv_id,
                _row_text(
                    pending_export_reference.c.connector,
                    pending_export_reference.c.anchor,
                    pending_export_reference.c.attribute,
                    pending_export_reference.c.target_anchor,
                    pending_export_reference.c.operation,
                    pending_export_reference.c.state,
                ),
            )
            .select_from(link.join(pending_export_reference, same_object(pending_export_reference, link)))
            .where(of_chunk(link.c.mv_id)),
        }
        if self.member_of:
            queries["member_of"] = (
                sa.select(link.c.mv_id, _row_text(cs_reference.c.anchor, group.c.dn))
                .select_from(
                    link.join(
                        cs_reference,
                        sa.and_(
                            cs_reference.c.connector == link.c.connector, cs_reference.c.target_anchor == link.c.anchor
                        ),
                    ).join(group, same_object(group, cs_reference))
                )
                .where(link.c.connector == self.state.connector, of_chunk(link.c.mv_id))
            )
        return queries
