"""Precedence: which rule's value a metaverse attribute holds when several rules flow to it.

Every contribution is kept per attribute and per contributor (``connector|rule``) with its precedence and merge
type, so the value can be recomputed when one contributor goes away (a NULL flow, a disconnection, a rule out of
scope) without re-reading the other connectors:

- the contribution with the lowest precedence number wins (``Update``);
- ``Merge``/``MergeCaseInsensitive`` contributions are united, in precedence order, without duplicates;
- ``AuthoritativeNull`` is a contribution of "no value" that lower-precedence rules cannot override;
- reference attributes (group members) are contributed as a marker; the winning connector's reference rows fill them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The values of a contribution: a list, None for AuthoritativeNull, or REFERENCE_MARKER for reference attributes.
REFERENCE_MARKER = "@references"

Contribution = list[Any]  # [precedence, merge type, values]
Contributions = dict[str, dict[str, Contribution]]
#: One contribution's place: (metaverse attribute, contributor key).
Slot = tuple[str, str]

#: Connector-space objects that may join a metaverse object another object of their connector space has joined:
#: foreign security principals (a member from another forest; group references resolve through their link).
SHARED_JOIN_TYPE = "foreignSecurityPrincipal"


def contributor_key(connector: str, rule_name: str) -> str:
    return f"{connector}|{rule_name}"


def contributor_connector(key: str) -> str:
    return key.split("|", 1)[0]


def contribution_order(item: tuple[str, Contribution]) -> tuple[Any, str, str]:
    """The order contributions (``(contributor key, contribution)``) win in: the lowest precedence number; at equal
    precedence (one rule read by two forests) the connector whose name sorts first, then the rule. One order for the
    values and the references, so a person's manager comes from the forest its other values come from."""
    key, (precedence, _merge, _values) = item
    return precedence, contributor_connector(key), key


def resolve_attribute(entries: Mapping[str, Contribution]) -> tuple[list[Any] | str, str | None]:
    """The value of one attribute and the contributor that decided it (None when nobody contributes)."""
    if not entries:
        return [], None
    if len(entries) == 1:  # the common case: one contributor, nothing to order (unless its values merge)
        ((only, (_precedence, merge, values)),) = entries.items()
        if values == REFERENCE_MARKER:
            return REFERENCE_MARKER, only
        if merge == "Update" or values is None:
            return list(values or []), only
    # Equal precedence (one rule read by two forests): the connector whose name sorts first wins, then the rule.
    ordered = sorted(entries.items(), key=contribution_order)
    winner, (_precedence, merge, values) = ordered[0]
    if values == REFERENCE_MARKER:
        return REFERENCE_MARKER, winner
    if merge == "Update" or values is None:
        return list(values or []), winner
    merged: list[Any] = []
    seen: set[Any] = set()
    for _key, (_p, entry_merge, entry_values) in ordered:
        if entry_merge == "Update" or not isinstance(entry_values, list):
            continue
        for value in entry_values:
            folded = value.casefold() if entry_merge == "MergeCaseInsensitive" and isinstance(value, str) else value
            marker = repr(folded)
            if marker not in seen:
                seen.add(marker)
                merged.append(value)
    return merged, winner


def resolve(contributions: Contributions) -> tuple[dict[str, list[Any]], dict[str, str]]:
    """All attribute values (reference attributes excluded) and, per attribute, the winning contributor."""
    attrs: dict[str, list[Any]] = {}
    winners: dict[str, str] = {}
    for attribute, entries in contributions.items():
        values, winner = resolve_attribute(entries)
        if winner is None:
            continue
        winners[attribute] = winner
        if values != REFERENCE_MARKER and values:
            attrs[attribute] = values  # type: ignore[assignment]
    return attrs, winners


def owned_slots(
    contributions: Contributions, connector: str, shared_keys: frozenset[str], *, shared: bool
) -> set[Slot]:
    """The (attribute, contributor) slots of ``connector`` that one of its objects owns. A metaverse object has one
    object of each connector, but for foreign security principals (:data:`SHARED_JOIN_TYPE`), which may join a person
    their forest's own user has joined: an object of that type owns the contributions of the rules for its type
    (``shared_keys``, their contributor keys), any other object every other contribution of its connector (those of
    rules no longer loaded too). So syncing the one never replaces or drops what the other contributed."""
    prefix = f"{connector}|"
    return {
        (attribute, key)
        for attribute, entries in contributions.items()
        for key in entries
        if key.startswith(prefix) and (key in shared_keys) == shared
    }


def drop_slots(contributions: Contributions, slots: set[Slot]) -> None:
    """Remove the contributions of ``slots`` (see :func:`owned_slots`), and attributes left without any."""
    for attribute, key in slots:
        entries = contributions.get(attribute)
        if entries is None:
            continue
        entries.pop(key, None)
        if not entries:
            del contributions[attribute]
