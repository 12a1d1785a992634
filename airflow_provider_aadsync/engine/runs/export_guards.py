"""The mass-change guards every export checks before its first write: deletes, disables, member removals, identity
changes and attribute clears.

Deleting accounts is not the only way to take a tenant down: disabling them, emptying the groups that grant access,
or renaming everyone's sign-in name, does it as surely. So an export counts, from the plan sync staged
(``pending_export`` and ``pending_export_reference``), five kinds of mass change, each against a threshold of its own,
and stops before writing anything when one is exceeded (the defaults are in engine/runs/defaults.py; the checking is
engine/runs/export_guard_check.py), with a result and a message that says how to confirm a real mass change: for one
run, with the exact counts found (engine/runs/export_confirmation.py), or for good, with a raised threshold:

- deletes: pending object deletes (``stopped-deletion-threshold-exceeded``);
- disables: accounts the export would switch off, ``accountEnabled`` true → false (Entra ID) or the ACCOUNTDISABLE
  bit of ``userAccountControl`` newly set (AD) (``stopped-disable-threshold-exceeded``);
- member and manager removals: group member removals plus users whose manager would be cleared (removed and not
  replaced: a change of manager is not one) in one run, or more than a share of one group's current members when the
  group has at least ``MEMBER_REMOVAL_GROUP_MINIMUM`` (``stopped-member-removal-threshold-exceeded``). A manager is a
  reference like a member, and a slip in a manager flow (or in the managers' scope) clears every account's manager,
  which org charts and approval workflows read, without deleting or disabling anything; it shares the member removal
  threshold rather than adding a setting of its own;
- identity changes: accounts whose sign-in name or mail address would change from the value the target holds
  (``userPrincipalName``, ``mail``, AD's ``sAMAccountName``; a change of letter case alone, or a value set where
  there was none, is not one) (``stopped-identity-change-threshold-exceeded``). A slip in a UPN suffix or mail rule
  signs every user out, or sends their mail elsewhere, without deleting or disabling anything;
- attribute clears: objects whose update would take away every value of an attribute the target holds (``[]`` or
  null written over a value), each object once however many attributes it loses; the stop names the attributes
  cleared most (``stopped-attribute-clear-threshold-exceeded``). An import that can no longer read an attribute (the
  sync account lost read access to ``department`` through an attribute ACL, a source system stopped sending it)
  makes sync clear it on every object, and ``department`` or ``employeeId`` drive dynamic groups, licensing and
  Conditional Access: nothing is deleted or disabled, yet access changes everywhere. References (members, managers)
  and the names the identity guard counts are left to their own guards, so one slip asks for one confirmation.

Counting is SQL over the plan (member removals are grouped and compared in the database, never loaded row by
row); only the updates that touch an account's enabled state or its names, or that write an empty value, are read,
to compare old and new values.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_provider_aadsync.engine.runs.defaults import (
    ATTRIBUTE_CLEAR_THRESHOLD,
    DELETION_THRESHOLD,
    DISABLE_THRESHOLD,
    IDENTITY_CHANGE_THRESHOLD,
    MEMBER_REMOVAL_GROUP_MINIMUM,
    MEMBER_REMOVAL_GROUP_PERCENT,
    MEMBER_REMOVAL_THRESHOLD,
)
from airflow_provider_aadsync.engine.runs.export_confirmation import (
    normalized_confirmation,
    parse_confirmation,
)
from airflow_provider_aadsync.engine.runs.import_run import ERROR_LIMIT
from airflow_provider_aadsync.engine.store import (
    OPEN_STATES,
    Store,
    cs_object,
    cs_reference,
    pending_export,
    pending_export_reference,
)

#: Reference attributes that hold group members (AD ``member``, Graph ``members``).
MEMBER_ATTRIBUTES = ("member", "members")
#: The reference attribute naming a user's manager (AD ``manager``, Graph's ``manager`` navigation).
MANAGER_ATTRIBUTES = ("manager",)
#: Attributes that name an account to the people who use it: its sign-in names and its mail address (lower case).
IDENTITY_ATTRIBUTES = ("userprincipalname", "mail", "samaccountname")
#: Attributes the attribute clear guard leaves to others (lower case): references (members and managers have the member
#: removal guard; AD's ``managedBy`` is a reference too, and references travel in ``pending_export_reference`` anyway)
#: and the names the identity guard counts cleared.
NOT_ATTRIBUTE_CLEARS = frozenset((*MEMBER_ATTRIBUTES, *MANAGER_ATTRIBUTES, "managedby", *IDENTITY_ATTRIBUTES))
#: How many of the attributes cleared most a stop names.
CLEARED_ATTRIBUTES_NAMED = 3
_ACCOUNT_DISABLE = 0x2

STOPPED_DELETES = "stopped-deletion-threshold-exceeded"
STOPPED_DISABLES = "stopped-disable-threshold-exceeded"
STOPPED_MEMBER_REMOVALS = "stopped-member-removal-threshold-exceeded"
STOPPED_IDENTITY_CHANGES = "stopped-identity-change-threshold-exceeded"
STOPPED_ATTRIBUTE_CLEARS = "stopped-attribute-clear-threshold-exceeded"


class GuardSettings(BaseModel):
    """What every export's settings share (the Entra ID export's ExportSettings and the AD export's
    ADExportSettings extend it): staging, the mass-change thresholds checked before the first write, and how many
    object errors a run records before it stops."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Compute and store the plan, write nothing.
    staging: bool = False
    #: More pending deletes than this stops the export before anything is written.
    deletion_threshold: int = Field(DELETION_THRESHOLD, ge=0)
    #: More accounts switched off than this stops the export before anything is written.
    disable_threshold: int = Field(DISABLE_THRESHOLD, ge=0)
    #: More group member removals plus managers cleared than this in one run stops the export before anything is
    #: written ...
    member_removal_threshold: int = Field(MEMBER_REMOVAL_THRESHOLD, ge=0)
    #: ... and so does a group of 20 or more members losing more than this share (percent) of them.
    member_removal_group_percent: int = Field(MEMBER_REMOVAL_GROUP_PERCENT, ge=0, le=100)
    #: More accounts whose sign-in name or mail address changes than this stops the export before anything is written.
    identity_change_threshold: int = Field(IDENTITY_CHANGE_THRESHOLD, ge=0)
    #: More objects losing every value of an attribute they hold than this stops the export before anything is written.
    attribute_clear_threshold: int = Field(ATTRIBUTE_CLEAR_THRESHOLD, ge=0)
    #: The exact counts confirmed for this run (``deletes=812,member_removals=1204``; engine/runs/
    #: export_confirmation.py): a guard over its threshold lets the export through only when its count is the one
    #: named here. None: nothing confirmed.
    confirm_mass_change: str | None = None
    error_limit: int = Field(ERROR_LIMIT, ge=1)

    @field_validator("confirm_mass_change", mode="before")
    @classmethod
    def _confirmation(cls, value: object) -> str | None:
        return normalized_confirmation(None if value is None else str(value))

    @property
    def confirmed(self) -> dict[str, int]:
        """The confirmed counts by guard name (empty: nothing confirmed)."""
        return parse_confirmation(self.confirm_mass_change)


