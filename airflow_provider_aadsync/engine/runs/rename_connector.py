"""Renaming a connector in the store, for a connector renamed in the connectors configuration.

A connector's name keys its connector space, links, watermarks (the DirSync cookies), pending exports, sync state and
memo, and every contribution it made to the metaverse (``<connector>|<rule>``). Renamed in the connectors file alone,
the old space is left unread (the cycle report names it, :mod:`.unconfigured`) and the new name starts empty: its first
import reads the whole forest again as new objects, which join or project afresh. :func:`rename_connector_space`
moves everything to the new name in one transaction instead, so the next cycle goes on from the same cookies and
links as if nothing had happened: no object is imported, joined, created or deleted again.

Only a rename that changes nothing else is done: the two names are connectors of the same kind, the old name has a
space and the new one none, the connectors configuration (when given) names the new and not the old, the rules that
read or write the connector are the same under both names (a rule written for the old name alone would stop
applying: rename it in the rule files first), and objects sync provisioned in the space (written-back groups) have a
Provision rule writing to the new name.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.kinds import connector_kind, inbound_rule_applies, outbound_rule_targets
from airflow_provider_aadsync.engine.rules import RuleSet
from airflow_provider_aadsync.engine.rules.compiled import CompiledRule
from airflow_provider_aadsync.engine.rules.model import Direction
from airflow_provider_aadsync.engine.runs.cs_page import serialize_attrs
from airflow_provider_aadsync.engine.runs.import_run import process_holder
from airflow_provider_aadsync.engine.store import (
    Store,
    cs_object,
    cs_reference,
    export_conflict,
    link,
    mv_object,
    pending_export,
    pending_export_reference,
    sync_memo,
    sync_state,
    watermark,
)
from airflow_provider_aadsync.engine.sync.contributions import contributor_connector, resolve
from airflow_provider_aadsync.engine.sync.frames import load_json

#: The tables whose rows a connector owns, moved to the new name (the run history keeps the name each run had).
_RENAMED = (cs_object, cs_reference, link, watermark, pending_export, pending_export_reference, export_conflict)
#: Metaverse objects rewritten per statement batch.
_MV_BATCH = 2_000


class RenameRefused(ValueError):
    """The connector cannot be renamed (the message says why); nothing was changed."""


@dataclass(frozen=True)
class RenamedConnector:
    """What :func:`rename_connector_space` moved (or, not ``confirmed``, would move): rows per table, and the metaverse
    objects whose contributions it renamed; ``reordered``: those among them whose value another connector's
    equal-precedence contribution now decides (the connector whose name sorts first wins a tie), recomputed by the
    next sync."""

    connector: str
    to: str
    confirmed: bool
    rows: dict[str, int] = field(default_factory=dict)
    metaverse_objects: int = 0
    reordered: int = 0

    def message(self) -> str:
        moved = ", ".join(f"{table} {count:,}" for table, count in self.rows.items() if count) or "no rows"
        if not self.confirmed:
            text = (
                f"Connector {self.connector!r} would be renamed {self.to!r}: {moved}; the contributions of "
                f"{self.metaverse_objects:,} metaverse objects. Give --confirm-rename to do it (nothing was changed)."
            )
        else:
            text = (
                f"Connector {self.connector!r} renamed {self.to!r}: {moved}; the contributions of "
                f"{self.metaverse_objects:,} metaverse objects renamed. Its next sync is a full one (its memo and sync "
                "state start afresh) and stages nothing that did not change."
            )
        if self.reordered:
            text += (
                f" {self.reordered:,} metaverse objects have an equal-precedence contribution of another connector, "
                "which then sorts before this one and wins: the next sync stages their new values (the export's "
                "guards apply)."
            )
        return text


def _rules_of(rules: RuleSet, connector: str) -> set[str]:
    """The enabled rules that read (inbound) or write (outbound) ``connector``, by name."""
    return {rule.name for rule in rules if rule.enabled and _applies(rule, connector)}


def _applies(rule: CompiledRule, connector: str) -> bool:
    if rule.direction is Direction.INBOUND:
        return inbound_rule_applies(rule.connector, connector)
    return connector in outbound_rule_targets(rule.connector, rule.link_type, [connector])


def _check_names(old: str, new: str, configured: Collection[str], rules: RuleSet | None) -> None:
    if not new.strip() or len(new) > 64:
        raise RenameRefused(f"a connector name of 1 to 64 characters is needed, not {new!r}")
    if old.casefold() == new.casefold():
        raise RenameRefused(f"{old!r} and {new!r} are one connector name (names are compared ignoring case)")
    kinds = connector_kind(old), connector_kind(new)
    if kinds[0] is None or kinds[0] != kinds[1]:
        raise RenameRefused(
            f"{old!r} and {new!r} are not connectors of one kind ({kinds[0] or 'none'} and {kinds[1] or 'none'}): the "
            "kind, which the name gives (ad, ad_<name>; entra), decides the rules and attribute types of the space"
        )
    if configured and (old in configured or new not in configured):
        raise RenameRefused(
            f"the connectors configuration must name {new!r} and no longer {old!r} (it names "
            f"{', '.join(sorted(configured))}): rename it there first, then here, before the next cycle"
        )
    if rules is not None:
        before, after = _rules_of(rules, old), _rules_of(rules, new)
        if before != after:
            lost, gained = sorted(before - after), sorted(after - before)
            parts = [f"{', '.join(lost)} would stop applying"] if lost else []
            parts += [f"{', '.join(gained)} would start applying"] if gained else []
            raise RenameRefused(
                f"the rules of {old!r} and {new!r} differ ({'; '.join(parts)}): rename the connector in those rules "
                "first, so that the rename changes nothing but the name"
            )


def _check_provisioned(connection: sa.Connection, old: str, new: str, rules: RuleSet | None) -> None:
    """Objects sync provisioned in ``old``'s space (written-back groups) stay its only while a Provision rule writes to
    the new name: the shipped group writeback writes to the connector named ``ad`` alone, and without it they would be
    orphaned, and written back again under the old name."""
    provisioned = int(
        connection.execute(
            sa.select(sa.func.count()).where(link.c.connector == old, link.c.link_type == "provision")
        ).scalar_one()
    )
    writers = [
        rule.name
        for rule in (rules or ())
        if rule.enabled and rule.direction is Direction.OUTBOUND and rule.link_type == "Provision"
        and _applies(rule, new)
    ]  # fmt: skip
    if provisioned and not writers:
        raise RenameRefused(
            f"connector space {old!r} holds {provisioned:,} objects sync provisioned there (group writeback), and no "
            f"enabled Provision rule of the rules given writes to {new!r}: renamed, they would be orphaned and "
            "written back again (give the sync's rule options, writeback settings included, and a rule for the name)"
        )


def _count(connection: sa.Connection, table: sa.Table, connector: str) -> int:
    return int(connection.execute(sa.select(sa.func.count()).where(table.c.connector == connector)).scalar_one())


def _rename_contributions(connection: sa.Connection, old: str, new: str, *, write: bool) -> tuple[int, int]:
    """Rename ``old``'s contributor keys in every metaverse object's contributions (only count them without
    ``write``); (objects renamed, objects whose resolved values the new name changes)."""
    renamed = reordered = 0
    after_id = 0
    marker = f'"{old}|'
    while True:
        rows = connection.execute(
            sa.select(mv_object.c.id, mv_object.c.contributions)
            .where(mv_object.c.id > after_id, mv_object.c.contributions.contains(marker, autoescape=True))
            .order_by(mv_object.c.id)
            .limit(_MV_BATCH)
        ).all()
        if not rows:
            return renamed, reordered
        updates = []
        for mv_id, text in rows:
            contributions = load_json(text)
            changed = {
                attribute: {
                    (f"{new}|{key.split('|', 1)[1]}" if contributor_connector(key) == old else key): entry
                    for key, entry in entries.items()
                }
                for attribute, entries in contributions.items()
            }
            if changed == contributions:  # the marker was inside a value, not a key
                continue
            renamed += 1
            reordered += resolve(changed)[0] != resolve(contributions)[0]
            updates.append({"mv_id": mv_id, "contributions": serialize_attrs(changed)})
        if updates and write:
            connection.execute(
                sa.update(mv_object).where(mv_object.c.id == sa.bindparam("mv_id")),
                updates,
            )
        after_id = rows[-1][0]


def rename_connector_space(
    store: Store,
    old: str,
    new: str,
    *,
    confirm: bool,
    configured: Collection[str] = (),
    rules: RuleSet | None = None,
    lock_holder: str | None = None,
) -> RenamedConnector:
    """Move connector ``old``'s space, links, watermarks, pending exports and metaverse contributions to ``new``, in
    one transaction under the sync instance's lock (refused while a cycle runs); its sync state and memo go, so its
    next sync is a full one. Without ``confirm`` only count what it would move.

    :param configured: the connectors the connectors configuration names (checked when given).
    :param rules: the sync rules (checked when given): the same rules must read and write both names.
    :raise RenameRefused: see the module's text; nothing is changed then.
    """
    _check_names(old, new, configured, rules)
    with store.locked(lock_holder or process_holder()), store.transaction() as connection:
        if not any(_count(connection, table, old) for table in (cs_object, watermark, sync_state)):
            raise RenameRefused(f"the store holds no connector {old!r}")
        taken = [table.name for table in (*_RENAMED, sync_state, sync_memo) if _count(connection, table, new)]
        if taken:
            raise RenameRefused(f"the store already holds connector {new!r} ({', '.join(taken)}): it is not renamed")
        _check_provisioned(connection, old, new, rules)
        rows = {}
        for table in _RENAMED:
            moved = sa.update(table).where(table.c.connector == old).values(connector=new)
            rows[table.name] = connection.execute(moved).rowcount if confirm else _count(connection, table, old)
        for table in (sync_state, sync_memo):  # a full sync next, which evaluates every object (memo.py)
            gone = sa.delete(table).where(table.c.connector == old)
            rows[table.name] = connection.execute(gone).rowcount if confirm else _count(connection, table, old)
        objects, reordered = _rename_contributions(connection, old, new, write=confirm)
    return RenamedConnector(old, new, confirm, rows, objects, reordered)
