"""The connectors configuration: which AD connectors a sync instance reads (several forests, several domains per
forest, OU filtering) and which Entra connector it writes, as one YAML file validated with pydantic.

Why a file: an administrator moving from the product must express the scope they have today (the product keeps it
per connector: partitions, and per partition the containers to include and exclude) and nothing outside it may ever
be exported or deleted, so a mistake must stop the run with a message that names the file, the key and the line,
never be half-applied. Without a file, the instance has the single connector it always had: ``ad`` on the
connection ``aadsync_ad``, the connection's naming context as its one partition.

Shape::

    ad:
      - name: ad                       # the connector's name in the store and in the rules (letters, digits, _ -)
        conn_id: aadsync_ad            # the Airflow connection that reads it
        partitions:                    # optional: default, the connection's naming context (its base DN)
          - dn: DC=corp,DC=example,DC=test
            include_ous:               # optional: default, the whole partition
              - OU=Staff,DC=corp,DC=example,DC=test
            exclude_ous:
              - OU=Disabled,OU=Staff,DC=corp,DC=example,DC=test
        pilot_group: CN=Pilot,OU=Staff,DC=corp,DC=example,DC=test   # optional: only its direct members
      - name: ad_fabrikam              # ad, ad_<x> or ad-<x>: the shipped "ad" rules read it (kinds.py)
        conn_id: aadsync_ad_fabrikam
    entra:                             # optional: default name entra, connection aadsync_entra
      name: entra
      conn_id: aadsync_entra

OU filtering follows the product's ("Configure filtering"): an included OU brings its whole subtree, children
follow their parent unless excluded themselves, and an excluded OU must lie inside the partition (and inside an
included OU, when some are listed) so that a typo is an error instead of a filter that silently does nothing.
This module imports nothing from Airflow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from airflow_provider_aadsync.engine.connectors.kinds import AD_KIND, connector_kind
from airflow_provider_aadsync.engine.dn import DnError, DnScope, canonical_dn

# The rules loader's YAML reader: it keeps the node tree for positions and refuses alias bombs and deep nesting.
from airflow_provider_aadsync.engine.rules.loader import _format_path, _YamlFile

__all__ = [
    "DEFAULT_AD_CONN_ID",
    "DEFAULT_AD_CONNECTOR",
    "DEFAULT_ENTRA_CONN_ID",
    "DEFAULT_ENTRA_CONNECTOR",
    "ADConnectorConfig",
    "ConfigIssue",
    "ConnectorsConfig",
    "ConnectorsConfigError",
    "EntraConnectorConfig",
    "PartitionConfig",
    "default_connectors_config",
    "load_connectors_config",
    "parse_connectors_config",
]

DEFAULT_AD_CONNECTOR = "ad"
DEFAULT_AD_CONN_ID = "aadsync_ad"
DEFAULT_ENTRA_CONNECTOR = "entra"
DEFAULT_ENTRA_CONN_ID = "aadsync_entra"
#: A connector's name: it is a key in the store and a word in rule files.
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


def _valid_dn(value: str, what: str) -> str:
    try:
        canonical_dn(value)
    except DnError as error:
        raise ValueError(f"{what} is not a valid DN: {error}") from None
    if not value.strip():
        raise ValueError(f"{what} is empty")
    return value.strip()


def _connector_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a connector name (a letter, then letters, digits, _ or -; 64 at most)")
    return value


def _no_duplicates(values: Sequence[str], what: str) -> None:
    seen: dict[str, str] = {}
    for value in values:
        key = canonical_dn(value)
        if key in seen:
            raise ValueError(f"{what} lists {value!r} twice (as {seen[key]!r} too)")
        seen[key] = value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class PartitionConfig(_Model):
    """One partition (domain naming context) of an AD connector and its OU filter."""

    dn: str
    include_ous: tuple[str, ...] = ()
    exclude_ous: tuple[str, ...] = ()

    @field_validator("dn")
    @classmethod
    def _dn(cls, value: str) -> str:
        return _valid_dn(value, "the partition")

    @field_validator("include_ous", "exclude_ous")
    @classmethod
    def _ous(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_valid_dn(value, f"OU {value!r}") for value in values)

    @model_validator(mode="after")
    def _ous_inside(self) -> PartitionConfig:
        _no_duplicates(self.include_ous, "include_ous")
        _no_duplicates(self.exclude_ous, "exclude_ous")
        partition = DnScope(self.dn)
        for ou in (*self.include_ous, *self.exclude_ous):
            if not partition.contains(ou):
                hint = "" if "," in ou else " (quote DNs in a [...] list: YAML splits them at their commas)"
                raise ValueError(f"OU {ou!r} is not inside the partition {self.dn!r}{hint}")
        includes = [DnScope(ou) for ou in self.include_ous]
        for ou in self.exclude_ous:
            if includes and not any(scope.contains(ou) for scope in includes):
                raise ValueError(f"excluded OU {ou!r} is inside no included OU, so excluding it changes nothing")
            if any(canonical_dn(ou) == canonical_dn(included) for included in self.include_ous):
                raise ValueError(f"OU {ou!r} is both included and excluded")
        return self

    def contains(self, dn: str) -> bool:
        """Is the object at ``dn`` in this partition's scope (inside it, inside an included OU when some are listed,
        and inside no excluded OU)?"""
        if not DnScope(self.dn).contains(dn):
            return False
        if self.include_ous and not any(DnScope(ou).contains(dn) for ou in self.include_ous):
            return False
        return not any(DnScope(ou).contains(dn) for ou in self.exclude_ous)


class ADConnectorConfig(_Model):
    """One AD connector: a forest (or part of one) read through one Airflow connection."""

    name: str
    conn_id: str = Field(min_length=1, max_length=250)
    partitions: tuple[PartitionConfig, ...] | None = None
    """None: the connection's naming context (its base DN) is the one partition, with no OU filter."""
    pilot_group: str | None = None
    """A group's DN: only its direct members (users, groups, contacts) are read, as the product's group-based
    filtering for pilots; members of nested groups are not. Any change of its membership imports fully."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = _connector_name(value)
        if connector_kind(value) != AD_KIND:
            # The shipped rules and the AD schema reach a connector through its name (engine.connectors.kinds).
            raise ValueError(f"{value!r}: name AD connectors ad, ad_<name> or ad-<name>, so the AD rules read them")
        return value

    @field_validator("partitions")
    @classmethod
    def _partitions(cls, value: tuple[PartitionConfig, ...] | None) -> tuple[PartitionConfig, ...] | None:
        if value is not None and not value:
            raise ValueError("an empty list reads nothing: leave partitions out to read the connection's base DN")
        if value:
            # A child domain's DN lies below its parent's, yet it is a naming context of its own (a search of the
            # parent does not return its objects): both may be listed, each is read as its own partition.
            _no_duplicates([partition.dn for partition in value], "partitions")
        return value

    @field_validator("pilot_group")
    @classmethod
    def _pilot_group(cls, value: str | None) -> str | None:
        return None if value is None else _valid_dn(value, "the pilot group")

    @model_validator(mode="after")
    def _pilot_inside(self) -> ADConnectorConfig:
        if self.pilot_group and self.partitions and not any(p.contains(self.pilot_group) for p in self.partitions):
            raise ValueError(f"the pilot group {self.pilot_group!r} is outside every partition's scope")
        return self

    @classmethod
    def of(cls, scope: ADConnectorConfig | Mapping[str, Any] | None) -> ADConnectorConfig | None:
        """A task's ``scope`` as a config: None, a config, or its dict (the DAG factory passes the dict), validated."""
        return cls.model_validate(dict(scope)) if isinstance(scope, Mapping) else scope

    def partition_dns(self, naming_context: str) -> list[str]:
        """The partitions' DNs; ``naming_context`` (the connection's base DN) when none are configured."""
        return [partition.dn for partition in self.partitions] if self.partitions else [naming_context]


