"""One recorded export run of any connector: the guards every export has, around a connector's exporter, and what
every exporter records in the connector space once a write is confirmed.

The plan is on the run record before the first write (`aadsync report` shows it while the export runs); more pending
deletes, disables, member and manager removals or identity changes than their thresholds (engine/runs/export_guards.py)
stop the run before anything is written; staging stores the plan and writes nothing; the error limit stops the
exporter; every outcome is recorded with its counters and per-object errors.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import sqlalchemy as sa

from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.batching import chunks
from airflow_provider_aadsync.engine.runs.cs_writer import attrs_digest, serialize_attrs
from airflow_provider_aadsync.engine.runs.export_guard_check import check_guards, confirmation_note
from airflow_provider_aadsync.engine.runs.export_guards import GuardSettings, count_mass_changes
from airflow_provider_aadsync.engine.runs.import_run import StepResult, process_holder
from airflow_provider_aadsync.engine.runs.instance_advice import cli_store
from airflow_provider_aadsync.engine.runs.source import adjust_references_hash, format_hash
from airflow_provider_aadsync.engine.store import (
    OPEN_STATES,
    REFUSED,
    Store,
    cs_object,
    cs_reference,
    export_conflict,
    link,
    pending_export,
    pending_export_reference,
    utcnow,
)
from airflow_provider_aadsync.engine.store.among import among
from airflow_provider_aadsync.engine.store.lock import stopped_result

log = logging.getLogger(__name__)

#: An export run's result (mode ``export``; ``detail`` says why it stopped).
ExportResult = StepResult


class ErrorLimitReached(Exception):
    """Raised by an exporter when it has recorded as many object errors as the run allows."""


class Exporter(Protocol):
    """What run_export drives; an exporter may also carry ``notices`` (engine/runs/notices.py), recorded with the
    run."""

    errors: list[dict[str, Any]]

    def run(self) -> None: ...

    def final_counters(self, planned: Mapping[str, int]) -> dict[str, Any]: ...


def run_export(
    store: Store,
    *,
    connector: str,
    settings: GuardSettings,
    plan: Callable[[], dict[str, int]],
    exporter: Callable[[int], Exporter],
    command: str,
    lock_holder: str | None = None,
    upn_written: Callable[[str], str] | None = None,
) -> ExportResult:
    """Run one export of ``connector``: ``plan()`` counts what is pending, the guards count its mass changes,
    ``exporter(run_id)`` writes it; ``command`` names the CLI command in a guard's advice; ``upn_written``: the UPN
    the exporter writes for a wanted one, for the identity guard (export_guards.count_mass_changes)."""
    with store.locked(lock_holder or process_holder()):
        run_id = store.start_run("export-staging" if settings.staging else "export", connector)
        counts = plan()
        changes = count_mass_changes(store, connector, settings, upn_written=upn_written)
        counts.update(changes.counters(settings))
        store.update_run(run_id, counts, "export plan recorded; writing")
        stop = check_guards(changes, settings, command, store.instance, cli_store(store.url, store.instance))
        if stop is not None:
            log.warning("export to %s stopped before writing: %s", connector, stop.detail)
            return _finish(store, run_id, connector, stop.result, counts, [], stop.detail)
        note = confirmation_note(changes, settings)  # what a confirmation let through, or that it was not needed
        if note:
            log.warning("export to %s: %s", connector, note)
        if settings.staging:
            detail = "staging mode: the plan is stored and nothing was written"
            return _finish(store, run_id, connector, "staged", counts, [], f"{detail}; {note}" if note else detail)
        held = still_refused(store, connector)
        if held:
            counts["adds_held_refused"] = len(held)
        with progress.track(f"export to {connector}"):
            writer = exporter(run_id)
            writer.errors.extend(held)
            return _write(store, run_id, connector, counts, writer, note)


def _write(
    store: Store, run_id: int, connector: str, counts: dict[str, Any], writer: Exporter, note: str | None = None
) -> ExportResult:
    """Run the exporter and record its outcome, whatever it is (``note``: the run's detail when it completes)."""
    try:
        writer.run()
    except ErrorLimitReached:
        detail = f"stopped after {len(writer.errors)} object errors"
        final = writer.final_counters(counts)
        return _finish(store, run_id, connector, "stopped-error-limit", final, writer.errors, detail)
    except Exception as error:
        _finish(
            store, run_id, connector, stopped_result(error, "stopped-extension-error"),
            writer.final_counters(counts), writer.errors, repr(error),
        )  # fmt: skip
        raise
    finally:
        # What the run could not write and did not count as an error (engine/runs/notices.py), grouped.
        notices = getattr(writer, "notices", None)
        store.record_notices(run_id, notices.rows() if notices is not None else [])
    result = "completed-export-errors" if writer.errors else "success"
    final = writer.final_counters(counts)
    log.info("export to %s finished: %s %s", connector, result, final)
    return _finish(store, run_id, connector, result, final, writer.errors, note)


#: How a held add names the cloud object that refused its match (its ``last_error``, written by sync/joins.py).
_REFUSAL = re.compile(r"(?P<code>[\w-]+): cloud object (?P<anchor>\S+) \((?P<dn>.*?)\): (?P<message>.*)", re.DOTALL)


#: What a held add keeps as it is (sync/staging.py leaves the member and manager references naming it alone).
_HELD = "the add is held; the cloud object keeps its group memberships and stays its reports' manager until it joins"


def refusing_anchor(last_error: str | None) -> str | None:
    """The anchor of the cloud object that refused the match of a held add (state ``refused``), from its last error."""
    found = _REFUSAL.fullmatch(last_error or "")
    return found["anchor"] if found is not None else None


def still_refused(store: Store, connector: str) -> list[dict[str, Any]]:
    """One per-object error per add that sync holds because its match was refused (state ``refused``): named by the
    cloud object that refused it, so every cycle's report shows what still needs a person; nothing is sent."""
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(pending_export.c.anchor, pending_export.c.dn, pending_export.c.last_error).where(
                pending_export.c.connector == connector, pending_export.c.state == REFUSED
            )
        ).all()
    errors = []
    for row in rows:
        found = _REFUSAL.fullmatch(row.last_error or "")
        if found is None:
            errors.append({"anchor": row.anchor, "dn": row.dn, "code": "refused", "message": "still refused"})
            continue
        errors.append({"anchor": found["anchor"], "dn": found["dn"], "code": found["code"],
                       "message": f"still refused, not created ({_HELD}): {found['message']}"})  # fmt: skip
    return errors


