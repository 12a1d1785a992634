"""Active Directory import (paged full read or DirSync delta) into the store, as one recorded run.

The directory is reached through any object satisfying :class:`DirectorySource` (the ActiveDirectoryHook in
production, fakes in unit tests), so this module stays free of Airflow and of network code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from airflow_provider_aadsync.engine.connectors.ad.entries import EntryDecoder
from airflow_provider_aadsync.engine.dn import DnError, DnScope
from airflow_provider_aadsync.engine.runs.cs_writer import ConnectorSpaceWriter, ObjectPage
from airflow_provider_aadsync.engine.runs.import_attributes import with_attribute_list
from airflow_provider_aadsync.engine.runs.import_guard import ImportGuard
from airflow_provider_aadsync.engine.runs.import_run import ERROR_LIMIT, ErrorSink, ImportResult, Mode, run_import
from airflow_provider_aadsync.engine.runs.prefetch import prefetch
from airflow_provider_aadsync.engine.runs.source import ObjectDecodeError, SourceObject

if TYPE_CHECKING:
    from airflow_provider_aadsync.engine.store import Store

#: A DirSync cookie older than AD's default tombstone lifetime may have missed deletions: import fully instead.
TOMBSTONE_LIFETIME = dt.timedelta(days=180)

RawEntry = tuple[str, dict[str, list[bytes]]]

__all__ = ["TOMBSTONE_LIFETIME", "ADImportSteps", "DirectorySource", "ImportResult", "import_active_directory"]


class DirectorySource(Protocol):
    """What the import needs from a directory connection."""

    def naming_context(self) -> str: ...

    def server_name(self) -> str: ...

    def full_import_pages(self, attributes: Sequence[str]) -> Iterator[list[RawEntry]]: ...

    def dirsync_watermark(self) -> bytes: ...

    def dirsync_pages(self, attributes: Sequence[str], cookie: bytes) -> Iterator[tuple[list[RawEntry], bytes]]: ...


class ADImportSteps:
    """Reads AD for :func:`run_import`: one partition (the naming context), watermark = DirSync cookie."""

    watermark_name = "DirSync cookie"
    watermark_lifetime = TOMBSTONE_LIFETIME
    command = "import-ad"

    def __init__(self, source: DirectorySource, attributes: Sequence[str], decoder: EntryDecoder, scope_dn: str | None):
        self.source = source
        self.attributes = attributes
        self.decoder = decoder
        self.partition = source.naming_context()
        # The DC returns DNs in its own spelling, whatever spelling the base DN was configured in: compare RDN by
        # RDN (engine.dn), never as text.
        try:
            self.scope = DnScope(scope_dn or self.partition)
        except DnError as error:
            raise ValueError(f"the import's base DN is not usable: {error}") from None
        #: Anchors of the base entry read by a full import (the scope itself, not an object in it).
        self.base_anchors: set[str] = set()

    def partitions(self) -> Sequence[str]:
        return [self.partition]

    def describe_scope(self) -> str:
        return f"base DN {self.scope.base_text!r} in naming context {self.partition!r} on {self.source.server_name()}"

    def server_name(self) -> str | None:
        return self.source.server_name()

    def full(self, writer: ConnectorSpaceWriter, errors: ErrorSink) -> Mapping[str, bytes]:
        # Take the watermark before reading: changes made while we page are seen again by the next delta.
        cookie = self.source.dirsync_watermark()
        writer.begin_full()
        # Pages are read, decoded and shaped ahead in another thread while this one writes the store.
        pages = (
            ObjectPage.from_objects(self._decode(entries, errors, partial=False))
            for entries in self.source.full_import_pages(self.attributes)
        )
        self.base_anchors = set()
        for page in prefetch(pages):
            writer.write_full_columns(page)
        # The base OU itself is read with its subtree; alone, it means the scope saw nothing.
        writer.finish_full(scope_roots=self.base_anchors)
        return {self.partition: cookie}

    def delta(self, writer: ConnectorSpaceWriter, errors: ErrorSink, saved: Mapping[str, bytes]) -> Mapping[str, bytes]:
        cookie = saved[self.partition]
        for entries, page_cookie in self.source.dirsync_pages(self.attributes, cookie):
            writer.write_delta_page(self._decode(entries, errors, partial=True))
            cookie = page_cookie
        return {self.partition: cookie}

    def _decode(self, entries: list[RawEntry], errors: ErrorSink, *, partial: bool) -> list[SourceObject]:
        objects = []
        for dn, raw in entries:
            try:
                obj = self.decoder.decode(dn, raw, partial=partial)
            except ObjectDecodeError as error:
                errors.add(error)
                continue
            if obj is None:
                continue
            # DirSync reads the whole naming context: scope by DN here. Tombstones live elsewhere and are kept; in a
            # delta, an object now outside the scope was moved out of it, which for the connector space is a delete.
            try:
                in_scope = obj.deleted or self.scope.contains(obj.dn)
                if in_scope and not partial and self.scope.is_base(obj.dn):
                    self.base_anchors.add(obj.anchor)
            except DnError as error:  # an object the run cannot place: an error for it, nothing changed for it
                errors.add(ObjectDecodeError(str(error), dn=obj.dn, anchor=obj.anchor, code="invalid-dn"))
                continue
            if not in_scope:
                if not partial:
                    continue
                obj.deleted = True
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
    lock_holder: str | None = None,
    error_limit: int = ERROR_LIMIT,
    guard: ImportGuard | None = None,
) -> ImportResult:
    """Import the directory into connector space ``connector``.

    ``mode="delta"`` uses the saved DirSync cookie; without one, with one older than the tombstone lifetime, or
    when the DC rejects it, the run becomes a full import and says why. Rows and the new cookie commit in one
    transaction: a failed import keeps the old cookie and leaves the connector space untouched. ``guard`` stops an
    import that would remove too much of the connector space (see ``engine.runs.import_guard``).
    """
    # The attribute list is saved with the cookie: a changed list makes the next delta a full import.
    steps = with_attribute_list(ADImportSteps(source, attributes, decoder or EntryDecoder(), scope_dn), attributes)
    return run_import(
        store, steps, connector=connector, mode=mode, lock_holder=lock_holder, error_limit=error_limit, guard=guard
    )
