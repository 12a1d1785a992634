"""Which kind of directory a connector reads, from its name: the one convention rules and schemas share.

Why a convention: the shipped inbound rules name their connector ``ad``, and a second forest (``ad_fabrikam``) must get
the same rules and the same attribute types without copying every rule file. A connector named ``ad`` or
``ad_<anything>`` / ``ad-<anything>`` is an Active Directory connector; ``entra`` (or ``entra_...``) is the Entra ID
connector. An inbound rule whose ``connector`` is a kind name (``ad``) applies to every connector of that kind; a
rule naming one connector (``ad_fabrikam``) applies to it alone. An outbound Provision rule is never widened: it
creates objects in its one connector (group writeback to ``ad`` never writes into another forest). An outbound Join
rule written for a kind (the ConsistencyGuid writeback to ``ad``) updates the joined objects of every connector of
that kind: it never creates one, so it only writes to an object the forest already holds.
"""

from __future__ import annotations

from collections.abc import Iterable

AD_KIND = "ad"
ENTRA_KIND = "entra"
KINDS = (AD_KIND, ENTRA_KIND)

__all__ = ["AD_KIND", "ENTRA_KIND", "KINDS", "connector_kind", "inbound_rule_applies", "outbound_rule_targets"]


def connector_kind(name: str) -> str | None:
    """``ad`` for ``ad``, ``ad_x``, ``ad-x``; ``entra`` likewise; None for any other name (case ignored)."""
    folded = name.casefold()
    for kind in KINDS:
        if folded == kind or folded.startswith((f"{kind}_", f"{kind}-")):
            return kind
    return None


def inbound_rule_applies(rule_connector: str, connector: str) -> bool:
    """Does an inbound rule written for ``rule_connector`` read connector ``connector``? Its own name, or its kind
    when the rule names the kind itself (``ad`` reads ``ad_fabrikam``)."""
    wanted = rule_connector.casefold()
    if wanted == connector.casefold():
        return True
    return wanted in KINDS and connector_kind(connector) == wanted


def outbound_rule_targets(rule_connector: str, link_type: str, connectors: Iterable[str]) -> list[str]:
    """The connectors an outbound rule written for ``rule_connector`` writes to, among ``connectors`` (those the
    objects at hand are joined to): its own; for a Join rule naming a kind (``ad``), every connector of that kind."""
    wanted = rule_connector.casefold()
    if link_type == "Provision" or wanted not in KINDS:
        return [rule_connector]
    return sorted({rule_connector, *(name for name in connectors if connector_kind(name) == wanted)})
