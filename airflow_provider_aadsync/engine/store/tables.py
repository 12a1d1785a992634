"""The store's tables and their migrations: the schema of a sync instance's store, versioned.

Every table is declared here, each under the schema step that introduced it, with the ordered migration steps that
create or extend them. Both the :class:`~airflow_provider_aadsync.engine.store.store.Store` handle and the instance
lock (``store_lock``) build on these declarations. The timestamp helpers live here too: every ``DateTime`` column
is written with :func:`utcnow` and read back through :func:`as_utc`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

cs_object = sa.Table(
    "cs_object",
    metadata,
    sa.Column("connector", sa.String(64), primary_key=True),
    sa.Column("anchor", sa.String(255), primary_key=True),
    sa.Column("dn", sa.Text, nullable=False),
    sa.Column("object_type", sa.String(64), nullable=False),
    # A JSON document {attribute: [values]}, serialized once by the importer (it also feeds attrs_hash).
    sa.Column("attrs", sa.Text, nullable=False),
    # Digests let a full import tell "unchanged" from "changed" without loading every stored attribute.
    sa.Column("attrs_hash", sa.String(40), nullable=False),
    sa.Column("refs_hash", sa.String(40), nullable=False),
    sa.Column("is_deleted", sa.Boolean, nullable=False, default=False),
    # add | update | delete, cleared by the sync engine once it has processed the object.
    sa.Column("pending_import", sa.String(16), nullable=True),
    sa.Column("pending_export", sa.String(16), nullable=True),
    sa.Column("export_memory", sa.Text, nullable=True),
    sa.Column("last_run_id", sa.Integer, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("ix_cs_object_dn", cs_object.c.connector, cs_object.c.dn)
sa.Index("ix_cs_object_pending_import", cs_object.c.connector, cs_object.c.pending_import)

cs_reference = sa.Table(
    "cs_reference",
    metadata,
    sa.Column("connector", sa.String(64), primary_key=True),
    sa.Column("anchor", sa.String(255), primary_key=True),
    sa.Column("attribute", sa.String(128), primary_key=True),
    sa.Column("target_anchor", sa.String(255), primary_key=True),
    sa.Column("target_dn", sa.Text, nullable=True),
)
sa.Index("ix_cs_reference_target", cs_reference.c.connector, cs_reference.c.target_anchor)

watermark = sa.Table(
    "watermark",
    metadata,
    sa.Column("connector", sa.String(64), primary_key=True),
    sa.Column("partition", sa.String(255), primary_key=True),
    sa.Column("cookie", sa.LargeBinary, nullable=True),
    sa.Column("dc_name", sa.String(255), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

run = sa.Table(
    "run",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("connector", sa.String(64), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("result", sa.String(64), nullable=True),
    sa.Column("counters", sa.JSON, nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    # Who ran it (schema step 7): the Airflow task instance {dag_id, run_id, task_id, map_index, try_number} that
    # set Store.origin, or None (the CLI, a test). The sync manager links a run to its task with it.
    sa.Column("origin", sa.JSON, nullable=True),
)

run_error = sa.Table(
    "run_error",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("run.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("anchor", sa.String(255), nullable=True),
    sa.Column("dn", sa.Text, nullable=True),
    sa.Column("code", sa.String(128), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
)

#: What a run could not do and did not count as an error, grouped (schema step 8): one row per kind and subject with
#: how many objects it concerned and a few examples, e.g. a property Graph cannot write, or UPNs written on the
#: tenant's initial domain. Never one row per object (no error flood).
run_notice = sa.Table(
    "run_notice",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("run.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("code", sa.String(128), nullable=False),
    sa.Column("subject", sa.String(255), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("examples", sa.JSON, nullable=False),
)

#: One row per sync instance, kept once created (a release empties ``holder``), so its fencing token only grows.
store_lock = sa.Table(
    "store_lock",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    # "" when nobody holds the instance.
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    # Bumped at every acquisition (a retry of the same holder too): a write carrying an older token is refused.
    sa.Column("token", sa.BigInteger, nullable=False, server_default="0"),
    # Set when a whole cycle holds the instance: each step leaves it held this long after it ends.
    sa.Column("hold_seconds", sa.Integer, nullable=True),
    sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=True),
)

_VERSION_1_TABLES = [cs_object, cs_reference, watermark, run, run_error, store_lock]

# ----------------------------------------------------------------------------------------- version 2: the metaverse
mv_object = sa.Table(
    "mv_object",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("object_type", sa.String(64), nullable=False),
    # The resolved values {attribute: [values]} that outbound rules read.
    sa.Column("attrs", sa.Text, nullable=False),
    # Who contributed what: {attribute: {"connector|rule": [precedence, merge type, values]}}; precedence decides.
    sa.Column("contributions", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("ix_mv_object_type", mv_object.c.object_type)

#: Multi-valued references between metaverse objects (group members, manager): one row per value.
mv_reference = sa.Table(
    "mv_reference",
    metadata,
    sa.Column("mv_id", sa.Integer, primary_key=True),
    sa.Column("attribute", sa.String(128), primary_key=True),
    sa.Column("target_mv_id", sa.Integer, primary_key=True),
)
sa.Index("ix_mv_reference_target", mv_reference.c.target_mv_id)

#: Values of the metaverse attributes that join rules look up, so a join is an indexed query, not a scan. One index,
#: on the case-folded value, serves both kinds of join: a case-sensitive match is also a match of the folded values
#: (filtered on ``value`` after the index lookup). A second index on ``value`` (schema steps 2 to 10) cost a full
#: sync more than a third of its join-key writes (schema step 11 drops it).
mv_join_key = sa.Table(
    "mv_join_key",
    metadata,
    sa.Column("mv_id", sa.Integer, primary_key=True),
    sa.Column("attribute", sa.String(128), primary_key=True),
    sa.Column("value", sa.String(1024), primary_key=True),
    sa.Column("value_folded", sa.String(1024), nullable=False),
)
sa.Index("ix_mv_join_key_folded", mv_join_key.c.attribute, mv_join_key.c.value_folded)

#: The metaverse attributes whose values ``mv_join_key`` holds for every metaverse object: the join targets of the rules
#: the keys were last kept for. Keys are written with an object's values, so a join rule added on another attribute
#: would never find an object unchanged since: a pass whose rules join on an attribute not listed here first fills
#: that attribute's keys from every metaverse object, and drops the keys of one no rule joins on any more
#: (sync/metaverse.py).
mv_join_key_target = sa.Table(
    "mv_join_key_target",
    metadata,
    sa.Column("attribute", sa.String(128), primary_key=True),
)

#: The lineage: which connector-space object is joined to which metaverse object, by which rule.
link = sa.Table(
    "link",
    metadata,
    sa.Column("connector", sa.String(64), primary_key=True),
    sa.Column("anchor", sa.String(255), primary_key=True),
    sa.Column("mv_id", sa.Integer, nullable=False),
    sa.Column("rule", sa.String(255), nullable=False),
    # join | sticky-join | projection | provision
    sa.Column("link_type", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("ix_link_mv", link.c.mv_id)

#: What sync wants written to a connected directory, one row per object, with per-operation state for resume.
#: The state of a pending add that sync holds because the cloud object it would duplicate refused the match (another
#: anchor, another engine's): no export sends it; each export reports it per object as still refused; a sync that
#: joins the cloud object (the admin resolved it) withdraws it. Restaged values keep the state.
REFUSED = "refused"
#: The state of a plan row (an object's or a reference's) the export settled without sending it because Graph cannot
#: write the object at all (a joined mail-enabled security group or distribution group: read-only through Graph). It is
#: not open: no export sends it again; a sync that stages the same change leaves it so, and one that stages another
#: change makes it pending again (the export then counts it in its run notice once more).
READ_ONLY = "read-only"
#: The states of a plan row an export still has to write: not yet sent, sent but unconfirmed (a retry re-sends it
#: idempotently), or failed (retried next time).
OPEN_STATES = ("pending", "sent", "failed")

pending_export = sa.Table(
    "pending_export",
    metadata,
    sa.Column("connector", sa.String(64), primary_key=True),
    sa.Column("anchor", sa.String(255), primary_key=True),
    sa.Column("object_type", sa.String(64), nullable=False),
    sa.Column("dn", sa.Text, nullable=False),
    # add | update | delete
    sa.Column("operation", sa.String(16), nullable=False),
    # {attribute: [new values]} (an empty list clears); references travel in pending_export_reference.
    sa.Column("changes", sa.Text, nullable=False),
    # pending | sent | confirmed | failed | refused (REFUSED: an add held because its match was refused) | read-only
    # (READ_ONLY: settled unsent, Graph cannot write the object)
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("run_id", sa.Integer, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # When the operation was first sent (committed before the write): an object that an interrupted create may have
    # made is adopted only if the directory created it after this moment (schema step 6).
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
)
sa.Index("ix_pending_export_state", pending_export.c.connector, pending_export.c.state)

#: Reference value changes (a 250,000-member group is 250,000 rows, not one document), with their own state.
pending_export_reference = sa.Table(
    "pending_export_reference",
    metadata,
    sa.Column("connector", sa.String(64), primary_key=True),
    sa.Column("anchor", sa.String(255), primary_key=True),
    sa.Column("attribute", sa.String(128), primary_key=True),
    sa.Column("target_anchor", sa.String(255), primary_key=True),
    # add | remove
    sa.Column("operation", sa.String(8), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("run_id", sa.Integer, nullable=True),
)
sa.Index(
    "ix_pending_export_reference_state",
    pending_export_reference.c.connector,
    pending_export_reference.c.state,
)

#: Per connector: the rule set a full sync last ran with, so a changed configuration forces a full sync.
sync_state = sa.Table(
    "sync_state",
    metadata,
    sa.Column("connector", sa.String(64), primary_key=True),
    sa.Column("rules_fingerprint", sa.String(64), nullable=True),
    sa.Column("last_full_sync_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
)

_VERSION_2_TABLES = [mv_object, mv_reference, mv_join_key, link, pending_export, pending_export_reference, sync_state]

#: Per connector and metaverse object: the fingerprint of everything a sync of that connector read for the object
#: (rules, metaverse row and references, every linked connector-space object and its pending export) when a pass last
#: evaluated it without error. A later full sync that finds the same fingerprint skips the object: evaluating it again
#: could only give the same result (engine/sync/memo.py).
sync_memo = sa.Table(
    "sync_memo",
    metadata,
    sa.Column("connector", sa.String(64), primary_key=True),
    sa.Column("mv_id", sa.Integer, primary_key=True),
    sa.Column("fingerprint", sa.BigInteger, nullable=False),
)


# ------------------------------------------------------------------- version 3: duplicate attribute resiliency
#: Values an export could not write because another object holds them (UPN, SMTP address), until released.
export_conflict = sa.Table(
    "export_conflict",
    metadata,
    sa.Column("connector", sa.String(64), primary_key=True),
    sa.Column("anchor", sa.String(255), primary_key=True),
    sa.Column("attribute", sa.String(128), primary_key=True),
    sa.Column("wanted_value", sa.Text, nullable=False),
    # What was written instead (the UPN placeholder), or None when the value was dropped.
    sa.Column("placeholder", sa.Text, nullable=True),
    sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("run_id", sa.Integer, nullable=True),
)


# --------------------------------------------------------------------------- version 10: the store's owner marker
#: Which sync instance owns the store (one row, ``id`` 1): the store's tables have no instance column, so two
#: instances pointed at one database would sync into one metaverse. Every open checks it before anything else
#: (owner.py); ``tenant_id`` is the Entra tenant the owner's first Entra step used, checked by every later one.
store_instance = sa.Table(
    "store_instance",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("instance", sa.String(128), nullable=False),
    sa.Column("tenant_id", sa.String(255), nullable=True),
    # created | adopted (a store made before version 10) | claimed | claimed from <name> (aadsync store claim)
    sa.Column("how", sa.String(255), nullable=False),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
)


def _migrate_to_1(connection: Connection) -> None:
    metadata.create_all(connection, tables=_VERSION_1_TABLES)


def _migrate_to_2(connection: Connection) -> None:
    metadata.create_all(connection, tables=_VERSION_2_TABLES)


def _migrate_to_3(connection: Connection) -> None:
    metadata.create_all(connection, tables=[export_conflict])


#: An export that creates an object renames its provisional anchor where it is a member target: look those up by index.
ix_pending_export_reference_target = sa.Index(
    "ix_pending_export_reference_target", pending_export_reference.c.connector, pending_export_reference.c.target_anchor
)


def _migrate_to_4(connection: Connection) -> None:
    ix_pending_export_reference_target.create(connection, checkfirst=True)


def _migrate_to_5(connection: Connection) -> None:
    """The lock's fencing token, cycle hold and renewal time (stores created at version 1 had none)."""
    present = {column["name"] for column in sa.inspect(connection).get_columns("store_lock")}
    for name, ddl in (
        ("token", "BIGINT NOT NULL DEFAULT 0"),
        ("hold_seconds", "INTEGER"),
        ("renewed_at", "DATETIME" if connection.dialect.name == "sqlite" else "TIMESTAMP WITH TIME ZONE"),
    ):
        if name not in present:
            connection.exec_driver_sql(f"ALTER TABLE store_lock ADD COLUMN {name} {ddl}")