@dataclass(frozen=True)
class GroupRemoval:
    """One group that would lose more than the allowed share of its members."""

    anchor: str
    name: str
    removes: int
    members: int

    @property
    def percent(self) -> int:
        """The share removed, rounded up: the smallest ``member_removal_group_percent`` that lets it through."""
        return min(100, math.ceil(self.removes * 100 / self.members)) if self.members else 100


@dataclass(frozen=True)
class MassChanges:
    """What the plan would change en masse."""

    deletes: int
    disables: int
    member_removes: int
    #: Groups over the per-group share, largest share first.
    groups_over_share: tuple[GroupRemoval, ...] = ()
    #: Accounts whose sign-in name or mail address changes.
    identity_changes: int = 0
    #: Users whose manager would be cleared (removed and not replaced); checked with the member removals.
    manager_removes: int = 0
    #: Objects that would lose every value of an attribute they hold (each once, whatever it loses).
    attribute_clears: int = 0
    #: (attribute, objects losing it) of every attribute cleared, most cleared first: what the stop names.
    cleared_attributes: tuple[tuple[str, int], ...] = ()

    @property
    def reference_removes(self) -> int:
        """Member removals and managers cleared: what the member removal threshold is checked against."""
        return self.member_removes + self.manager_removes

    def count_of(self, name: str) -> int:
        """The count a confirmation naming guard ``name`` must give (engine/runs/export_confirmation.py)."""
        return {
            "deletes": self.deletes,
            "disables": self.disables,
            "member_removals": self.reference_removes,
            "identity_changes": self.identity_changes,
            "attribute_clears": self.attribute_clears,
        }[name]

    def counters(self, settings: GuardSettings) -> dict[str, int]:
        """Run counters: the counts, the thresholds they were checked against and the counts confirmed for the run
        (``confirmed_<name>``; the report shows them all)."""
        return {
            "planned_deletes": self.deletes,
            "planned_disables": self.disables,
            "planned_member_removes": self.member_removes,
            "planned_manager_removes": self.manager_removes,
            "groups_over_member_removal_share": len(self.groups_over_share),
            "planned_identity_changes": self.identity_changes,
            "planned_attribute_clears": self.attribute_clears,
            "deletion_threshold": settings.deletion_threshold,
            "disable_threshold": settings.disable_threshold,
            "member_removal_threshold": settings.member_removal_threshold,
            "member_removal_group_percent": settings.member_removal_group_percent,
            "identity_change_threshold": settings.identity_change_threshold,
            "attribute_clear_threshold": settings.attribute_clear_threshold,
            **{f"confirmed_{name}": count for name, count in settings.confirmed.items()},
        }


