"""Cutover preflight: before any write to Entra ID, how each in-scope AD user and group will meet the tenant.

It reads the store after the imports and the AD sync (the metaverse persons the AD rules made, and the Entra connector
space the import filled) and writes nothing. Each person gets one row: ``hard match`` (a cloud user holds its
sourceAnchor as onPremisesImmutableId), ``soft match`` (the cloud user's mail against the person's primary SMTP
address, else on userPrincipalName, in the product's order, for cloud users without an ImmutableId; off with
BlockSoftMatch) or ``create``; and the conflicts the sync would report per object: a cloud user held by another engine
(onPremisesSyncEnabled), holding an administrator role (the import's directoryRoles: never matched, as in Entra ID),
holding another ImmutableId, made in the cloud and hard matched with BlockCloudObjectTakeover on, or matched by two AD
users. This mirrors the shipped "In from AAD - User Join" rule; the sync stays the authority.

Groups ("In from AAD - Group Join") have no ImmutableId in Graph: ``hard match`` is a cloud group holding the group's
sourceAnchor in the sync app's directory extension (``extension_aadsyncSourceAnchor``), ``soft match`` one whose mail
(its primary SMTP address) is the group's primary SMTP address and which has no anchor; another anchor, another engine
and two AD groups for one cloud group are conflicts, as for users. A matched mail-enabled security group or distribution
group says so (``read-only in Graph``): it is joined (never created twice) but Graph writes nothing to it, neither the
anchor stamp nor names nor members, so after a lost store it is matched on its mail again; it is managed in Exchange
Online. That is also why a group to create is noted (``READ_ONLY_NAMESAKE``) when such a group that nothing matches
has its displayName or mailNickname: adopted before on a mail its AD group has lost since, it would get a second group
beside it after a lost store.

A user whose sourceAnchor comes from an mS-DS-ConsistencyGuid that is not its objectGUID, where no cloud user holds that
anchor yet, is noted (``FOREIGN_CONSISTENCY_GUID``): Entra Connect's wizard takes a ConsistencyGuid set on any object as
"being used by other applications" and anchors on objectGUID instead; the shipped rules anchor on it (a migrated user
keeps its cloud account that way), so an administrator checks that no other application owns the values before the
first export stamps them as ImmutableIds, which never move."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.converters import guid_bytes
from airflow_provider_aadsync.engine.connectors.entra.schema import DIRECTORY_ROLES, read_only_in_graph
from airflow_provider_aadsync.engine.connectors.kinds import connector_kind
from airflow_provider_aadsync.engine.store import Store, cs_object, link, mv_object

HARD = "hard match"
SOFT = "soft match"
CREATE = "create"
CONFLICT = "conflict"

HELD = "held by another engine (onPremisesSyncEnabled): turn off the other engine first"
#: The conflict of a cloud object holding a directory role (the shipped join rules' ``admin_roles``), with its roles.
ADMIN_ROLE = "holds the administrator role {roles}: never matched; remove its role assignments to adopt it"
OTHER_ANCHOR = "cloud user holds another ImmutableId: never overwritten"
SHARED = "two AD users match one cloud user"
#: A hard match BlockCloudObjectTakeover refuses (the sync's invalid-hard-match): no engine made or adopted the user.
TAKEOVER = "cloud-created user holds this ImmutableId: BlockCloudObjectTakeover refuses its hard match"
GROUP_OTHER_ANCHOR = "cloud group holds another anchor in extension_aadsyncSourceAnchor: never overwritten"
GROUP_SHARED = "two AD groups match one cloud group"
#: The note of a group matched to a mail-enabled security group or distribution group ("soft match (mail), read-only
#: in Graph"): joined, but Graph writes none of its changes (the export counts them in one run notice).
READ_ONLY_IN_GRAPH = (
    "read-only in Graph: a mail-enabled security group or distribution group, managed in Exchange Online"
)
#: The note of a user anchored on an mS-DS-ConsistencyGuid unlike its objectGUID that no cloud user holds yet.
FOREIGN_CONSISTENCY_GUID = (
    "anchor from an mS-DS-ConsistencyGuid that is not the user's objectGUID: make sure no other application owns "
    "the attribute (Entra Connect's wizard then anchors on objectGUID); the first export makes it the ImmutableId"
)
#: The note of a group to create while an unmatched read-only cloud group has its name or mailNickname (the cloud
#: group's id follows): the one case where a lost store creates a group a second time. Graph cannot stamp the anchor
#: on a mail-enabled group, so a rebuilt store finds one adopted earlier only by its mail; an AD group that lost its
#: mail since is then created anew beside it.
READ_ONLY_NAMESAKE = (
    "a create, while a mail-enabled group that Graph cannot stamp and nothing matches has this group's "
    "{matched_on} ({cloud_id}): if it is this group, matched before on a mail the AD group no longer has, give the AD "
    "group its mail back before the first export, or a second group is created beside it"
)
_NAMESAKE_START = READ_ONLY_NAMESAKE.partition("{")[0]
#: The attributes READ_ONLY_NAMESAKE compares, in the order it tries them.
_NAME_ATTRIBUTES = ("displayName", "mailNickname")
#: The connector-space attribute of the sync app's directory extension that holds the anchor (extensions.py).
ANCHOR_EXTENSION = "extension_aadsyncSourceAnchor"


@dataclass(frozen=True)
class PreflightRow:
    """How one in-scope AD user meets the tenant."""

    ad_dn: str
    source_anchor: str
    user_principal_name: str
    outcome: str
    matched_on: str = ""
    cloud_id: str = ""
    cloud_upn: str = ""
    conflict: str = ""
    #: ``user`` or ``group`` (for groups, ``user_principal_name`` and ``cloud_upn`` hold the mail).
    object_type: str = "user"
    #: What else the admin should know of the match (READ_ONLY_IN_GRAPH: the cloud group is read-only in Graph;
    #: FOREIGN_CONSISTENCY_GUID: the user's anchor is an mS-DS-ConsistencyGuid another application may own).
    note: str = ""


@dataclass(frozen=True)
class _Cloud:
    id: str
    upn: str
    mail: str
    immutable_id: str
    held: bool
    read_only: bool = False
    #: The directory roles it holds (the import's ``directoryRoles``): a match is refused, as the sync refuses it.
    roles: tuple[str, ...] = ()
    #: A sync engine made or adopted it (onPremisesSyncEnabled set, or this engine's anchor stamp): its hard match
    #: stands with BlockCloudObjectTakeover on (the shipped rule's hard_match_proof).
    synced: bool = True
    #: A group's values of _NAME_ATTRIBUTES (READ_ONLY_NAMESAKE).
    names: tuple[str, ...] = ()


def _first(values: Any) -> str:
    if isinstance(values, list):
        return str(values[0]) if values else ""
    return "" if values is None else str(values)


def _cloud_users(store: Store, connector: str, object_type: str = "user") -> list[_Cloud]:
    """Cloud users (or groups: their anchor from the directory extension, their mail as the UPN column)."""
    query = sa.select(cs_object.c.anchor, cs_object.c.attrs).where(
        cs_object.c.connector == connector, cs_object.c.object_type == object_type, cs_object.c.is_deleted.is_(False)
    )
    with store.engine.connect() as connection:
        rows = connection.execute(query).all()
    users = []
    for anchor, text in rows:
        attrs = json.loads(text)
        group = object_type == "group"
        users.append(
            _Cloud(
                id=_first(attrs.get("id")) or anchor,
                upn=_first(attrs.get("mail" if group else "userPrincipalName")),
                mail=_first(attrs.get("mail")),
                immutable_id=_first(attrs.get(ANCHOR_EXTENSION if group else "onPremisesImmutableId")),
                held=_first(attrs.get("onPremisesSyncEnabled")).casefold() == "true",
                read_only=group and read_only_in_graph(attrs),
                roles=tuple(str(role) for role in attrs.get(DIRECTORY_ROLES) or []),
                synced=bool(_first(attrs.get("onPremisesSyncEnabled")) or _first(attrs.get(ANCHOR_EXTENSION))),
                names=_names(attrs) if group else (),
            )
        )
    return users


def _names(attrs: dict[str, Any]) -> tuple[str, ...]:
    """An object's values of _NAME_ATTRIBUTES (empty text where it has none), as READ_ONLY_NAMESAKE compares them."""
    return tuple(_first(attrs.get(name)) for name in _NAME_ATTRIBUTES)


