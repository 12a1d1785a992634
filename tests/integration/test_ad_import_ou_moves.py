"""OUs renamed and moved on a real Samba AD DC, seen by a DirSync delta import: the objects under them follow.

AD's ModifyDN changes the moved entry only (MS-ADTS 3.1.1.5.4.1.3) and DirSync returns only that entry; its children's
DNs change implicitly. The import must carry the DN change down the connector space, evaluate the scope again for
the children (moved out of it: deletes, through the import guard) and read the subtree of an OU moved into it.
"""

from __future__ import annotations

import json
import uuid

import ldap3
import pytest
import sqlalchemy as sa

from aadsync_devkit.world.samba import SambaDC
from airflow_provider_aadsync.engine.connectors.config import ADConnectorConfig, PartitionConfig
from airflow_provider_aadsync.engine.dn import same_dn
from airflow_provider_aadsync.engine.runs.import_guard import STOPPED_DELETION_THRESHOLD, ImportGuard
from airflow_provider_aadsync.engine.store import Store, cs_object, cs_reference, link, mv_object, pending_export
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.steps import run_ad_import
from tests.support.servers import hook_for

pytestmark = pytest.mark.integration

USER_CLASSES = ["top", "person", "organizationalPerson", "user"]


@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    return start_dc(users=0, groups=0)


@pytest.fixture(scope="module")
def admin(dc: SambaDC):
    conn = dc.connect()
    yield conn
    conn.unbind()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request) -> Store:
    return request.getfixturevalue("store" if request.param == "sqlite" else "pg_store")


def add_ou(admin: ldap3.Connection, dn: str) -> str:
    assert admin.add(dn, ["top", "organizationalUnit"]), admin.result
    return dn


def add_user(admin: ldap3.Connection, parent: str, name: str) -> str:
    dn = f"CN={name},{parent}"
    sam = f"m{uuid.uuid4().hex[:12]}"
    assert admin.add(dn, USER_CLASSES, {"sAMAccountName": sam, "userPrincipalName": f"{sam}@example.test"}), (
        admin.result
    )
    return dn


def guid_of(admin: ldap3.Connection, dn: str) -> str:
    admin.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["objectGUID"])
    return str(uuid.UUID(bytes_le=admin.response[0]["raw_attributes"]["objectGUID"][0]))


def dn_of(admin: ldap3.Connection, dc: SambaDC, anchor: str) -> str:
    admin.search(dc.base_dn, f"(objectGUID={_guid_filter(anchor)})", attributes=["objectGUID"])
    return next(entry["dn"] for entry in admin.response if entry["type"] == "searchResEntry")


def _guid_filter(anchor: str) -> str:
    return "".join(f"\\{byte:02x}" for byte in uuid.UUID(anchor).bytes_le)


def rows(store: Store, anchors) -> dict[str, dict]:
    with store.engine.connect() as connection:
        query = sa.select(cs_object).where(cs_object.c.connector == "ad", cs_object.c.anchor.in_(list(anchors)))
        return {row.anchor: dict(row._mapping) for row in connection.execute(query)}


def import_ad(dc: SambaDC, store: Store, mode: str, scope: ADConnectorConfig | None = None, **options) -> dict:
    guard = options.pop("guard", None)
    return run_ad_import(hook_for(dc, **options), store, mode=mode, scope=scope, guard=guard)


def scoped(dc: SambaDC, **partition) -> ADConnectorConfig:
    return ADConnectorConfig(name="ad", conn_id="aadsync_ad", partitions=(PartitionConfig(dn=dc.base_dn, **partition),))