# ================================================================================================= counting
def count_mass_changes(
    store: Store, connector: str, settings: GuardSettings, *, upn_written: Callable[[str], str] | None = None
) -> MassChanges:
    """Count the plan's deletes, disables, member removals (and the groups over the per-group share), managers
    cleared, identity changes and attribute clears. ``upn_written``: the UPN the export writes for a wanted one (Entra:
    on the initial domain while the wanted suffix is unverified), so a UPN it would not change is not counted."""
    with store.engine.connect() as connection:
        deletes = connection.execute(
            sa.select(sa.func.count()).where(
                pending_export.c.connector == connector,
                pending_export.c.operation == "delete",
                pending_export.c.state.in_(OPEN_STATES),
            )
        ).scalar_one()
        disables = _count_disables(connection, connector)
        # A deprovisioned object moved to a holding OU (AD deprovision="move") keeps its memberships.
        implicit = getattr(settings, "deprovision", "delete") != "move"
        removals = _removals(connector, implicit=implicit)
        removes = connection.execute(sa.select(sa.func.count()).select_from(removals)).scalar_one()
        percent = settings.member_removal_group_percent
        groups = _groups_over_share(connection, connector, percent, removals) if removes else ()
        identity_changes = _count_identity_changes(connection, connector, upn_written)
        cleared = _manager_removals(connector, implicit=implicit)
        managers = connection.execute(sa.select(sa.func.count()).select_from(cleared)).scalar_one()
        clears, attributes = _count_attribute_clears(connection, connector)
    return MassChanges(
        deletes,
        disables,
        removes,
        groups,
        identity_changes,
        managers,
        attribute_clears=clears,
        cleared_attributes=attributes,
    )


def _pending_deletes(connector: str) -> sa.Select[Any]:
    return sa.select(pending_export.c.anchor).where(
        pending_export.c.connector == connector,
        pending_export.c.operation == "delete",
        pending_export.c.state.in_(OPEN_STATES),
    )


def _member_removals(connector: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        pending_export_reference.c.connector == connector,
        pending_export_reference.c.operation == "remove",
        pending_export_reference.c.state.in_(OPEN_STATES),
        sa.func.lower(pending_export_reference.c.attribute).in_(MEMBER_ATTRIBUTES),
    )


def _removals(connector: str, *, implicit: bool = True) -> sa.Subquery:
    """(group, attribute, member) of every membership the plan ends: explicit member removes, the memberships of
    objects pending delete (Graph and AD drop a deleted object from every group) and those of groups pending delete
    (their members lose whatever the group grants), each pair once. A slip in the group scoping that deprovisions 300
    groups of 100 members is 300 deletes, under the deletion threshold, and 30,000 memberships ended."""
    deleted = _pending_deletes(connector)
    plan = pending_export_reference.c
    explicit = sa.select(plan.anchor, plan.attribute, plan.target_anchor).where(*_member_removals(connector))
    if not implicit:
        return explicit.subquery("removals")
    of_deleted = sa.select(cs_reference.c.anchor, cs_reference.c.attribute, cs_reference.c.target_anchor).where(
        cs_reference.c.connector == connector,
        sa.func.lower(cs_reference.c.attribute).in_(MEMBER_ATTRIBUTES),
        sa.or_(cs_reference.c.target_anchor.in_(deleted), cs_reference.c.anchor.in_(deleted)),
    )
    return sa.union(explicit, of_deleted).subquery("removals")