def _primary_smtp(attrs: dict[str, Any]) -> str:
    """The address the shipped join rules soft match a cloud object's mail on: ``primarySmtpAddress`` (the AD
    object's SMTP: proxy address, else its mail); ``mail`` for a metaverse made by rules without that flow."""
    return _first(attrs.get("primarySmtpAddress")) if "primarySmtpAddress" in attrs else _first(attrs.get("mail"))


def _ad_persons(store: Store, mv_type: str = "person") -> list[tuple[str, dict[str, Any], str]]:
    """(AD DN, metaverse attributes, AD attributes as stored JSON, decoded by who reads them) of every person (or
    group) an AD connector projected, cloud-filtered ones left out."""
    query = (
        sa.select(link.c.connector, cs_object.c.dn, mv_object.c.attrs, cs_object.c.attrs)
        .join(mv_object, mv_object.c.id == link.c.mv_id)
        .join(cs_object, sa.and_(cs_object.c.connector == link.c.connector, cs_object.c.anchor == link.c.anchor))
        .where(link.c.link_type == "projection", mv_object.c.object_type == mv_type)
        .order_by(cs_object.c.dn)
    )
    with store.engine.connect() as connection:
        rows = connection.execute(query).all()
    persons = []
    for connector, dn, text, ad_text in rows:
        attrs = json.loads(text)
        if connector_kind(connector) != "ad" or _first(attrs.get("cloudFiltered")).casefold() == "true":
            continue
        persons.append((dn, attrs, ad_text))
    return persons


