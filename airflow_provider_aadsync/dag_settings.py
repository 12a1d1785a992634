"""What the DAGs of one sync instance read: Airflow Variables, as templates rendered when a task runs or read when the
DAG file is parsed (pool, retries, the connectors file), for the default instance (``aadsync_<setting>``) or a named
one (``aadsync_<instance>__<setting>`` first). Why apart from the factory: several instances in one deployment each
need their own store, tenant and scope while sharing the rest (the Graph writer pool above all), and that naming is
one rule kept in one place. Imports no operator; the factory (dag_factory.py) composes the DAGs from it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from airflow.sdk import Variable

from airflow_provider_aadsync.engine.connectors.config import ConnectorsConfig, load_connectors_config
from airflow_provider_aadsync.engine.runs import defaults

#: A named sync instance (a second set of DAGs in one deployment, :func:`sync_cycle_dag`'s ``instance``): lower-case
#: letters and digits, words joined by single underscores, so its Variables ``aadsync_<instance>__<setting>`` never
#: collide with the shared ``aadsync_<setting>`` ones.
INSTANCE_NAME = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
#: What a named instance never takes from the shared Variables: its store, its tenant and its scope are its own
#: (two instances in one store or one tenant would overwrite each other's state).
OWN_ONLY = frozenset({"aadsync_store_conn_id", "aadsync_store_url", "aadsync_entra_conn_id", "aadsync_connectors_file"})


def check_instance_name(instance: str) -> str:
    """``instance`` if it is a valid name for a named sync instance, else a ValueError saying what a name may be."""
    if not isinstance(instance, str) or not INSTANCE_NAME.match(instance) or len(instance) > 40:
        raise ValueError(
            f"invalid sync instance name {instance!r}: use lower-case letters and digits, words joined by single "
            "underscores (e.g. emea or site_2), at most 40 characters"
        )
    return instance


def instance_variable(name: str, instance: str | None) -> str:
    """The Variable holding setting ``name`` (``aadsync_<setting>``) for ``instance``: the name itself for the
    default instance, ``aadsync_<instance>__<setting>`` for a named one."""
    return name if instance is None else f"aadsync_{check_instance_name(instance)}__{name.removeprefix('aadsync_')}"


def setting_variables(name: str, instance: str | None) -> list[str]:
    """The Variables that may hold setting ``name`` for ``instance``, in the order they are read: a named instance's
    own first, then (unless the setting is one of :data:`OWN_ONLY`) the shared one."""
    names = [instance_variable(name, instance)]
    if instance is not None and name not in OWN_ONLY:
        names.append(name)
    return names


def parse_time_setting(name: str, default: str, instance: str | None = None) -> str:
    """A Variable read when this file is parsed, for what operators cannot template (pool, retries).

    The dag processor sees Variables from the metadata DB; ``airflow dags test`` parses the file itself and sees
    only environment Variables (``AIRFLOW_VAR_<NAME>``), which every parser sees. A named instance reads its own
    Variable first, then (unless the setting is one of :data:`OWN_ONLY`) the shared one.
    """
    for candidate in setting_variables(name, instance):
        try:
            value = Variable.get(candidate, default=None)
        except Exception:  # no metadata DB or API at parse time (e.g. a DagBag check): the default
            value = None
        if value is not None and str(value).strip() != "":
            return str(value).strip()
    return default


def lookup(name: str, default: str, instance: str | None = None) -> str:
    """The Jinja expression reading Variable ``name`` when a task runs, ``default`` (an expression) when unset; for a
    named instance its own Variable first, then the shared one (not for :data:`OWN_ONLY` settings)."""
    shared = f"var.value.get('{name}', {default})"
    if instance is None:
        return shared
    return f"var.value.get('{instance_variable(name, instance)}', {default if name in OWN_ONLY else shared})"


def variable(name: str, default: str, instance: str | None = None) -> str:
    """A template that reads a Variable when the task runs (no metadata DB access while parsing)."""
    return f"{{{{ {lookup(name, repr_str(default), instance)} }}}}"


def repr_str(value: str) -> str:
    """A string literal for a template (the Variable defaults are plain words, numbers and paths)."""
    if "'" in value or "\\" in value:
        raise ValueError(f"a template default may not hold quotes or backslashes: {value!r}")
    return f"'{value}'"


def graph_writer_pool(instance: str | None = None) -> str:
    """The pool capping the tasks that write to Graph at once, across DAGs and instances (Variable
    aadsync_graph_writer_pool; a named instance may name its own, aadsync_<instance>__graph_writer_pool)."""
    return parse_time_setting("aadsync_graph_writer_pool", "default_pool", instance)


def instance_wait(instance: str | None = None) -> tuple[float, dt.timedelta]:
    """While another DAG run holds the sync instance the first task waits (reschedule mode: no worker slot between
    pokes): the poke interval in seconds and the longest wait."""
    poke = float(parse_time_setting("aadsync_instance_poke_seconds", "30", instance))
    minutes = float(parse_time_setting("aadsync_instance_wait_minutes", "120", instance))
    return poke, dt.timedelta(minutes=minutes)


def connectors_from_variable(instance: str | None = None) -> ConnectorsConfig | None:
    """The connectors configuration (YAML; README "Several forests") named by the Variable aadsync_connectors_file
    (a named instance: only its own, aadsync_<instance>__connectors_file), read when the DAG file is parsed because
    it decides the DAGs' shape: one import and one sync task per AD connector. Empty: None, the single connector
    ``ad`` as always. Airflow advises environment variables for what top-level code reads (no metadata DB query per
    parse): set it as ``AIRFLOW_VAR_AADSYNC_CONNECTORS_FILE``. An invalid file raises here, so the DAG import error
    names the file, the key and the line, and no run starts with half a scope."""
    path = parse_time_setting("aadsync_connectors_file", "", instance)
    return load_connectors_config(path) if path else None


def instances_from_variable() -> list[str]:
    """The named sync instances this deployment runs next to the default one (Variable aadsync_instances, read when
    the DAG file is parsed: comma-separated names; empty: none). A bad or repeated name raises, so the DAG import
    error names it."""
    names = [name.strip() for name in parse_time_setting("aadsync_instances", "").split(",") if name.strip()]
    for name in names:
        check_instance_name(name)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"the Variable aadsync_instances names {', '.join(repeated)} more than once")
    return names


@dataclass(frozen=True)
class Templates:
    """What the step operators of one sync instance read when they run: Variable templates (a named instance's own
    Variables first) and the run's params."""

    instance: str | None

    def var(self, name: str, default: str) -> str:
        return variable(name, default, self.instance)

    @property
    def ad_conn_id(self) -> str:
        return self.var("aadsync_ad_conn_id", "aadsync_ad")

    @property
    def entra_conn_id(self) -> str:
        """A named instance's tenant defaults to the connection ``aadsync_entra_<instance>``, never the shared one."""
        own = "aadsync_entra" if self.instance is None else f"aadsync_entra_{self.instance}"
        return self.var("aadsync_entra_conn_id", own)

    @property
    def store(self) -> dict[str, str]:
        """The store: an Airflow connection id (postgres; recommended, the password stays in the connection), or a
        password-less URL (SQLite); both empty: SQLite under $AADSYNC_HOME/store (~/.aadsync/store), one file per
        instance. A named instance's name is fixed; the default instance's is the Variable aadsync_instance."""
        instance = self.var("aadsync_instance", "default") if self.instance is None else self.instance
        return {
            "store_url": self.var("aadsync_store_url", ""),
            "store_conn_id": self.var("aadsync_store_conn_id", ""),
            "instance": instance,
        }

    @property
    def rules(self) -> str:
        """Rule files or folders, comma- or newline-separated; empty: the shipped default rules."""
        return self.var("aadsync_rules_path", "")

    @property
    def report_dir(self) -> str:
        """Empty: $AIRFLOW_HOME/aadsync/reports; or an fsspec URL (a report's path holds its DAG id)."""
        return self.var("aadsync_reports_dir", "")

    def run_or_variable(self, param: str, default: object) -> str:
        """This run's param, else its Variable, else the default of engine/runs/defaults.py."""
        return (
            f"{{{{ params.{param} if params.{param} is not none "
            f"else {lookup(f'aadsync_{param}', str(default), self.instance)} }}}}"
        )

    @property
    def deletion_threshold(self) -> str:
        return self.run_or_variable("deletion_threshold", defaults.DELETION_THRESHOLD)

    @property
    def guards(self) -> dict[str, str]:
        """The other mass-change guards, each as the deletion threshold, and the counts this run confirms (a param
        only: a confirmation is for one run's plan, never a Variable)."""
        return {
            **{
                name: self.run_or_variable(name, default)
                for name, default in (
                    ("disable_threshold", defaults.DISABLE_THRESHOLD),
                    ("member_removal_threshold", defaults.MEMBER_REMOVAL_THRESHOLD),
                    ("member_removal_group_percent", defaults.MEMBER_REMOVAL_GROUP_PERCENT),
                    ("identity_change_threshold", defaults.IDENTITY_CHANGE_THRESHOLD),
                    ("attribute_clear_threshold", defaults.ATTRIBUTE_CLEAR_THRESHOLD),
                )
            },
            "confirm_mass_change": "{{ params.confirm_mass_change }}",
        }

    @property
    def import_guard(self) -> dict[str, str]:
        """A param confirms a mass removal for this run; Variables set the limits (empty: the defaults)."""
        return {
            "confirm_mass_removal": "{{ params.confirm_mass_removal }}",
            "import_deletion_threshold": self.var("aadsync_import_deletion_threshold", ""),
            "import_deletion_share": self.var("aadsync_import_deletion_share", ""),
        }

    @property
    def writeback(self) -> dict[str, str]:
        """Group writeback (Microsoft 365 groups → AD) is opt-in: off unless aadsync_writeback_enabled is true, and
        then aadsync_writeback_ou is required (no default OU). Empty size limit: 50,000."""
        return {
            "writeback_enabled": self.var("aadsync_writeback_enabled", "false"),
            "writeback_size_limit": self.var("aadsync_writeback_size_limit", ""),
            "writeback_ou": self.var("aadsync_writeback_ou", ""),
            "writeback_naming": self.var("aadsync_writeback_naming", "objectId"),
        }

    @property
    def matching(self) -> dict[str, str]:
        """Matching cloud users before any create: soft match (the primary SMTP address, then userPrincipalName)
        unless aadsync_block_soft_match; the hard match of a cloud-created user refused with
        aadsync_block_cloud_object_takeover (Entra ID's BlockCloudObjectTakeoverThroughHardMatch; off by default)."""
        return {
            "block_soft_match": self.var("aadsync_block_soft_match", "false"),
            "block_cloud_object_takeover": self.var("aadsync_block_cloud_object_takeover", "false"),
        }

    @property
    def extensions(self) -> dict[str, str]:
        """AD attributes synced as the sync app's directory extensions (comma-separated; empty: none)."""
        return {"directory_extensions": self.var("aadsync_directory_extensions", "")}

    @property
    def write_budget(self) -> dict[str, str]:
        """The Entra export paces itself to the app's write budget in the tenant (Graph: 3,000 writes per 150 s per
        app and tenant); Variables for a tenant whose budget differs (or a test tenant that throttles nothing)."""
        return {
            "write_budget": self.var("aadsync_write_budget", str(defaults.WRITE_BUDGET)),
            "write_window_seconds": self.var("aadsync_write_window_seconds", str(defaults.WRITE_WINDOW_SECONDS)),
        }

    @property
    def consistency_guid(self) -> dict[str, str]:
        """ConsistencyGuid writeback (the user's objectGUID into an empty mS-DS-ConsistencyGuid, by the AD export
        that runs before the Entra export): on unless aadsync_consistency_guid_writeback is false."""
        return {"consistency_guid_writeback": self.var("aadsync_consistency_guid_writeback", "true")}


