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
from collections.abc import Iterable, Mapping, Sequence
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
from airflow_provider_aadsync.engine.sync.frames import IN_CHUNK, same_object, write_rows
from airflow_provider_aadsync.engine.sync.state import SyncPass

#: SQLite's page cache while a pass writes its memo (store.larger_page_cache): its reads join every link with its
#: connector-space object and pending export in random order. More raised a 100,000-user first full sync's peak RSS.
MEMO_CACHE_MIB = 64

#: Bumped when what the fingerprint covers changes: every stored fingerprint is then stale.
MEMO_FORMAT = 3

#: The parts of a fingerprint (SyncMemo._queries): each reads, per row, a metaverse id and the row's fields as one text.
_PARTS = ("object", "links", "references", "member_changes", "member_of")


class _byte_length(FunctionElement[int]):  # noqa: N801 - named as the SQL function it stands for
    """The length of a text in bytes: SQLite's ``length`` counts characters up to the first NUL, so a field's length
    prefix would not mark where a text holding one ends."""

    type = sa.Integer()
    inherit_cache = True


@compiles(_byte_length)
def _byte_length_default(element: _byte_length, compiler: Any, **kw: Any) -> str:
    return f"octet_length({compiler.process(element.clauses, **kw)})"


@compiles(_byte_length, "sqlite")
def _byte_length_sqlite(element: _byte_length, compiler: Any, **kw: Any) -> str:
    return f"length(CAST({compiler.process(element.clauses, **kw)} AS BLOB))"


def _row_text(*columns: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    """A row's fields as one text, built by the store: ``<bytes>:<text>`` per field, ``-`` for NULL, so that no two
    different rows give the same text. The fingerprint hashes this one column, instead of fetching every field as a
    Python object of its own and hashing the fields column by column."""
    text: sa.ColumnElement[Any] | None = None
    for column in columns:
        value = sa.cast(column, sa.String)
        field = sa.func.coalesce(sa.cast(_byte_length(value), sa.String) + ":" + value, "-")
        text = field if text is None else text + field
    assert text is not None
    return text


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


def _row_hashes(rows: Sequence[tuple[int, str]]) -> pd.Series:
    """Per metaverse id, an order-free digest of its rows' texts (the sum of their 64-bit hashes, wrapping)."""
    if not rows:
        return pd.Series(dtype="uint64")
    mv_ids, texts = zip(*rows, strict=True)
    hashes = pd.util.hash_array(np.array(texts, dtype=object), categorize=False)
    return pd.Series(hashes, index=np.array(mv_ids)).groupby(level=0).sum()


def _plain_rows(result: sa.CursorResult[Any]) -> list[tuple[Any, ...]]:
    """A result's rows as the driver gives them: only hashed, they need no SQLAlchemy row (a few microseconds each;
    every value read is text or a number already, ``updated_at`` being read as text)."""
    try:
        return result.cursor.fetchall() if result.cursor is not None else []
    finally:
        result.close()


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

    def fingerprints(self, selection: Sequence[int] | sa.Select[Any]) -> dict[int, int]:
        """The current fingerprint (a signed 64-bit number, as the store keeps it) of each metaverse object of
        ``selection``: a list of ids, or a query of them."""
        parts: dict[str, list[Any]] = {name: [] for name in _PARTS}
        selections = [selection] if isinstance(selection, sa.Select) else chunks(sorted(set(selection)), IN_CHUNK)
        for part in selections:
            for name, query in self._queries(part).items():
                parts[name] += _plain_rows(self.state.connection.execute(query))
        index = pd.Index(np.array([row[0] for row in parts["object"]], dtype=np.int64))
        combined = pd.DataFrame(
            {
                name: _row_hashes(rows).reindex(index, fill_value=0).astype(np.uint64).to_numpy()
                for name, rows in parts.items()
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
        connector reads the fingerprints a range of anchors at a time (by subquery, bounded memory); else they are
        read by id, so the objects it skipped are not fingerprinted again."""
        connection = self.state.connection
        connector = self.state.connector
        settled = evaluated - self._failed()
        slices: list[Any] = list(chunks(sorted(settled), self.state.batch_rows))
        if full and len(settled) > self.state.batch_rows:
            anchors = (
                connection.execute(
                    sa.select(link.c.anchor).where(link.c.connector == connector).order_by(link.c.anchor)
                )
                .scalars()
                .all()
            )
            if len(settled) * 2 > len(anchors):  # most of the connector was evaluated: read it by anchor range
                slices = [
                    self._linked_between(anchors[start], anchors[min(start + self.state.batch_rows, len(anchors)) - 1])
                    for start in range(0, len(anchors), self.state.batch_rows)
                ]
        memoized = 0
        with larger_page_cache(connection, MEMO_CACHE_MIB):  # the pass's peak of memory is behind it
            for selection in slices:
                rows = [
                    {"connector": connector, "mv_id": mv_id, "fingerprint": value}
                    for mv_id, value in self.fingerprints(selection).items()
                    if mv_id in settled
                ]
                write_rows(self.state.store, connection, sync_memo, rows, update=["fingerprint"])
                memoized += len(rows)
        for chunk in chunks(sorted(evaluated - settled), IN_CHUNK):
            connection.execute(
                sa.delete(sync_memo).where(sync_memo.c.connector == connector, sync_memo.c.mv_id.in_(chunk))
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
            failed.update(connection.execute(sa.select(link.c.mv_id).where(link.c.anchor.in_(chunk))).scalars())
        return failed

    def _queries(self, chunk: Sequence[int] | sa.Select[Any]) -> dict[str, sa.Select[Any]]:
        """The reads of :meth:`fingerprints` for some metaverse ids, by part (``_PARTS``): per row, the metaverse id
        and the row's fields as one text (:func:`_row_text`). Times are read as the store keeps them: only compared."""
        linked = cs_object.alias("linked")
        group = cs_object.alias("group_object")
        queries: dict[str, sa.Select[Any]] = {
            "object": sa.select(mv_object.c.id, _row_text(mv_object.c.object_type, mv_object.c.updated_at)).where(
                mv_object.c.id.in_(chunk)
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
            .where(link.c.mv_id.in_(chunk)),
            "references": sa.select(
                mv_reference.c.mv_id, _row_text(mv_reference.c.attribute, mv_reference.c.target_mv_id)
            ).where(mv_reference.c.mv_id.in_(chunk)),
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
            .where(link.c.mv_id.in_(chunk)),
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
                .where(link.c.connector == self.state.connector, link.c.mv_id.in_(chunk))
            )
        return queries