def _foreign_consistency_guid(anchor: str, ad_attrs: dict[str, Any]) -> bool:
    """The anchor is the user's mS-DS-ConsistencyGuid, which is not its objectGUID (no engine wrote it from that):
    its bytes as the AD connector types them (``guid_bytes``), in base64 as the shipped rule's ConvertToBase64."""
    consistency, object_guid = _first(ad_attrs.get("mS-DS-ConsistencyGuid")), _first(ad_attrs.get("objectGUID"))
    if not anchor or not consistency or not object_guid or consistency.casefold() == object_guid.casefold():
        return False
    raw = guid_bytes(consistency)  # not a GUID's text: left as it is, not what the shipped rule anchors on
    return isinstance(raw, bytes) and anchor == base64.b64encode(raw).decode("ascii")


def preflight(
    store: Store,
    *,
    entra_connector: str = "entra",
    block_soft_match: bool = False,
    block_cloud_object_takeover: bool = False,
) -> list[PreflightRow]:
    """One row per in-scope AD user, in DN order, then one per in-scope AD group (reads the store only)."""
    users = _user_rows(store, entra_connector, block_soft_match, block_cloud_object_takeover)
    return users + group_preflight(store, entra_connector=entra_connector, block_soft_match=block_soft_match)


def group_preflight(
    store: Store, *, entra_connector: str = "entra", block_soft_match: bool = False
) -> list[PreflightRow]:
    """One row per in-scope AD group, in DN order: hard match on the anchor extension, soft match on mail."""
    cloud = _cloud_users(store, entra_connector, "group")
    by_anchor = {c.immutable_id: c for c in cloud if c.immutable_id}
    by_mail: dict[str, list[_Cloud]] = defaultdict(list)
    for group in cloud:
        if group.mail:
            by_mail[group.mail.casefold()].append(group)
    rows: list[PreflightRow] = []
    names: dict[str, tuple[str, ...]] = {}
    for dn, attrs, _ in _ad_persons(store, "group"):
        anchor, mail = _first(attrs.get("sourceAnchor")), _primary_smtp(attrs)
        names[dn] = _names(attrs)
        base = {"ad_dn": dn, "source_anchor": anchor, "user_principal_name": mail, "object_type": "group"}
        hard = by_anchor.get(anchor) if anchor else None
        if hard is not None:
            rows.append(_row(base, HARD, ANCHOR_EXTENSION, hard))
            continue
        candidates = by_mail.get(mail.casefold(), []) if mail and not block_soft_match else []
        if len(candidates) != 1:
            rows.append(PreflightRow(**base, outcome=CREATE))
            continue
        found = candidates[0]
        rows.append(_row(base, SOFT, "mail", found, GROUP_OTHER_ANCHOR if found.immutable_id else ""))
    return _shared(_read_only_namesakes(rows, cloud, names), GROUP_SHARED)


