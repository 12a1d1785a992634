"""Planning of an Entra export: what the plan counts (the figures a run records before its first write and the
export-plan report shows) and how the exporter reads it, as operations in the order the phases send them.

The plan is what sync staged (``pending_export`` and ``pending_export_reference``), read a page at a time in anchor
order; a create an interrupted run had sent is reconciled before it is sent again (reconcile.py).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.entra.conflicts import SOFT_MATCH_PENDING
from airflow_provider_aadsync.engine.connectors.entra.graph import BATCH_SIZE, LINKS_PER_REQUEST
from airflow_provider_aadsync.engine.connectors.entra.reconcile import Reconciler
from airflow_provider_aadsync.engine.connectors.entra.schema import (
    MANAGER,
    MEMBERS,
    RESOURCES,
    UNCLEARABLE,
    UNWRITABLE,
    read_only_in_graph,
)
from airflow_provider_aadsync.engine.connectors.entra.state import ExportPass, Operation, stored_upn
from airflow_provider_aadsync.engine.connectors.schema import PROVISIONAL_PREFIX
from airflow_provider_aadsync.engine.runs.export_run import open_plan_counts
from airflow_provider_aadsync.engine.store import (
    OPEN_STATES,
    READ_ONLY,
    Store,
    cs_object,
    pending_export,
    pending_export_reference,
    utcnow,
)

log = logging.getLogger(__name__)

#: The grouped notice of what Graph cannot write or create (engine/runs/notices.py).
UNSUPPORTED = "unsupported-by-graph"
#: The notice of UPNs written on the tenant's initial domain because their suffix is not a verified domain.
UPN_ON_INITIAL_DOMAIN = "upn-on-initial-domain"
#: The notice's subject for writes to a joined mail-enabled security group or distribution group (read-only in Graph).
MAIL_GROUP_WRITE = "mail-enabled group write"
MAIL_GROUP_MESSAGE = (
    "Graph cannot write mail-enabled security groups or distribution groups: manage them in Exchange Online "
    "(the group stays joined; its attribute and member changes are not sent, and are counted again when they change)"
)
#: Examples kept of UPN substitutions: enough to name every object of a usual run, without a flood.
UPN_EXAMPLES = 500


def plan_counts(store: Store, connector: str) -> dict[str, int]:
    """The export plan by operation and object type, plus member changes: what an export would write."""
    with store.engine.connect() as connection:
        counts, objects = open_plan_counts(connection, connector, MEMBERS)
        add_counts = connection.execute(
            sa.select(sa.func.count())
            .where(
                pending_export_reference.c.connector == connector,
                pending_export_reference.c.attribute == MEMBERS,
                pending_export_reference.c.operation == "add",
                pending_export_reference.c.state.in_(OPEN_STATES),
            )
            .group_by(pending_export_reference.c.anchor)
        ).scalars()
        member_add_requests = sum(math.ceil(n / LINKS_PER_REQUEST) for n in add_counts)
        # A user's manager changes are one request (a PUT replaces the manager; a DELETE removes it).
        manager_requests = connection.execute(
            sa.select(sa.func.count(sa.distinct(pending_export_reference.c.anchor))).where(
                pending_export_reference.c.connector == connector,
                pending_export_reference.c.attribute == MANAGER,
                pending_export_reference.c.state.in_(OPEN_STATES),
            )
        ).scalar()
    delete_requests = sum(n for op, t, n in objects if op == "delete" and t in RESOURCES)
    object_requests = sum(n for op, t, n in objects if op not in ("update", "delete") and t in RESOURCES)
    object_requests += _count_updates_with_changes(store, connector)
    if manager_requests:
        counts["planned_manager_changes"] = manager_requests
    member_requests = member_add_requests + counts.get("planned_member_removes", 0) + manager_requests
    counts["planned_requests"] = delete_requests + object_requests + member_requests
    # Deletes, then the other object writes (Graph runs a call's requests in any order: a UPN a delete frees must be
    # free before a create takes it), then member and manager changes (which need the created ids): the least number
    # of $batch calls.
    counts["batch_calls_minimum"] = (
        math.ceil(delete_requests / BATCH_SIZE)
        + math.ceil(object_requests / BATCH_SIZE)
        + math.ceil(member_requests / BATCH_SIZE)
    )
    return counts


def _count_updates_with_changes(store: Store, connector: str) -> int:
    with store.engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count()).where(
                pending_export.c.connector == connector,
                pending_export.c.operation == "update",
                pending_export.c.changes != "{}",
                pending_export.c.state.in_(OPEN_STATES),
            )
        ).scalar()


class ExportPlan:
    """Reads the open plan of one export pass as operations: deletes, creates and updates one request each, member
    adds packed 20 per request, member removes one per request."""

    def __init__(self, state: ExportPass, *, reconciler: Reconciler) -> None:
        self.state = state
        self.reconciler = reconciler
        #: Whether the pause before the first reconciled create was taken (once per run).
        self._settled = False
        #: Joined cloud groups of the open plan that Graph keeps read-only (read once per run, when first needed).
        self._read_only: set[str] | None = None
        #: The read-only groups whose plan rows this run settled (each counted once in the run's notice).
        self._read_only_settled: set[str] = set()

    def _plan_rows(self, operation: str, object_type: str | None = None) -> Iterator[Any]:
        """Open rows of the plan in anchor order, read a page at a time (the plan may be large)."""
        query = sa.select(pending_export).where(
            pending_export.c.connector == self.state.connector,
            pending_export.c.operation == operation,
            pending_export.c.state.in_(OPEN_STATES),
        )
        if object_type:
            query = query.where(pending_export.c.object_type == object_type)
        last = ""
        while True:
            with self.state.store.engine.connect() as connection:
                rows = connection.execute(
                    query.where(pending_export.c.anchor > last).order_by(pending_export.c.anchor).limit(1_000)
                ).all()
            if not rows:
                return
            yield from rows
            last = rows[-1].anchor

    def creates(self, object_type: str) -> Iterator[Operation]:
        for row in self._plan_rows("add", object_type):
            operation = Operation(
                "create", row.anchor, object_type, row.dn, json.loads(row.changes), resend=row.state == "sent"
            )
            if (row.last_error or "").startswith(f"{SOFT_MATCH_PENDING}:"):
                operation.held_in = row.run_id  # the run that sent it and held it (a send sets run_id)
            if not self._writable(operation):
                continue
            if operation.resend:
                self._settle_once()
                if self.reconciler.resume_create(operation):
                    continue
            yield operation

    def _withdrawn_create(self, row: Any) -> Operation | None:
        """The delete a withdrawn create that was sent stands for, after the pause a resumed create takes (Graph may
        still be carrying the create out)."""
        self._settle_once()
        return self.reconciler.settle_withdrawn_create(row)

    def _settle_once(self) -> None:
        """An interrupted run left creates in flight: give Graph a moment to finish them before looking them up."""
        if not self._settled:
            self._settled = True
            log.info(
                "reconciling creates an interrupted export had sent (after %.1f s)",
                self.state.settings.resend_settle_seconds,
            )
            time.sleep(self.state.settings.resend_settle_seconds)

    def report_unsupported_creates(self) -> None:
        """Contacts (and any type Graph cannot create) are counted in one notice per type, never silently dropped
        and never an error per object; they stay planned (and in the metaverse)."""
        for row in self._plan_rows("add"):
            if row.object_type not in ("user", "group"):
                self.state.notice(
                    UNSUPPORTED,
                    f"{row.object_type} create",
                    f"Graph has no API to create {row.object_type} objects; they stay in the metaverse",
                    row.anchor,
                    row.dn,
                )

    # ------------------------------------------------------------------------------ what Graph accepts
    def _writable(self, operation: Operation) -> bool:
        """Make an operation one Graph accepts, or say it cannot be sent (False; counted in a notice). Properties
        Graph cannot write are left out; a user's UPN on an unverified domain goes on the initial domain; groups
        Graph cannot create (distribution and mail-enabled security groups) are not sent, never downgraded to a
        security group (which could never become mail-enabled, and would stand in the way of the real group an admin
        creates in Exchange Online); a group's mailEnabled is never updated (Graph sets it at the create only); nothing
        is sent to a joined group Graph keeps read-only (its update or delete is settled unsent)."""
        changes = operation.changes
        if operation.object_type == "group" and operation.kind != "create" and self.read_only(operation.anchor):
            self.settle_read_only(operation.anchor, operation.dn)  # its update or delete: Graph refuses both
            return False
        for name in [name for name in changes if name in UNWRITABLE]:
            del changes[name]
            self.state.notice(
                UNSUPPORTED,
                name,
                f"Graph cannot write {name} ({UNWRITABLE[name]}); the flow's value is not exported",
                operation.anchor,
                operation.dn,
            )
        if operation.object_type == "user" and operation.kind == "update":
            for name in [name for name, values in changes.items() if name in UNCLEARABLE and not values]:
                del changes[name]  # sent as null, Graph would refuse the whole update, every cycle
                self.state.notice(
                    UNSUPPORTED,
                    f"{name} clear",
                    f"Graph cannot clear a user's {name} ({UNCLEARABLE[name]}); Entra ID keeps its value, the user's "
                    "other changes are exported",
                    operation.anchor,
                    operation.dn,
                )
        if operation.object_type == "group" and operation.kind == "update" and "mailEnabled" in changes:
            # Update group has no mailEnabled: a group's mail-enablement is fixed when it is created.
            del changes["mailEnabled"]
            self.state.notice(
                UNSUPPORTED,
                "mailEnabled",
                "Graph cannot mail-enable or mail-disable an existing group (mailEnabled is set only when a group is "
                "created); the group keeps its mail-enablement in Entra ID",
                operation.anchor,
                operation.dn,
            )
        if operation.object_type == "group" and operation.kind == "create" and read_only_in_graph(changes):
            kind = "mail-enabled security group" if self._true(changes, "securityEnabled") else "distribution group"
            self.state.notice(
                UNSUPPORTED,
                f"{kind} create",
                f"Graph creates security groups and Microsoft 365 groups only, not a {kind}; it stays in the metaverse",
                operation.anchor,
                operation.dn,
            )
            return False
        if operation.object_type == "user" and changes.get("userPrincipalName"):
            self._accepted_upn(operation)
        if operation.kind == "update" and not changes:
            self._forget(operation.anchor)  # nothing Graph can write is left; sync stages it again if it changes
            return False
        return True

    def read_only(self, anchor: str) -> bool:
        """Whether the joined cloud group is a mail-enabled security group or a distribution group, as the Entra
        connector space holds it (Graph keeps them read-only; the product would say the same of its own export)."""
        if self._read_only is None:
            self._read_only = read_only_groups(self.state.store, self.state.connector)
        return anchor in self._read_only

    def settle_read_only(self, anchor: str, dn: str) -> None:
        """Settle every open plan row of a read-only group unsent (its update and its member changes: state
        READ_ONLY, not retried, staged again by sync only when the change differs) and count the group once in the
        run's notice, never an error: Graph would refuse each write ("Cannot Update a mail-enabled security groups
        and or distribution list.")."""
        with self.state.transaction() as connection:
            connection.execute(
                sa.update(pending_export)
                .where(self.state.row(anchor), pending_export.c.state.in_(OPEN_STATES))
                .values(state=READ_ONLY, run_id=self.state.run_id, updated_at=utcnow())
            )
            references = connection.execute(
                sa.update(pending_export_reference)
                .where(
                    pending_export_reference.c.connector == self.state.connector,
                    pending_export_reference.c.anchor == anchor,
                    pending_export_reference.c.state.in_(OPEN_STATES),
                )
                .values(state=READ_ONLY, run_id=self.state.run_id)
            ).rowcount
        self.state.counters["read_only_group_member_changes"] += references
        if anchor in self._read_only_settled:
            return
        self._read_only_settled.add(anchor)
        self.state.counters["read_only_groups"] += 1
        self.state.notice(UNSUPPORTED, MAIL_GROUP_WRITE, MAIL_GROUP_MESSAGE, anchor, dn or None)

    @staticmethod
    def _true(changes: dict[str, list[Any]], name: str) -> bool:
        """Whether a boolean flow's value is true (the connector space may hold it as text)."""
        values = changes.get(name) or [None]
        return values[0] in (True, "True", "true", "TRUE")

    def _accepted_upn(self, operation: Operation) -> None:
        """A UPN whose suffix is not a verified domain goes on the tenant's initial domain (the product's MOERA);
        an update whose substitute the object already holds leaves the UPN out (nothing to write until the domain
        is verified)."""
        wanted = str(operation.changes["userPrincipalName"][0])
        written = self.state.domains.accepted_upn(wanted)
        if written == wanted:
            return
        if operation.kind == "update" and self._current_upn(operation.anchor) == written:
            del operation.changes["userPrincipalName"]
            self.state.counters["upns_kept_on_initial_domain"] += 1
            return
        operation.changes["userPrincipalName"] = [written]
        suffix = wanted.rpartition("@")[2]
        self.state.notice(
            UPN_ON_INITIAL_DOMAIN,
            "userPrincipalName",
            "the UPN's domain is not a verified domain of the tenant: written on the initial domain, and changed to "
            "the UPN from AD by the first export after the domain is verified",
            operation.anchor,
            operation.dn,
            limit=UPN_EXAMPLES,
            wanted=wanted,
            written=written,
            domain=suffix,
        )

    def _current_upn(self, anchor: str) -> str | None:
        with self.state.store.engine.connect() as connection:
            return stored_upn(connection, self.state.connector, anchor)

    def _forget(self, anchor: str) -> None:
        with self.state.transaction() as connection:
            connection.execute(sa.delete(pending_export).where(self.state.row(anchor)))

    def object_operations(self, operation: str) -> Iterator[Operation]:
        """The plan's updates or deletes as Graph requests. A delete of a provisional anchor is a create sync
        withdrew after an interrupted export had sent it (sync/staging.py withdraw_create): looked up first, it is
        the delete of the object the create made when that is there and ours, else forgotten (reconcile.py
        settle_withdrawn_create)."""
        for row in self._plan_rows(operation):
            if row.anchor.startswith(PROVISIONAL_PREFIX):
                withdrawn = self._withdrawn_create(row) if operation == "delete" else None
                if withdrawn is not None:
                    yield withdrawn
                continue  # an update waits for its create to succeed
            changes = json.loads(row.changes)
            if operation == "update" and not changes:
                continue  # a marker for member changes only
            if row.object_type not in ("user", "group"):
                self.state.notice(
                    UNSUPPORTED,
                    f"{row.object_type} {operation}",
                    f"Graph cannot write {row.object_type} objects",
                    row.anchor,
                    row.dn,
                )
                continue
            kind = "update" if operation == "update" else "delete"
            found = Operation(kind, row.anchor, row.object_type, row.dn, changes, resend=row.state == "sent")
            if self._writable(found):
                yield found

    def member_operations(self) -> Iterator[Operation]:
        """Member adds packed 20 per request; removes one per request (Graph removes one reference per call)."""
        query = sa.select(
            pending_export_reference.c.anchor,
            pending_export_reference.c.target_anchor,
            pending_export_reference.c.operation,
            pending_export_reference.c.state,
        ).where(
            pending_export_reference.c.connector == self.state.connector,
            pending_export_reference.c.attribute == MEMBERS,
            pending_export_reference.c.state.in_(OPEN_STATES),
        )
        last = ("", "", "")
        pack: list[str] = []
        pack_group = None
        while True:
            with self.state.store.engine.connect() as connection:
                rows = connection.execute(
                    query.where(
                        sa.tuple_(
                            pending_export_reference.c.anchor,
                            pending_export_reference.c.operation,
                            pending_export_reference.c.target_anchor,
                        )
                        > last
                    )
                    .order_by(
                        pending_export_reference.c.anchor,
                        pending_export_reference.c.operation,
                        pending_export_reference.c.target_anchor,
                    )
                    .limit(4_000)
                ).all()
            if not rows:
                break
            last = (rows[-1].anchor, rows[-1].operation, rows[-1].target_anchor)
            unresolved = [
                r.target_anchor
                for r in rows
                if r.target_anchor.startswith(PROVISIONAL_PREFIX) and not self.read_only(r.anchor)
            ]
            for row in rows:
                if row.anchor.startswith(PROVISIONAL_PREFIX):
                    self.state.counters["member_changes_waiting_for_group_create"] += 1
                    continue
                if self.read_only(row.anchor):
                    if row.anchor not in self._read_only_settled:
                        self.settle_read_only(row.anchor, "")
                    continue
                if row.target_anchor.startswith(PROVISIONAL_PREFIX):
                    continue
                if row.operation == "remove":
                    yield Operation("member-remove", row.anchor, "group", "", targets=[row.target_anchor])
                    continue
                if pack and (pack_group != row.anchor or len(pack) == LINKS_PER_REQUEST):
                    yield Operation("member-add", pack_group, "group", "", targets=pack)
                    pack = []
                pack_group = row.anchor
                pack.append(row.target_anchor)
            if unresolved:
                self.state.fail_references(unresolved, "member-not-created", "the member's create in Entra ID failed")
        if pack:
            yield Operation("member-add", pack_group, "group", "", targets=pack)

    def manager_operations(self) -> Iterator[Operation]:
        """One request per user whose manager changes: a PUT of the new manager (which replaces any other, so the
        rows removing the old one are settled with it), or a DELETE when only removals are planned. Users or managers
        still waiting for their create are left for a later run; a manager whose create failed fails the change."""
        query = (
            sa.select(
                pending_export_reference.c.anchor,
                pending_export_reference.c.target_anchor,
                pending_export_reference.c.operation,
            )
            .where(
                pending_export_reference.c.connector == self.state.connector,
                pending_export_reference.c.attribute == MANAGER,
                pending_export_reference.c.state.in_(OPEN_STATES),
            )
            .order_by(pending_export_reference.c.anchor, pending_export_reference.c.target_anchor)
        )
        last = ""
        while True:
            with self.state.store.engine.connect() as connection:
                rows = connection.execute(query.where(pending_export_reference.c.anchor > last).limit(4_000)).all()
            if not rows:
                return
            if len(rows) == 4_000:  # a page ends on a whole user: its rows are read again with the next page
                rows = [r for r in rows if r.anchor != rows[-1].anchor] or rows
            last = rows[-1].anchor
            by_user: dict[str, list[Any]] = {}
            for row in rows:
                by_user.setdefault(row.anchor, []).append(row)
            for user, changes in by_user.items():
                operation = self._manager_operation(user, changes)
                if operation is not None:
                    yield operation

    def _manager_operation(self, user: str, changes: list[Any]) -> Operation | None:
        if user.startswith(PROVISIONAL_PREFIX):
            self.state.counters["manager_changes_waiting_for_user_create"] += 1
            return None
        adds = [r.target_anchor for r in changes if r.operation == "add"]
        removes = [r.target_anchor for r in changes if r.operation == "remove"]
        if adds:
            manager = adds[-1]
            if manager.startswith(PROVISIONAL_PREFIX):
                self.state.fail_references([manager], "manager-not-created", "the manager's create in Entra ID failed")
                return None
            return Operation("manager-set", user, "user", "", targets=[manager], replaced=[*adds[:-1], *removes])
        return Operation("manager-remove", user, "user", "", targets=removes)


def read_only_groups(store: Store, connector: str) -> set[str]:
    """The joined cloud groups with open plan rows (an update, a delete or member changes) that Graph keeps read-only
    (mail-enabled security groups and distribution groups, from the connector space's mailEnabled and groupTypes)."""
    open_updates = sa.select(pending_export.c.anchor).where(
        pending_export.c.connector == connector,
        pending_export.c.object_type == "group",
        pending_export.c.operation.in_(("update", "delete")),
        pending_export.c.state.in_(OPEN_STATES),
    )
    open_members = sa.select(pending_export_reference.c.anchor).where(
        pending_export_reference.c.connector == connector,
        pending_export_reference.c.attribute == MEMBERS,
        pending_export_reference.c.state.in_(OPEN_STATES),
    )
    query = sa.select(cs_object.c.anchor, cs_object.c.attrs).where(
        cs_object.c.connector == connector,
        cs_object.c.object_type == "group",
        sa.or_(cs_object.c.anchor.in_(open_updates), cs_object.c.anchor.in_(open_members)),
    )
    with store.engine.connect() as connection:
        return {anchor for anchor, attrs in connection.execute(query) if read_only_in_graph(json.loads(attrs))}
