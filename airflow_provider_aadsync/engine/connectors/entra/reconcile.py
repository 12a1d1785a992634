"""Reconciliation of an Entra export: what each Graph answer means for the store (the outcomes of creates, updates,
deletes and member changes), and how a write whose outcome is unknown (a cut-off call, an answer that left it out,
a create an interrupted run had sent) is settled: creates are looked up and adopted when they are ours, the rest are
idempotent and sent again.

Every outcome is written inside the open transaction of its call (``ExportPass.transaction``), so a call's outcomes
commit together; the order of these writes is what the kill suite counts on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.entra.conflicts import Conflicts
from airflow_provider_aadsync.engine.connectors.entra.extensions import (
    DEFAULT_ANCHOR_EXTENSION,
    cs_attribute,
    extension_names,
)
from airflow_provider_aadsync.engine.connectors.entra.graph import (
    NOT_ADOPTED,
    GraphAnswer,
    conflict_target,
    error_message,
    odata_quote,
    parse_time,
)
from airflow_provider_aadsync.engine.connectors.entra.schema import MANAGER, MEMBERS, RESOURCES
from airflow_provider_aadsync.engine.connectors.entra.state import ExportPass, Operation
from airflow_provider_aadsync.engine.runs.export_run import (
    adopt_anchor,
    forget_empty_updates,
    record_attributes,
    record_references,
)
from airflow_provider_aadsync.engine.store import (
    as_utc,
    cs_object,
    cs_reference,
    link,
    pending_export,
    pending_export_reference,
)

log = logging.getLogger(__name__)

#: The connector-space attribute every exported user and group carries its sourceAnchor in (a directory extension).
ANCHOR_ATTRIBUTE = cs_attribute(DEFAULT_ANCHOR_EXTENSION)
#: The key a group is found by when its anchor is not in Graph: its names, which Graph does not keep unique.
NAMES = "mailNickname/displayName"


class Reconciler:
    """Records the outcome of each operation of an export pass, and settles operations whose outcome is unknown."""

    def __init__(self, state: ExportPass, *, conflicts: Conflicts) -> None:
        self.state = state
        self.conflicts = conflicts
        #: How the sync app's directory extensions are named in Graph (the anchor's: how a group is found).
        self.names = extension_names(state.writer)

    def resume_create(self, operation: Operation) -> bool:
        """A create that may have been carried out: adopt our object (True), fail it when someone else's user holds
        its ImmutableId (True), or leave it to be sent (False; a group of someone else's with the same names is left
        alone: group names are not unique in Graph, and an uninterrupted export would create ours beside it too)."""
        adopted, foreign = self._adopt_existing(operation)
        if adopted:
            return True
        if foreign and (operation.object_type == "user" or foreign[0]["key"] != NAMES):
            # onPremisesImmutableId is unique in a tenant, and so is our anchor in the sync app's extension
            self._not_adopted(operation, foreign)
            return True
        if foreign:
            self.state.counters["foreign_objects_not_adopted"] += len(foreign)
            log.info("%s: %d group(s) of the same names were not created by us; ours is created beside them",
                     operation.dn, len(foreign))  # fmt: skip
        return False

    def settle_withdrawn_create(self, row: Any) -> Operation | None:
        """A create sync withdrew after an interrupted export had sent it (sync/staging.py withdraw_create: a delete
        of its provisional anchor, still ``sent``, with the changes the create sent). Graph may have made the object,
        and nothing else would ever delete it: a leaver's account that stays enabled. It is looked up as a resumed
        create is (:meth:`_lookup` by the same marks; ours only if Graph made it after the first send and nothing is
        linked to it). Ours: its row and connector-space object move to the object's id, and the delete of that id
        is returned, sent like any delete (the guards counted the row before the first write; 404 counts as done; a
        run killed before it sends it again). None of ours (never made; someone else's; joined since, so linked): the
        provisional rows are forgotten, nothing is written (None). Several of ours: a per-object error, nothing is
        deleted on a guess, and the next run looks again."""
        create = Operation("create", row.anchor, row.object_type, row.dn, json.loads(row.changes))
        found, _key = self._lookup(create)
        sent_at = self._sent_at(row.anchor)
        ours = [item for item in found if self._created_by_us(item, sent_at)]
        if len(ours) > 1:
            held = ", ".join(item["id"] for item in ours[:5])
            message = (
                f"the withdrawn create of {row.dn} was sent, and {len(ours)} objects could be the one it made "
                f"({held}): none is deleted; delete the one that should not exist in Entra ID"
            )
            self.state.fail_rows([row.anchor], NOT_ADOPTED, message, dn=row.dn)
            return None
        if not ours:
            with self.state.transaction() as connection:
                for table in (pending_export, pending_export_reference, cs_object):
                    connection.execute(
                        sa.delete(table).where(table.c.connector == self.state.connector, table.c.anchor == row.anchor)
                    )
            self.state.counters["withdrawn_creates_forgotten"] += 1
            return None
        object_id = ours[0]["id"]
        dn = f"{RESOURCES[row.object_type]}/{object_id}"
        with self.state.transaction() as connection:
            _move_withdrawn(connection, self.state.connector, row.anchor, object_id, dn)
        self.state.counters["withdrawn_creates_found"] += 1
        return Operation("delete", object_id, row.object_type, dn, resend=True)

    def reconcile(self, operation: Operation) -> None:
        """An operation whose call was cut off: creates are looked up (and adopted); the rest are idempotent."""
        if operation.kind == "create" and self.resume_create(operation):
            return
        self.state.retry.append(operation)

    # -------------------------------------------------------------------------------------------- outcomes
    def after_create(self, operation: Operation, answer: GraphAnswer) -> None:
        if answer.ok:
            object_id = answer.body.get("id") if isinstance(answer.body, dict) else None
            if not isinstance(object_id, str) or not object_id:
                # Created, but the answer does not say as what: find it as after a cut-off call.
                log.warning("the answer to the create of %s carries no object id; looking it up", operation.dn)
                self.reconcile(operation)
                return
            written = dict(operation.changes)
            self._adopt(operation, object_id, written)
            self.state.counters[f"{operation.object_type}_creates"] += 1
            return
        if conflict_target(answer):
            adopted, foreign = self._adopt_existing(operation)
            if adopted:
                return  # our own earlier attempt holds the value: that object is ours
            if foreign:
                self._not_adopted(operation, foreign)  # someone else's object holds our key: never adopted
                return
            if self.conflicts.hold_for_soft_match(operation, answer):
                return  # a cloud user the next import and sync soft-match holds the UPN: not created beside it
        if self.conflicts.resolve(operation, answer):
            return
        self.state.fail(operation, answer)

    def after_update(self, operation: Operation, answer: GraphAnswer) -> None:
        if answer.ok:
            with self.state.transaction() as connection:
                record_attributes(
                    connection, self.state.connector, operation.anchor, operation.changes, run_id=self.state.run_id
                )
                self.conflicts.release(connection, operation.anchor, operation.changes)
                connection.execute(sa.delete(pending_export).where(self.state.row(operation.anchor)))
            self.state.counters[f"{operation.object_type}_updates"] += 1
            return
        if self.conflicts.resolve(operation, answer):
            return
        self.state.fail(operation, answer)

    def after_delete(self, operation: Operation, answer: GraphAnswer) -> None:
        if answer.ok or answer.status == 404:
            with self.state.transaction() as connection:
                for table in (pending_export, pending_export_reference, cs_reference, cs_object):
                    connection.execute(
                        sa.delete(table).where(
                            table.c.connector == self.state.connector, table.c.anchor == operation.anchor
                        )
                    )
                connection.execute(
                    sa.delete(cs_reference).where(
                        cs_reference.c.connector == self.state.connector,
                        cs_reference.c.target_anchor == operation.anchor,
                    )
                )
            self.state.counters[f"{operation.object_type}_deletes"] += 1
            return
        self.state.fail(operation, answer)

    def after_member_add(self, operation: Operation, answer: GraphAnswer) -> None:
        if answer.ok:
            self._confirm_members(operation.anchor, operation.targets, added=True)
            return
        already = answer.status == 400 and "already exist" in error_message(answer)
        # One target gone from Graph (deleted there since the last import) fails the whole pack with 404: one by one,
        # only that one fails, instead of all 20 on every run.
        missing = answer.status == 404 and len(operation.targets) > 1
        if already or missing:
            # One of the 20 is already a member (an earlier attempt got through), or gone: add them one by one.
            self.state.retry += [
                Operation("member-add-one", operation.anchor, "group", "", targets=[target])
                for target in operation.targets
            ]
            self.state.counters["member_packs_split"] += 1
            return
        self.state.fail_member(operation, answer)

    def after_member_add_one(self, operation: Operation, answer: GraphAnswer) -> None:
        if answer.ok or (answer.status == 400 and "already exist" in error_message(answer)):
            self._confirm_members(operation.anchor, operation.targets, added=True)
            return
        self.state.fail_member(operation, answer)

    def after_member_remove(self, operation: Operation, answer: GraphAnswer) -> None:
        if answer.ok or answer.status == 404:
            self._confirm_members(operation.anchor, operation.targets, added=False)
            return
        self.state.fail_member(operation, answer)

    def after_manager_set(self, operation: Operation, answer: GraphAnswer) -> None:
        """204: the user's manager is the new one (a PUT replaces any other); Graph's answer to a repeated PUT is
        204 too, so a resend after a cut-off call is idempotent."""
        if answer.ok:
            self._confirm_manager(operation, added=operation.targets, removed=operation.replaced)
            return
        self.state.fail_member(operation, answer)

    def after_manager_remove(self, operation: Operation, answer: GraphAnswer) -> None:
        """204, or 404 when the user has no manager (an earlier attempt removed it): done either way."""
        if answer.ok or answer.status == 404:
            self._confirm_manager(operation, added=[], removed=operation.targets)
            return
        self.state.fail_member(operation, answer)

    def _confirm_manager(self, operation: Operation, *, added: list[str], removed: list[str]) -> None:
        connector, user = self.state.connector, operation.anchor
        with self.state.transaction() as connection:
            if removed:
                record_references(self.state.store, connection, connector, user, MANAGER, removed, added=False)
            if added:
                record_references(self.state.store, connection, connector, user, MANAGER, added, added=True)
        self.state.counters["manager_sets" if added else "manager_removes"] += 1

    # ---------------------------------------------------------------------------------- adoption and members
    def _adopt(self, operation: Operation, object_id: str, written: Mapping[str, list[Any]]) -> None:
        """The object exists in Entra ID now: its real id replaces the provisional anchor everywhere."""
        attrs = {name: values for name, values in written.items() if values}
        attrs["id"] = [object_id]
        with self.state.transaction() as connection:
            adopt_anchor(
                connection,
                self.state.connector,
                operation.anchor,
                object_id,
                attrs,
                run_id=self.state.run_id,
                dn=f"{RESOURCES[operation.object_type]}/{object_id}",
            )
        operation.anchor = object_id

    def _adopt_existing(self, operation: Operation) -> tuple[bool, list[dict[str, Any]]]:
        """A create sent by an interrupted run may have succeeded: find the object and adopt it if it is ours.

        Found by its key (users: ``onPremisesImmutableId``; groups: the sourceAnchor in the sync app's directory
        extension, else ``mailNickname`` and ``displayName``), an object is ours only if Graph created it after this
        create was first sent (``sent_at``, committed before the write, less ``adoption_clock_skew_seconds``) and no
        other connector-space object is linked to it. Returns whether one was adopted, and the objects holding the
        key that are not ours (never adopted), each with the ``key`` it was found by.
        """
        found, key = self._lookup(operation)
        if not found:
            return False, []
        sent_at = self._sent_at(operation.anchor)
        ours = [item for item in found if self._created_by_us(item, sent_at)]
        if len(ours) == 1:
            self._adopt(operation, ours[0]["id"], operation.changes)
            self.state.counters["creates_reconciled"] += 1
            return True, []
        return False, [{**item, "sent_at": sent_at, "key": key} for item in found]

    def _lookup(self, operation: Operation) -> tuple[list[dict[str, Any]], str]:
        """The objects of Graph that may be the one this create made, and the key they were found by.

        A group is looked up by its sourceAnchor in the sync app's directory extension when the create carries it:
        two groups may share their names (two forests' "Staff"), and by names each would find the other's object
        too and be created again beside both. Found by names (an anchor not written: its extension unregistered),
        a group holding an anchor is left out: it is another object's (ours would have been found by it).
        """
        changes = operation.changes
        if operation.object_type == "user":
            value = (changes.get("onPremisesImmutableId") or [None])[0]
            return (self._find("users", "onPremisesImmutableId", value) if value else []), "onPremisesImmutableId"
        if operation.object_type != "group":
            return [], NAMES
        anchor, value = self._anchor(changes)
        if anchor is not None and value:
            found = self._find("groups", anchor, value, "mailNickname")
            if found:
                return found, anchor
        nickname = (changes.get("mailNickname") or [None])[0]
        if not nickname:
            return [], NAMES
        extra = (anchor,) if anchor is not None else ()
        found = self._find("groups", "mailNickname", nickname, "displayName", *extra)
        name = (changes.get("displayName") or [None])[0]
        found = [item for item in found if item.get("displayName") == name and not (anchor and item.get(anchor))]
        return found, NAMES

    def _anchor(self, changes: Mapping[str, list[Any]]) -> tuple[str | None, Any]:
        """The Graph name of the anchor's directory extension (None: not registered on the sync app, so not
        written) and the anchor this create carries in it."""
        attribute = next((name for name in changes if name.lower() == ANCHOR_ATTRIBUTE.lower()), None)
        if attribute is None:
            return None, None
        self.names.ensure(self.state.writer, [attribute])  # as a write of it does: learn (or register) it first
        if not self.names.is_registered(attribute):
            return None, None
        return self.names.to_graph(attribute), (changes[attribute] or [None])[0]

    def _find(self, resource: str, key: str, value: Any, *select: str) -> list[dict[str, Any]]:
        """The objects whose ``key`` is exactly ``value`` (``$filter`` compares strings case-insensitively, and
        base64 anchors differ by case)."""
        found = self.state.writer.request(
            "GET",
            f"/{resource}",
            params={
                "$filter": f"{key} eq '{odata_quote(str(value))}'",
                "$select": ",".join(dict.fromkeys(["id", "displayName", key, "createdDateTime", *select])),
            },
        )["value"]
        return [item for item in found if item.get(key) == value]

    def _sent_at(self, anchor: str) -> dt.datetime | None:
        """When the create of ``anchor`` was first sent (rows sent before schema step 6: their last send)."""
        query = sa.select(pending_export.c.sent_at, pending_export.c.updated_at).where(self.state.row(anchor))
        if self.state.connection is not None:
            row = self.state.connection.execute(query).first()
        else:
            with self.state.store.engine.connect() as connection:
                row = connection.execute(query).first()
        moment = (row.sent_at or row.updated_at) if row is not None else None
        return as_utc(moment) if moment is not None else None

    def _created_by_us(self, item: Mapping[str, Any], sent_at: dt.datetime | None) -> bool:
        created = parse_time(item.get("createdDateTime"))
        if created is None or sent_at is None:
            return False
        if created < sent_at - dt.timedelta(seconds=self.state.settings.adoption_clock_skew_seconds):
            return False
        return not self._linked(item["id"])

    def _linked(self, object_id: str) -> bool:
        query = sa.select(link.c.anchor).where(link.c.connector == self.state.connector, link.c.anchor == object_id)
        if self.state.connection is not None:
            return self.state.connection.execute(query).first() is not None
        with self.state.store.engine.connect() as connection:
            return connection.execute(query).first() is not None

    def _not_adopted(self, operation: Operation, foreign: Sequence[Mapping[str, Any]]) -> None:
        """Objects that hold our key but that we did not create: a per-object error; none is adopted or written."""
        sent_at = foreign[0].get("sent_at")
        held = "; ".join(
            f"id {item['id']} created {item.get('createdDateTime') or 'at an unknown time'}" for item in foreign[:5]
        )
        key = foreign[0].get("key") or NAMES
        message = (
            f"an object we did not create holds this name; not adopted: the {operation.object_type} {key} of "
            f"{operation.dn} is held by {held} (this create was first sent "
            f"{sent_at.strftime('%Y-%m-%dT%H:%M:%SZ') if sent_at else 'at an unknown time'}). Nothing was written to "
            "it: remove or rename it in Entra ID, or match it to this object on purpose"
        )
        self.state.counters["creates_not_adopted"] += 1
        self.state.fail_rows([operation.anchor], NOT_ADOPTED, message, dn=operation.dn)

    def _confirm_members(self, group: str, targets: Sequence[str], *, added: bool) -> None:
        with self.state.transaction() as connection:
            record_references(self.state.store, connection, self.state.connector, group, MEMBERS, targets, added=added)
        self.state.counters["member_adds" if added else "member_removes"] += len(targets)

    def forget_empty_updates(self) -> None:
        with self.state.transaction() as connection:
            forget_empty_updates(connection, self.state.connector)


def _move_withdrawn(connection: sa.Connection, connector: str, provisional: str, object_id: str, dn: str) -> None:
    """A withdrawn create's delete row and connector-space object take the id of the object it made, so the delete
    is recorded (and, after a kill, sent again) as any other. A row an import read of the object stays in place of
    the provisional one, and any other plan row of the object gives way to the delete."""
    imported = connection.execute(
        sa.select(cs_object.c.anchor).where(cs_object.c.connector == connector, cs_object.c.anchor == object_id)
    ).first()
    provisional_object = sa.and_(cs_object.c.connector == connector, cs_object.c.anchor == provisional)
    if imported is not None:
        connection.execute(sa.delete(cs_object).where(provisional_object))
    else:
        connection.execute(sa.update(cs_object).where(provisional_object).values(anchor=object_id, dn=dn))
    connection.execute(
        sa.delete(pending_export).where(pending_export.c.connector == connector, pending_export.c.anchor == object_id)
    )
    connection.execute(
        sa.update(pending_export)
        .where(pending_export.c.connector == connector, pending_export.c.anchor == provisional)
        .values(anchor=object_id, dn=dn)
    )