def _read_only_namesakes(
    rows: list[PreflightRow], cloud: list[_Cloud], names: dict[str, tuple[str, ...]]
) -> list[PreflightRow]:
    """Each group to create gets READ_ONLY_NAMESAKE when a read-only cloud group that no row matches has its
    displayName or mailNickname (``names``: per AD DN). A hint, not a match: a name is not an anchor."""
    matched = {row.cloud_id for row in rows if row.cloud_id}
    index: dict[tuple[str, str], _Cloud] = {}
    for group in cloud:
        if group.read_only and group.id not in matched:
            for attribute, value in zip(_NAME_ATTRIBUTES, group.names, strict=True):
                if value:
                    index.setdefault((attribute, value.casefold()), group)
    if not index:
        return rows
    hinted = []
    for row in rows:
        if row.outcome == CREATE:
            for attribute, value in zip(_NAME_ATTRIBUTES, names[row.ad_dn], strict=True):
                namesake = index.get((attribute, value.casefold())) if value else None
                if namesake is not None:
                    note = READ_ONLY_NAMESAKE.format(matched_on=attribute, cloud_id=namesake.id)
                    row = PreflightRow(**{**asdict(row), "note": note})
                    break
        hinted.append(row)
    return hinted


def _user_rows(store: Store, entra_connector: str, block_soft_match: bool, block_takeover: bool) -> list[PreflightRow]:
    cloud = _cloud_users(store, entra_connector)
    by_anchor = {c.immutable_id: c for c in cloud if c.immutable_id}
    by_upn: dict[str, list[_Cloud]] = defaultdict(list)
    by_mail: dict[str, list[_Cloud]] = defaultdict(list)
    for user in cloud:
        if user.upn:
            by_upn[user.upn.casefold()].append(user)
        if user.mail:
            by_mail[user.mail.casefold()].append(user)
    rows: list[PreflightRow] = []
    for dn, attrs, ad_text in _ad_persons(store):
        anchor, upn = _first(attrs.get("sourceAnchor")), _first(attrs.get("userPrincipalName"))
        mail = _primary_smtp(attrs)
        base = {"ad_dn": dn, "source_anchor": anchor, "user_principal_name": upn}
        # A cloud user holding the anchor already (a hard match) was given it by an engine or a migration.
        note = FOREIGN_CONSISTENCY_GUID if _foreign_consistency_guid(anchor, json.loads(ad_text)) else ""
        hard = by_anchor.get(anchor) if anchor else None
        if hard is not None:
            refused = TAKEOVER if block_takeover and not hard.synced else ""
            rows.append(_row(base, HARD, "onPremisesImmutableId", hard, refused))
            continue
        found = None
        if not block_soft_match:
            for attribute, value, index in (("mail", mail, by_mail), ("userPrincipalName", upn, by_upn)):
                candidates = index.get(value.casefold(), []) if value else []
                if len(candidates) == 1:
                    found = (attribute, candidates[0])
                    break
        if found is None:
            rows.append(PreflightRow(**base, outcome=CREATE, note=note))
            continue
        attribute, user = found
        conflict = OTHER_ANCHOR if user.immutable_id else ""
        rows.append(_row(base, SOFT, attribute, user, conflict, note))
    return _shared(rows)


