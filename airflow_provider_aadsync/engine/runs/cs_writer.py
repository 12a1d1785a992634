"""Write imported objects into a connector space: full imports by page, deltas by change.

A full import compares each page with an index of what the connector space holds (column operations over the
page), writes only what changed, diffs reference sets with set operations, and at the end marks everything it did
not see as deleted. A delta applies changes object by object: its work is proportional to the changes, not to
the directory. Every write happens inside the caller's transaction, which also saves the watermark.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.batching import chunks
from airflow_provider_aadsync.engine.dn import DnScope
from airflow_provider_aadsync.engine.runs.cs_page import (  # noqa: F401 - the writer's public names, as before
    NO_REFERENCES_HASH,
    ObjectPage,
    attrs_digest,
    reference_pairs,
    serialize_attrs,
)
from airflow_provider_aadsync.engine.runs.cs_references import IN_CHUNK, ReferenceRows, dropped_targets
from airflow_provider_aadsync.engine.runs.cs_subtree import ContainerMove
from airflow_provider_aadsync.engine.runs.source import (
    SourceObject,
    adjust_references_hash,
    format_hash,
    references_hash,
)
from airflow_provider_aadsync.engine.store import Store, cs_object, cs_reference, link, utcnow

log = logging.getLogger(__name__)

#: One object's update in a delta, built once: a statement built per object cost more CPU in SQLAlchemy's statement
#: construction and cache-key generation than the UPDATE itself (a 20,000-user delta: about 3 of 9 CPU seconds).
_DELTA_UPDATE = (
    sa.update(cs_object)
    .where(cs_object.c.connector == sa.bindparam("b_connector"), cs_object.c.anchor == sa.bindparam("b_anchor"))
    .values(
        dn=sa.bindparam("dn"),
        attrs=sa.bindparam("attrs"),
        attrs_hash=sa.bindparam("attrs_hash"),
        refs_hash=sa.bindparam("refs_hash"),
        pending_import=sa.bindparam("pending_import"),
        last_run_id=sa.bindparam("last_run_id"),
        updated_at=sa.bindparam("updated_at"),
    )
)

PENDING_ADD = "add"
PENDING_UPDATE = "update"
PENDING_DELETE = "delete"


_WRITTEN_COLUMNS = ("anchor", "dn", "object_type", "attrs", "attrs_hash", "refs_hash", "pending_import")


class ConnectorSpaceWriter:
    """Applies imported objects to one connector's space inside one transaction, counting what it did."""

    def __init__(
        self,
        store: Store,
        connection: Connection,
        connector: str,
        run_id: int,
        *,
        removal_check: Callable[..., None] | None = None,
        unreadable: Callable[[], Iterable[str]] | None = None,
    ):
        """``removal_check(mode=, deletes=, space_size=, seen=)`` is called before a full import deletes what it
        did not see; it raises to stop the import (the import guard) and the caller's transaction rolls back.
        ``unreadable()`` gives the anchors of the objects the run read but could not apply (its per-object errors):
        a full import keeps them as they are (:meth:`finish_full`)."""
        self.store = store
        self.removal_check = removal_check
        self.unreadable = unreadable
        self.connection = connection
        self.connector = connector
        self.run_id = run_id
        self.counters: Counter[str] = Counter()
        self.references = ReferenceRows(store, connection, connector, self.counters)
        self._index: pd.DataFrame | None = None
        self._seen: set[str] = set()
        #: The anchors this full import counted unchanged (a repeat that changed moves to the updates).
        self._unchanged: set[str] = set()
        #: The object types that hold other objects (AD: organizational units), set by the connector: a delta that
        #: renames, moves or deletes one records it in ``moves`` for the connector to carry down (cs_subtree.py).
        self.container_types: frozenset[str] = frozenset()
        self.moves: list[ContainerMove] = []

    # ------------------------------------------------------------------------------------------ full import
    def begin_full(self) -> None:
        """Load the index (anchor, DN, digests, state) that full-import pages are compared with."""
        query = sa.select(
            cs_object.c.anchor,
            cs_object.c.dn,
            cs_object.c.attrs_hash,
            cs_object.c.refs_hash,
            cs_object.c.is_deleted,
            cs_object.c.pending_import,
        ).where(
            cs_object.c.connector == self.connector,
            # Objects sync plans to create (no import has seen them yet) are not the directory's to delete.
            cs_object.c.attrs_hash != "",
        )
        self._index = pd.DataFrame(
            self.connection.execute(query).all(),
            columns=["anchor", "dn", "attrs_hash", "refs_hash", "is_deleted", "pending_import"],
        ).set_index("anchor")
        self._seen = set()
        self._unchanged = set()
        # The connector space's size is the best guess of what a full import reads (an ETA from the first page).
        progress.current().start_phase("reading", len(self._index) or None, estimated=True)

    def write_full_page(self, objects: Sequence[SourceObject]) -> None:
        """Compare one page of objects with the index and write adds, updates and reference changes."""
        self.write_full_columns(ObjectPage.from_objects(objects))

    def write_full_columns(self, page: ObjectPage) -> None:
        """Compare one page (as columns) with the index and write adds, updates and reference changes."""
        if self._index is None:
            raise RuntimeError("begin_full() must be called before write_full_page()")
        removed = self._removed_last(page)
        if not page.anchors:
            return
        frame = pd.DataFrame(
            {
                "anchor": page.anchors,
                "dn": page.dns,
                "object_type": page.object_types,
                "attrs": page.attrs,
                "attrs_hash": [attrs_digest(text) for text in page.attrs],
                "refs_hash": page.refs_hashes,
                "position": range(len(page.anchors)),
            }
        ).drop_duplicates("anchor", keep="last")
        if removed:
            frame = frame[~frame["anchor"].isin(removed)]
        # An anchor a previous page of this import wrote already (a round may repeat an object): compare with what was
        # written, not with the index read before the import.
        repeated = [anchor for anchor in frame["anchor"] if anchor in self._seen]
        self._seen.update(frame["anchor"])
        first = ~frame["anchor"].isin(repeated) if repeated else pd.Series(True, index=frame.index)
        self.counters["objects_read"] += int(first.sum())
        progress.current().advance(int(first.sum()))

        stored = self._index.reindex(frame["anchor"])
        if repeated:
            columns = ["dn", "attrs_hash", "refs_hash", "is_deleted", "pending_import"]
            for anchor, row in self._load_rows(repeated).items():
                stored.loc[anchor, columns] = [row[name] for name in columns]
        stored.index = frame.index
        is_new = stored["attrs_hash"].isna() | stored["is_deleted"].eq(True)
        renamed = ~is_new & stored["dn"].ne(frame["dn"])
        attrs_changed = ~is_new & (stored["attrs_hash"].ne(frame["attrs_hash"]) | renamed)
        refs_changed = ~is_new & stored["refs_hash"].ne(frame["refs_hash"])
        changed = attrs_changed | refs_changed
        write = is_new | changed

        frame["pending_import"] = stored["pending_import"].where(
            stored["pending_import"].isin([PENDING_ADD]), PENDING_UPDATE
        )
        # A tombstone this import revives (restored from AD's recycle bin) is known to the sync: an update, not an add
        # (an add that is deleted again before a sync vanishes, and the sync would never hear of the delete).
        frame.loc[stored["attrs_hash"].isna(), "pending_import"] = PENDING_ADD
        self._count(frame["anchor"], first, is_new=is_new, changed=changed, renamed=renamed)

        # Rows in key order: neighbouring inserts land on the same index pages (about 20 % faster in SQLite).
        to_write = frame[write].sort_values("anchor")
        if to_write.empty:
            return
        written = {name: to_write[name].tolist() for name in _WRITTEN_COLUMNS}
        self.store.write_columns(
            self.connection,
            cs_object,
            {
                "connector": self.connector,
                **written,
                "is_deleted": False,
                "last_run_id": self.run_id,
                "updated_at": utcnow(),
            },
            update=[*_WRITTEN_COLUMNS[1:], "is_deleted", "last_run_id", "updated_at"],  # all but the key
        )
        if not page.references:
            return
        references = page.reference_frame()
        references = references[references["position"].isin(frame["position"])]
        new_references = references[references["position"].isin(frame.loc[is_new, "position"])]
        self.references.insert_frame(new_references)
        changed_anchors = frame.loc[refs_changed, "anchor"].tolist()
        if changed_anchors:
            self.references.replace(changed_anchors, references[references["anchor"].isin(changed_anchors)])

    def _count(
        self, anchors: pd.Series, first: pd.Series, *, is_new: pd.Series, changed: pd.Series, renamed: pd.Series
    ) -> None:
        """Count a page's objects once each: an object a round repeats (Graph's delta query may return one again
        in a later page) was counted where it first came. Only one counted unchanged then and changed now moves to
        the updates: the import writes it."""
        self.counters["adds"] += int((is_new & first).sum())
        self.counters["updates"] += int((changed & first).sum())
        self.counters["renames"] += int((renamed & first).sum())
        unchanged = ~(is_new | changed)
        self.counters["unchanged"] += int((unchanged & first).sum())
        self._unchanged.update(anchors[unchanged & first])
        late = anchors[changed & ~first & anchors.isin(self._unchanged)]
        if len(late):
            self._unchanged.difference_update(late)
            self.counters["unchanged"] -= len(late)
            self.counters["updates"] += len(late)
            self.counters["renames"] += int(renamed[late.index].sum())

    def _removed_last(self, page: ObjectPage) -> set[str]:
        """The anchors ``page`` reports removed after their last occurrence in it. One an earlier page of this import
        wrote is no longer seen (``finish_full`` deletes it, through the guard, when the connector space held it
        alive before the import); one this import added is taken out again at once."""
        if not page.removed:
            return set()
        last_add = {anchor: position for position, anchor in enumerate(page.anchors)}
        removed = {anchor for position, anchor in page.removed if position > last_add.get(anchor, -1)}
        assert self._index is not None
        for anchor in sorted(removed & self._seen):
            self._seen.discard(anchor)
            if anchor not in self._index.index:
                self._delete([anchor], [PENDING_ADD])  # never synced: it vanishes
            elif bool(self._index.at[anchor, "is_deleted"]):  # a tombstone this import revived: one again
                self._delete([anchor], [self._index.at[anchor, "pending_import"] or PENDING_DELETE])
        return removed

    def keep_in_full(self, objects: Sequence[SourceObject]) -> None:
        """Objects a full import reads beside its rounds (Entra's soft-deleted groups), as partial changes: applied to
        the live objects the connector space holds, which then count as seen and stay; others are left alone."""
        if self._index is None:
            raise RuntimeError("begin_full() must be called before keep_in_full()")
        alive = self._index.index[self._index["is_deleted"].ne(True)]
        known = [obj for obj in objects if obj.anchor in alive]
        self.write_delta_page(known)
        self._seen.update(obj.anchor for obj in known)

    def update_known(self, objects: Sequence[SourceObject]) -> None:
        """Partial changes read beside the import's rounds (a property listed on its own), applied to the live objects
        the connector space holds; an object it does not hold is left alone."""
        stored = self._load_rows([obj.anchor for obj in objects])
        self.write_delta_page([obj for obj in objects if obj.anchor in stored and not stored[obj.anchor]["is_deleted"]])

    def finish_full(self, *, not_counted: Iterable[str] = (), gone_roots: Mapping[str, DnScope] | None = None) -> None:
        """Everything the connector space holds alive that this full import did not see was deleted, except what it
        read and could not apply (``unreadable``: a per-object error), which stays as it was.

        ``not_counted``: anchors read that say nothing about whether the scope holds what it should (AD: the base
        OU itself, and the OUs and containers, read whatever the OU filter or the pilot group let through); the
        import guard does not count them as having seen something.
        ``gone_roots``: parts of the scope the import found missing (AD: an included OU with no entry on the DC, or
        a partition it read nothing from: engine.connectors.ad.gone_roots), by name: given to the import guard as
        ``gone``, each with the deletes under it (none, when the OU's name is mistyped: the deletes are then under
        the OU it was meant to be). Counted here, where the deletes are known, so that a partition's objects are
        checked however few of the whole import's they are.
        """
        if self._index is None:
            raise RuntimeError("begin_full() must be called before finish_full()")
        alive = self._index[self._index["is_deleted"].ne(True)]
        # An object the import read but could not apply (a value it cannot decode, a DN it cannot place) is there: it
        # stays as it was, never deleted as if the directory had lost it (its cloud account would be deprovisioned).
        unreadable = set(self.unreadable()) - self._seen if self.unreadable is not None else set()
        kept = alive.index.intersection(pd.Index(sorted(unreadable)))
        if len(kept):
            self.counters["kept_unreadable"] += len(kept)
        missing = alive.index.difference(pd.Index(list(self._seen))).difference(kept)
        if self.removal_check is not None:
            seen = len(self._seen - set(not_counted))
            dns = alive.loc[missing, "dn"].tolist()
            gone = {name: sum(map(root.contains, dns)) for name, root in (gone_roots or {}).items()}
            extra = {"gone": gone} if gone else {}
            self.removal_check(mode="full", deletes=len(missing), space_size=len(alive), seen=seen, **extra)
        if len(missing):
            progress.current().start_phase("deleting what the import did not see", len(missing))
            self._delete(missing.tolist(), alive.loc[missing, "pending_import"].tolist())
            progress.current().advance(len(missing))
        self._index = None
        self._seen = set()
        self._unchanged = set()

    def live_objects(self) -> int:
        """How many live objects the connector space holds (what the import guard compares deletes with)."""
        return self.connection.execute(
            sa.select(sa.func.count()).where(
                cs_object.c.connector == self.connector,
                cs_object.c.is_deleted == sa.false(),
                cs_object.c.attrs_hash != "",
            )
        ).scalar_one()

    # ------------------------------------------------------------------------------------------------ delta
    def not_alive(self, anchors: Sequence[str]) -> set[str]:
        """The anchors among ``anchors`` the connector space does not hold as live objects."""
        stored = self._load_rows(anchors)
        return {anchor for anchor in anchors if anchor not in stored or stored[anchor]["is_deleted"]}

    def write_delta_page(self, objects: Sequence[SourceObject]) -> None:
        """Apply one page of changes; objects unknown to the connector space become adds."""
        if not objects:
            return
        progress.current().advance(len(objects))
        stored = self._load_rows([obj.anchor for obj in objects])
        now = utcnow()
        for obj in objects:
            self.counters["objects_read"] += 1
            current = stored.get(obj.anchor)
            alive = current is not None and not current["is_deleted"]
            if obj.deleted:
                if alive and current["object_type"] in self.container_types:
                    self.moves.append(ContainerMove(obj.anchor, current["dn"], obj.dn, deleted=True))
                if alive:
                    changed = self._delete([obj.anchor], [current["pending_import"]])
                    stored.pop(obj.anchor)
                    # A group that referenced it got a new refs_hash: a later change of that group in this page must
                    # start from it, not from the row read at the page's start.
                    stale = [anchor for anchor in changed if anchor in stored]
                    if stale:
                        stored.update(self._load_rows(stale))
                else:
                    self.counters["deletes_ignored"] += 1
                continue
            if not alive:
                # A tombstone revived (restored from a recycle bin) is known to the sync: an update, not an add.
                row = self._delta_add(obj, now, PENDING_ADD if current is None else PENDING_UPDATE)
            else:
                row = self._delta_update(obj, current, now)
            if row is not None:
                stored[obj.anchor] = row

    def write_whole(self, objects: Sequence[SourceObject]) -> None:
        """Apply objects read whole beside a delta's changes (objects a run could not apply, read again by anchor):
        each replaces every value and reference the connector space holds for it, as a full import's read would (an
        attribute or reference list it no longer has is cleared); one the space does not hold alive is added, a
        deleted one deleted."""
        anchors = [obj.anchor for obj in objects if not obj.deleted]
        stored = self._load_rows(anchors)
        references = self.references.stored_attributes(anchors)
        for obj in objects:
            current = stored.get(obj.anchor)
            if obj.deleted or current is None or current["is_deleted"]:
                continue
            for name in current["attrs"]:
                obj.attrs.setdefault(name, [])
            for name in references.get(obj.anchor, ()):
                obj.references.setdefault(name, [])
        self.write_delta_page(objects)

    def _delta_add(self, obj: SourceObject, now: Any, pending: str) -> dict[str, Any] | None:
        if obj.object_type is None:
            self.counters["skipped_untyped"] += 1
            log.warning("delta entry %s (%s) has no object type and is not in the connector space", obj.dn, obj.anchor)
            return None
        attrs = {name: values for name, values in obj.attrs.items() if values}
        serialized = serialize_attrs(attrs)
        references = {name: list(values) for name, values in obj.references.items()}
        for name, values in obj.reference_adds.items():
            references.setdefault(name, []).extend(values)
        removed = {(name, target) for name, values in obj.reference_removes.items() for target, _dn in values}
        references = {
            name: list({target: (target, dn) for target, dn in values if (name, target) not in removed}.values())
            for name, values in references.items()
        }
        row = {
            "connector": self.connector,
            "anchor": obj.anchor,
            "dn": obj.dn,
            "object_type": obj.object_type,
            "attrs": serialized,
            "attrs_hash": attrs_digest(serialized),
            "refs_hash": format_hash(references_hash(reference_pairs(references))),
            "is_deleted": False,
            "pending_import": pending,
            "last_run_id": self.run_id,
            "updated_at": now,
        }
        self.store.upsert(self.connection, cs_object, [row], update=list(row)[2:])
        self.connection.execute(
            sa.delete(cs_reference).where(
                cs_reference.c.connector == self.connector, cs_reference.c.anchor == obj.anchor
            )
        )
        self.references.insert_objects(
            [SourceObject(anchor=obj.anchor, dn=obj.dn, object_type=None, references=references)]
        )
        self.counters["adds"] += 1
        return {**row, "attrs": attrs}

    def _delta_update(self, obj: SourceObject, current: dict[str, Any], now: Any) -> dict[str, Any] | None:
        attrs = dict(current["attrs"])
        for name, values in obj.attrs.items():
            if values:
                attrs[name] = values
            else:
                attrs.pop(name, None)
        serialized = serialize_attrs(attrs)
        digest = attrs_digest(serialized)
        renamed = obj.dn != current["dn"]
        added, removed = self._apply_reference_changes(obj)
        refs_hash = current["refs_hash"]
        if added or removed:
            refs_hash = format_hash(adjust_references_hash(int(refs_hash, 16), added, removed))
        if not renamed and digest == current["attrs_hash"] and not (added or removed):
            self.counters["unchanged"] += 1
            return current
        pending = PENDING_ADD if current["pending_import"] == PENDING_ADD else PENDING_UPDATE
        self.connection.execute(
            _DELTA_UPDATE,
            {
                "b_connector": self.connector,
                "b_anchor": obj.anchor,
                "dn": obj.dn,
                "attrs": serialized,
                "attrs_hash": digest,
                "refs_hash": refs_hash,
                "pending_import": pending,
                "last_run_id": self.run_id,
                "updated_at": now,
            },
        )
        self.counters["updates"] += 1
        self.counters["renames"] += int(renamed)
        if renamed and current["object_type"] in self.container_types:
            self.moves.append(ContainerMove(obj.anchor, current["dn"], obj.dn))
        return {
            **current,
            "dn": obj.dn,
            "attrs": attrs,
            "attrs_hash": digest,
            "refs_hash": refs_hash,
            "pending_import": pending,
        }

    def _apply_reference_changes(self, obj: SourceObject) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Apply full-set and incremental reference changes; return the (attribute, target) pairs really changed."""
        added: list[tuple[str, str]] = []
        removed: list[tuple[str, str]] = []
        for name, values in obj.references.items():
            stored = self.references.stored_targets(obj.anchor, name)
            incoming = {target: dn for target, dn in values}
            add = [(target, incoming[target]) for target in incoming.keys() - stored]
            remove = list(stored - incoming.keys())
            self.references.write_changes(obj.anchor, name, add, remove)
            added += [(name, target) for target, _ in add]
            removed += [(name, target) for target in remove]
        for name, values in obj.reference_adds.items():
            stored = self.references.stored_targets(obj.anchor, name, [target for target, _ in values])
            add = list({target: (target, dn) for target, dn in values if target not in stored}.values())
            self.references.write_changes(obj.anchor, name, add, [])
            added += [(name, target) for target, _ in add]
        for name, values in obj.reference_removes.items():
            stored = self.references.stored_targets(obj.anchor, name, [target for target, _ in values])
            remove = list({target for target, _ in values if target in stored})
            self.references.write_changes(obj.anchor, name, [], remove)
            removed += [(name, target) for target in remove]
        self.counters["reference_adds"] += len(added)
        self.counters["reference_removes"] += len(removed)
        return added, removed

    # ---------------------------------------------------------------------------------------------- helpers
    def _load_rows(self, anchors: Sequence[str]) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(anchors))
        for chunk in chunks(unique, IN_CHUNK):
            query = sa.select(cs_object).where(cs_object.c.connector == self.connector, cs_object.c.anchor.in_(chunk))
            for row in self.connection.execute(query).mappings():
                rows[row["anchor"]] = {**row, "attrs": json.loads(row["attrs"])}
        return rows

    def _delete(self, anchors: Sequence[str], pending: Sequence[str | None]) -> list[str]:
        """Delete objects: never-synced adds vanish, others stay as pending deletes for the sync engine.

        An add linked to a metaverse object (an object sync provisioned, which an import then read) is not one the
        sync never saw: it stays as a pending delete too, or its link would outlive it and the delete never reach
        the metaverse. References to the deleted objects are dropped here, because AD's DirSync does not report the
        member removal of a deleted member on the group; not those to one that left the scope (cs_references
        ``dropped_targets``). Returns the anchors of the objects whose rows that changed.
        """
        now = utcnow()
        adds = [anchor for anchor, state in zip(anchors, pending, strict=True) if state == PENDING_ADD]
        linked = self._linked(adds) if adds else set()
        vanish = [anchor for anchor in adds if anchor not in linked]
        tombstone = [
            anchor for anchor, state in zip(anchors, pending, strict=True) if state != PENDING_ADD or anchor in linked
        ]
        for chunk in chunks(vanish, IN_CHUNK):
            self.connection.execute(
                sa.delete(cs_object).where(cs_object.c.connector == self.connector, cs_object.c.anchor.in_(chunk))
            )
        for chunk in chunks(tombstone, IN_CHUNK):
            self.connection.execute(
                sa.update(cs_object)
                .where(cs_object.c.connector == self.connector, cs_object.c.anchor.in_(chunk))
                .values(
                    is_deleted=True,
                    pending_import=PENDING_DELETE,
                    last_run_id=self.run_id,
                    updated_at=now,
                    refs_hash=format_hash(0),
                )
            )
        for chunk in chunks(list(anchors), IN_CHUNK):
            self.connection.execute(
                sa.delete(cs_reference).where(
                    cs_reference.c.connector == self.connector, cs_reference.c.anchor.in_(chunk)
                )
            )
        self.counters["deletes"] += len(anchors)
        return self._drop_references_to(dropped_targets(self.references, anchors), now)

    def delete(self, anchors: Sequence[str], pending: Sequence[str | None]) -> None:
        """Delete live objects of the connector space as a delta's deletes are (``pending``: each one's
        ``pending_import``), counted in ``deletes``, which the import guard checks before the run commits."""
        self._delete(anchors, pending)

    def _linked(self, anchors: Sequence[str]) -> set[str]:
        """The anchors among ``anchors`` linked to a metaverse object."""
        found: set[str] = set()
        for chunk in chunks(list(anchors), IN_CHUNK):
            query = sa.select(link.c.anchor).where(link.c.connector == self.connector, link.c.anchor.in_(chunk))
            found.update(self.connection.execute(query).scalars())
        return found

    def _drop_references_to(self, targets: Sequence[str], now: Any) -> list[str]:
        """Drop the references to ``targets``; the anchors of the objects that held them (their rows changed)."""
        dangling: list[tuple[str, str, str]] = []
        for chunk in chunks(list(targets), IN_CHUNK):
            query = sa.select(cs_reference.c.anchor, cs_reference.c.attribute, cs_reference.c.target_anchor).where(
                cs_reference.c.connector == self.connector, cs_reference.c.target_anchor.in_(chunk)
            )
            dangling.extend(self.connection.execute(query).all())
        if not dangling:
            return []
        self.references.delete_rows(dangling)
        self.counters["reference_removes"] += len(dangling)
        by_source: dict[str, list[tuple[str, str]]] = {}
        for anchor, attribute, target in dangling:
            by_source.setdefault(anchor, []).append((attribute, target))
        for anchor, row in self._load_rows(list(by_source)).items():
            refs_hash = format_hash(adjust_references_hash(int(row["refs_hash"], 16), [], by_source[anchor]))
            pending = PENDING_ADD if row["pending_import"] == PENDING_ADD else PENDING_UPDATE
            self.connection.execute(
                sa.update(cs_object)
                .where(cs_object.c.connector == self.connector, cs_object.c.anchor == anchor)
                .values(refs_hash=refs_hash, pending_import=pending, last_run_id=self.run_id, updated_at=now)
            )
            self.counters["updates"] += 1
        return list(by_source)


def held_values(writer: ConnectorSpaceWriter, attribute: str, object_type: str) -> list[SourceObject]:
    """The values of ``attribute`` the live objects of ``object_type`` in ``writer``'s connector space hold now, as
    partial changes: what a full import that does not read the attribute this time hands back to
    :meth:`ConnectorSpaceWriter.update_known` after its rounds, which replace each object whole (else it would drop
    them)."""
    query = sa.select(cs_object.c.anchor, cs_object.c.dn, cs_object.c.attrs).where(
        cs_object.c.connector == writer.connector,
        cs_object.c.object_type == object_type,
        cs_object.c.is_deleted == sa.false(),
        cs_object.c.attrs.contains(json.dumps(attribute)),  # a cheap filter; the decoded attrs decide
    )
    held = []
    for anchor, dn, attrs in writer.connection.execute(query):
        values = json.loads(attrs).get(attribute)
        if values:
            held.append(SourceObject(anchor, dn, object_type, attrs={attribute: values}, partial=True))
    return held
