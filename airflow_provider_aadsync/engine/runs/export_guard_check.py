"""Checking the export guards' counts (engine/runs/export_guards.py) against their thresholds and the run's
confirmation (engine/runs/export_confirmation.py), and the messages and report line that say what was found.

A guard over its threshold stops the export before its first write unless the run confirmed exactly its count. The
stop's message names every guard that stops, a confirmed count that no longer matches (the confirmed and the found
number), the confirmation to give (first: it lets through this plan only) and the threshold to raise for a standing
change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_aadsync.engine.runs.defaults import MEMBER_REMOVAL_GROUP_MINIMUM
from airflow_provider_aadsync.engine.runs.export_confirmation import format_confirmation
from airflow_provider_aadsync.engine.runs.export_guards import (
    CLEARED_ATTRIBUTES_NAMED,
    STOPPED_ATTRIBUTE_CLEARS,
    STOPPED_DELETES,
    STOPPED_DISABLES,
    STOPPED_IDENTITY_CHANGES,
    STOPPED_MEMBER_REMOVALS,
    GuardSettings,
    MassChanges,
)
from airflow_provider_aadsync.engine.runs.instance_advice import DEFAULT, cli_instance, variable_advice


@dataclass(frozen=True)
class GuardStop:
    """An exceeded guard: the run's result and the message that says what is pending and how to confirm it."""

    result: str
    detail: str


@dataclass(frozen=True)
class _Exceeded:
    """One guard over its threshold: what is pending, the name and count that confirm it, and the threshold that
    would let it through for good."""

    result: str
    name: str
    count: int
    pending: str
    threshold: str


def _exceeded(
    changes: MassChanges, settings: GuardSettings, command: str, instance: str = DEFAULT, store: str = ""
) -> list[_Exceeded]:
    found: list[_Exceeded] = []
    if changes.deletes > settings.deletion_threshold:
        found.append(
            _Exceeded(
                STOPPED_DELETES,
                "deletes",
                changes.deletes,
                f"{changes.deletes:,} deletes are pending, more than the deletion threshold of "
                f"{settings.deletion_threshold:,}",
                _threshold("deletion threshold", changes.deletes, "deletion_threshold", command, instance, store),
            )
        )
    if changes.disables > settings.disable_threshold:
        found.append(
            _Exceeded(
                STOPPED_DISABLES,
                "disables",
                changes.disables,
                f"{changes.disables:,} accounts would be disabled (accountEnabled true → false, or the ACCOUNTDISABLE "
                f"bit of userAccountControl set), more than the disable threshold of {settings.disable_threshold:,}",
                _threshold("disable threshold", changes.disables, "disable_threshold", command, instance, store),
            )
        )
    removes = changes.reference_removes
    if removes > settings.member_removal_threshold:
        pending = (
            f"{removes:,} member and manager removals are pending ({changes.member_removes:,} "
            f"group member removals, {changes.manager_removes:,} users whose manager would be cleared)"
            if changes.manager_removes
            else f"{changes.member_removes:,} group member removals are pending"
        )
        found.append(
            _Exceeded(
                STOPPED_MEMBER_REMOVALS,
                "member_removals",
                removes,
                f"{pending}, more than the member removal threshold of {settings.member_removal_threshold:,}",
                _threshold("member removal threshold", removes, "member_removal_threshold", command, instance, store),
            )
        )
    if changes.identity_changes > settings.identity_change_threshold:
        found.append(
            _Exceeded(
                STOPPED_IDENTITY_CHANGES,
                "identity_changes",
                changes.identity_changes,
                f"{changes.identity_changes:,} accounts would get another sign-in name or mail address "
                f"(userPrincipalName, mail or sAMAccountName), more than the identity change threshold of "
                f"{settings.identity_change_threshold:,}",
                _threshold(
                    "identity change threshold",
                    changes.identity_changes,
                    "identity_change_threshold",
                    command,
                    instance,
                    store,
                ),
            )
        )
    if changes.attribute_clears > settings.attribute_clear_threshold:
        found.append(
            _Exceeded(
                STOPPED_ATTRIBUTE_CLEARS,
                "attribute_clears",
                changes.attribute_clears,
                f"{changes.attribute_clears:,} objects would lose every value of an attribute they hold "
                f"({_cleared_attributes(changes)}), more than the attribute clear threshold of "
                f"{settings.attribute_clear_threshold:,}",
                _threshold(
                    "attribute clear threshold",
                    changes.attribute_clears,
                    "attribute_clear_threshold",
                    command,
                    instance,
                    store,
                ),
            )
        )
    if changes.groups_over_share:
        worst = changes.groups_over_share[0]
        others = len(changes.groups_over_share) - 1
        found.append(
            _Exceeded(
                STOPPED_MEMBER_REMOVALS,
                "member_removals",  # the run's member and manager removals: one count confirms both stops
                removes,
                f"group {worst.name} would lose {worst.removes:,} of its {worst.members:,} members "
                f"({worst.percent} %), more than the {settings.member_removal_group_percent} % one run may remove "
                f"from a group of {MEMBER_REMOVAL_GROUP_MINIMUM} members or more"
                + (f" ({others:,} more groups are over it too)" if others else ""),
                _threshold(
                    "per-group member removal share (percent)",
                    worst.percent,
                    "member_removal_group_percent",
                    command,
                    instance,
                    store,
                ),
            )
        )
    return found


def _cleared_attributes(changes: MassChanges) -> str:
    """The attributes cleared most, with how many objects lose each: what to look at first (which import or flow
    stopped delivering them)."""
    named = changes.cleared_attributes[:CLEARED_ATTRIBUTES_NAMED]
    more = len(changes.cleared_attributes) - len(named)
    text = "most cleared: " + ", ".join(f"{name} on {count:,}" for name, count in named)
    return text + (f"; {more:,} more attributes" if more else "")