def test_renamed_ou_takes_its_subtree_along(dc, admin, any_store):
    """An in-scope OU renamed (to a name with an escaped comma): after one delta every object under it, at any depth,
    has its new DN in the connector space, a member reference to one of them names it by its new DN, a sibling whose
    name starts the same (``Sales…2``) keeps its own, and a full import afterwards finds nothing to rename."""
    store, tag = any_store, uuid.uuid4().hex[:6]
    top = add_ou(admin, f"OU=Moves {tag},{dc.base_dn}")
    sales = add_ou(admin, f"OU=Sales,{top}")
    sibling = add_ou(admin, f"OU=Sales2,{top}")
    team = add_ou(admin, f"OU=Team,{sales}")
    users = [add_user(admin, sales, "Ann Sales"), add_user(admin, team, "Ben Team"), add_user(admin, sibling, "Cy")]
    group = f"CN=Sales Group,{sales}"
    assert admin.add(group, ["top", "group"], {"sAMAccountName": f"g{tag}", "member": users[1:2]}), admin.result
    anchors = {dn: guid_of(admin, dn) for dn in [sales, team, sibling, group, *users]}
    assert import_ad(dc, store, "full")["result"] == "success"
    assert run_sync(store, load_sync_rules(), connector="ad", mode="full").result == "success"  # no pending import
    assert {anchors[dn]: dn for dn in anchors} == {a: r["dn"] for a, r in rows(store, anchors.values()).items()}

    assert admin.modify_dn(sales, "OU=Sales\\, EMEA"), admin.result
    delta = import_ad(dc, store, "delta")
    assert delta["mode"] == "delta" and delta["result"] == "success", delta
    stored = rows(store, anchors.values())
    for dn, anchor in anchors.items():
        assert stored[anchor]["dn"] == dn_of(admin, dc, anchor), dn
        assert not stored[anchor]["is_deleted"]
    assert same_dn(stored[anchors[team]]["dn"], f"OU=Team,OU=Sales\\, EMEA,{top}")
    assert stored[anchors[users[2]]]["dn"] == users[2]  # OU=Sales2 is no child of OU=Sales
    assert stored[anchors[users[2]]]["last_run_id"] != stored[anchors[users[0]]]["last_run_id"]
    assert {stored[anchors[dn]]["pending_import"] for dn in (team, group, *users[:2])} == {"update"}
    # the OU itself and its four objects below: five renames
    assert delta["counters"]["renames"] == 5 and delta["counters"]["deletes"] == 0, delta["counters"]
    with store.engine.connect() as connection:
        target_dn = connection.execute(
            sa.select(cs_reference.c.target_dn).where(cs_reference.c.anchor == anchors[group])
        ).scalar_one()
    assert target_dn == stored[anchors[users[1]]]["dn"]

    full = import_ad(dc, store, "full")
    assert full["result"] == "success" and full["counters"]["renames"] == 0, full["counters"]


def test_ou_moved_under_an_excluded_ou_deletes_its_users(dc, admin, any_store):
    """An OU moved into an excluded OU: every object under it becomes a pending import delete (through the import
    guard: too many stop the run, nothing written, until the number is confirmed), and the sync takes the persons
    out of the metaverse with their staged cloud accounts."""
    store, tag = any_store, uuid.uuid4().hex[:6]
    top = add_ou(admin, f"OU=Moves {tag},{dc.base_dn}")
    parking = add_ou(admin, f"OU=Parking,{top}")
    leaving = add_ou(admin, f"OU=Leaving,{top}")
    sub = add_ou(admin, f"OU=Sub,{leaving}")
    users = [add_user(admin, leaving, f"Leaver {n}") for n in range(3)] + [add_user(admin, sub, "Deep Leaver")]
    stays = add_user(admin, top, "Stayer")
    scope = scoped(dc, exclude_ous=(parking,))
    anchors = [guid_of(admin, dn) for dn in users]
    rules = load_sync_rules()
    assert import_ad(dc, store, "full", scope)["result"] == "success"
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    cloud = staged_adds(store, anchors)
    assert persons(store, anchors) == 4 and len(cloud) == 4

    assert admin.modify_dn(leaving, "OU=Leaving", new_superior=parking), admin.result
    stopped = import_ad(dc, store, "delta", scope, guard=ImportGuard(deletion_threshold=5))
    assert stopped["result"] == STOPPED_DELETION_THRESHOLD, stopped
    assert "6" in stopped["detail"] and all(not row["is_deleted"] for row in rows(store, anchors).values())

    delta = import_ad(dc, store, "delta", scope, guard=ImportGuard(confirm_mass_removal=6))
    assert delta["mode"] == "delta" and delta["result"] == "success", delta
    assert delta["counters"]["deletes"] == 6, delta["counters"]  # Leaving, Sub and the four users
    stored = rows(store, [*anchors, guid_of(admin, stays)])
    assert {(row["is_deleted"], row["pending_import"]) for a, row in stored.items() if a in anchors} == {
        (True, "delete")
    }
    assert not stored[guid_of(admin, stays)]["is_deleted"]

    result = run_sync(store, rules, connector="ad", mode="delta")
    assert result.result == "success", result
    assert persons(store, anchors) == 0
    with store.engine.connect() as connection:  # the cloud accounts never exported are no longer staged
        staged = connection.execute(sa.select(pending_export.c.operation).where(pending_export.c.anchor.in_(cloud)))
        assert staged.scalars().all() == []