class EntraConnectorConfig(_Model):
    """The Entra ID connector (one tenant)."""

    name: str = DEFAULT_ENTRA_CONNECTOR
    conn_id: str = Field(default=DEFAULT_ENTRA_CONN_ID, min_length=1, max_length=250)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _connector_name(value)


class ConnectorsConfig(_Model):
    """Every connector of a sync instance: AD connectors in the order their imports and syncs run, and Entra."""

    ad: tuple[ADConnectorConfig, ...]
    entra: EntraConnectorConfig = EntraConnectorConfig()

    @field_validator("ad")
    @classmethod
    def _some_ad(cls, value: tuple[ADConnectorConfig, ...]) -> tuple[ADConnectorConfig, ...]:
        if not value:
            raise ValueError("list at least one AD connector")
        return value

    @model_validator(mode="after")
    def _unique(self) -> ConnectorsConfig:
        names: set[str] = set()
        for connector in (*self.ad, self.entra):
            if connector.name.casefold() in names:
                raise ValueError(f"two connectors are named {connector.name!r} (names ignore case)")
            names.add(connector.name.casefold())
        conn_ids = [connector.conn_id for connector in self.ad]
        for conn_id in conn_ids:
            if conn_ids.count(conn_id) > 1:
                raise ValueError(f"two AD connectors use the connection {conn_id!r}: give one connector its partitions")
        return self

    def connector_names(self) -> list[str]:
        """Every connector the configuration names: its AD connectors in order, then Entra (what a connector space in
        the store must belong to, engine/runs/unconfigured.py)."""
        return [connector.name for connector in self.ad] + [self.entra.name]

    def ad_connector(self, name: str) -> ADConnectorConfig:
        """The AD connector called ``name``; KeyError naming the configured ones otherwise."""
        for connector in self.ad:
            if connector.name == name:
                return connector
        raise KeyError(f"no AD connector {name!r}; configured: {', '.join(c.name for c in self.ad)}")


