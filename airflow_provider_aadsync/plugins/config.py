"""Where the sync manager finds each sync instance's store and rules: the same Airflow Variables and connection the
DAGs' operators resolve (``aadsync_store_conn_id`` / ``aadsync_store_url`` / the embedded SQLite store of
``aadsync_instance``; ``aadsync_rules_path``, the group writeback Variables and the sync tasks' other rule settings;
for a named instance of ``aadsync_instances`` its own ``aadsync_<name>__<setting>`` Variables first), read in the
api-server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_aadsync.engine.connectors.config import ConnectorsConfig
    from airflow_provider_aadsync.engine.rules import RuleSet
    from airflow_provider_aadsync.engine.store import Store

#: Variables are read again after this many seconds, so a changed store or rule path shows without a restart.
CONFIG_TTL_SECONDS = 30.0

WRITEBACK_VARIABLES = {
    "writeback_enabled": "aadsync_writeback_enabled",
    "writeback_size_limit": "aadsync_writeback_size_limit",
    "writeback_ou": "aadsync_writeback_ou",
    "writeback_naming": "aadsync_writeback_naming",
}
#: The other rule settings the DAGs pass their sync tasks (dag_settings): the preview uses the rules they sync with.
RULE_VARIABLES = {
    "block_soft_match": "aadsync_block_soft_match",
    "block_cloud_object_takeover": "aadsync_block_cloud_object_takeover",
    "directory_extensions": "aadsync_directory_extensions",
    "consistency_guid_writeback": "aadsync_consistency_guid_writeback",
}


@dataclass(frozen=True)
class ManagerConfig:
    """What the sync manager reads.

    :param store_url: the store's SQLAlchemy URL (it may carry a password: never shown); None: the embedded
        SQLite store of ``instance``.
    :param instance: the sync instance name.
    :param rules: rule files or folders (empty: the shipped rules), as the DAGs' ``rules``.
    :param endpoint: ``v2`` or ``v1`` (the group member limit of the shipped rules; the DAGs' default, v2).
    :param writeback: the group writeback settings as the DAGs pass them to the sync operators.
    :param settings: the other rule settings the DAGs pass them (soft match, directory extensions, ConsistencyGuid
        writeback).
    :param connectors_file: the connectors configuration the DAGs are built from (Variable
        ``aadsync_connectors_file``; a named instance: only its own); empty: the one AD connector ``ad`` and Entra.
        A connector space of a connector it does not name is shown on the runs page (engine/runs/unconfigured.py).
    """

    store_url: str | None = None
    instance: str = "default"
    rules: str = ""
    endpoint: str = "v2"
    writeback: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    settings: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    connectors_file: str = ""


def _variable(name: str, default: str = "", instance: str | None = None) -> str:
    """Variable ``name`` as the DAGs read it for ``instance``: a named instance's own Variable
    (``aadsync_<instance>__<setting>``) first, then, unless the setting is its own only (its store), the shared one."""
    from airflow.models import Variable

    from airflow_provider_aadsync.dag_settings import setting_variables
    from airflow_provider_aadsync.operators.templated import templated_value

    for candidate in setting_variables(name, instance):
        value = templated_value(Variable.get(candidate, default_var=None))
        if value:
            return value
    return default


def config_from_airflow(instance: str | None = None) -> ManagerConfig:
    """The configuration of sync instance ``instance`` (None: the default one) from Airflow's Variables and
    connections (environment, secrets backends, metadata DB), resolved as the DAGs' operators resolve it."""
    from airflow.models import Connection

    from airflow_provider_aadsync.hooks.store import store_url_of

    conn_id = _variable("aadsync_store_conn_id", instance=instance)
    url = _variable("aadsync_store_url", instance=instance) or None
    if conn_id and url:
        raise ValueError(
            f"both a store connection ({conn_id!r}) and a store URL are set: keep one (the Variables "
            "aadsync_store_conn_id and aadsync_store_url)"
        )
    if conn_id:
        url = store_url_of(conn_id, Connection.get_connection_from_secrets(conn_id))
    writeback = tuple((key, _variable(name, instance=instance)) for key, name in WRITEBACK_VARIABLES.items())
    settings = tuple((key, _variable(name, instance=instance)) for key, name in RULE_VARIABLES.items())
    return ManagerConfig(
        store_url=url,
        instance=instance if instance is not None else _variable("aadsync_instance", "default"),
        rules=_variable("aadsync_rules_path", instance=instance),
        writeback=writeback,
        settings=settings,
        connectors_file=_variable("aadsync_connectors_file", instance=instance),
    )


def named_instances_from_airflow() -> list[str]:
    """The named sync instances the deployment runs beside the default one (Variable ``aadsync_instances``)."""
    from airflow_provider_aadsync.dag_settings import instances_from_variable

    return instances_from_variable()


class Resources:
    """Per sync instance, the configuration (re-read every CONFIG_TTL_SECONDS), one open store per URL and the loaded
    rule set per configuration, shared by the requests of one api-server worker. ``loader(None)`` (or ``loader()``)
    gives the default instance's configuration, ``loader(name)`` a named instance's; ``named`` lists the named ones."""

    def __init__(
        self,
        loader: Callable[..., ManagerConfig] = config_from_airflow,
        named: Callable[[], list[str]] = named_instances_from_airflow,
    ) -> None:
        self.loader = loader
        self.named_loader = named
        self._lock = threading.Lock()
        self._configs: dict[str | None, tuple[float, ManagerConfig]] = {}
        self._named: tuple[float, list[str]] | None = None
        self._stores: dict[tuple[str | None, str], Store] = {}
        self._rules: dict[ManagerConfig, RuleSet] = {}

    def named(self) -> list[str]:
        """The named instances (re-read with the configuration)."""
        with self._lock:
            if self._named is None or time.monotonic() - self._named[0] > CONFIG_TTL_SECONDS:
                self._named = (time.monotonic(), list(self.named_loader()))
            return self._named[1]

    def config(self, instance: str | None = None) -> ManagerConfig:
        with self._lock:
            cached = self._configs.get(instance)
            if cached is None or time.monotonic() - cached[0] > CONFIG_TTL_SECONDS:
                loaded = self.loader() if instance is None else self.loader(instance)
                cached = self._configs[instance] = (time.monotonic(), loaded)
            return cached[1]

    def store(self, instance: str | None = None) -> Store:
        """The instance's store, opened as it is (``Store.open_existing``: the manager never creates, claims or
        migrates a store). Only an opened store is kept: one not ready yet (``StoreNotReadyError``: before the first
        sync step, or before the next one migrates it) is tried again by the next request."""
        from airflow_provider_aadsync.engine.store import Store

        config = self.config(instance)
        key = (config.store_url, config.instance)
        with self._lock:
            if key not in self._stores:
                self._stores[key] = Store.open_existing(config.store_url, instance=config.instance)
            return self._stores[key]

    def rules(self, instance: str | None = None) -> RuleSet:
        from airflow_provider_aadsync.operators.templated import load_rules_templated

        config = self.config(instance)
        with self._lock:
            if config not in self._rules:
                chosen: dict[str, Any] = {**dict(config.writeback), **dict(config.settings)}
                self._rules[config] = load_rules_templated(config.rules, config.endpoint, **chosen)
            return self._rules[config]

    def connectors(self, instance: str | None = None) -> ConnectorsConfig:
        """The instance's connectors configuration, read from its file at each call (a small file: an edit shows on
        the next page, as the next DAG parse picks it up).

        :raise ConnectorsConfigError: the file is missing or invalid (naming the file, key and line)
        """
        from airflow_provider_aadsync.engine.connectors.config import load_connectors_config

        return load_connectors_config(self.config(instance).connectors_file)

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()