def _finish(
    store: Store,
    run_id: int,
    connector: str,
    result: str,
    counters: dict[str, Any],
    errors: list[dict[str, Any]],
    detail: str | None,
) -> ExportResult:
    store.record_errors(run_id, errors)
    store.finish_run(run_id, result, counters, detail)
    return ExportResult(run_id, connector, "export", result, counters, detail=detail)


def open_work(store: Store, connector: str) -> tuple[int, int]:
    """What an export has left to write: open object operations and open member references (the progress' totals)."""
    with store.engine.connect() as connection:
        objects = connection.execute(
            sa.select(sa.func.count()).where(
                pending_export.c.connector == connector, pending_export.c.state.in_(OPEN_STATES)
            )
        ).scalar_one()
        references = connection.execute(
            sa.select(sa.func.count()).where(
                pending_export_reference.c.connector == connector, pending_export_reference.c.state.in_(OPEN_STATES)
            )
        ).scalar_one()
    return int(objects), int(references)


# ============================================================================ what an export records of its writes
class AnchorHeld(Exception):
    """The real anchor of a created object is held by a connector-space object that is linked to a metaverse
    object: adopting it would join one directory object to two metaverse objects, so nothing is recorded. The
    exporters check the link before they adopt (and fail the add as not adopted); this only stops a caller that
    did not, before the primary key does it with an IntegrityError that names neither object."""


