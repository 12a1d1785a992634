"""Sync settings that change what the shipped rules do, and loading the rule set a run uses."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from airflow_provider_aadsync.engine.rules import RuleSet, load_default_rules, load_rules

#: Members a group may have when written through the V2 endpoint's capabilities (the default).
V2_MEMBER_LIMIT = 250_000
#: The V1 endpoint's limit, for tenants that must stay on it.
V1_MEMBER_LIMIT = 50_000

#: Group writeback size limit: Microsoft 365 groups with more members are not written back to AD (a per-object
#: error). The default is the product's; it may be raised, step by step, up to the V2 endpoint's group size.
WRITEBACK_LIMIT_DEFAULT = 50_000
WRITEBACK_LIMIT_MAX = 250_000
#: The OU written-back groups are created in (the local dev DC's; set your own). It must lie under the AD
#: connection's base DN, so the AD import sees the groups it wrote.
WRITEBACK_OU_DEFAULT = "OU=Writeback,OU=AADSync,DC=corp,DC=example,DC=test"
WritebackNaming = Literal["objectId", "displayName"]

EndpointMode = Literal["v2", "v1"]


def member_limit(mode: EndpointMode) -> int:
    if mode not in ("v1", "v2"):
        raise ValueError(f"endpoint mode must be 'v2' or 'v1', not {mode!r}")
    return V2_MEMBER_LIMIT if mode == "v2" else V1_MEMBER_LIMIT


def writeback_limit(value: int | str | None = None) -> int:
    """The group writeback size limit: ``value`` checked (1 to 250,000), or the default 50,000 when empty."""
    if value is None or str(value).strip() in ("", "None"):
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


def rule_parameters(
    mode: EndpointMode = "v2",
    *,
    writeback_size_limit: int | str | None = None,
    writeback_ou: str | None = None,
    writeback_naming: WritebackNaming = "objectId",
) -> dict[str, object]:
    """The ``%Name%`` parameters the shipped rules use."""
    if writeback_naming not in ("objectId", "displayName"):
        raise ValueError(f"group writeback naming must be 'objectId' or 'displayName', not {writeback_naming!r}")
    return {
        "MemberLimit": member_limit(mode),
        "WritebackLimit": writeback_limit(writeback_size_limit),
        "WritebackOU": (writeback_ou or "").strip() or WRITEBACK_OU_DEFAULT,
        "WritebackNaming": writeback_naming,
    }


def load_sync_rules(
    rule_paths: Iterable[str | Path] | None = None,
    *,
    mode: EndpointMode = "v2",
    writeback_size_limit: int | str | None = None,
    writeback_ou: str | None = None,
    writeback_naming: WritebackNaming = "objectId",
) -> RuleSet:
    """The rule files at ``rule_paths`` (files or folders), or the shipped default rules when none are given."""
    parameters = rule_parameters(
        mode, writeback_size_limit=writeback_size_limit, writeback_ou=writeback_ou, writeback_naming=writeback_naming
    )
    paths = [Path(path) for path in rule_paths or []]
    if paths:
        return load_rules(paths, parameters=parameters)
    return load_default_rules(parameters)