def _manager_removals(connector: str, *, implicit: bool = True) -> sa.Subquery:
    """(user,) of every user whose manager the plan clears, each once: a manager remove with no manager add for the
    same user (a change of manager is a remove and an add, and is not counted), and, unless deprovisioned objects
    are moved (``implicit`` false), the reports of a manager pending delete with no new manager staged (a deleted
    object is nobody's manager any more). A user that is itself pending delete is counted by the deletion guard."""
    deleted = _pending_deletes(connector)
    plan = pending_export_reference.c
    replaced = sa.select(plan.anchor).where(
        plan.connector == connector,
        plan.operation == "add",
        plan.state.in_(OPEN_STATES),
        sa.func.lower(plan.attribute).in_(MANAGER_ATTRIBUTES),
    )
    explicit = sa.select(plan.anchor).where(
        plan.connector == connector,
        plan.operation == "remove",
        plan.state.in_(OPEN_STATES),
        sa.func.lower(plan.attribute).in_(MANAGER_ATTRIBUTES),
        plan.anchor.not_in(replaced),
        plan.anchor.not_in(deleted),
    )
    if not implicit:
        return explicit.distinct().subquery("managers_cleared")
    held = cs_reference.c
    of_deleted = sa.select(held.anchor).where(
        held.connector == connector,
        sa.func.lower(held.attribute).in_(MANAGER_ATTRIBUTES),
        held.target_anchor.in_(deleted),
        held.anchor.not_in(deleted),
        held.anchor.not_in(replaced),
    )
    return sa.union(explicit, of_deleted).subquery("managers_cleared")


def _count_disables(connection: sa.Connection, connector: str) -> int:
    """Updates that switch an account off that is not off already (its stored value says so, or is unknown)."""
    rows = _updates_writing(connection, connector, ("accountenabled", "useraccountcontrol"))
    return sum(1 for row in rows if _disables(json.loads(row.changes), json.loads(row.attrs) if row.attrs else {}))


def _count_identity_changes(
    connection: sa.Connection, connector: str, upn_written: Callable[[str], str] | None = None
) -> int:
    """Updates that change a sign-in name or mail address the target holds into another one (or clear it)."""
    rows = _updates_writing(connection, connector, IDENTITY_ATTRIBUTES)
    return sum(
        1
        for row in rows
        if _changes_identity(json.loads(row.changes), json.loads(row.attrs) if row.attrs else {}, upn_written)
    )


def _count_attribute_clears(connection: sa.Connection, connector: str) -> tuple[int, tuple[tuple[str, int], ...]]:
    """Objects whose update takes every value of an attribute they hold, and how many lose each attribute (most
    first). Only updates are read: an object has one pending operation, so an object pending delete (its attributes
    go with it, and the deletion guard counts it) never is, and an add clears nothing the target holds."""
    objects = 0
    by_attribute: Counter[str] = Counter()
    spelled: dict[str, str] = {}
    # Only rows that write an empty value can clear one (json and msgspec both write them so); checked exactly below.
    for row in _open_updates(connection, connector, ("[]", "null", '[""]')):
        cleared = _clears(json.loads(row.changes), json.loads(row.attrs) if row.attrs else {})
        if not cleared:
            continue
        objects += 1
        for name in cleared:
            spelled.setdefault(name.lower(), name)  # the first spelling met names it in the message
            by_attribute[name.lower()] += 1
    ranked = sorted(by_attribute.items(), key=lambda item: (-item[1], item[0]))
    return objects, tuple((spelled[name], count) for name, count in ranked)


def _updates_writing(connection: sa.Connection, connector: str, names: Sequence[str]) -> sa.Result[Any]:
    """The open updates whose changes name one of ``names`` (lower case; a cheap text filter, checked exactly by the
    caller), each with the values its connector-space object holds."""
    return _open_updates(connection, connector, [f'"{name}"' for name in names])


def _open_updates(connection: sa.Connection, connector: str, fragments: Iterable[str]) -> sa.Result[Any]:
    """The open updates whose (lower-cased) changes text holds one of ``fragments``, each with the values its
    connector-space object holds: a filter in the database, so a plan of 250,000 updates is not read to find the
    few a guard compares."""
    changes = sa.func.lower(pending_export.c.changes)
    return connection.execute(
        sa.select(pending_export.c.changes, cs_object.c.attrs)
        .select_from(
            pending_export.outerjoin(
                cs_object,
                sa.and_(
                    cs_object.c.connector == pending_export.c.connector,
                    cs_object.c.anchor == pending_export.c.anchor,
                ),
            )
        )
        .where(
            pending_export.c.connector == connector,
            pending_export.c.operation == "update",
            pending_export.c.state.in_(OPEN_STATES),
            sa.or_(*(changes.contains(fragment, autoescape=True) for fragment in fragments)),
        )
    )