def check_guards(
    changes: MassChanges, settings: GuardSettings, command: str, instance: str = DEFAULT, store: str = ""
) -> GuardStop | None:
    """The first exceeded, unconfirmed guard's result, with every such guard in the message (so one confirmation
    does not only run into the next stop); None when the plan is within every threshold, or every guard over its
    threshold is confirmed with exactly its count (``settings.confirm_mass_change``). ``instance``: the sync
    instance whose store the export runs on: the advice names its Variables and its CLI option; ``store``: the CLI
    option naming that store (instance_advice.cli_store)."""
    exceeded = _exceeded(changes, settings, command, instance, store)
    confirmed = settings.confirmed
    stopping = [guard for guard in exceeded if confirmed.get(guard.name) != guard.count]
    if not stopping:
        return None
    first, *more = stopping
    detail = f"{first.pending}; nothing was written."
    detail += "".join(f" Also: {guard.pending}." for guard in more)
    mismatched = {guard.name: guard.count for guard in stopping if guard.name in confirmed}
    for name, count in mismatched.items():
        detail += (
            f" This run confirmed {name}={confirmed[name]}, but {count:,} are pending now ({name}={count}): a "
            "confirmation lets through only the exact count it names."
        )
    value = format_confirmation({guard.name: guard.count for guard in exceeded})
    several = len({guard.name for guard in exceeded}) > 1
    detail += (
        f" If {'these changes are' if several else 'this is'} intended, confirm exactly "
        f"{'these counts' if several else 'this count'} for one run: `confirm_mass_change` = `{value}` (task or DAG "
        f"param), or `aadsync {command} {cli_instance(instance, store)}--confirm-mass-change {value}`; a plan of other "
        "counts stops again."
        " For a standing change, raise the threshold instead (a Variable keeps it for every run): run the export "
        "again with " + "; or ".join(dict.fromkeys(guard.threshold for guard in stopping)) + "."
    )
    return GuardStop(first.result, detail)


def _threshold(what: str, number: int, param: str, command: str, instance: str = DEFAULT, store: str = "") -> str:
    flag = "--" + param.replace("_", "-")
    return (
        f"a {what} of at least {number:,} (task parameter `{param}`, Variable {variable_advice(param, instance)}, or "
        f"`aadsync {command} {cli_instance(instance, store)}{flag} {number}`)"
    )


def confirmation_note(changes: MassChanges, settings: GuardSettings) -> str | None:
    """What a run that went through says of its confirmation: the guards it let through, and the names it gave for
    guards not exceeded (harmless: nothing needed confirming there). None without a confirmation."""
    confirmed = settings.confirmed
    if not confirmed:
        return None
    exceeded = {guard.name for guard in _exceeded(changes, settings, "")}
    used = {name: count for name, count in confirmed.items() if name in exceeded}
    unused = {name: count for name, count in confirmed.items() if name not in exceeded}
    parts = []
    if used:
        parts.append(f"mass change confirmed for this run: {format_confirmation(used)} (over its threshold)")
    if unused:
        parts.append(
            f"confirmation {format_confirmation(unused)} not needed: "
            + ", ".join(f"{changes.count_of(name):,} {name.replace('_', ' ')} pending" for name in unused)
            + ", within the threshold"
        )
    return "; ".join(parts)


def guard_report_line(counters: Mapping[str, Any]) -> str | None:
    """The run report's line for the guards: each count against its threshold (None for runs without guards), and
    what a confirmation did."""
    if "disable_threshold" not in counters:
        return None

    def confirmation(name: str, number: int, exceeded: bool) -> str:
        confirmed = counters.get(f"confirmed_{name}")
        if confirmed is None:
            return " (exceeded)" if exceeded else ""
        if not exceeded:
            return f" (confirmed {confirmed:,}: not needed)"
        return " (exceeded, confirmed)" if confirmed == number else f" (exceeded; confirmed {confirmed:,})"

    def part(label: str, name: str, counts: Sequence[str], threshold: str) -> str:
        number, limit = sum(counters.get(count, 0) for count in counts), counters.get(threshold, 0)
        return f"{label} {number:,} of {limit:,}" + confirmation(name, number, number > limit)

    share = counters.get("groups_over_member_removal_share", 0)
    removals = ("planned_member_removes", "planned_manager_removes")  # one threshold for both (runs before: members)
    removed = sum(counters.get(count, 0) for count in removals)
    share_confirmed = share and counters.get("confirmed_member_removals") == removed
    return " · ".join(
        [
            part("deletes", "deletes", ["planned_deletes"], "deletion_threshold"),
            part("disables", "disables", ["planned_disables"], "disable_threshold"),
            part("member and manager removals", "member_removals", removals, "member_removal_threshold"),
            f"groups losing more than {counters.get('member_removal_group_percent', 0)} % of their members "
            f"{share:,}" + ((" (exceeded, confirmed)" if share_confirmed else " (exceeded)") if share else ""),
            *(
                [
                    part(
                        "identity changes",
                        "identity_changes",
                        ["planned_identity_changes"],
                        "identity_change_threshold",
                    )
                ]
                if "identity_change_threshold" in counters
                else []
            ),
            *(
                [
                    part(
                        "attribute clears",
                        "attribute_clears",
                        ["planned_attribute_clears"],
                        "attribute_clear_threshold",
                    )
                ]
                if "attribute_clear_threshold" in counters  # runs before the guard have no such counters
                else []
            ),
        ]
    )
