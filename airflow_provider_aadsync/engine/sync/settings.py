"""Sync settings that change what the shipped rules do, and loading the rule set a run uses."""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from airflow_provider_aadsync.engine.connectors.config import PartitionConfig
from airflow_provider_aadsync.engine.connectors.entra.extensions import cs_attribute, extension_name
from airflow_provider_aadsync.engine.connectors.kinds import connector_kind
from airflow_provider_aadsync.engine.dn import DnError, dn_is_under, normalize_dn
from airflow_provider_aadsync.engine.rules import (
    Direction,
    RuleSet,
    compile_rule,
    load_default_rules,
    load_rules,
    rule_fingerprint,
)
from airflow_provider_aadsync.engine.rules.model import FlowModel, FlowType, LinkType

log = logging.getLogger(__name__)

#: Members a group may have when written through the V2 endpoint's capabilities (the default).
V2_MEMBER_LIMIT = 250_000
#: The V1 endpoint's limit, for tenants that must stay on it.
V1_MEMBER_LIMIT = 50_000

#: Group writeback size limit: Microsoft 365 groups with more members are not written back to AD (a per-object
#: error). The default is the product's; it may be raised, step by step, up to the V2 endpoint's group size.
WRITEBACK_LIMIT_DEFAULT = 50_000
WRITEBACK_LIMIT_MAX = 250_000
#: Group writeback is opt-in: off unless asked for, and then it needs its OU (no default: the product cannot guess
#: where in a customer's directory groups may be created).
WRITEBACK_ENABLED_DEFAULT = False
#: The connector group writeback writes to: with writeback off, its outbound rules are left out of the rule set.
WRITEBACK_CONNECTOR = "ad"
WritebackNaming = Literal["objectId", "displayName"]
#: ConsistencyGuid writeback (the user's sourceAnchor written into an empty mS-DS-ConsistencyGuid in AD) is on by
#: default, as the product does when ConsistencyGuid is the anchor. Its rule is the one outbound AD rule that is not
#: group writeback: it stays when writeback is off and goes when this setting is off.
CONSISTENCY_GUID_WRITEBACK_DEFAULT = True
CONSISTENCY_GUID_RULES = frozenset({"Out to AD - User ImmutableId"})

EndpointMode = Literal["v2", "v1"]


def member_limit(mode: EndpointMode) -> int:
    if mode not in ("v1", "v2"):
        raise ValueError(f"endpoint mode must be 'v2' or 'v1', not {mode!r}")
    return V2_MEMBER_LIMIT if mode == "v2" else V1_MEMBER_LIMIT


def writeback_limit(value: int | str | None = None) -> int:
    """The group writeback size limit: ``value`` checked (1 to 250,000; text such as ``50,000`` from the command line
    is read), or the default 50,000 when None or empty."""
    if value is None or str(value).strip() == "":
        return WRITEBACK_LIMIT_DEFAULT
    try:
        limit = int(str(value).replace(",", "").replace("_", "").strip())
    except ValueError:
        raise ValueError(f"the group writeback size limit must be a whole number, not {value!r}") from None
    if limit > WRITEBACK_LIMIT_MAX:
        raise ValueError(
            f"the group writeback size limit cannot be raised above {WRITEBACK_LIMIT_MAX:,} members "
            f"(the largest group Entra ID holds); {limit:,} was asked"
        )
    if limit < 1:
        raise ValueError(f"the group writeback size limit must be at least 1, not {limit:,}")
    return limit


class WritebackSettingsError(ValueError):
    """Group writeback is on but not configured, or configured with an OU it cannot use: raised before anything
    runs, naming the setting to fix."""


#: Where the writeback OU is set, for the errors that name it.
_WRITEBACK_OU_SETTING = "the Airflow Variable aadsync_writeback_ou (CLI: --writeback-ou; operators: writeback_ou)"