def adopt_anchor(
    connection: sa.Connection,
    connector: str,
    provisional: str,
    anchor: str,
    attrs: Mapping[str, list[Any]],
    *,
    run_id: int,
    dn: str | None = None,
) -> None:
    """A created object's real anchor replaces the provisional one everywhere; ``attrs`` (what was written) become
    its connector-space values, so the next sync sees no difference.

    An import may have brought the created object in first: an export killed after the write leaves its add
    ``sent``, the next cycle's import reads the object, and nothing joins it (the rules scope written-back groups
    out of the inbound flows), so the export that finds it adopts an anchor an unlinked row already holds. That
    row is the object, as the directory showed it after the write: it stays, takes the provisional row's place
    (its link, member changes and conflicts) and keeps its values, references and hashes instead of ``attrs``, so
    the next import sees the object unchanged and the next sync compares against what the directory holds, not
    against what the add wrote (an attribute the add did not write, or one changed since, is not lost). The
    provisional row goes, in the caller's transaction. A row that is linked raises AnchorHeld.
    """
    folded = _fold_imported(connection, connector, provisional, anchor, run_id=run_id)
    if not folded:
        serialized = serialize_attrs(dict(attrs))
        values: dict[str, Any] = {
            "anchor": anchor,
            "attrs": serialized,
            "attrs_hash": attrs_digest(serialized),
            "refs_hash": format_hash(0),
            "pending_export": None,
            "last_run_id": run_id,
            "updated_at": utcnow(),
        }
        if dn:
            values["dn"] = dn
        connection.execute(
            sa.update(cs_object)
            .where(cs_object.c.connector == connector, cs_object.c.anchor == provisional)
            .values(**values)
        )
    connection.execute(
        sa.update(link).where(link.c.connector == connector, link.c.anchor == provisional).values(anchor=anchor)
    )
    connection.execute(
        sa.delete(pending_export).where(pending_export.c.connector == connector, pending_export.c.anchor == provisional)
    )
    for column in (pending_export_reference.c.anchor, pending_export_reference.c.target_anchor):
        connection.execute(
            sa.update(pending_export_reference)
            .where(pending_export_reference.c.connector == connector, column == provisional)
            .values({column.name: anchor})
        )
    connection.execute(
        sa.update(export_conflict)
        .where(export_conflict.c.connector == connector, export_conflict.c.anchor == provisional)
        .values(anchor=anchor)
    )


def _fold_imported(connection: sa.Connection, connector: str, provisional: str, anchor: str, *, run_id: int) -> bool:
    """When an imported row already holds ``anchor``: drop the provisional row (and any reference rows under it) and
    keep the imported one as the created object's (see adopt_anchor); True when it did. An unlinked row has no plan
    rows of its own (sync stages exports only for linked objects), so the provisional row's move onto it cannot
    collide. Raises AnchorHeld, before anything is changed, when the row is linked."""
    if anchor == provisional:
        return False
    held = connection.execute(
        sa.select(cs_object.c.anchor).where(cs_object.c.connector == connector, cs_object.c.anchor == anchor)
    ).first()
    if held is None:
        return False
    owners = sorted(
        connection.execute(sa.select(link.c.mv_id).where(link.c.connector == connector, link.c.anchor == anchor))
        .scalars()
        .all()
    )
    if owners:
        raise AnchorHeld(
            f"the {connector} object {anchor} the create of {provisional} made is already linked to metaverse "
            f"object {', '.join(map(str, owners))}: not adopted"
        )
    for table in (cs_reference, cs_object):
        connection.execute(sa.delete(table).where(table.c.connector == connector, table.c.anchor == provisional))
    connection.execute(
        sa.update(cs_object)
        .where(cs_object.c.connector == connector, cs_object.c.anchor == anchor)
        .values(pending_export=None, last_run_id=run_id, updated_at=utcnow())
    )
    log.info(
        "%s: the object the create of %s made was imported before its create was recorded; adopted as %s",
        connector, provisional, anchor,
    )  # fmt: skip
    return True