@pytest.mark.parametrize("client", ["python-ldap", "ldap3"])
def test_ou_moved_into_the_scope_brings_its_users(dc, admin, store, client):
    """An OU moved out of an excluded OU into the scope: its subtree is read (a paged subtree search under its new
    DN, through either LDAP client) and every object in it imported as an add, whole."""
    tag = uuid.uuid4().hex[:6]
    top = add_ou(admin, f"OU=Moves {tag},{dc.base_dn}")
    parking = add_ou(admin, f"OU=Parking,{top}")
    arriving = add_ou(admin, f"OU=Arriving,{parking}")
    sub = add_ou(admin, f"OU=Sub,{arriving}")
    users = [add_user(admin, arriving, f"Arriver {n}") for n in range(3)] + [add_user(admin, sub, "Deep Arriver")]
    scope = scoped(dc, exclude_ous=(parking,))
    anchors = [guid_of(admin, dn) for dn in users]
    assert import_ad(dc, store, "full", scope, full_read_client=client)["result"] == "success"
    assert rows(store, anchors) == {}

    assert admin.modify_dn(arriving, "OU=Arriving", new_superior=top), admin.result
    delta = import_ad(dc, store, "delta", scope, full_read_client=client)
    assert delta["mode"] == "delta" and delta["result"] == "success", delta
    assert delta["counters"]["adds"] == 6, delta["counters"]  # Arriving, Sub and the four users
    stored = rows(store, anchors)
    assert {row["dn"] for row in stored.values()} == {dn_of(admin, dc, anchor) for anchor in anchors}
    assert all(row["dn"].lower().endswith(f"ou=arriving,{top}".lower()) for row in stored.values())
    assert {(row["object_type"], row["pending_import"], row["is_deleted"]) for row in stored.values()} == {
        ("user", "add", False)
    }
    assert all(json.loads(row["attrs"])["sAMAccountName"] for row in stored.values())
    full = import_ad(dc, store, "full", scope, full_read_client=client)
    assert full["counters"]["adds"] == full["counters"]["deletes"] == 0, full["counters"]


def persons(store: Store, anchors) -> int:
    with store.engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count())
            .select_from(mv_object.join(link, link.c.mv_id == mv_object.c.id))
            .where(link.c.connector == "ad", link.c.anchor.in_(list(anchors)))
        ).scalar_one()


def staged_adds(store: Store, anchors) -> list[str]:
    """The Entra connector-space anchors of the cloud accounts staged as adds for the persons ``anchors`` project."""
    with store.engine.connect() as connection:
        mv_ids = sa.select(link.c.mv_id).where(link.c.connector == "ad", link.c.anchor.in_(list(anchors)))
        entra = sa.select(link.c.anchor).where(link.c.connector == "entra", link.c.mv_id.in_(mv_ids))
        query = sa.select(pending_export.c.anchor).where(
            pending_export.c.anchor.in_(entra), pending_export.c.operation == "add"
        )
        return list(connection.execute(query).scalars())