def writeback_ou_required(writeback_ou: str | None) -> str:
    """The writeback OU, or a clear error when writeback is on without one or with a text that is no DN."""
    ou = (writeback_ou or "").strip()
    if not ou:
        raise WritebackSettingsError(
            f"group writeback is on but no writeback OU is set: set {_WRITEBACK_OU_SETTING} to the OU written-back "
            "groups are created in, under the AD connection's base DN; or turn writeback off (Variable "
            "aadsync_writeback_enabled = false, CLI: --no-writeback)"
        )
    try:
        normalize_dn(ou)  # parsed by ldap3's parse_dn (engine/dn.py)
    except DnError as error:
        raise WritebackSettingsError(f"the group writeback OU is not usable: {error}; set {_WRITEBACK_OU_SETTING} "
                                     "to the DN of an OU under the AD connection's base DN") from None  # fmt: skip
    return ou


def check_writeback_ou(writeback_ou: str, base_dn: str, partitions: Sequence[PartitionConfig] | None = None) -> None:
    """Refuse a writeback OU the AD import of the connector group writeback writes through (``ad``) does not read:
    it would never see the groups written there, and every cycle would create them again (or the export would fail
    object by object). That is the connection's base DN, or, when the connectors file gives the connector
    ``partitions``, their scope: inside a partition (a tree or child domain beside the base DN's too), inside one of
    its included OUs when it lists some, inside none of its excluded ones. Compared RDN by RDN, any spelling
    (:func:`~airflow_provider_aadsync.engine.dn.dn_is_under`): ``OU=W,DC=notcontoso,DC=com`` is not under
    ``DC=contoso,DC=com``. The base DN (a partition) itself is inside.

    :raise WritebackSettingsError: the OU is outside what the import reads, or is no DN.
    """
    ou = writeback_ou_required(writeback_ou)
    if partitions:
        if any(partition.contains(ou) for partition in partitions):
            return
        read = "; ".join(_partition_scope(partition) for partition in partitions)
        raise WritebackSettingsError(
            f"the group writeback OU {ou!r} lies outside what the AD import of connector ad reads ({read}): it would "
            "never see the groups written there and every cycle would create them again; set "
            f"{_WRITEBACK_OU_SETTING} to an OU in that scope (or add it to the connector's partitions or include_ous "
            "in the connectors file)"
        )
    try:
        inside = dn_is_under(ou, base_dn)
    except DnError as error:  # the base DN (the OU was parsed above): the connection's own check names it
        raise WritebackSettingsError(f"the AD connection's base DN is not usable: {error}") from None
    if not inside:
        raise WritebackSettingsError(
            f"the group writeback OU {ou!r} lies outside the AD connection's base DN {base_dn!r}: the AD import "
            "reads only the base DN, so it would never see the groups written there and every cycle would create "
            f"them again; set {_WRITEBACK_OU_SETTING} to an OU under {base_dn!r} (or the connection's base_dn extra "
            "to a DN above the OU)"
        )


def _partition_scope(partition: PartitionConfig) -> str:
    """A partition's scope in words, for the refusal: its DN, the OUs it includes and those it excludes."""
    words = f"partition {partition.dn!r}"
    if partition.include_ous:
        words += f", only {', '.join(map(repr, partition.include_ous))}"
    if partition.exclude_ous:
        words += f", not {', '.join(map(repr, partition.exclude_ous))}"
    return words


def rule_parameters(
    mode: EndpointMode = "v2",
    *,
    writeback_enabled: bool = WRITEBACK_ENABLED_DEFAULT,
    writeback_size_limit: int | str | None = None,
    writeback_ou: str | None = None,
    writeback_naming: WritebackNaming = "objectId",
) -> dict[str, object]:
    """The ``%Name%`` parameters the shipped rules use. With writeback off, the writeback parameters are inert
    placeholders (the writeback rules are left out, see :func:`without_writeback`) and are not checked."""
    if not writeback_enabled:
        return {"MemberLimit": member_limit(mode), "WritebackLimit": WRITEBACK_LIMIT_DEFAULT, "WritebackOU": "",
                "WritebackNaming": "objectId"}  # fmt: skip
    if writeback_naming not in ("objectId", "displayName"):
        raise ValueError(f"group writeback naming must be 'objectId' or 'displayName', not {writeback_naming!r}")
    return {
        "MemberLimit": member_limit(mode),
        "WritebackLimit": writeback_limit(writeback_size_limit),
        "WritebackOU": writeback_ou_required(writeback_ou),
        "WritebackNaming": writeback_naming,
    }


