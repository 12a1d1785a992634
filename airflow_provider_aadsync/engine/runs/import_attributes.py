"""What an import asks its directory for: the configured attribute list plus every attribute the rules read.

A rule that reads an attribute the import never asked for sees it missing on every object, and a missing value can
be as drastic as a wrong one (the shipped accountEnabled flow once read a missing userAccountControl as "disabled").
So the AD import's attribute list (the connection's ``attributes`` extra, or the shipped list) and the Entra
import's ``$select`` are completed with what the loaded inbound rules of that connector read.

A changed list also needs a full import: a delta (DirSync, or a Graph delta link, which keeps the ``$select`` it was
made with) only brings values that changed, so objects untouched since would keep lacking the new attribute. The
list's digest is therefore saved beside the watermarks, as one more partition of the import; a list whose digest
has no saved row makes the next delta a full import, and the row is saved in the import's own transaction.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.rules import MEMBER_OF_COLUMN, RuleSet
from airflow_provider_aadsync.engine.store import watermark

if TYPE_CHECKING:
    from airflow_provider_aadsync.engine.runs.cs_writer import ConnectorSpaceWriter
    from airflow_provider_aadsync.engine.runs.import_run import ErrorSink, ImportSteps

log = logging.getLogger(__name__)

#: The pseudo-partition that records an import's attribute list; its name says why a new list runs fully.
ATTRIBUTE_LIST_PARTITION = "attribute list "


def rule_attributes(rules: RuleSet, connector: str, object_types: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Attributes the enabled inbound rules of ``connector`` read (of ``object_types``, when given), each with the
    rules that read it. ``memberOf`` for ISMEMBEROF is computed by sync, not read."""
    wanted = {kind.casefold() for kind in object_types} if object_types is not None else None
    found: dict[str, tuple[str, list[str]]] = {}
    for rule in rules.inbound(connector):
        if wanted is not None and rule.source_object_type.casefold() not in wanted:
            continue
        for name in sorted(rule.attributes):
            if name.casefold() == MEMBER_OF_COLUMN.casefold() and rule.needs_member_of:
                continue
            found.setdefault(name.casefold(), (name, []))[1].append(rule.name)
    return {name: readers for name, readers in found.values()}


def complete_attribute_list(
    configured: Sequence[str],
    rules: RuleSet,
    connector: str,
    *,
    object_types: Iterable[str] | None = None,
    what: str = "attribute list",
    made_by_import: Iterable[str] = (),
) -> tuple[list[str], dict[str, list[str]]]:
    """``configured`` plus what the rules read and it leaves out (compared ignoring case), and what was added, with
    the rules that read it; a warning names each added attribute and its rules. ``made_by_import``: attributes the
    import makes itself (read beside its rounds), listed when the rules read them but neither warned of nor
    counted as added: nothing is missing from the configuration."""
    present = {name.casefold() for name in configured}
    own = {name.casefold() for name in made_by_import}
    read = rule_attributes(rules, connector, object_types)
    made = [name for name in read if name.casefold() in own and name.casefold() not in present]
    added = {name: readers for name, readers in read.items() if name.casefold() not in present | own}
    if added:
        log.warning(
            "the %s of %s leaves out attributes the rules read; they are requested too: %s",
            what,
            connector,
            "; ".join(
                f"{name} (read by {', '.join(repr(rule) for rule in readers)})" for name, readers in added.items()
            ),
        )
    return [*configured, *made, *added], added


def attribute_list_key(*lists: Sequence[str]) -> str:
    """The watermark partition naming one attribute list (order and case do not matter)."""
    text = "\n".join(",".join(sorted({name.casefold() for name in names})) for names in lists)
    return ATTRIBUTE_LIST_PARTITION + hashlib.sha256(text.encode()).hexdigest()[:16] + " (a new list imports fully)"


class AttributeListSteps:
    """Wraps a connector's import steps so the attribute list is saved with the watermarks.

    Its partition is one more watermark: missing (a list not imported fully yet) makes a delta a full import, and
    a full or delta import saves it (refreshing its age) in the same transaction as the data; rows of earlier lists
    are dropped by a full import, so going back to an older list imports fully again.
    """

    def __init__(self, steps: ImportSteps, key: str, listing: str | bytes, prefix: str = ATTRIBUTE_LIST_PARTITION):
        self.steps = steps
        self.key = key
        self.listing = listing.encode() if isinstance(listing, str) else listing
        #: Rows of this kind of fingerprint (attribute list, AD scope) other than ``key`` are dropped by a full import.
        self.prefix = prefix

    def __getattr__(self, name: str) -> Any:
        return getattr(self.steps, name)

    def partitions(self) -> Sequence[str]:
        return [*self.steps.partitions(), self.key]

    def full(self, writer: ConnectorSpaceWriter, errors: ErrorSink) -> Mapping[str, bytes]:
        marks = dict(self.steps.full(writer, errors))
        writer.connection.execute(
            sa.delete(watermark).where(
                watermark.c.connector == writer.connector,
                watermark.c.partition.startswith(self.prefix, autoescape=True),
                watermark.c.partition != self.key,
            )
        )
        return {**marks, self.key: self.listing}

    def delta(self, writer: ConnectorSpaceWriter, errors: ErrorSink, saved: Mapping[str, bytes]) -> Mapping[str, bytes]:
        marks = self.steps.delta(writer, errors, {name: value for name, value in saved.items() if name != self.key})
        return {**marks, self.key: self.listing}


def with_fingerprint(steps: ImportSteps, prefix: str, key: str, value: bytes) -> AttributeListSteps:
    """``steps`` whose watermarks carry one more fingerprint row (``key``, starting with ``prefix``): a configuration
    the saved rows do not name makes the next delta a full import (the AD scope uses it: engine.connectors.ad.scope)."""
    return AttributeListSteps(steps, key, value, prefix)


def with_attribute_list(steps: ImportSteps, *lists: Sequence[str]) -> AttributeListSteps:
    """``steps`` whose watermarks carry the attribute list(s) they read with."""
    listing = "\n".join(", ".join(names) for names in lists)
    return AttributeListSteps(steps, attribute_list_key(*lists), listing)
