"""Which sync instance a store belongs to: the owner marker (table ``store_instance``, schema step 10).

The store's tables have no instance column: one database holds one instance's connector spaces, metaverse, plans and
lock. Two instances pointed at one database by mistake (a copied Variable, a shared store connection) would import,
sync and export into one metaverse, and one instance's sync would deprovision or overwrite the other tenant's objects.
So the store records the instance that owns it, and :meth:`Store.open` checks the marker before it reads or writes
anything else: another instance gets :class:`StoreInstanceError`, which names both instances, the store (password
masked) and the fix. The first Entra step of the owner records its Entra tenant id (:func:`check_tenant`); a later
step whose Entra connection names another tenant is refused the same way, before it reads or writes.

A store made before the marker existed is adopted by the first instance that opens it (logged as a warning). A store
that really moved to another instance name is re-claimed on purpose with :func:`reclaim` (``aadsync store claim``).
Imports nothing from Airflow: the operators and the CLI pass the instance (and the tenant) in.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from airflow_provider_aadsync.engine.store.errors import StoreError
from airflow_provider_aadsync.engine.store.tables import as_utc, store_instance, store_lock, utcnow

log = logging.getLogger(__name__)

#: The marker's one row.
_ROW_ID = 1
#: The schema step that brought the marker: an unmarked store older than it is adopted (older stores had none).
MARKER_VERSION = 10
#: The CLI command that re-claims a store (named in every refusal).
CLAIM_COMMAND = "aadsync store claim"


class StoreInstanceError(StoreError):
    """Raised when a store is opened for another sync instance than the one that owns it, or used with another Entra
    tenant than the one it recorded (nothing was read or written), or a re-claim finds the owner running."""


class OwnedStore(Protocol):
    """What the marker needs of a store handle: its engine, instance name and password-masked URL."""

    engine: Engine
    instance: str

    @property
    def display_url(self) -> str: ...


@dataclass(frozen=True)
class Owner:
    """The marker: the instance that owns the store, its Entra tenant (None until an Entra step ran) and how and
    when the claim came (``created``, ``adopted``: a store older than the marker, ``claimed from <name>``)."""

    instance: str
    tenant_id: str | None
    how: str
    claimed_at: dt.datetime | None

    def describe(self) -> str:
        tenant = f" (Entra tenant {self.tenant_id})" if self.tenant_id else ""
        return f"sync instance {self.instance!r}{tenant}"


def _read(connection: sa.Connection) -> Owner | None:
    row = connection.execute(sa.select(store_instance).where(store_instance.c.id == _ROW_ID)).first()
    if row is None:
        return None
    return Owner(row.instance, row.tenant_id, row.how, as_utc(row.claimed_at))


def read_owner(engine: Engine) -> Owner | None:
    """The marker, or None: an unmarked store (new, or made before schema step 10). Reads nothing else."""
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(store_instance.name):
            return None
        return _read(connection)


def _normal_tenant(tenant_id: str | None) -> str | None:
    """Tenant ids are GUIDs (or a verified domain): compared and stored in lower case, blanks meaning none."""
    tenant = (tenant_id or "").strip().lower()
    return tenant or None


def _claim_hint(store: OwnedStore, instance: str) -> str:
    return f"{CLAIM_COMMAND} --instance {instance} --store {store.display_url} --confirm-claim"


def refusal(store: OwnedStore, owner: Owner) -> StoreInstanceError:
    """The error of an instance opening a store that another one owns: both instances, the masked URL, the fix."""
    asking = store.instance
    return StoreInstanceError(
        f"store {store.display_url} belongs to {owner.describe()}, not to sync instance {asking!r}, which is "
        "opening it: refused before anything was read or written. Two instances in one store would sync into one "
        "metaverse and deprovision or overwrite each other's objects. Point each instance at its own store (the "
        f"Variables aadsync_{asking}__store_url or aadsync_{asking}__store_conn_id for a named instance, "
        "aadsync_store_url or aadsync_store_conn_id for the default one; the CLI's --store or --store-conn-id). "
        f"Only if this store really moved from instance {owner.instance!r} to {asking!r} (a renamed instance), "
        f"re-claim it once, with no cycle of {owner.instance!r} running: {_claim_hint(store, asking)} "
        "(or --store-conn-id ID instead of --store)"
    )


def check(store: OwnedStore) -> Owner | None:
    """Refuse (:class:`StoreInstanceError`) a store owned by another instance; read-only, before any migration.
    Returns the marker (None: unmarked, :func:`claim` marks it after the migration)."""
    owner = read_owner(store.engine)
    if owner is not None and owner.instance != store.instance:
        raise refusal(store, owner)
    return owner


def claim(store: OwnedStore, *, older_store: bool) -> Owner:
    """After the migration: the marker of ``store.instance``, written if the store has none. ``older_store``: the
    store existed before this open (a schema older than step 10): it is adopted, and the log says so. Only an unmarked
    store is written to (a marked one is only read: no write lock on SQLite while another process writes)."""
    owner = read_owner(store.engine)
    if owner is not None:
        if owner.instance != store.instance:
            raise refusal(store, owner)
        return owner
    how = "adopted" if older_store else "created"
    values = {"id": _ROW_ID, "instance": store.instance, "how": how, "claimed_at": utcnow()}
    with store.engine.begin() as connection:
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        # ON CONFLICT DO NOTHING: of two processes opening a new store at once, one writes, both read its row.
        written = connection.execute(insert(store_instance).values(values).on_conflict_do_nothing()).rowcount
        owner = _read(connection)
    if written == 1 and older_store:
        log.warning(
            "store %s had no owner marker (made by an older version): adopted by sync instance %r; no other "
            "instance can open it now",
            store.display_url,
            store.instance,
        )
    elif written == 1:
        log.info("store %s claimed by sync instance %r", store.display_url, store.instance)
    if owner is None:  # pragma: no cover - the row was just written or found
        raise StoreError(f"store {store.display_url}: its owner marker could not be written")
    if owner.instance != store.instance:  # another instance won the race on a new store
        raise refusal(store, owner)
    return owner


def check_tenant(store: OwnedStore, tenant_id: str | None) -> None:
    """Before an Entra step of ``store.instance`` reads or writes: record the Entra tenant of its connection the
    first time, refuse (:class:`StoreInstanceError`) another one later. The Entra connector space, the export plan
    and the metaverse's provisioned objects describe the first tenant: another instance's configuration (or a wrong
    connection) would otherwise import a foreign tenant over it and export into it."""
    tenant = _normal_tenant(tenant_id)
    if tenant is None:
        return
    owner = read_owner(store.engine)
    if owner is not None and owner.instance != store.instance:
        raise refusal(store, owner)
    if owner is None or owner.tenant_id == tenant:
        return
    if owner.tenant_id is None:
        with store.engine.begin() as connection:
            connection.execute(
                sa.update(store_instance)
                .where(store_instance.c.id == _ROW_ID, store_instance.c.tenant_id.is_(None))
                .values(tenant_id=tenant)
            )
            recorded = _read(connection)
        if recorded is not None and recorded.tenant_id == tenant:
            log.info("store %s: sync instance %r syncs Entra tenant %s", store.display_url, store.instance, tenant)
            return
        owner = recorded or owner  # another step recorded a tenant meanwhile: compare with it
        if owner.tenant_id == tenant:
            return
    raise StoreInstanceError(
        f"store {store.display_url} of sync instance {store.instance!r} syncs Entra tenant {owner.tenant_id}, and "
        f"this step's Entra connection names tenant {tenant}: refused before anything was read or written. If the "
        "connection is wrong (another instance's, a copied Variable), fix it. If the instance really moved to the "
        "new tenant, give it a new store (the connector space and the export plan describe the old tenant), or, "
        f"knowing that, re-claim this one for the new tenant: {_claim_hint(store, store.instance)} --tenant-id {tenant}"
    )


def reclaim(store: OwnedStore, instance: str, *, tenant_id: str | None = None) -> tuple[Owner | None, Owner]:
    """Make ``instance`` the owner of the store (a store that really moved to a new instance name), in one
    transaction; keep the recorded tenant unless ``tenant_id`` is given. Refused while a cycle or step of the
    current owner holds its lock. ``store`` is a migrated handle whose own instance is not checked. Returns the
    marker before (None: unmarked) and after."""
    tenant = _normal_tenant(tenant_id)
    now = utcnow()
    with store.engine.begin() as connection:
        if connection.dialect.name == "sqlite":  # the write lock first: the check and the change are one step
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.execute(sa.select(store_instance).with_for_update())
        before = _read(connection)
        if before is not None and before.instance != instance:
            held = connection.execute(
                sa.select(store_lock.c.name, store_lock.c.holder).where(
                    sa.or_(store_lock.c.name == before.instance, store_lock.c.name.like(f"{before.instance}#%")),
                    store_lock.c.holder != "",
                    store_lock.c.expires_at > now,
                )
            ).first()
            if held is not None:
                raise StoreInstanceError(
                    f"sync instance {before.instance!r} is running on store {store.display_url} ({held.name} held "
                    f"by {held.holder!r}): nothing was changed; re-claim the store when no cycle runs (pause the "
                    "instance's DAGs first)"
                )
        if before is not None and before.instance == instance and (tenant is None or tenant == before.tenant_id):
            return before, before
        how = "claimed" if before is None or before.instance == instance else f"claimed from {before.instance}"
        after = Owner(instance, tenant or (before.tenant_id if before else None), how, now)
        values = {"instance": after.instance, "tenant_id": after.tenant_id, "how": after.how, "claimed_at": now}
        if before is None:
            connection.execute(sa.insert(store_instance).values(id=_ROW_ID, **values))
        else:
            connection.execute(sa.update(store_instance).where(store_instance.c.id == _ROW_ID).values(**values))
    log.warning(
        "store %s re-claimed: it now belongs to %s (was %s)",
        store.display_url,
        after.describe(),
        before.describe() if before else "unmarked",
    )
    return before, after