def release_conflicts(
    connection: sa.Connection, connector: str, anchors: Sequence[str], attributes: Sequence[str] | None = None
) -> None:
    """The open duplicate-attribute conflicts of ``anchors`` (of ``attributes``; None: all) are over: the export wrote
    the wanted value, the sync withdrew the object that wanted it, or the object is gone from the directory."""
    conditions = [
        export_conflict.c.connector == connector,
        among(export_conflict.c.anchor, list(anchors)),
        export_conflict.c.released_at.is_(None),
    ]
    if attributes is not None:
        conditions.append(export_conflict.c.attribute.in_(list(attributes)))
    connection.execute(sa.update(export_conflict).where(*conditions).values(released_at=utcnow()))


def record_attributes(
    connection: sa.Connection,
    connector: str,
    anchor: str,
    changes: Mapping[str, list[Any]],
    *,
    run_id: int,
    dn: str | None = None,
) -> None:
    """Written attribute values (an empty list: cleared) become the object's connector-space values."""
    record_attributes_many(connection, connector, [(anchor, changes, dn)], run_id=run_id)


def record_attributes_many(
    connection: sa.Connection,
    connector: str,
    written: Sequence[tuple[str, Mapping[str, list[Any]], str | None]],
    *,
    run_id: int,
) -> None:
    """What many confirmed writes wrote, (anchor, values, new DN or None) each, becomes their connector-space values:
    one read of their rows and one executemany update per chunk, instead of a read and an update per object (an export
    that writes every user's mS-DS-ConsistencyGuid settles 20,000 objects). An object no longer in the connector
    space is skipped."""
    by_anchor: dict[str, tuple[Mapping[str, list[Any]], str | None]] = {}
    for anchor, changes, dn in written:
        earlier = by_anchor.get(anchor)
        if earlier is not None:  # the same object twice: the later write lands on top of the earlier one
            changes, dn = {**earlier[0], **changes}, dn or earlier[1]
        by_anchor[anchor] = (changes, dn)
    statement = (
        sa.update(cs_object)
        .where(cs_object.c.connector == connector, cs_object.c.anchor == sa.bindparam("b_anchor"))
        .values(
            attrs=sa.bindparam("b_attrs"),
            attrs_hash=sa.bindparam("b_hash"),
            dn=sa.func.coalesce(sa.bindparam("b_dn", type_=cs_object.c.dn.type), cs_object.c.dn),
            last_run_id=run_id,
            updated_at=utcnow(),
        )
    )
    for part in chunks(list(by_anchor)):
        rows = connection.execute(
            sa.select(cs_object.c.anchor, cs_object.c.attrs).where(
                cs_object.c.connector == connector, cs_object.c.anchor.in_(list(part))
            )
        ).all()
        updates = []
        for anchor, stored in rows:
            changes, dn = by_anchor[anchor]
            attrs = json.loads(stored)
            spelled = {name.lower(): name for name in attrs}
            for name, values in changes.items():
                attrs.pop(spelled.get(name.lower(), name), None)
                if values:
                    attrs[name] = values
            serialized = serialize_attrs(attrs)
            updates.append(
                {"b_anchor": anchor, "b_attrs": serialized, "b_hash": attrs_digest(serialized), "b_dn": dn or None}
            )
        if updates:
            connection.execute(statement, updates)


def record_references(
    store: Store,
    connection: sa.Connection,
    connector: str,
    group: str,
    attribute: str,
    targets: Sequence[str],
    *,
    added: bool,
) -> None:
    """Confirmed member adds or removes: their pending rows go, the connector space's reference rows and the group's
    reference digest follow (so the next full import sees the group unchanged)."""
    for part in chunks(targets):
        connection.execute(
            sa.delete(pending_export_reference).where(
                pending_export_reference.c.connector == connector,
                pending_export_reference.c.anchor == group,
                pending_export_reference.c.attribute == attribute,
                pending_export_reference.c.target_anchor.in_(list(part)),
            )
        )
    present: set[str] = set()
    for part in chunks(targets):
        present.update(
            connection.execute(
                sa.select(cs_reference.c.target_anchor).where(
                    cs_reference.c.connector == connector,
                    cs_reference.c.anchor == group,
                    cs_reference.c.attribute == attribute,
                    cs_reference.c.target_anchor.in_(list(part)),
                )
            ).scalars()
        )
    if added:
        changed = [target for target in targets if target not in present]
        store.insert_chunked(
            connection,
            cs_reference,
            [{"connector": connector, "anchor": group, "attribute": attribute, "target_anchor": t} for t in changed],
        )
    else:
        changed = [target for target in targets if target in present]
        for part in chunks(changed):
            connection.execute(
                sa.delete(cs_reference).where(
                    cs_reference.c.connector == connector,
                    cs_reference.c.anchor == group,
                    cs_reference.c.attribute == attribute,
                    cs_reference.c.target_anchor.in_(list(part)),
                )
            )
    row = connection.execute(
        sa.select(cs_object.c.refs_hash).where(cs_object.c.connector == connector, cs_object.c.anchor == group)
    ).first()
    if row is not None and changed:
        pairs = [(attribute, target) for target in changed]
        digest = adjust_references_hash(int(row.refs_hash or "0", 16), pairs if added else [], [] if added else pairs)
        connection.execute(
            sa.update(cs_object)
            .where(cs_object.c.connector == connector, cs_object.c.anchor == group)
            .values(refs_hash=format_hash(digest))
        )