#: The default instance's templates (the shipped DAGs ``aadsync_cycle`` and ``aadsync_full``).
DEFAULT_TEMPLATES = Templates(None)
AD_CONN_ID = DEFAULT_TEMPLATES.ad_conn_id
ENTRA_CONN_ID = DEFAULT_TEMPLATES.entra_conn_id
STORE_CONN_ID = DEFAULT_TEMPLATES.store["store_conn_id"]
STORE_URL = DEFAULT_TEMPLATES.store["store_url"]
INSTANCE = DEFAULT_TEMPLATES.store["instance"]
DELETION_THRESHOLD = DEFAULT_TEMPLATES.deletion_threshold
GUARDS = DEFAULT_TEMPLATES.guards
IMPORT_GUARD = DEFAULT_TEMPLATES.import_guard
WRITEBACK = DEFAULT_TEMPLATES.writeback
MATCHING = DEFAULT_TEMPLATES.matching
EXTENSIONS = DEFAULT_TEMPLATES.extensions
WRITE_BUDGET = DEFAULT_TEMPLATES.write_budget
CONSISTENCY_GUID = DEFAULT_TEMPLATES.consistency_guid
RULES = DEFAULT_TEMPLATES.rules
REPORT_DIR = DEFAULT_TEMPLATES.report_dir
ENDPOINT = "{{ params.endpoint }}"
#: A preflight run is a staging run: nothing is written, the report holds the preflight.
STAGING = "{{ params.staging or params.get('preflight', False) }}"
#: A full sync evaluates every object, also those the sync memo shows unchanged (engine/sync/memo.py).
REEVALUATE = "{{ params.get('reevaluate', False) }}"
