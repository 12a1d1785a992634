"""The reference rows (``cs_reference``: group members, managers) of one connector space, as an import writes them.

Split from the connector-space writer (cs_writer.py), which decides what changed: this class reads and writes the
rows, in chunks and as columns, and counts the reference adds and removes into the writer's counters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airflow_provider_aadsync.engine.batching import chunks
from airflow_provider_aadsync.engine.runs.cs_page import ObjectPage
from airflow_provider_aadsync.engine.runs.source import Reference, SourceObject
from airflow_provider_aadsync.engine.store import Store, cs_reference

#: How many anchors go into one ``IN (...)`` list.
IN_CHUNK = 500
#: The columns of a reference row besides its connector.
REFERENCE_COLUMNS = ("anchor", "attribute", "target_anchor", "target_dn")


class ReferenceRows:
    """Reads and writes one connector's reference rows inside the caller's transaction."""

    def __init__(self, store: Store, connection: Connection, connector: str, counters: Counter[str]):
        self.store = store
        self.connection = connection
        self.connector = connector
        #: The writer's counters: reference_adds and reference_removes are counted here.
        self.counters = counters
        #: Objects that left the import's scope (moved out of it, not deleted in the source), set by the connector:
        #: their delete keeps the references other objects hold to them (:func:`dropped_targets`).
        self.kept_targets: set[str] = set()

    def stored_targets(self, anchor: str, attribute: str, among: Sequence[str] | None = None) -> set[str]:
        base = sa.select(cs_reference.c.target_anchor).where(
            cs_reference.c.connector == self.connector,
            cs_reference.c.anchor == anchor,
            cs_reference.c.attribute == attribute,
        )
        if among is None:
            return set(self.connection.execute(base).scalars())
        found: set[str] = set()
        for chunk in chunks(list(dict.fromkeys(among)), IN_CHUNK):
            found.update(self.connection.execute(base.where(cs_reference.c.target_anchor.in_(chunk))).scalars())
        return found

    def stored_attributes(self, anchors: Sequence[str]) -> dict[str, set[str]]:
        """Per anchor of ``anchors``, the reference attributes the connector space holds rows of (one read a chunk)."""
        found: dict[str, set[str]] = {}
        for chunk in chunks(list(dict.fromkeys(anchors)), IN_CHUNK):
            query = sa.select(cs_reference.c.anchor, cs_reference.c.attribute).where(
                cs_reference.c.connector == self.connector, cs_reference.c.anchor.in_(chunk)
            )
            for anchor, attribute in self.connection.execute(query.distinct()):
                found.setdefault(anchor, set()).add(attribute)
        return found

    def write_changes(self, anchor: str, attribute: str, add: Sequence[Reference], remove: Sequence[str]) -> None:
        if add:
            self.store.insert_chunked(
                self.connection,
                cs_reference,
                [
                    {
                        "connector": self.connector,
                        "anchor": anchor,
                        "attribute": attribute,
                        "target_anchor": target,
                        "target_dn": dn,
                    }
                    for target, dn in add
                ],
            )
        if remove:
            self.delete_rows([(anchor, attribute, target) for target in remove])

    def delete_rows(self, keys: Sequence[tuple[str, str, str]]) -> None:
        statement = sa.delete(cs_reference).where(
            cs_reference.c.connector == self.connector,
            cs_reference.c.anchor == sa.bindparam("b_anchor"),
            cs_reference.c.attribute == sa.bindparam("b_attribute"),
            cs_reference.c.target_anchor == sa.bindparam("b_target"),
        )
        for chunk in chunks(keys, 5_000):
            self.connection.execute(statement, [{"b_anchor": a, "b_attribute": n, "b_target": t} for a, n, t in chunk])

    def insert_objects(self, objects: Sequence[SourceObject]) -> None:
        self.insert_frame(ObjectPage.from_objects(objects, serialize=False).reference_frame())

    def insert_frame(self, references: pd.DataFrame) -> None:
        """Insert reference rows (columns anchor, attribute, target_anchor, target_dn), each value once."""
        references = references.drop_duplicates(["anchor", "attribute", "target_anchor"])
        columns = {name: references[name].tolist() for name in REFERENCE_COLUMNS}
        columns["target_dn"] = [dn if isinstance(dn, str) else None for dn in columns["target_dn"]]  # NaN → NULL
        self.counters["reference_adds"] += self.store.write_columns(
            self.connection, cs_reference, {"connector": self.connector, **columns}
        )

    def replace(self, anchors: Sequence[str], incoming: pd.DataFrame) -> None:
        """Diff these objects' stored reference sets with the incoming rows using frame set operations."""
        stored_parts = []
        for chunk in chunks(anchors, IN_CHUNK):
            query = sa.select(cs_reference.c.anchor, cs_reference.c.attribute, cs_reference.c.target_anchor).where(
                cs_reference.c.connector == self.connector, cs_reference.c.anchor.in_(chunk)
            )
            stored_parts.append(
                pd.DataFrame(self.connection.execute(query).all(), columns=["anchor", "attribute", "target_anchor"])
            )
        stored = pd.concat(stored_parts, ignore_index=True)
        incoming = incoming[list(REFERENCE_COLUMNS)].drop_duplicates(["anchor", "attribute", "target_anchor"])
        merged = incoming.merge(stored, on=["anchor", "attribute", "target_anchor"], how="outer", indicator=True)
        adds = merged[merged["_merge"] == "left_only"]
        removes = merged[merged["_merge"] == "right_only"]
        self.insert_frame(adds)
        if not removes.empty:
            self.delete_rows(list(removes[["anchor", "attribute", "target_anchor"]].itertuples(index=False, name=None)))
        self.counters["reference_removes"] += len(removes)


def dropped_targets(references: ReferenceRows, anchors: Sequence[str]) -> list[str]:
    """The deleted ``anchors`` whose incoming references go with them: those deleted in the source (a group's
    ``member`` of a deleted object is gone from AD, and DirSync does not report that removal on the group).

    One that moved out of the scope (``kept_targets``) keeps them, as AD does: the groups still name it, a full
    import reads those values (a reference to an object outside the scope stays, unresolved), and when it moves back
    the delta reports it alone, not its groups. Sync resolves references through live links only, so the metaverse
    group lacks the member while it is out of the scope and has it again once it is back.
    """
    return [anchor for anchor in anchors if anchor not in references.kept_targets]
