"""A small directory world for sync tests: AD and Entra objects written through the real connector-space writer.

Objects enter the store the way imports put them there (pending imports, reference rows), so sync sees exactly what
it sees in production; the helpers read back metaverse rows, links and pending exports.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.runs.cs_writer import ConnectorSpaceWriter
from airflow_provider_aadsync.engine.runs.source import SourceObject
from airflow_provider_aadsync.engine.store import (
    Store,
    cs_object,
    cs_reference,
    link,
    mv_object,
    mv_reference,
    pending_export,
    pending_export_reference,
    run_error,
)
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules

BASE = "DC=corp,DC=example"


def guid(n: int) -> str:
    return str(uuid.UUID(int=0x1000 + n))


def immutable_id(guid_text: str) -> str:
    return base64.b64encode(uuid.UUID(guid_text).bytes_le).decode()


def ad_user(n: int, sam: str | None = None, *, disabled: bool = False, **attrs: Any) -> SourceObject:
    sam = sam or f"user{n}"
    values: dict[str, list[str]] = {
        "objectGUID": [guid(n)],
        "cn": [sam],
        "sAMAccountName": [sam],
        "userPrincipalName": [f"{sam}@corp.example"],
        "givenName": [f"Given{n}"],
        "sn": [f"Surname{n}"],
        "displayName": [f"User {n}"],
        "userAccountControl": ["514" if disabled else "512"],
    }
    for name, value in attrs.items():
        name = name.replace("_", "-") if name.startswith("mS_DS") else name
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value if isinstance(value, list) else [value]
    cn = values.get("cn", [sam])[0]
    return SourceObject(anchor=guid(n), dn=f"CN={cn},OU=Users,{BASE}", object_type="user", attrs=values)


def ad_group(n: int, name: str, members: Sequence[int] = (), *, security: bool = True, **attrs: Any) -> SourceObject:
    values: dict[str, list[str]] = {
        "objectGUID": [guid(n)],
        "cn": [name],
        "sAMAccountName": [name],
        "groupType": ["-2147483646" if security else "2"],
    }
    for attribute, value in attrs.items():
        values[attribute] = value if isinstance(value, list) else [value]
    references = {"member": [(guid(m), f"CN=member{m},{BASE}") for m in members]}
    return SourceObject(
        anchor=guid(n), dn=f"CN={name},OU=Groups,{BASE}", object_type="group", attrs=values, references=references
    )


def entra_user(object_id: str, upn: str, immutable: str | None = None, **attrs: Any) -> SourceObject:
    values: dict[str, list[Any]] = {"id": [object_id], "userPrincipalName": [upn]}
    if immutable:
        values["onPremisesImmutableId"] = [immutable]
    for name, value in attrs.items():
        values[name] = value if isinstance(value, list) else [value]
    return SourceObject(anchor=object_id, dn=f"users/{object_id}", object_type="user", attrs=values)


def cloud_twin(n: int, sam: str | None = None, *, anchor: str | None = None, **attrs: Any) -> SourceObject:
    """AD user ``n`` (``ad_user(n, sam)``) as it exists in Entra ID already, ``cloud-<n>``: its values, and its
    ImmutableId (``anchor``, else the one of its objectGUID) where the hard match reads it and in the sync app's
    extension, as an export wrote them; ``attrs`` adds or replaces values."""
    sam = sam or f"user{n}"
    anchor = anchor or immutable_id(guid(n))
    values: dict[str, Any] = {
        "accountEnabled": True,
        "displayName": f"User {n}",
        "givenName": f"Given{n}",
        "surname": f"Surname{n}",
        "mailNickname": sam,
        "extension_aadsyncSourceAnchor": anchor,
    }
    return entra_user(f"cloud-{n}", f"{sam}@corp.example", anchor, **{**values, **attrs})


def entra_group(object_id: str, name: str, members: Sequence[str] | None = None, **attrs: Any) -> SourceObject:
    """A security group as Graph lists it; ``members``: the ids of its members (None: no member rows read);
    ``attrs`` adds or replaces values (``extension_aadsyncSourceAnchor``: the anchor its hard match reads)."""
    values: dict[str, list[Any]] = {"id": [object_id], "displayName": [name], "mailNickname": [name],
                                    "securityEnabled": [True], "mailEnabled": [False]}  # fmt: skip
    values.update({key: value if isinstance(value, list) else [value] for key, value in attrs.items()})
    obj = SourceObject(anchor=object_id, dn=f"groups/{object_id}", object_type="group", attrs=values)
    if members is not None:
        obj.references = {"members": [(member, None) for member in members]}
    return obj


def import_full(store: Store, connector: str, objects: Sequence[SourceObject]) -> None:
    run_id = store.start_run("full-import", connector)
    with store.transaction() as connection:
        writer = ConnectorSpaceWriter(store, connection, connector, run_id)
        writer.begin_full()
        writer.write_full_page(list(objects))
        writer.finish_full()
    store.finish_run(run_id, "success", {})


def import_delta(store: Store, connector: str, objects: Sequence[SourceObject]) -> None:
    for obj in objects:
        obj.partial = True
    run_id = store.start_run("delta-import", connector)
    with store.transaction() as connection:
        ConnectorSpaceWriter(store, connection, connector, run_id).write_delta_page(list(objects))
    store.finish_run(run_id, "success", {})


def deleted(anchor: str, dn: str = "") -> SourceObject:
    return SourceObject(anchor=anchor, dn=dn, object_type=None, deleted=True, partial=True)


# ---------------------------------------------------------------------------------------------------- reading
def metaverse(store: Store) -> dict[int, dict[str, Any]]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(mv_object.c.id, mv_object.c.object_type, mv_object.c.attrs)).all()
    return {row.id: {"type": row.object_type, **json.loads(row.attrs)} for row in rows}


def mv_by(store: Store, attribute: str, value: Any) -> tuple[int, dict[str, Any]]:
    found = [(mv_id, attrs) for mv_id, attrs in metaverse(store).items() if value in attrs.get(attribute, [])]
    assert len(found) == 1, f"{len(found)} metaverse objects with {attribute}={value!r}"
    return found[0]


def links(store: Store, connector: str | None = None) -> dict[tuple[str, str], tuple[int, str]]:
    query = sa.select(link.c.connector, link.c.anchor, link.c.mv_id, link.c.link_type)
    if connector:
        query = query.where(link.c.connector == connector)
    with store.engine.connect() as connection:
        return {(r.connector, r.anchor): (r.mv_id, r.link_type) for r in connection.execute(query)}


def mv_members(store: Store, mv_id: int, attribute: str = "member") -> set[int]:
    with store.engine.connect() as connection:
        return set(
            connection.execute(
                sa.select(mv_reference.c.target_mv_id).where(
                    mv_reference.c.mv_id == mv_id, mv_reference.c.attribute == attribute
                )
            ).scalars()
        )


def exports(store: Store, connector: str = "entra") -> dict[str, dict[str, Any]]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(pending_export).where(pending_export.c.connector == connector)).all()
    return {
        row.anchor: {"operation": row.operation, "changes": json.loads(row.changes), "state": row.state, "dn": row.dn}
        for row in rows
    }


def export_for(store: Store, mv_id: int, connector: str = "entra") -> dict[str, Any]:
    anchors = [anchor for (c, anchor), (m, _t) in links(store, connector).items() if m == mv_id]
    assert len(anchors) == 1, anchors
    return {"anchor": anchors[0], **exports(store, connector)[anchors[0]]}


def reference_exports(store: Store, connector: str = "entra") -> set[tuple[str, str, str]]:
    query = sa.select(
        pending_export_reference.c.anchor,
        pending_export_reference.c.target_anchor,
        pending_export_reference.c.operation,
    ).where(pending_export_reference.c.connector == connector)
    with store.engine.connect() as connection:
        return {tuple(row) for row in connection.execute(query)}


def cs_count(store: Store, connector: str) -> int:
    with store.engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count()).select_from(cs_object).where(cs_object.c.connector == connector)
        ).scalar()


def confirm_group(store: Store, anchor: str, member_anchors: Sequence[str]) -> None:
    """Stand in for an export that created the group: its pending rows are done, its members are in the space."""
    with store.transaction() as connection:
        connection.execute(sa.delete(pending_export_reference).where(pending_export_reference.c.anchor == anchor))
        connection.execute(sa.delete(pending_export).where(pending_export.c.anchor == anchor))
        connection.execute(
            sa.insert(cs_reference),
            [
                {"connector": "entra", "anchor": anchor, "attribute": "members", "target_anchor": target}
                for target in member_anchors
            ],
        )


def sync_connectors(store: Store, spaces: Mapping[str, Sequence[SourceObject]]) -> Any:
    """Each connector space of ``spaces`` imported in full, then each synced in full (in that order) by the shipped
    rules, which it returns: several forests and a tenant as a cycle leaves them."""
    rules = load_sync_rules()
    for connector, objects in spaces.items():
        import_full(store, connector, objects)
    for connector in spaces:
        assert run_sync(store, rules, connector=connector, mode="full").result == "success", connector
    return rules


def sync_errors(
    store: Store, ad: Sequence[SourceObject], cloud: Sequence[SourceObject], **settings: Any
) -> dict[str, tuple[str, str]]:
    """``ad`` and ``cloud`` imported in full, AD synced, then Entra synced in full by the shipped rules (with
    ``settings``); the Entra sync's per-object errors, ``{anchor: (code, message)}``."""
    rules = load_sync_rules(**settings)
    import_full(store, "ad", ad)
    import_full(store, "entra", cloud)
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    result = run_sync(store, rules, connector="entra", mode="full")
    with store.engine.connect() as connection:
        errors = connection.execute(sa.select(run_error).where(run_error.c.run_id == result.run_id)).all()
    return {e.anchor: (e.code, e.message) for e in errors}


