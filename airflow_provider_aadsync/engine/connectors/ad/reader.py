"""Active Directory import (paged full read or DirSync delta) into the store, as one recorded run.

The directory is reached through any object satisfying :class:`DirectorySource` (the ActiveDirectoryHook in
production, fakes in unit tests), so this module stays free of Airflow and of network code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.ad.entries import EntryDecoder, reference_from_value
from airflow_provider_aadsync.engine.connectors.ad.gone_roots import PartitionReads
from airflow_provider_aadsync.engine.connectors.ad.lifetime import source_deletion_window
from airflow_provider_aadsync.engine.connectors.ad.moves import (
    CONTAINER_TYPES,
    arrived_containers,
    follow_container_moves,
)
from airflow_provider_aadsync.engine.connectors.ad.scope import (
    GROUP_FILTERED_TYPES,
    SCOPE_PARTITION,
    ADScope,
    PartitionFilter,
)
from airflow_provider_aadsync.engine.connectors.config import ADConnectorConfig, PartitionConfig
from airflow_provider_aadsync.engine.connectors.kinds import AD_KIND, connector_kind
from airflow_provider_aadsync.engine.dn import DnError
from airflow_provider_aadsync.engine.runs.cs_writer import ConnectorSpaceWriter, ObjectPage
from airflow_provider_aadsync.engine.runs.import_attributes import with_attribute_list, with_fingerprint
from airflow_provider_aadsync.engine.runs.import_guard import ImportGuard
from airflow_provider_aadsync.engine.runs.import_run import (
    ERROR_LIMIT,
    ErrorSink,
    ImportResult,
    Mode,
    run_import,
)
from airflow_provider_aadsync.engine.runs.prefetch import prefetch
from airflow_provider_aadsync.engine.runs.read_again import full_import_list, settle_delta_partition
from airflow_provider_aadsync.engine.runs.source import ObjectDecodeError, SourceObject
from airflow_provider_aadsync.engine.store import cs_object, link, watermark

if TYPE_CHECKING:
    from airflow_provider_aadsync.engine.store import Store

#: The per-object error of an object another AD connector's space holds alive (held_by_other_ad_connectors).
HELD_ELSEWHERE = "anchor-in-another-connector"

RawEntry = tuple[str, dict[str, list[bytes]]]

__all__ = [
    "ADImportSteps",
    "DirectorySource",
    "ImportResult",
    "import_active_directory",
    "import_ad_connector",
]


class DirectorySource(Protocol):
    """What the import needs from a directory connection.

    ``base`` names a partition other than the connection's naming context (a child domain) and is passed only
    then; ``group_members`` is needed only with a pilot group. Optional (read with getattr): ``deletion_window() ->
    timedelta``, how long the forest keeps deleted objects visible (engine.connectors.ad.lifetime; without it, the
    spec's default tombstone lifetime).
    """

    def naming_context(self) -> str: ...

    def server_name(self) -> str: ...

    def full_import_pages(self, attributes: Sequence[str], **base: str) -> Iterator[list[RawEntry]]: ...

    def dirsync_watermark(self, **base: str) -> bytes: ...

    def dirsync_pages(
        self, attributes: Sequence[str], cookie: bytes, **base: str
    ) -> Iterator[tuple[list[RawEntry], bytes | None]]:
        """Changed entries with the cookie after them; None for a chunk that ends inside one DirSync search, which
        has no cookie of its own (the search's last chunk carries it)."""
        ...


class EntryReadingSource(Protocol):
    def read_entries(self, guids: Sequence[str], attributes: Sequence[str], base: str | None = None) -> list[RawEntry]:
        """The objects of ``guids`` as a full import reads them (gone ones and computers left out)."""
        ...


class GroupMembersSource(Protocol):
    def group_members(self, group_dn: str) -> list[str]:
        """The group's direct ``member`` values (extended DNs), every range read."""
        ...


class ADImportSteps:
    """Reads AD for :func:`run_import`: one watermark (DirSync cookie) per partition, objects scoped by
    :class:`ADScope` (partitions, OUs, pilot group) whether read fully or by DirSync."""

    watermark_name = "DirSync cookie"
    command = "import-ad"
    #: What the import guard's "saw nothing" counts: OUs and containers are read whatever the OU filter or the pilot
    #: group lets through (an emptied pilot group, or an account that reads the OUs but no longer the users in them,
    #: still sees them), so they say nothing about whether the scope holds what it should.
    counted = "user, group or contact"

    def __init__(
        self,
        source: DirectorySource,
        attributes: Sequence[str],
        decoder: EntryDecoder,
        scope_dn: str | None,
        scope: ADScope | None = None,
    ):
        self.source = source
        self.attributes = attributes
        self.decoder = decoder
        self.naming_context = source.naming_context()
        self.scope = scope or ADScope()
        # The DC returns DNs in its own spelling, whatever spelling the base DN was configured in: compare RDN by
        # RDN (engine.dn), never as text.
        try:
            self.filters = self.scope.filters(self.naming_context, scope_dn)
        except DnError as error:
            raise ValueError(f"the import's base DN is not usable: {error}") from None
        #: Anchors a full import read that the guard does not count as seen: the scope's own entries (the base OU
        #: itself), and OUs and containers (only users, groups and contacts count).
        self.not_counted: set[str] = set()
        #: The partitions a full import read a user, group or contact from: one read empty stops it (gone_roots.py).
        self.reads = PartitionReads(self.filters)
        #: Objects a full import must not add: alive in another AD connector's space (anchor -> that connector).
        self.held_elsewhere: dict[str, str] = {}
        #: Objects sync created in this connector space (group writeback): read whatever the pilot group holds.
        self.provisioned: frozenset[str] = frozenset()
        self.connector = ""
        #: The DNs of OUs a delta page brought into the scope: their subtrees are read after the page (moves.py).
        self._arrived: list[str] = []
        #: Objects a delta found moved out of the scope (not AD tombstones): their deletes keep the references to them.
        self.left_scope: set[str] = set()

    @cached_property
    def watermark_lifetime(self) -> dt.timedelta:
        """A DirSync cookie older than the forest's deletion window (engine.connectors.ad.lifetime) may have missed
        deletions: the import becomes a full one. Read from the DC once per import, when a delta asks."""
        return source_deletion_window(self.source)

    def partitions(self) -> Sequence[str]:
        return [partition.key for partition in self.filters]

    def describe_scope(self) -> str:
        where = "; ".join(
            f"{'base DN' if len(self.filters) == 1 and not self.scope.partitions else 'partition'} "
            f"{partition.root.base_text!r}"
            + (f" including {[s.base_text for s in partition.includes]}" if partition.includes else "")
            + (f" excluding {[s.base_text for s in partition.excludes]}" if partition.excludes else "")
            for partition in self.filters
        )
        pilot = ""
        if self.scope.pilot_group:
            read = len(self.scope.pilot_members or ())
            pilot = f", only direct members of the pilot group {self.scope.pilot_group!r} ({read:,} members read"
            pilot += (
                ": emptied, or its member attribute is not readable by the connection's account)" if not read else ")"
            )
        return f"{where}{pilot} in naming context {self.naming_context!r} on {self.source.server_name()}"

    def server_name(self) -> str | None:
        return self.source.server_name()

    @staticmethod
    def _base(partition: PartitionFilter) -> dict[str, str]:
        return {"base": partition.base} if partition.base else {}

    def full(self, writer: ConnectorSpaceWriter, errors: ErrorSink) -> Mapping[str, bytes]:
        # Take the watermarks before reading: changes made while we page are seen again by the next delta.
        cookies = {partition.key: self.source.dirsync_watermark(**self._base(partition)) for partition in self.filters}
        writer.begin_full()
        self.not_counted = set()
        self.reads = PartitionReads(self.filters)
        self.connector = writer.connector
        self.held_elsewhere = held_by_other_ad_connectors(writer)
        self.provisioned = self._provisioned(writer)
        retries: dict[str, bytes] = {}
        for partition in self.filters:
            failed_before = len(errors)
            # Pages are read, decoded and shaped ahead in another thread while this one writes the store.
            pages = (
                ObjectPage.from_objects(_refuse_truncated(self._decode(partition, entries, errors, partial=False)))
                for entries in self.source.full_import_pages(self.attributes, **self._base(partition))
            )
            for page in prefetch(pages):
                writer.write_full_columns(page)
            if self._can_read_again:  # what failed here is read again whole by the next delta (runs/read_again.py)
                # Not what another AD connector's space holds: a renamed connector's full import refuses everything,
                # which waits for the admin (put the name back, or drop the old space and import fully).
                failed = [e for e in errors.errors[failed_before:] if e["code"] != HELD_ELSEWHERE]
                retries.update(full_import_list(partition.key, failed))
        # The base OU itself is read with its subtree; alone, it means the scope saw nothing.
        writer.finish_full(not_counted=self.not_counted, gone_roots=self.reads.gone_roots(self.source))
        return {**cookies, **retries}

    @property
    def _can_read_again(self) -> bool:
        """Whether the source reads objects whole by objectGUID (the hook does): failed objects are then read again
        by each delta instead of the delta keeping its partition's old cookie."""
        return getattr(self.source, "read_entries", None) is not None

    def delta(self, writer: ConnectorSpaceWriter, errors: ErrorSink, saved: Mapping[str, bytes]) -> Mapping[str, bytes]:
        """The changes since the saved cookies, and the objects that failed before read again whole; the new cookie
        of each partition, with the objects that failed in it (``retry <partition>``, engine/runs/read_again.py).

        DirSync reports the attributes changed since a cookie, so a cookie moved past a failed entry would lose its
        other changes for good: the failed objects are read again whole by objectGUID by each delta until they apply.
        A source that cannot read objects whole, or an error that names no object, keeps the partition's old cookie
        instead (left out here, so its age is kept too): the next delta reads its changes again from there.
        """
        cookies = {}
        self.provisioned = self._provisioned(writer)
        writer.container_types = CONTAINER_TYPES  # an OU's rename, move or delete carries down to its objects
        self.left_scope = writer.references.kept_targets  # shared: moves.py adds the objects under an OU moved out
        for partition in self.filters:
            cookie = saved[partition.key]
            failed_before = len(errors)
            for entries, page_cookie in self.source.dirsync_pages(self.attributes, cookie, **self._base(partition)):
                objects = self._decode(partition, entries, errors, partial=True)
                objects = self._whole_when_new(partition, objects, writer, errors)
                objects = self._whole_when_truncated(partition, objects, errors)
                writer.write_delta_page(self._refuse_held_elsewhere(objects, writer, errors))
                self._follow_moves(partition, writer, errors)
                # The cookie commits with the rows when the run ends; a chunk inside a search has none of its own.
                if page_cookie is not None:
                    cookie = page_cookie
            read_again = partial(self._read_again, partition, writer=writer, errors=errors)
            listed = settle_delta_partition(
                writer,
                errors,
                partition.key,
                failed_before,
                "DirSync cookie",
                read_again if self._can_read_again else None,
            )
            if listed is None:
                continue  # the partition keeps its old cookie
            cookies.update(listed)
            cookies[partition.key] = cookie
        return cookies

    def _read_again(
        self, partition: PartitionFilter, anchors: Sequence[str], writer: ConnectorSpaceWriter, errors: ErrorSink
    ) -> None:
        """Read ``anchors`` (objects a run could not apply) whole and apply each as a full import's read would: every
        value and reference replaced; out of the scope now, deleted; one the directory no longer returns is left to
        the DirSync change that removed it. One that fails again is a per-object error of this run."""
        entries = self.source.read_entries(anchors, self.attributes, **self._base(partition))  # type: ignore[attr-defined]
        complete = []
        for obj in self._decode(partition, entries, errors, partial=True, whole=True):
            if obj.truncated and not obj.deleted:  # a whole read completes ranged values; a source that did not
                message = f"reading {obj.dn} whole gave only a window of {', '.join(map(repr, obj.truncated))}"
                errors.add(ObjectDecodeError(message, dn=obj.dn, anchor=obj.anchor, code="truncated-values"))
            else:
                complete.append(obj)
        writer.write_whole(self._refuse_held_elsewhere(complete, writer, errors))
        self._follow_moves(partition, writer, errors)

    def _follow_moves(self, partition: PartitionFilter, writer: ConnectorSpaceWriter, errors: ErrorSink) -> None:
        """Carry the OUs a page renamed, moved or deleted down to the objects under them, and read the subtrees of
        those it brought into the scope (moves.py: AD reports the moved OU only, MS-ADTS 3.1.1.5.4.1.3)."""
        read = partial(self._read_subtree, partition, writer=writer, errors=errors) if self._can_read_again else None
        follow_container_moves(writer, partition, read)
        arrived, self._arrived = self._arrived, []
        for dn in arrived if read is not None else ():
            read(dn)

    def _read_subtree(
        self, partition: PartitionFilter, dn: str, writer: ConnectorSpaceWriter, errors: ErrorSink
    ) -> None:
        """Read everything under ``dn`` (a paged subtree search, as a full import reads) and apply each object in the
        scope whole: one the connector space lacks is added."""
        for entries in self.source.full_import_pages(self.attributes, base=dn):
            objects = _refuse_truncated(self._decode(partition, entries, errors, partial=False))
            writer.write_whole(self._refuse_held_elsewhere(objects, writer, errors))
        follow_container_moves(writer, partition, None)

    def _provisioned(self, writer: ConnectorSpaceWriter) -> frozenset[str]:
        """The objects sync created in this connector space (group writeback: links of type ``provision``), by their
        objectGUID, when a pilot group limits the import (else none are needed).

        Why a pilot group never limits them: the pilot scopes which of the directory's own objects sync to the cloud,
        and a group sync wrote back is none of those, and no member of the pilot group. Left out of the import, each
        would be deleted from the connector space by the next import, its group written again by the next export
        (taken back by its mark), and deleted again, every cycle."""
        if self.scope.pilot_members is None:
            return frozenset()
        query = sa.select(link.c.anchor).where(link.c.connector == writer.connector, link.c.link_type == "provision")
        return frozenset(writer.connection.execute(query).scalars())

    def _refuse_held_elsewhere(
        self, objects: list[SourceObject], writer: ConnectorSpaceWriter, errors: ErrorSink
    ) -> list[SourceObject]:
        """A delta's objects minus those new to this connector space that another AD connector's space holds."""
        candidates = [obj.anchor for obj in objects if not obj.deleted]
        elsewhere = held_by_other_ad_connectors(writer, candidates) if candidates else {}
        if not elsewhere:
            return objects
        new = writer.not_alive(list(elsewhere))
        kept = []
        for obj in objects:
            if not obj.deleted and obj.anchor in new:
                errors.add(_held_elsewhere_error(obj, writer.connector, elsewhere[obj.anchor]))
            else:
                kept.append(obj)
        return kept

    def _whole_when_new(
        self, partition: PartitionFilter, objects: list[SourceObject], writer: ConnectorSpaceWriter, errors: ErrorSink
    ) -> list[SourceObject]:
        """DirSync reports what changed, not the object: one the connector space does not hold alive (moved into the
        scope, or back into it) comes with its moved attributes only (no objectClass, no other value). Such objects
        are read whole, as a full import reads them, in one search per hundred, and added from that (the pilot group
        and the OU filter apply as in a full import). A changed object the import never keeps (a computer, a user
        outside the pilot group) comes the same way: the search leaves computers out."""
        read = getattr(self.source, "read_entries", None)
        # An object created since the cookie comes whole (every attribute is new, objectClass too).
        candidates = [obj.anchor for obj in objects if not obj.deleted and obj.object_type is None]
        new = writer.not_alive(candidates) if read is not None and candidates else set()
        if not new:
            return objects
        kept = [obj for obj in objects if obj.deleted or obj.object_type is not None or obj.anchor not in new]
        entries = read(sorted(new), self.attributes, **self._base(partition))  # gone ones: nothing to add
        arrived = self._decode(partition, entries, errors, partial=False)
        self._arrived += arrived_containers(arrived)  # an OU moved in brings its subtree: read after the page
        return kept + arrived

    def _whole_when_truncated(
        self, partition: PartitionFilter, objects: list[SourceObject], errors: ErrorSink
    ) -> list[SourceObject]:
        """A delta entry may carry a window of a ranged value list (``member;range=0-1499``, not DirSync's incremental
        ``range=1-1``/``range=0-0``): the first values of the attribute, more in further ranges. Taken as the whole
        list it would drop every value past the window (a group's members: a mass member removal, then exported).
        Such objects are read whole by objectGUID, as a full import reads them (every range), in one search per
        hundred, and the truncated attributes get the values read; the entry's other changes apply as they came.
        An object the source cannot read whole (no ``read_entries``, gone since, unreadable) is a per-object error,
        left unchanged: its partition keeps its cookie, so the next delta reads its changes again."""
        truncated = {obj.anchor for obj in objects if obj.truncated and not obj.deleted}
        if not truncated:
            return objects
        read = getattr(self.source, "read_entries", None)
        whole: dict[str, SourceObject] = {}
        if read is not None:
            for dn, raw in read(sorted(truncated), self.attributes, **self._base(partition)):
                try:
                    obj = self.decoder.decode(dn, raw, partial=False)
                except ObjectDecodeError as error:
                    errors.add(error)
                    truncated.discard(error.anchor or "")  # its error is recorded: not a second one below
                    continue
                if obj is not None and obj.anchor in truncated and not obj.truncated:
                    whole[obj.anchor] = obj
        kept = []
        for obj in objects:
            if not obj.truncated or obj.deleted:
                kept.append(obj)
            elif obj.anchor in whole:
                kept.append(_with_whole_values(obj, whole[obj.anchor], self.decoder))
            elif obj.anchor in truncated:
                errors.add(_truncated_error(obj, self.source if read is None else None))
        return kept

    def _decode(
        self,
        partition: PartitionFilter,
        entries: list[RawEntry],
        errors: ErrorSink,
        *,
        partial: bool,
        whole: bool = False,
    ) -> list[SourceObject]:
        """Decode and scope the entries of a full import, or of a delta (``partial``: an object out of the scope is a
        delete); ``whole``: a delta's entries read whole (every attribute, not the changed ones)."""
        objects = []
        for dn, raw in entries:
            try:
                obj = self.decoder.decode(dn, raw, partial=partial and not whole)
            except ObjectDecodeError as error:
                errors.add(error)
                continue
            if obj is None:
                continue
            # DirSync reads the whole naming context: scope by DN here. Tombstones live elsewhere and are kept; in a
            # delta, an object now outside the scope was moved out of it, which for the connector space is a delete.
            try:
                in_scope = obj.deleted or (
                    partition.contains(obj.dn)
                    and (self.scope.admits(obj.object_type, obj.anchor) or obj.anchor in self.provisioned)
                )
                if in_scope and not partial and not obj.deleted:
                    if obj.object_type not in GROUP_FILTERED_TYPES or partition.is_root(obj.dn):
                        self.not_counted.add(obj.anchor)
                if not partial:  # whatever the scope keeps: can the account read the partition at all?
                    self.reads.note(partition.key, obj)
            except DnError as error:  # an object the run cannot place: an error for it, nothing changed for it
                errors.add(ObjectDecodeError(str(error), dn=obj.dn, anchor=obj.anchor, code="invalid-dn"))
                continue
            if not in_scope:
                if not partial:
                    continue
                obj.deleted = True  # for the connector space only: the references to it stay (cs_references.py)
                self.left_scope.add(obj.anchor)
            elif obj.deleted:  # an AD tombstone: its references go with it
                self.left_scope.discard(obj.anchor)
            elif not partial and obj.anchor in self.held_elsewhere:
                errors.add(_held_elsewhere_error(obj, self.connector, self.held_elsewhere[obj.anchor]))
                continue
            objects.append(obj)
        return objects


def import_active_directory(
    source: DirectorySource,
    store: Store,
    *,
    connector: str = "ad",
    mode: Mode = "delta",
    attributes: Sequence[str],
    decoder: EntryDecoder | None = None,
    scope_dn: str | None = None,
    partitions: Sequence[PartitionConfig] | None = None,
    pilot_group: str | None = None,
    lock_holder: str | None = None,
    error_limit: int = ERROR_LIMIT,
    guard: ImportGuard | None = None,
) -> ImportResult:
    """Import the directory into connector space ``connector``.

    ``mode="delta"`` uses the saved DirSync cookies (one per partition); without one, with one older than the
    forest's tombstone lifetime (the source's ``deletion_window()``: engine.connectors.ad.lifetime), or when the DC
    rejects it, the run becomes a full import and says why. Rows and the new cookies commit in one transaction: a
    failed import keeps the old cookies and leaves the connector space untouched.
    ``guard`` stops an import that would remove too much of the connector space (see ``engine.runs.import_guard``).

    Scope: ``partitions`` (the connectors configuration's, each with OUs to include and exclude; None: the naming
    context limited to ``scope_dn``, the connection's base DN) and ``pilot_group`` (a group DN: only its direct
    members among users, groups and contacts). The scope, the pilot group's membership and the attribute list are
    saved with the cookies: a change of any of them makes the next delta a full import, whose deletions pass the
    guard.
    """
    members = None
    if pilot_group:
        members = frozenset(reference_from_value(value)[0] for value in _group_members(source, pilot_group))
    scope = ADScope(tuple(partitions) if partitions else None, pilot_group, members)
    steps = ADImportSteps(source, attributes, decoder or EntryDecoder(), scope_dn, scope)
    key, description = scope.fingerprint(scope_dn)
    # The attribute list and the scope are saved with the cookies: a changed one makes the next delta a full import.
    scoped = with_fingerprint(steps, SCOPE_PARTITION, key, description)
    return run_import(
        store,
        with_attribute_list(scoped, attributes),
        connector=connector,
        mode=mode,
        lock_holder=lock_holder,
        error_limit=error_limit,
        guard=guard,
    )


def import_ad_connector(
    source: DirectorySource,
    store: Store,
    connector: ADConnectorConfig,
    *,
    scope_dn: str | None = None,
    **options: Any,
) -> ImportResult:
    """:func:`import_active_directory` of one configured AD connector (engine.connectors.config): its name is the
    connector space, its partitions and pilot group the scope; ``options`` as there (mode, attributes, ...)."""
    return import_active_directory(
        source,
        store,
        connector=connector.name,
        partitions=connector.partitions,
        pilot_group=connector.pilot_group,
        scope_dn=scope_dn,
        **options,
    )


def held_by_other_ad_connectors(writer: ConnectorSpaceWriter, anchors: Sequence[str] | None = None) -> dict[str, str]:
    """Objects alive in another AD connector's space and not in ``writer``'s (anchor -> that connector), among
    ``anchors`` (None: all of them).

    An objectGUID names one object in every forest, so an object two AD connectors import is one object read
    twice: a connector renamed in the connectors file (the old name's space stays in the store) or two connectors
    whose partitions overlap. Imported twice, the sync would project it twice and provision a second cloud account
    beside the one it has. Only connectors that imported something (their watermarks) are asked."""
    connection, connector = writer.connection, writer.connector
    imported = connection.execute(sa.select(watermark.c.connector).distinct()).scalars()
    others = sorted(name for name in imported if name != connector and connector_kind(name) == AD_KIND)
    if not others:
        return {}
    other = cs_object.alias("other")
    mine = sa.select(cs_object.c.anchor).where(
        cs_object.c.connector == connector, cs_object.c.anchor == other.c.anchor, cs_object.c.is_deleted == sa.false()
    )
    query = sa.select(other.c.anchor, other.c.connector).where(
        other.c.connector.in_(others),
        other.c.is_deleted == sa.false(),
        other.c.attrs_hash != "",  # imported, not a create the sync planned
        ~sa.exists(mine),
    )
    if anchors is None:
        return {anchor: name for anchor, name in connection.execute(query)}
    found: dict[str, str] = {}
    for start in range(0, len(anchors), 500):
        chunk = query.where(other.c.anchor.in_(anchors[start : start + 500]))
        found.update({anchor: name for anchor, name in connection.execute(chunk)})
    return found


def _held_elsewhere_error(obj: SourceObject, connector: str, other: str) -> ObjectDecodeError:
    return ObjectDecodeError(
        f"not imported into {connector!r}: the connector space {other!r} holds this object already (the same "
        f"objectGUID), so two AD connectors read it and the sync would give it a second metaverse object and a "
        f"second cloud account. Either {connector!r} is {other!r} renamed in the connectors file (give it its old "
        f"name back), or the partitions or OUs of the two connectors overlap (read each object with one connector). "
        f"An object moved between the two connectors' domains is imported here by this connector's next full import "
        f"after {other!r} has imported its move",
        dn=obj.dn,
        anchor=obj.anchor,
        code=HELD_ELSEWHERE,
    )


def _with_whole_values(obj: SourceObject, whole: SourceObject, decoder: EntryDecoder) -> SourceObject:
    """``obj`` (a delta entry) with its truncated attributes' values taken from ``whole`` (the object read whole)."""
    references = {name.lower(): values for name, values in whole.references.items()}
    attrs = {name.lower(): values for name, values in whole.attrs.items()}
    for name in obj.truncated:
        # The whole list replaces the stored one: values it lacks were removed (none left: the attribute cleared).
        obj.reference_adds.pop(name, None)
        obj.reference_removes.pop(name, None)
        if decoder.is_reference(name):
            obj.references[name] = references.get(name.lower(), [])
        else:
            obj.attrs[name] = attrs.get(name.lower(), [])
    obj.truncated = []
    return obj


def _truncated_error(obj: SourceObject, unable: DirectorySource | None) -> ObjectDecodeError:
    why = (
        f"the directory source {type(unable).__name__} cannot read objects whole"
        if unable is not None
        else "reading it whole by its objectGUID found no such object (deleted, or moved out of the partition, since)"
    )
    return ObjectDecodeError(
        f"DirSync sent only a window of the values of {', '.join(map(repr, obj.truncated))} (a ranged value list, more "
        f"values in further ranges) and {why}: the object is left unchanged rather than lose the values past the "
        "window; the next delta reads its changes again",
        dn=obj.dn,
        anchor=obj.anchor,
        code="truncated-values",
    )


class TruncatedValuesError(Exception):
    """A full import read only a window of an object's ranged value list: the import stops rather than truncate it."""


def _refuse_truncated(objects: list[SourceObject]) -> list[SourceObject]:
    """A full import's objects, none of them with truncated values: the source completes ranged value lists (the
    hook's ranged reads); one that did not would drop the values past the window and, read as the whole list, remove
    them. A per-object error would not do either: the object, not seen, would be deleted by the import."""
    for obj in objects:
        if obj.truncated and not obj.deleted:
            raise TruncatedValuesError(
                f"the directory source returned only a window of the values of "
                f"{', '.join(map(repr, obj.truncated))} of {obj.dn} ({obj.anchor}) (a ranged value list, more values "
                "in further ranges) in a full import; the import stops rather than truncate the object"
            )
    return objects


def _group_members(source: DirectorySource, group_dn: str) -> list[str]:
    reader = getattr(source, "group_members", None)
    if reader is None:
        raise ValueError(f"the directory source {type(source).__name__} cannot read the pilot group's members")
    return list(reader(group_dn))