def without_writeback(rules: RuleSet, parameters: dict[str, object]) -> RuleSet:
    """The rule set with group writeback left out: every outbound rule to the writeback connector (``ad``) but the
    ConsistencyGuid writeback rule (:data:`CONSISTENCY_GUID_RULES`, a setting of its own), and the inbound rules
    that only feed them (their metaverse object type is read by no other outbound rule, e.g. the cloudGroup
    projection of Microsoft 365 groups)."""
    outbound = [r for r in rules if r.direction is Direction.OUTBOUND]
    writeback = [
        r for r in outbound if r.connector.casefold() == WRITEBACK_CONNECTOR and r.name not in CONSISTENCY_GUID_RULES
    ]
    if not writeback:
        return rules
    kept_outbound = [r for r in outbound if r not in writeback]
    still_read = {r.source_object_type.casefold() for r in kept_outbound}
    fed_only = {r.source_object_type.casefold() for r in writeback} - still_read
    dropped = writeback + [
        r for r in rules if r.direction is Direction.INBOUND and r.target_object_type.casefold() in fed_only
    ]
    kept = [r for r in rules if r not in dropped]
    log.info("group writeback is off: rules left out: %s", ", ".join(sorted(r.name for r in dropped)))
    return RuleSet(kept, fingerprint=rule_fingerprint(kept, parameters), sources=rules.sources)


def without_consistency_guid_writeback(rules: RuleSet, parameters: dict[str, object]) -> RuleSet:
    """The rule set without the ConsistencyGuid writeback rule: nothing is written to mS-DS-ConsistencyGuid."""
    kept = [r for r in rules if r.name not in CONSISTENCY_GUID_RULES]
    if len(kept) == len(rules.rules):
        return rules
    log.info("ConsistencyGuid writeback is off: rule left out: %s", ", ".join(sorted(CONSISTENCY_GUID_RULES)))
    return RuleSet(kept, fingerprint=rule_fingerprint(kept, parameters), sources=rules.sources)


def without_hard_match_proof(rules: RuleSet) -> RuleSet:
    """The rule set without the rules' ``hard_match_proof`` (BlockCloudObjectTakeover off, Entra ID's default): a hard
    match then takes over a cloud-created object that holds the anchor, as Entra ID does unless the tenant's
    BlockCloudObjectTakeoverThroughHardMatch is on. The fingerprint stays the rule set's own (the default)."""
    kept = []
    for rule in rules:
        if rule.rule.hard_match_proof:
            rule = copy.copy(rule)
            rule.rule = rule.rule.model_copy(update={"hard_match_proof": []})
        kept.append(rule)
    return RuleSet(kept, fingerprint=rules.fingerprint, sources=rules.sources)


def without_soft_match(rules: RuleSet, parameters: dict[str, object]) -> RuleSet:
    """The rule set with every soft-match join group left out (the product's BlockSoftMatch): cloud objects then
    join only by hard match (onPremisesImmutableId = sourceAnchor)."""
    kept = []
    for rule in rules:
        groups = tuple(g for g in rule.join_groups if not any(pair.soft_match for pair in g))
        if groups != rule.join_groups:
            rule = copy.copy(rule)
            rule.join_groups = groups
        kept.append(rule)
    return RuleSet(kept, fingerprint=rule_fingerprint(kept, parameters), sources=rules.sources)


def directory_extension_list(value: str | Iterable[str] | None) -> list[str]:
    """AD attribute names to sync as directory extensions, from a list or one text separated by commas, spaces or
    newlines (a Variable, a CLI flag); each checked as a Graph extension name (``ExtensionNameError`` otherwise)."""
    if value is None:
        return []
    items = re.split(r"[,\s]+", value if isinstance(value, str) else ",".join(str(v) for v in value))
    names = [item.strip() for item in items if item and item.strip()]
    for name in names:
        extension_name(name)
    return list(dict.fromkeys(names))


