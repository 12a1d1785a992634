"""The unjoined (disconnector) objects of one target connector the outbound half may join instead of creating a
second object: one an earlier export wrote (a provisioning rule's ``rejoin_on`` mark), or one sync deprovisioned whose
delete is not exported yet (found by its hard-match anchor).

An object sync deprovisioned stays a disconnector while its delete is pending (:func:`staged_deletes`): no join or
projection rule of its own connector links it again. Only the outbound half does, when the object it left comes back
in the outbound scope before the export (:meth:`Unjoined.take_deleted`), and withdraws the delete then.

An unjoined object with no export pending that holds the hard-match anchor a new object would get (a cloud user whose
delete was exported, restored by an administrator from Entra's deleted items, read by a sync of its connector while its
person was gone) is left to its own join rules (:meth:`Unjoined.holding`): it gets a pending import so that its
connector's next sync, a delta one too, evaluates its hard match again, which joins it in place of the create staged
meanwhile. Before, only a full sync of that connector read it again: with delta syncs the create stayed and the export
made a second cloud user beside the restored one. The same holds for an unjoined object holding the UPN or primary SMTP
address a soft match compares (a cloud-only user, read while no AD user had its UPN, and an AD user given it later):
without its join evaluated again, a delta cycle created a second user beside it, with a placeholder UPN."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.batching import chunks
from airflow_provider_aadsync.engine.connectors.schema import PROVISIONAL_PREFIX
from airflow_provider_aadsync.engine.runs.cs_writer import PENDING_UPDATE
from airflow_provider_aadsync.engine.store import cs_object, link, pending_export
from airflow_provider_aadsync.engine.store.among import among
from airflow_provider_aadsync.engine.sync.frames import load_json
from airflow_provider_aadsync.engine.sync.schema import cell_values
from airflow_provider_aadsync.engine.sync.state import SyncPass

#: (object type, hard-match attribute, value), the first two in lower case, the value exact (base64 ImmutableIds may
#: differ only by case). A soft-match key has the attribute after :data:`_SOFT` and the value case-folded.
Key = tuple[str, str, str]
#: A soft-match pair of a join rule: (connector-space object type case-folded, its attribute and the metaverse
#: attribute compared with it, both in lower case).
SoftPair = tuple[str, str, str]
#: Marks the attribute of a soft-match key, apart from a hard-match attribute of the same name.
_SOFT = "soft:"


def staged_deletes(state: SyncPass) -> set[str]:
    """The objects of the pass's connector with a staged delete, in any state (pending, sent, failed): sync
    deprovisioned them and no export has removed them yet. Read once per pass."""
    if state.staged_deletes is None:
        query = sa.select(pending_export.c.anchor).where(
            pending_export.c.connector == state.connector, pending_export.c.operation == "delete"
        )
        state.staged_deletes = set(state.connection.execute(query).scalars())
    return state.staged_deletes


class Unjoined:
    """The unjoined (disconnector) objects of one connector, by object type and by the value of a rejoin attribute,
    read once per outbound pass and only when a provisioning rule asks (a rebuilt store, a written-back group)."""

    def __init__(
        self, state: SyncPass, connector: str, hard: set[str] | None = None, soft: frozenset[SoftPair] = frozenset()
    ) -> None:
        self.state = state
        self.connector = connector
        self._index: dict[tuple[str, str], dict[str, tuple[str, dict[str, Any]]]] = {}
        self._hard = hard or set()
        self._soft = soft
        self._due: list[str] = []

    def take_deleted(self, object_type: str, desired: Mapping[str, list[Any]]) -> tuple[str, dict[str, Any]] | None:
        """An unjoined object of ``object_type`` with a settled (unsent) pending delete holding the hard-match value
        the object would be given (``desired``): sync deprovisioned it and the object came back before the export."""
        deleting = self._loaded()[0]
        if not deleting:  # nearly always
            return None
        for key in self._keys(object_type, desired):
            found = deleting.pop(key, None)
            if found is not None:
                self._sync_again(found[0])
                return found
        return None

    def holding(
        self, object_type: str, desired: Mapping[str, list[Any]], metaverse: Mapping[str, list[Any]] | None = None
    ) -> list[str]:
        """The unjoined objects of ``object_type`` with no export pending holding exactly the hard-match value the
        object would be given (``desired``): a cloud user restored from Entra's deleted items, read while its person
        was gone; or holding the value a soft-match pair compares with the metaverse object's (``metaverse``, its
        values): a cloud-only user with the UPN of a new AD user. Each is given a pending import, so its connector's
        next sync, a delta one too, evaluates its join again: the match joins it and withdraws the create staged
        meanwhile, or refuses it (another engine holds it, another anchor, an administrator, two candidates) and
        holds that create, as for any refused match."""
        holders = self._loaded()[1]
        if not holders:  # nearly always
            return []
        keys = self._keys(object_type, desired) + self._soft_keys(object_type, metaverse or {})
        anchors = sorted({anchor for key in keys for anchor in holders.get(key, ())})
        if self.connector != self.state.connector:  # a pass of its own connector read it and did not join it
            self._due.extend(anchors)  # given their pending import by flush()
        return anchors

    def _keys(self, object_type: str, desired: Mapping[str, list[Any]]) -> list[Key]:
        return [
            (object_type.casefold(), name.lower(), str(values[0]))
            for name, values in desired.items()
            if name.lower() in self._hard and len(values) == 1 and str(values[0])
        ]

    def _soft_keys(self, object_type: str, metaverse: Mapping[str, list[Any]]) -> list[Key]:
        folded_type = object_type.casefold()
        pairs = [(source, target) for cs_type, source, target in self._soft if cs_type == folded_type]
        if not pairs or not metaverse:
            return []
        lowered = {name.lower(): values for name, values in metaverse.items()}
        return [
            (folded_type, _SOFT + source, str(value).casefold())
            for source, target in pairs
            for value in cell_values(lowered.get(target))
            if str(value)
        ]

    def _loaded(self) -> tuple[dict[Key, tuple[str, dict[str, Any]]], dict[Key, set[str]]]:
        if not self._hard and not self._soft:
            return {}, {}
        # Read once per pass (not per batch: a first full sync's staged rows would be scanned again each time).
        loaded = self.state.unjoined_deletes.get(self.connector)
        if loaded is None:
            loaded = self.state.unjoined_deletes[self.connector] = self._load_deleting()
        return loaded

    def flush(self) -> None:
        """Give the objects :meth:`holding` found their pending import, in a few statements (a rebuilt store's first
        sync of AD finds every cloud user so)."""
        due, self._due = sorted(set(self._due)), []
        for part in chunks(due):
            self.state.connection.execute(
                sa.update(cs_object)
                .where(
                    cs_object.c.connector == self.connector,
                    among(cs_object.c.anchor, part),
                    cs_object.c.pending_import.is_(None),
                )
                .values(pending_import=PENDING_UPDATE)
            )

    def _sync_again(self, anchor: str) -> None:
        """What a deprovisioned object contributed was recalled (recall.py): joined again, it gets a pending import, so
        its connector's next sync, a delta one too, brings its values back. A pass of that connector which read the
        object's own pending import leaves it set."""
        self.state.connection.execute(
            sa.update(cs_object)
            .where(
                cs_object.c.connector == self.connector,
                cs_object.c.anchor == anchor,
                cs_object.c.pending_import.is_(None),
            )
            .values(pending_import=PENDING_UPDATE)
        )
        if self.connector == self.state.connector and anchor in self.state.processed:
            self.state.processed.remove(anchor)

    def _load_deleting(self) -> tuple[dict[Key, tuple[str, dict[str, Any]]], dict[Key, set[str]]]:
        query = (
            sa.select(
                cs_object.c.anchor, cs_object.c.dn, cs_object.c.object_type, cs_object.c.attrs, pending_export.c.state
            )
            .select_from(
                cs_object.outerjoin(
                    pending_export,
                    sa.and_(
                        pending_export.c.connector == cs_object.c.connector,
                        pending_export.c.anchor == cs_object.c.anchor,
                    ),
                ).outerjoin(
                    link, sa.and_(link.c.connector == cs_object.c.connector, link.c.anchor == cs_object.c.anchor)
                )
            )
            .where(
                cs_object.c.connector == self.connector,
                cs_object.c.is_deleted.is_(False),
                sa.or_(
                    sa.and_(pending_export.c.operation == "delete", pending_export.c.state.in_(("pending", "failed"))),
                    pending_export.c.anchor.is_(None),
                ),
                link.c.anchor.is_(None),
                ~cs_object.c.anchor.startswith(PROVISIONAL_PREFIX),
            )
        )
        deleting: dict[Key, tuple[str, dict[str, Any]]] = {}
        holders: dict[Key, set[str]] = {}
        for anchor, dn, found_type, attrs, export_state in self.state.connection.execute(query):
            decoded = load_json(attrs)
            lowered = {name.lower(): v for name, v in decoded.items()}
            folded_type = found_type.casefold()
            for attribute in self._hard:
                for value in cell_values(lowered.get(attribute)):
                    key = (folded_type, attribute, str(value))
                    if export_state is None:
                        holders.setdefault(key, set()).add(anchor)
                    else:
                        deleting.setdefault(key, (anchor, {"dn": dn, "object_type": found_type, "attrs": decoded}))
            if export_state is None:  # a soft match never rejoins a deleted object: only its join is made due
                for cs_type, attribute, _target in self._soft:
                    if cs_type == folded_type:
                        for value in cell_values(lowered.get(attribute)):
                            holders.setdefault((folded_type, _SOFT + attribute, str(value).casefold()), set()).add(
                                anchor
                            )
        return deleting, holders

    def take(self, object_type: str, attribute: str, value: str) -> tuple[str, dict[str, Any]] | None:
        """The object holding ``value`` (case-insensitive), removed so that no second metaverse object joins it."""
        key = (object_type, attribute.lower())
        if key not in self._index:
            self._index[key] = self._load(object_type, attribute.lower())
        return self._index[key].pop(value.casefold(), None)

    def _load(self, object_type: str, attribute: str) -> dict[str, tuple[str, dict[str, Any]]]:
        query = (
            sa.select(cs_object.c.anchor, cs_object.c.dn, cs_object.c.object_type, cs_object.c.attrs)
            .select_from(
                cs_object.outerjoin(
                    link, sa.and_(link.c.connector == cs_object.c.connector, link.c.anchor == cs_object.c.anchor)
                )
            )
            .where(
                cs_object.c.connector == self.connector,
                cs_object.c.object_type == object_type,
                cs_object.c.is_deleted.is_(False),
                link.c.anchor.is_(None),
            )
        )
        found: dict[str, tuple[str, dict[str, Any]]] = {}
        for anchor, dn, found_type, attrs in self.state.connection.execute(query):
            if anchor.startswith(PROVISIONAL_PREFIX):
                continue
            decoded = load_json(attrs)
            values = {name.lower(): v for name, v in decoded.items()}.get(attribute)
            for value in cell_values(values):
                found.setdefault(
                    str(value).casefold(), (anchor, {"dn": dn, "object_type": found_type, "attrs": decoded})
                )
        return found