def forget_empty_updates(
    connection: sa.Connection,
    connector: str,
    *,
    anchors: Sequence[str] | None = None,
    states: Sequence[str] | None = None,
) -> None:
    """Update rows that only announced member changes are done when no member change is left. ``anchors`` and
    ``states`` narrow it to those rows: a sync pass that withdrew some objects' member changes drops their rows it may
    still rewrite, and leaves a sent one to the export."""
    open_references = (
        sa.select(pending_export_reference.c.anchor)
        .where(
            pending_export_reference.c.connector == connector,
            pending_export_reference.c.anchor == pending_export.c.anchor,
        )
        .exists()
    )
    conditions = [
        pending_export.c.connector == connector,
        pending_export.c.operation == "update",
        pending_export.c.changes == "{}",
        ~open_references,
    ]
    if states is not None:
        conditions.append(pending_export.c.state.in_(list(states)))
    if anchors is not None:
        if not anchors:
            return
        conditions.append(among(pending_export.c.anchor, anchors))  # the pass's key lookups, one bound parameter
    connection.execute(sa.delete(pending_export).where(*conditions))


def generic_plan_counts(store: Store, connector: str) -> dict[str, int]:
    """The open export plan of a connector no registered connector counts: by operation and object type, and its
    member changes (``planned_member_adds`` / ``planned_member_removes``), with no estimate of the writes."""
    with store.engine.connect() as connection:
        counts, _objects = open_plan_counts(connection, connector)
    return counts


def open_plan_counts(
    connection: sa.Connection, connector: str, reference_attribute: str | None = None
) -> tuple[dict[str, int], list[tuple[str, str, int]]]:
    """The counts every connector's plan shares (``planned_<type>_<operation>s``, ``planned_member_adds`` /
    ``_removes`` of ``reference_attribute`` or of every reference, ``planned_deletes``) and the object rows
    (operation, object type, count) the connector's own estimate of its writes starts from."""
    objects = [
        (operation, object_type, int(number))
        for operation, object_type, number in connection.execute(
            sa.select(pending_export.c.operation, pending_export.c.object_type, sa.func.count())
            .where(pending_export.c.connector == connector, pending_export.c.state.in_(OPEN_STATES))
            .group_by(pending_export.c.operation, pending_export.c.object_type)
        )
    ]
    reference_filter = [
        pending_export_reference.c.connector == connector,
        pending_export_reference.c.state.in_(OPEN_STATES),
    ]
    if reference_attribute is not None:
        reference_filter.append(pending_export_reference.c.attribute == reference_attribute)
    references = connection.execute(
        sa.select(pending_export_reference.c.operation, sa.func.count())
        .where(*reference_filter)
        .group_by(pending_export_reference.c.operation)
    ).all()
    counts = {f"planned_{object_type}_{operation}s": number for operation, object_type, number in objects}
    counts.update({f"planned_member_{operation}s": int(number) for operation, number in references})
    counts["planned_deletes"] = sum(n for op, _t, n in objects if op == "delete")
    return counts, objects
