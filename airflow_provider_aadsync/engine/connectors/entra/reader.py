"""Entra ID import through Graph delta queries (users and groups) into the store, as one recorded run.

A full import is an initial delta round (no token) per resource; a delta import follows the saved delta links. The
tenant is reached through any :class:`GraphDeltaSource` (the EntraHook in production, fakes in unit tests).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_aadsync.engine.connectors.entra import roles
from airflow_provider_aadsync.engine.connectors.entra.extensions import ExtensionNames, extension_names
from airflow_provider_aadsync.engine.connectors.entra.schema import (
    BESIDE_DELTA,
    DEFAULT_GROUP_PROPERTIES,
    DEFAULT_USER_PROPERTIES,
    MANAGER,
    MEMBERS,
    NESTED_PROPERTIES,
    SOFT_DELETED,
    WRITEBACK_ENABLED,
)
from airflow_provider_aadsync.engine.runs.cs_writer import (
    ConnectorSpaceWriter,
    ObjectPage,
    held_values,
    serialize_attrs,
)
from airflow_provider_aadsync.engine.runs.import_attributes import with_attribute_list
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
from airflow_provider_aadsync.engine.runs.source import ObjectDecodeError, Reference, SourceObject

if TYPE_CHECKING:
    from airflow_provider_aadsync.engine.store import Store

#: Graph forgets delta state after 7 days for directory objects: an older delta link means a full import.
DELTA_LINK_LIFETIME = dt.timedelta(days=7)

_OBJECT_TYPES = {"users": "user", "groups": "group"}
#: Navigation properties: a delta query tracks them when its ``$select`` names them (``members@delta``,
#: ``manager@delta``; Graph ignores ``$expand`` on delta), so the connector space holds the members and managers the
#: export wrote and a rebuilt store does not write them again. A read by id cannot select one: it expands the manager,
#: and lists the members from the group's ``members`` collection.
_NAVIGATION = frozenset({MEMBERS, MANAGER})
_EXPAND_BY_ID = {"users": (MANAGER,), "groups": ()}
#: Objects compared and written per batch in a full import.
_WRITE_BATCH = 5_000
#: Batches read ahead while one is written.
_READ_AHEAD_BATCHES = 2


class GraphDeltaSource(Protocol):
    """What the import needs from a Graph connection."""

    def server_name(self) -> str: ...

    def delta_pages(self, resource: str, select: Sequence[str], delta_link: str | None) -> Iterator[dict[str, Any]]:
        """Yield the JSON pages of ``/{resource}/delta`` from the start, or from ``delta_link`` (which keeps the
        query it was made with).

        :raise WatermarkRejectedError: Graph no longer accepts ``delta_link``.
        """
        ...

    # Optional: ``deleted_pages(resource, select)`` yields the pages of ``/directory/deletedItems/microsoft.graph.*``
    # (the EntraHook has it); without it a full import does not keep soft-deleted groups.


def _check_anchor(resource: str, anchor: Any) -> str:
    """A Graph object id usable as an anchor: a string of at most 255 characters, valid Unicode, no control
    characters (ids are GUIDs; anything else is a broken or hostile answer, reported for that object)."""
    if not isinstance(anchor, str) or not anchor:
        raise ObjectDecodeError(
            f"a {resource} delta item has no usable id: {type(anchor).__name__}", code="missing-anchor"
        )
    if len(anchor) > 255 or not anchor.isprintable() or not _encodable(anchor):
        shown = anchor[:60].encode("utf-8", "backslashreplace").decode("utf-8")
        raise ObjectDecodeError(f"a {resource} delta item has an invalid id {shown!r}", code="invalid-anchor")
    return anchor


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_values(anchor: str, dn: str, attrs: dict[str, list[Any]]) -> None:
    """Refuse an object whose values cannot be stored as UTF-8 (an escaped unpaired surrogate in Graph's JSON)."""
    try:
        serialize_attrs(attrs)
    except UnicodeEncodeError:
        bad = sorted(name for name, values in attrs.items() if any(_unencodable(value) for value in values))
        raise ObjectDecodeError(
            f"attribute {', '.join(bad) or '?'} has a value that is not valid Unicode (an unpaired surrogate)",
            dn=dn,
            anchor=anchor,
            code="undecodable-value",
        ) from None


def _unencodable(value: Any) -> bool:
    if isinstance(value, str):
        return not _encodable(value)
    if isinstance(value, dict):
        return any(_unencodable(key) or _unencodable(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_unencodable(item) for item in value)
    return False


def graph_object(
    resource: str, item: dict[str, Any], *, partial: bool, names: ExtensionNames | None = None
) -> SourceObject:
    """One item of a delta page as a SourceObject; ``members@delta`` becomes member references; the sync app's
    directory extensions get their connector-space names (``names``)."""
    if names is not None:
        item = names.graph_item(item)
    anchor = item.get("id")
    if not anchor:
        raise ObjectDecodeError(f"a {resource} delta item has no id: {sorted(item)}", code="missing-anchor")
    anchor = _check_anchor(resource, anchor)
    obj = SourceObject(anchor=anchor, dn=f"{resource}/{anchor}", object_type=_OBJECT_TYPES[resource], partial=partial)
    if "@removed" in item:
        if resource == "groups" and partial and _reason(item) == "changed":
            # Soft-deleted (in deletedItems, restorable for 30 days): only Microsoft 365 groups are. The object stays
            # with a mark, so group writeback keeps its AD copy; a hard delete ("deleted") removes it.
            obj.attrs = {SOFT_DELETED: [True]}
            return obj
        obj.deleted = True
        return obj
    obj.attrs = graph_attrs(item)
    if resource == "groups" and partial:
        obj.attrs[SOFT_DELETED] = []  # present again (restored, or any change): no longer soft-deleted
    _check_values(anchor, obj.dn, obj.attrs)
    changes = item.get("members@delta") or []
    with _naming(anchor, obj.dn):
        for member in changes:
            _check_anchor(f"{resource} member", member.get("id") if isinstance(member, dict) else None)
        manager = manager_change(item)
    added: list[Reference] = [(member["id"], None) for member in changes if "@removed" not in member]
    removed: list[Reference] = [(member["id"], None) for member in changes if "@removed" in member]
    if partial:
        if added:
            obj.reference_adds[MEMBERS] = added
        if removed:
            obj.reference_removes[MEMBERS] = removed
    elif added:
        obj.references[MEMBERS] = added
    if manager is not None:
        target, removed_manager = manager
        if not removed_manager:
            obj.references[MANAGER] = [(target, None)]  # the whole value: any other manager held goes
        elif partial:
            obj.reference_removes[MANAGER] = [(target, None)]
    return obj


@contextmanager
def _naming(anchor: str, dn: str) -> Iterator[None]:
    """An :class:`ObjectDecodeError` raised inside names the object ``anchor`` when it names none (a member's or the
    manager's id that is not usable): the object is then read again whole by the next delta (runs/read_again.py)."""
    try:
        yield
    except ObjectDecodeError as error:
        if error.anchor is None:
            raise ObjectDecodeError(str(error), dn=dn, anchor=anchor, code=error.code) from None
        raise


def manager_change(item: dict[str, Any]) -> tuple[str, bool] | None:
    """A users delta item's ``manager@delta`` (Graph gives the last change only) as ``(manager id, removed)``; None
    when the item does not mention the manager (unchanged in a delta round, none in a full one)."""
    changes = item.get("manager@delta")
    if not isinstance(changes, list) or not changes:
        return None
    last = changes[-1]
    target = _check_anchor("users manager", last.get("id") if isinstance(last, dict) else None)
    return target, "@removed" in last


def _reason(item: dict[str, Any]) -> Any:
    removed = item.get("@removed")
    return removed.get("reason") if isinstance(removed, dict) else None


def graph_attrs(item: dict[str, Any]) -> dict[str, list[Any]]:
    """A delta item's properties as connector-space attributes: every value a list, null an empty one."""
    return {
        key: [] if value is None else list(value) if type(value) is list else [value]
        for key, value in flat_item(item).items()
        if "@" not in key  # @odata.type, members@delta
    }


def flat_item(item: dict[str, Any]) -> dict[str, Any]:
    """*item* with each object property of ``NESTED_PROPERTIES`` spread into ``parent.member`` attributes (the form
    the rules write them in); unset members (Graph answers all 15 extension attributes, unset ones null) drop out."""
    if not any(name in item for name in NESTED_PROPERTIES):
        return item
    flat = {key: value for key, value in item.items() if key not in NESTED_PROPERTIES}
    for parent in NESTED_PROPERTIES:
        for member, value in (item.get(parent) or {}).items():
            flat[f"{parent}.{member}"] = value
    return flat


def _user_page(
    items: list[dict[str, Any]], errors: ErrorSink, page: ObjectPage, names: ExtensionNames | None = None
) -> None:
    """Add a full round's user items to ``page`` as columns: no SourceObject per user (100,000s of them).

    Attributes without a value are left out, as the connector space stores them (see ``ObjectPage.from_objects``).
    """
    for item in items:
        if names is not None:
            item = names.graph_item(item)
        anchor = item.get("id")
        if not anchor:
            errors.add(ObjectDecodeError(f"a users delta item has no id: {sorted(item)}", code="missing-anchor"))
        elif "@removed" in item:
            try:
                page.remove(_check_anchor("users", anchor))  # a later occurrence wins over an earlier one
            except ObjectDecodeError as error:
                errors.add(error)
        else:
            attrs = {
                key: value if type(value) is list else [value]
                for key, value in flat_item(item).items()
                if value is not None and value != [] and "@" not in key
            }
            try:
                anchor = _check_anchor("users", anchor)
                try:
                    serialized = serialize_attrs(attrs)
                except UnicodeEncodeError:
                    _check_values(anchor, f"users/{anchor}", attrs)
                    raise
                with _naming(anchor, f"users/{anchor}"):
                    manager = manager_change(item)
            except ObjectDecodeError as error:
                errors.add(error)
                continue
            references = {MANAGER: [(manager[0], None)]} if manager and not manager[1] else None
            page.add(anchor, f"users/{anchor}", "user", serialized, references)


class EntraImportSteps:
    """Reads Entra ID for :func:`run_import`: partitions ``users`` and ``groups``, watermark = delta link."""

    watermark_name = "delta link"
    watermark_lifetime = DELTA_LINK_LIFETIME
    command = "import-entra"

    def __init__(
        self,
        source: GraphDeltaSource,
        user_properties: Sequence[str] = DEFAULT_USER_PROPERTIES,
        group_properties: Sequence[str] = DEFAULT_GROUP_PROPERTIES,
    ):
        self.source = source
        self.names = extension_names(source)
        beside = {name.casefold() for name in BESIDE_DELTA}
        users = [name for name in user_properties if name.casefold() not in beside]
        groups = [name for name in group_properties if name.casefold() not in beside]
        #: The rules read the per-group writeback switch: listed from Graph beta on each import (not in v1.0 delta).
        self.reads_writeback = any(name.casefold() == WRITEBACK_ENABLED.casefold() for name in group_properties)
        self.wanted = {"users": users, "groups": groups}
        self._select: dict[str, list[str]] | None = None
        #: This run's directory role holders (roles.py), None from a source that cannot list them.
        self._holders: roles.Holders | None = None

    @property
    def select(self) -> dict[str, list[str]]:
        """The ``$select`` of each resource, worked out inside the run (a Graph error is then the run's result):
        Graph names the sync app's directory extensions after the app (``extension_<appId>_<name>``) and refuses to
        select one that is not registered, so one the app lacks is left out: an import only learns what is
        registered and writes nothing to the tenant, even a definition (a staging cycle imports too); the export
        registers it before it first writes one."""
        if self._select is None:
            wanted = [*self.wanted["users"], *self.wanted["groups"]]
            self.names.ensure(self.source, wanted, register=False)  # type: ignore[arg-type]
            self._select = {
                resource: [self.names.to_graph(name) for name in names if self.names.is_registered(name)]
                for resource, names in self.wanted.items()
            }
        return self._select

    def partitions(self) -> Sequence[str]:
        return list(self.wanted)

    def describe_scope(self) -> str:
        return f"users and groups of the tenant at {self.source.server_name()}"

    def server_name(self) -> str | None:
        return self.source.server_name()

    def full(self, writer: ConnectorSpaceWriter, errors: ErrorSink) -> Mapping[str, bytes]:
        writer.begin_full()
        failed_before = len(errors)
        links: dict[str, bytes] = {}
        self._holders = roles.read_holders(self.source)  # before the rounds: the objects carry their roles
        # Switches this import does not read (the rules do not) are kept as held: the rounds replace each group whole,
        # and a group disabled for writeback would read as enabled to a later sync with the writeback rules.
        switches = [] if self.reads_writeback else held_values(writer, WRITEBACK_ENABLED, "group")
        # Reading, decoding and shaping pages runs ahead in another thread while this one writes the store
        # (SQLite releases the GIL while it works); see bench/README.md for the figures.
        for batch, links_so_far in prefetch(self._full_batches(errors), _READ_AHEAD_BATCHES):
            writer.write_full_columns(batch)
            links = links_so_far
        writer.keep_in_full(self._soft_deleted_groups(errors))
        self._writeback_switches(writer, errors)
        writer.update_known(switches)
        writer.finish_full()
        links = _require_links(links, self.wanted)
        if self._holders is not None:
            links[roles.HOLDERS_ROW] = roles.holders_row(self._holders)
        if self._can_read_again:  # what failed here is read again whole by the next delta (runs/read_again.py)
            failed = errors.errors[failed_before:]
            for resource in self.wanted:
                links.update(full_import_list(resource, [e for e in failed if _of_resource(e, resource)]))
        return links

    @property
    def _can_read_again(self) -> bool:
        """Whether the source reads one user or group whole by id (the hook does): failed objects are then read
        again by each delta instead of the delta keeping its resource's old link."""
        return all(getattr(self.source, name, None) is not None for name in ("get_object", "member_ids"))

    def _read_again(
        self, resource: str, anchors: Sequence[str], *, writer: ConnectorSpaceWriter, errors: ErrorSink
    ) -> None:
        """Read ``anchors`` (objects a run could not apply) whole by id and apply each as a full round's item would:
        every property, the manager, every member replaced. One Graph no longer has is left to the delta change that
        removed it; one that fails again, or whose read Graph refuses, is a per-object error of this run."""
        select = [name for name in self.select[resource] if name not in _NAVIGATION]
        objects = []
        for anchor, item in self._read_by_id(resource, anchors, select, errors).items():
            if item is None:
                continue
            try:
                shaped = roles.with_roles(_as_round_item(self.source, resource, anchor, item), self._holders)
            except ObjectDecodeError as error:  # Graph refused the group's members: it stays listed
                errors.add(error)
                continue
            objects += _objects(resource, [shaped], errors, partial=False, names=self.names)
        writer.write_whole(objects)

    def _read_by_id(
        self, resource: str, anchors: Sequence[str], select: Sequence[str], errors: ErrorSink
    ) -> dict[str, dict[str, Any] | None]:
        """Each object read whole by id (None: Graph has no such object); a read Graph refused is a per-object error,
        and the object stays listed. Batched (``get_objects``, 20 a call) where the source can."""
        expand = _EXPAND_BY_ID[resource]
        batched = getattr(self.source, "get_objects", None)
        if batched is not None:
            found, refused = batched(resource, anchors, select, expand)
            for error in refused:
                errors.add(error)
            return found
        found = {}
        for anchor in anchors:
            try:
                found[anchor] = self.source.get_object(resource, anchor, select, expand)  # type: ignore[attr-defined]
            except ObjectDecodeError as error:
                errors.add(error)
        return found

    def _writeback_switches(self, writer: ConnectorSpaceWriter, errors: ErrorSink) -> None:
        """Each Microsoft 365 group's writebackConfiguration.isEnabled (absent when null: Graph's default, enabled),
        when the rules read it: Graph has it in beta only, and v1.0 delta never reports its changes."""
        pages = getattr(self.source, "writeback_configurations", None)
        if not self.reads_writeback or pages is None:
            return
        found = []
        for page in pages():
            for item in page.get("value") or []:
                try:
                    anchor = _check_anchor("group", item.get("id"))
                except ObjectDecodeError as error:
                    errors.add(error)
                    continue
                enabled = (item.get("writebackConfiguration") or {}).get("isEnabled")
                attrs: dict[str, list[Any]] = {WRITEBACK_ENABLED: [] if enabled is None else [bool(enabled)]}
                found.append(SourceObject(anchor, f"groups/{anchor}", "group", attrs=attrs, partial=True))
        writer.update_known(found)

    def _soft_deleted_groups(self, errors: ErrorSink) -> list[SourceObject]:
        """The soft-deleted groups (``/directory/deletedItems/microsoft.graph.group``), which a full delta round does
        not return: the import keeps the ones it holds, marked, instead of deleting them (and their AD copies)."""
        pages = getattr(self.source, "deleted_pages", None)
        if pages is None:
            return []
        found = []
        for page in pages("groups", ["id"]):
            for item in page.get("value") or []:
                try:
                    anchor = _check_anchor("deleted group", item.get("id"))
                except ObjectDecodeError as error:
                    errors.add(error)
                    continue
                attrs: dict[str, list[Any]] = {SOFT_DELETED: [True]}
                found.append(SourceObject(anchor, f"groups/{anchor}", "group", attrs=attrs, partial=True))
        return found

    def _full_batches(self, errors: ErrorSink) -> Iterator[tuple[ObjectPage, dict[str, bytes]]]:
        """Both delta rounds from the start, as batches of columns to write, each with the delta links so far.

        Groups come first: their batch is only complete at the end of their round (a group's members can be split
        across pages), and writing it while the users are read keeps it out of the import's tail.
        """
        links: dict[str, bytes] = {}
        groups: dict[str, SourceObject] = {}
        for page in self.source.delta_pages("groups", self.select["groups"], None):
            for item in page["value"]:
                item = roles.with_roles(item, self._holders)
                for obj in _objects("groups", [item], errors, partial=False, names=self.names):
                    _gather(groups, obj, item)
            links["groups"] = _delta_link(page, links.get("groups"))
        gathered = list(groups.values())
        for start in range(0, len(gathered), _WRITE_BATCH):
            yield ObjectPage.from_objects(gathered[start : start + _WRITE_BATCH]), dict(links)
        users = ObjectPage()
        for page in self.source.delta_pages("users", self.select["users"], None):
            _user_page([roles.with_roles(item, self._holders) for item in page["value"]], errors, users, self.names)
            links["users"] = _delta_link(page, links.get("users"))
            if len(users.anchors) >= _WRITE_BATCH:  # Graph pages are small (200): compare and write in bigger batches
                yield users, dict(links)
                users = ObjectPage()
        yield users, dict(links)

    def delta(self, writer: ConnectorSpaceWriter, errors: ErrorSink, saved: Mapping[str, bytes]) -> Mapping[str, bytes]:
        """The changes since the saved delta links, and the objects that failed before read again whole; the new
        link of each resource, with the objects that failed in it (``retry <resource>``, runs/read_again.py).

        A link moved past a failed item would bring the object again only when it next changes, and a group's
        ``members@delta`` then only with the member changes made since: those of the failed item would be lost for
        good. So each delta reads the failed objects again whole by id until they apply. A source that cannot read
        objects by id, or an item without a usable id, keeps the resource's old link instead (left out here, its age
        kept too): the next delta reads its changes again from there."""
        links: dict[str, bytes] = {}
        kept = []
        self._holders = roles.read_holders(self.source)  # an object read again whole carries its roles
        for resource, select in self.select.items():
            failed_before = len(errors)
            for page in self.source.delta_pages(resource, select, saved[resource].decode()):
                writer.write_delta_page(_objects(resource, page["value"], errors, partial=True, names=self.names))
                links[resource] = _delta_link(page, links.get(resource))
            _require_links(links, [resource])
            read_again = partial(self._read_again, resource, writer=writer, errors=errors)
            listed = settle_delta_partition(
                writer, errors, resource, failed_before, "delta link", read_again if self._can_read_again else None
            )
            if listed is None:
                del links[resource]
                kept.append(resource)
                continue
            links.update(listed)
        self._writeback_switches(writer, errors)
        links = _require_links(links, [resource for resource in self.wanted if resource not in kept])
        if self._holders is not None:
            writer.counters["role_holders_changed"] += roles.apply_changes(writer, self._holders)
            links[roles.HOLDERS_ROW] = roles.holders_row(self._holders)
        return links


def _of_resource(error: Mapping[str, Any], resource: str) -> bool:
    """Whether a per-object error is of an object of ``resource`` (its DN is ``{resource}/{id}``)."""
    return str(error.get("dn") or "").startswith(f"{resource}/")


def _as_round_item(source: Any, resource: str, anchor: str, item: dict[str, Any]) -> dict[str, Any]:
    """Object ``anchor`` read by id in the shape of a full delta round's item: a user's expanded ``manager`` as
    ``manager@delta``, a group's members (read from its ``members`` collection) as ``members@delta``."""
    item = dict(item)
    manager = item.pop(MANAGER, None)
    if isinstance(manager, dict):
        item["manager@delta"] = [manager]
    if resource == "groups":
        item["members@delta"] = [{"id": member} for member in source.member_ids(anchor)]
    return item


def _objects(
    resource: str, items: list[dict[str, Any]], errors: ErrorSink, *, partial: bool, names: ExtensionNames
) -> list[SourceObject]:
    objects = []
    for item in items:
        try:
            objects.append(graph_object(resource, item, partial=partial, names=names))
        except ObjectDecodeError as error:
            errors.add(error)
    return objects


def _gather(groups: dict[str, SourceObject], obj: SourceObject, item: dict[str, Any]) -> None:
    if obj.deleted:
        groups.pop(obj.anchor, None)
        return
    known = groups.setdefault(obj.anchor, obj)
    if known is obj:
        return
    known.attrs.update(obj.attrs)
    members = dict.fromkeys(known.references.get(MEMBERS, []))
    members.update(dict.fromkeys(obj.references.get(MEMBERS, [])))
    for member in item.get("members@delta") or []:
        if "@removed" in member:
            members.pop((member["id"], None), None)
    known.references[MEMBERS] = list(members)


def _delta_link(page: dict[str, Any], previous: bytes | None) -> bytes | None:
    link = page.get("@odata.deltaLink")
    return link.encode() if link else previous


def _require_links(links: Mapping[str, bytes | None], select: Iterable[str]) -> dict[str, bytes]:
    missing = [resource for resource in select if not links.get(resource)]
    if missing:
        raise RuntimeError(f"Graph ended the delta round of {', '.join(missing)} without an @odata.deltaLink")
    return {resource: link for resource, link in links.items() if link}


def import_entra(
    source: GraphDeltaSource,
    store: Store,
    *,
    connector: str = "entra",
    mode: Mode = "delta",
    user_properties: Sequence[str] = DEFAULT_USER_PROPERTIES,
    group_properties: Sequence[str] = DEFAULT_GROUP_PROPERTIES,
    lock_holder: str | None = None,
    error_limit: int = ERROR_LIMIT,
    guard: ImportGuard | None = None,
) -> ImportResult:
    """Import Entra ID users and groups into connector space ``connector``.

    ``mode="delta"`` follows the saved delta links; without them, with one older than 7 days, or when Graph rejects
    one (``syncStateNotFound``, 410 Gone), the run becomes a full import and says why. ``guard`` stops an import
    that would remove too much of the connector space (see ``engine.runs.import_guard``).
    """
    # The $select lists are saved with the delta links (which keep the $select they were made with): a changed
    # list makes the next delta a full import (so does ``manager`` in the users list, once: before, the links were
    # made with ``$expand=manager``, which Graph ignores on delta).
    steps = with_attribute_list(
        EntraImportSteps(source, user_properties, group_properties), user_properties, group_properties
    )
    return run_import(
        store, steps, connector=connector, mode=mode, lock_holder=lock_holder, error_limit=error_limit, guard=guard
    )