def _migrate_to_6(connection: Connection) -> None:
    """When a pending export was first sent, for adopting only objects created after it (stores created before
    version 6 lack the column; newer ones get it from step 2)."""
    present = {column["name"] for column in sa.inspect(connection).get_columns("pending_export")}
    if "sent_at" not in present:
        ddl = "DATETIME" if connection.dialect.name == "sqlite" else "TIMESTAMP WITH TIME ZONE"
        connection.exec_driver_sql(f"ALTER TABLE pending_export ADD COLUMN sent_at {ddl}")


def _migrate_to_7(connection: Connection) -> None:
    """Which Airflow task made a run (stores created before version 7 lack the column; newer ones get it from
    step 1)."""
    present = {column["name"] for column in sa.inspect(connection).get_columns("run")}
    if "origin" not in present:
        connection.exec_driver_sql("ALTER TABLE run ADD COLUMN origin JSON")


def _migrate_to_8(connection: Connection) -> None:
    metadata.create_all(connection, tables=[run_notice])


def _migrate_to_9(connection: Connection) -> None:
    metadata.create_all(connection, tables=[sync_memo])


def _migrate_to_10(connection: Connection) -> None:
    """The owner marker's table; its row is written by the first open after this step (owner.py)."""
    metadata.create_all(connection, tables=[store_instance])


def _migrate_to_11(connection: Connection) -> None:
    """One join-key index, on the folded value (see ``mv_join_key``): the one on ``value`` goes."""
    connection.exec_driver_sql("DROP INDEX IF EXISTS ix_mv_join_key_value")


def _migrate_to_12(connection: Connection) -> None:
    """The join targets the keys are kept for (see ``mv_join_key_target``), none at first: a store's keys so far may
    lack the objects unchanged since a join rule was added, so the next pass fills every join target's keys anew."""
    metadata.create_all(connection, tables=[mv_join_key_target])


#: Ordered migration steps; append, never edit a released step.
MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [
    (1, _migrate_to_1),
    (2, _migrate_to_2),
    (3, _migrate_to_3),
    (4, _migrate_to_4),
    (5, _migrate_to_5),
    (6, _migrate_to_6),
    (7, _migrate_to_7),
    (8, _migrate_to_8),
    (9, _migrate_to_9),
    (10, _migrate_to_10),
    (11, _migrate_to_11),
    (12, _migrate_to_12),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands timezone-aware columns back naive (UTC as written); PostgreSQL in the session's time zone."""
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