def _row(
    base: dict[str, str], outcome: str, matched_on: str, user: _Cloud, conflict: str = "", note: str = ""
) -> PreflightRow:
    if user.held:
        conflict = HELD
    elif user.roles:
        conflict = ADMIN_ROLE.format(roles=", ".join(user.roles))
    return PreflightRow(
        **base,
        outcome=CONFLICT if conflict else outcome,
        matched_on=matched_on,
        cloud_id=user.id,
        cloud_upn=user.upn,
        conflict=conflict,
        note=READ_ONLY_IN_GRAPH if user.read_only else note,
    )


def _shared(rows: list[PreflightRow], shared: str = SHARED) -> list[PreflightRow]:
    """A cloud user matched by two AD users is a conflict on each of them (the sync joins neither twice)."""
    counts = Counter(row.cloud_id for row in rows if row.cloud_id)
    return [
        PreflightRow(**{**asdict(row), "outcome": CONFLICT, "conflict": row.conflict or shared})
        if row.cloud_id and counts[row.cloud_id] > 1
        else row
        for row in rows
    ]


def counts(rows: Iterable[PreflightRow]) -> dict[str, int]:
    """Rows per outcome, soft matches per attribute and conflicts per kind: the summary shown first."""
    found: Counter[str] = Counter()
    for row in rows:
        found[row.outcome if row.object_type == "user" else f"group {row.outcome}"] += 1
        if row.outcome == SOFT:
            found[f"soft match on {row.matched_on}"] += 1
        if row.conflict:
            found[f"conflict: {row.conflict}"] += 1
        if row.note == READ_ONLY_IN_GRAPH and not row.conflict:
            found["group read-only in Graph"] += 1
        if row.note == FOREIGN_CONSISTENCY_GUID and not row.conflict:
            found["anchor from an mS-DS-ConsistencyGuid unlike its objectGUID"] += 1
        if row.note.startswith(_NAMESAKE_START):
            found["group create beside an unmatched read-only group of its name"] += 1
    return dict(found)


FIELDS = tuple(PreflightRow.__dataclass_fields__)


def render_text(rows: Sequence[PreflightRow]) -> str:
    lines = ["Cutover preflight (nothing was written)", ""]
    summary = counts(rows)
    lines += [f"  {name}: {summary[name]:,}" for name in sorted(summary)] or ["  no in-scope AD user or group"]
    lines += ["", "| AD DN | type | outcome | matched on | cloud id | cloud UPN / mail | conflict |"]
    lines += ["|---|---|---|---|---|---|---|"]
    lines += [
        f"| {r.ad_dn} | {r.object_type} | {_outcome(r)} | {r.matched_on} | {r.cloud_id} | {r.cloud_upn} "
        f"| {r.conflict} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def _outcome(row: PreflightRow) -> str:
    """The outcome as a person reads it: "soft match (mail), read-only in Graph" for a read-only cloud group."""
    if row.note == READ_ONLY_IN_GRAPH and not row.conflict:
        return f"{row.outcome} ({row.matched_on}), read-only in Graph"
    if row.note == FOREIGN_CONSISTENCY_GUID and not row.conflict:
        return f"{row.outcome}, anchor from mS-DS-ConsistencyGuid (not objectGUID)"
    if row.note.startswith(_NAMESAKE_START):
        return f"{row.outcome}: {row.note}"
    return row.outcome


def render_json(rows: Sequence[PreflightRow]) -> str:
    return json.dumps({"counts": counts(rows), "rows": [asdict(row) for row in rows]}, indent=2) + "\n"


def render_csv(rows: Sequence[PreflightRow]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(row) for row in rows)
    return out.getvalue()