def _value(values: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """(present, first value) of attribute ``name`` in ``values``, whatever its spelling."""
    for key, found in values.items():
        if key.lower() == name.lower():
            if isinstance(found, list):
                return (bool(found), found[0] if found else None)
            return (found is not None, found)
    return (False, None)


def _is_false(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() == "false")


def _disable_bit(value: Any) -> bool | None:
    try:
        return bool(int(str(value).strip()) & _ACCOUNT_DISABLE)
    except ValueError:
        return None


def _disables(changes: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    written, new = _value(changes, "accountEnabled")
    if written and _is_false(new):
        known, old = _value(stored, "accountEnabled")
        return not (known and _is_false(old))
    written, new = _value(changes, "userAccountControl")
    if written and _disable_bit(new):
        known, old = _value(stored, "userAccountControl")
        return not (known and _disable_bit(old))
    return False


def _changes_identity(
    changes: Mapping[str, Any], stored: Mapping[str, Any], upn_written: Callable[[str], str] | None = None
) -> bool:
    """Whether ``changes`` give a sign-in name or mail address the object holds (``stored``) another value, or none.
    A UPN is compared as the export writes it (``upn_written``): a user an earlier export put on the tenant's initial
    domain (its suffix unverified) holds that stand-in, and sync, comparing the UPN its source names, stages the
    change again after every full import (a rebuilt store: every such user), which the export leaves out."""
    for name in IDENTITY_ATTRIBUTES:
        key = next((key for key in changes if key.lower() == name), None)
        if key is None:
            continue
        known, old = _value(stored, name)
        if not known or not str(old):
            continue  # nothing held: setting it renames nobody
        written = changes[key] if isinstance(changes[key], list) else [changes[key]]
        new = written[0] if written else None
        if new is not None and upn_written is not None and name == "userprincipalname":
            new = upn_written(str(new))
        if new is None or str(new).casefold() != str(old).casefold():
            return True
    return False


def _values(value: Any) -> list[Any]:
    """The values of one attribute as stored or staged (a list, one value, or null), without empty ones."""
    values = value if isinstance(value, list) else [value]
    return [found for found in values if found is not None and found != ""]


def _clears(changes: Mapping[str, Any], stored: Mapping[str, Any]) -> list[str]:
    """The attributes ``changes`` take every value of while the object holds one (``stored``), as ``changes`` spell
    them; references and the identity guard's names are not counted here (NOT_ATTRIBUTE_CLEARS)."""
    held = {name.lower(): values for name, values in stored.items()}
    return [
        name
        for name, new in changes.items()
        if name.lower() not in NOT_ATTRIBUTE_CLEARS and not _values(new) and _values(held.get(name.lower()))
    ]


def _groups_over_share(
    connection: sa.Connection, connector: str, percent: int, removals: sa.Subquery
) -> tuple[GroupRemoval, ...]:
    """Groups of at least MEMBER_REMOVAL_GROUP_MINIMUM members that would lose more than ``percent`` % of them; a
    group pending delete is not one (it loses them all: its memberships count in the total, the group as a delete)."""
    removes = (
        sa.select(removals.c.anchor, removals.c.attribute, sa.func.count().label("removes"))
        .group_by(removals.c.anchor, removals.c.attribute)
        .subquery()
    )
    members = (
        sa.select(cs_reference.c.anchor, cs_reference.c.attribute, sa.func.count().label("members"))
        .where(
            cs_reference.c.connector == connector,
            cs_reference.c.anchor.in_(sa.select(removes.c.anchor)),
            sa.func.lower(cs_reference.c.attribute).in_(MEMBER_ATTRIBUTES),
        )
        .group_by(cs_reference.c.anchor, cs_reference.c.attribute)
        .subquery()
    )
    rows = connection.execute(
        sa.select(removes.c.anchor, removes.c.removes, members.c.members, cs_object.c.dn, cs_object.c.attrs)
        .join(members, sa.and_(members.c.anchor == removes.c.anchor, members.c.attribute == removes.c.attribute))
        .outerjoin(cs_object, sa.and_(cs_object.c.connector == connector, cs_object.c.anchor == removes.c.anchor))
        .where(
            members.c.members >= MEMBER_REMOVAL_GROUP_MINIMUM,
            removes.c.removes * 100 > members.c.members * percent,
            removes.c.anchor.not_in(_pending_deletes(connector)),
        )
        .order_by((removes.c.removes * 1.0 / members.c.members).desc(), removes.c.anchor)
    ).all()
    return tuple(GroupRemoval(row.anchor, _group_name(row.dn, row.attrs), row.removes, row.members) for row in rows)


def _group_name(dn: str | None, attrs: str | None) -> str:
    values = json.loads(attrs) if attrs else {}
    for name in ("displayName", "cn", "sAMAccountName", "mailNickname"):
        present, value = _value(values, name)
        if present:
            return f'"{value}" ({dn})' if dn else f'"{value}"'
    return dn or "(unknown group)"