def default_connectors_config() -> ConnectorsConfig:
    """What an instance without a configuration file has: one AD connector (``ad``/``aadsync_ad``) and Entra."""
    return ConnectorsConfig(ad=(ADConnectorConfig(name=DEFAULT_AD_CONNECTOR, conn_id=DEFAULT_AD_CONN_ID),))


# ------------------------------------------------------------------------------------------------ loading
@dataclass(frozen=True)
class ConfigIssue:
    """One problem: the file, the key path (``ad[1].partitions[0].exclude_ous``), its line and what is wrong."""

    file: str
    key: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}, line {self.line}" if self.line else self.file
        return f"{where}: {self.key or 'the file'}: {self.message}"


class ConnectorsConfigError(ValueError):
    """The configuration file cannot be used; ``issues`` lists every problem found, each with its position."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues = list(issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"invalid connectors configuration ({len(self.issues)} problem(s)):\n{lines}")


def _message(error: dict[str, Any]) -> str:
    kind = error.get("type")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key missing"
    return str(error.get("msg", "invalid value")).removeprefix("Value error, ")


def parse_connectors_config(text: str, *, name: str = "<text>") -> ConnectorsConfig:
    """Validate a configuration given as YAML text; ``name`` stands for its file in messages.

    :raise ConnectorsConfigError: naming the file, the key and the line of every problem.
    """
    try:
        source = _YamlFile(name, text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        raise ConnectorsConfigError([ConfigIssue(name, "", mark.line + 1 if mark else None, problem)]) from None
    issues: list[ConfigIssue] = []
    for node, key in source.duplicate_keys():
        issues.append(ConfigIssue(name, key, node.start_mark.line + 1, "key written twice (YAML keeps only the last)"))
    data = source.data
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}, not a mapping"
        raise ConnectorsConfigError([*issues, ConfigIssue(name, "", 1, f"the file is {kind} (want keys ad and entra)")])
    try:
        config = ConnectorsConfig.model_validate(data)
    except ValidationError as error:
        for problem in error.errors():
            parts = tuple(problem["loc"])
            issues.append(ConfigIssue(name, _format_path(parts), source.position(parts)[0], _message(problem)))
        raise ConnectorsConfigError(issues) from None
    if issues:
        raise ConnectorsConfigError(issues)
    return config


def load_connectors_config(path: str | Path | None) -> ConnectorsConfig:
    """The configuration in the file at ``path``, or :func:`default_connectors_config` when ``path`` is empty.

    :raise ConnectorsConfigError: the file is missing, unreadable or invalid (naming the file, key and line).
    """
    if path is None or not str(path).strip():
        return default_connectors_config()
    file = Path(str(path).strip()).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConnectorsConfigError([ConfigIssue(str(file), "", None, f"cannot be read: {reason}")]) from None
    return parse_connectors_config(text, name=str(file))