def world_with_cloud_twins(store: Store, users: int) -> Any:
    """AD users synced and joined to enabled cloud twins (as after an export and its confirming import)."""
    rules = load_sync_rules()
    import_full(store, "ad", [ad_user(n) for n in range(1, users + 1)])
    import_full(store, "entra", [cloud_twin(n) for n in range(1, users + 1)])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    assert run_sync(store, rules, connector="entra", mode="full").result == "success"
    assert exports(store) == {}
    return rules


def seed(store: Store) -> None:
    """The small AD world of the shipped rules' sync tests: users in and out of scope, two nested groups."""
    import_full(
        store,
        "ad",
        [
            ad_user(1, department="Sales"),
            ad_user(2, disabled=True),
            ad_user(3, "krbtgt", isCriticalSystemObject="TRUE"),
            ad_user(4, "AAD_1234abcd"),
            ad_user(5, "MSOL_0123"),
            ad_user(6, cn="user6\nCNF:0a1b2c3d-0000-0000-0000-000000000000"),
            ad_user(7, sAMAccountName=None),
            ad_user(8, **{"mS-DS-ConsistencyGuid": guid(800)}),
            ad_group(20, "Staff", members=[1, 2, 21]),
            ad_group(21, "Nested", members=[8], **{"mS-DS-ConsistencyGuid": guid(2100)}),
        ],
    )


def cloud_twin_of_user1(department: str) -> SourceObject:
    """User 1 as it exists in Entra ID already (same ImmutableId and values), but for its department."""
    return cloud_twin(1, department=department)