def with_directory_extensions(rules: RuleSet, attributes: Sequence[str], parameters: dict[str, object]) -> RuleSet:
    """The rule set with each AD attribute of ``attributes`` flowing into the metaverse (AD projection rules of users
    and groups) and out to Entra ID as the sync app's directory extension ``extension_<name>`` (the projecting
    outbound rules to ``entra``), as the product's "Directory extension attribute sync" does. An attribute a rule
    already flows keeps its flow; ``-`` in an AD name becomes ``_`` in the extension's."""
    if not attributes:
        return rules
    kept = []
    for compiled in rules:
        model = compiled.rule
        kind = connector_kind(model.connector)
        added: list[FlowModel] = []
        targets = {flow.target.casefold() for flow in model.flows}
        mv_type = model.target_object_type if model.direction is Direction.INBOUND else model.source_object_type
        if model.link_type is LinkType.PROVISION and mv_type.casefold() in ("person", "group"):
            for attribute in attributes:
                if model.direction is Direction.INBOUND and kind == "ad":
                    target = attribute
                elif model.direction is Direction.OUTBOUND and kind == "entra":
                    target = cs_attribute(attribute)
                else:
                    continue
                if target.casefold() not in targets:
                    added.append(FlowModel(type=FlowType.DIRECT, source=attribute, target=target))
        if added:
            recompiled = compile_rule(model.model_copy(update={"flows": [*model.flows, *added]}), parameters=parameters)
            if recompiled is not None:
                recompiled.origin = compiled.origin
                compiled = recompiled
        kept.append(compiled)
    return RuleSet(kept, fingerprint=rule_fingerprint(kept, parameters), sources=rules.sources)


def load_sync_rules(
    rule_paths: Iterable[str | Path] | None = None,
    *,
    mode: EndpointMode = "v2",
    writeback_enabled: bool = WRITEBACK_ENABLED_DEFAULT,
    writeback_size_limit: int | str | None = None,
    writeback_ou: str | None = None,
    writeback_naming: WritebackNaming = "objectId",
    block_soft_match: bool = False,
    directory_extensions: str | Iterable[str] | None = None,
    consistency_guid_writeback: bool = CONSISTENCY_GUID_WRITEBACK_DEFAULT,
    block_cloud_object_takeover: bool = False,
) -> RuleSet:
    """The rule files at ``rule_paths`` (files or folders), or the shipped default rules when none are given.

    ``directory_extensions`` names AD attributes synced as the sync app's directory extensions
    (:func:`with_directory_extensions`).

    Group writeback is opt-in: unless ``writeback_enabled``, its rules are left out (nothing is staged for AD);
    when it is on, ``writeback_ou`` is required (:class:`WritebackSettingsError` otherwise). ConsistencyGuid
    writeback is on unless ``consistency_guid_writeback`` is false. ``block_cloud_object_takeover`` keeps the rules'
    ``hard_match_proof`` (Entra ID's BlockCloudObjectTakeoverThroughHardMatch; off by default, as there).
    """
    parameters = rule_parameters(
        mode,
        writeback_enabled=writeback_enabled,
        writeback_size_limit=writeback_size_limit,
        writeback_ou=writeback_ou,
        writeback_naming=writeback_naming,
    )
    paths = [Path(path) for path in rule_paths or []]
    rules = load_rules(paths, parameters=parameters) if paths else load_default_rules(parameters)
    rules = rules if writeback_enabled else without_writeback(rules, parameters)
    if not consistency_guid_writeback:
        parameters = {**parameters, "ConsistencyGuidWriteback": False}
        rules = without_consistency_guid_writeback(rules, parameters)
    if block_soft_match:
        parameters = {**parameters, "BlockSoftMatch": True}
        rules = without_soft_match(rules, parameters)
    if block_cloud_object_takeover:
        parameters = {**parameters, "BlockCloudObjectTakeover": True}
        rules = RuleSet(rules.rules, fingerprint=rule_fingerprint(rules.rules, parameters), sources=rules.sources)
    else:
        rules = without_hard_match_proof(rules)
    extensions = directory_extension_list(directory_extensions)
    if extensions:
        rules = with_directory_extensions(rules, extensions, {**parameters, "DirectoryExtensions": extensions})
    return rules
