"""The DAG factory: the sync cycle in the product's order (import AD → import Entra ID → sync AD → sync Entra ID →
export to Entra ID, then the run report), importable so users can build their own DAGs from it. The shipped DAGs
(``aadsync_cycle`` every 30 minutes, ``aadsync_full`` by hand) are ``dags/aadsync.py``, a thin composition::

    from airflow_provider_aadsync.dag_factory import common_params, connectors_from_variable, sync_cycle_dag

    connectors = connectors_from_variable()
    my_dag = sync_cycle_dag("my_cycle", schedule=None, mode="full", params=common_params(connectors),
                            doc="...", connectors=connectors)

Settings that decide a DAG's shape (pool, retries, the connectors file) are read when a function here is called, i.e.
when the DAG file is parsed; everything else is a template read when a task runs (see the README's "The DAGs").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from airflow.sdk import DAG, Param, Variable, chain

from airflow_provider_aadsync.engine.connectors.config import ConnectorsConfig, load_connectors_config
from airflow_provider_aadsync.engine.runs import defaults
from airflow_provider_aadsync.operators.ad_export import ADExportOperator
from airflow_provider_aadsync.operators.ad_import import ADImportOperator
from airflow_provider_aadsync.operators.callbacks import on_task_failure
from airflow_provider_aadsync.operators.entra_export import EntraExportOperator
from airflow_provider_aadsync.operators.entra_import import EntraImportOperator
from airflow_provider_aadsync.operators.instance_lock import InstanceLockSensor
from airflow_provider_aadsync.operators.report import SyncReportOperator
from airflow_provider_aadsync.operators.sync import CyclePreviewBranchOperator, SyncOperator, SyncPreviewOperator


def parse_time_setting(name: str, default: str) -> str:
    """A Variable read when this file is parsed, for what operators cannot template (pool, retries).

    The dag processor sees Variables from the metadata DB; ``airflow dags test`` parses the file itself and sees
    only environment Variables (``AIRFLOW_VAR_<NAME>``), which every parser sees.
    """
    try:
        value = Variable.get(name, default=None)
    except Exception:  # no metadata DB or API at parse time (e.g. a DagBag check): the default
        value = None
    return default if value is None or str(value).strip() == "" else str(value).strip()


def variable(name: str, default: str) -> str:
    """A template that reads a Variable when the task runs (no metadata DB access while parsing)."""
    return f"{{{{ var.value.get('{name}', '{default}') }}}}"


def graph_writer_pool() -> str:
    """The pool capping the tasks that write to Graph at once, across DAGs (Variable aadsync_graph_writer_pool)."""
    return parse_time_setting("aadsync_graph_writer_pool", "default_pool")


def instance_wait() -> tuple[float, dt.timedelta]:
    """While another DAG run holds the sync instance the first task waits (reschedule mode: no worker slot between
    pokes): the poke interval in seconds and the longest wait."""
    poke = float(parse_time_setting("aadsync_instance_poke_seconds", "30"))
    return poke, dt.timedelta(minutes=float(parse_time_setting("aadsync_instance_wait_minutes", "120")))


def connectors_from_variable() -> ConnectorsConfig | None:
    """The connectors configuration (YAML; README "Several forests") named by the Variable aadsync_connectors_file,
    read when the DAG file is parsed because it decides the DAGs' shape: one import and one sync task per AD
    connector. Empty: None, the single connector ``ad`` as always. Airflow advises environment variables for what
    top-level code reads (no metadata DB query per parse): set it as ``AIRFLOW_VAR_AADSYNC_CONNECTORS_FILE``. An
    invalid file raises here, so the DAG import error names the file, the key and the line, and no run starts with
    half a scope."""
    path = parse_time_setting("aadsync_connectors_file", "")
    return load_connectors_config(path) if path else None


AD_CONN_ID = variable("aadsync_ad_conn_id", "aadsync_ad")
ENTRA_CONN_ID = variable("aadsync_entra_conn_id", "aadsync_entra")
#: The store: an Airflow connection id (postgres; recommended, the password stays in the connection), or a
#: password-less URL (SQLite); both empty: SQLite under $AADSYNC_HOME/store (~/.aadsync/store).
STORE_CONN_ID = variable("aadsync_store_conn_id", "")
STORE_URL = variable("aadsync_store_url", "")
INSTANCE = variable("aadsync_instance", "default")
RULES = variable("aadsync_rules_path", "")  # empty: the shipped default rules
REPORT_DIR = variable("aadsync_reports_dir", "")  # empty: $AIRFLOW_HOME/aadsync/reports; or an fsspec URL
DELETION_THRESHOLD = (
    "{{ params.deletion_threshold if params.deletion_threshold is not none "
    f"else var.value.get('aadsync_deletion_threshold', {defaults.DELETION_THRESHOLD}) }}}}"
)
#: The other mass-change guards, each as the deletion threshold: the run's param, else its Variable, else the
#: default of engine/runs/defaults.py.
GUARDS = {
    name: f"{{{{ params.{name} if params.{name} is not none else var.value.get('aadsync_{name}', {default}) }}}}"
    for name, default in (
        ("disable_threshold", defaults.DISABLE_THRESHOLD),
        ("member_removal_threshold", defaults.MEMBER_REMOVAL_THRESHOLD),
        ("member_removal_group_percent", defaults.MEMBER_REMOVAL_GROUP_PERCENT),
    )
}
ENDPOINT = "{{ params.endpoint }}"
#: A preflight run is a staging run: nothing is written, the report holds the preflight.
STAGING = "{{ params.staging or params.get('preflight', False) }}"
#: The import guard: a param confirms a mass removal for this run; Variables set the limits (empty: the defaults).
IMPORT_GUARD = {
    "confirm_mass_removal": "{{ params.confirm_mass_removal }}",
    "import_deletion_threshold": variable("aadsync_import_deletion_threshold", ""),
    "import_deletion_share": variable("aadsync_import_deletion_share", ""),
}
#: Group writeback (Microsoft 365 groups → AD) is opt-in: off unless aadsync_writeback_enabled is true, and then
#: aadsync_writeback_ou is required (no default OU). Empty size limit: 50,000.
WRITEBACK = {
    "writeback_enabled": variable("aadsync_writeback_enabled", "false"),
    "writeback_size_limit": variable("aadsync_writeback_size_limit", ""),
    "writeback_ou": variable("aadsync_writeback_ou", ""),
    "writeback_naming": variable("aadsync_writeback_naming", "objectId"),
}
#: Matching cloud users before any create: soft match (userPrincipalName, then mail) unless aadsync_block_soft_match.
MATCHING = {"block_soft_match": variable("aadsync_block_soft_match", "false")}
#: AD attributes synced as the sync app's directory extensions (comma-separated; empty: none); the imports read them.
EXTENSIONS = {"directory_extensions": variable("aadsync_directory_extensions", "")}
#: The Entra export paces itself to the app's write budget in the tenant (Graph: 3,000 writes per 150 s per app and
#: tenant); Variables for a tenant whose budget differs (or a test tenant that throttles nothing).
WRITE_BUDGET = {
    "write_budget": variable("aadsync_write_budget", str(defaults.WRITE_BUDGET)),
    "write_window_seconds": variable("aadsync_write_window_seconds", str(defaults.WRITE_WINDOW_SECONDS)),
}
#: ConsistencyGuid writeback (the user's objectGUID into an empty mS-DS-ConsistencyGuid, by the AD export that runs
#: before the Entra export): on unless aadsync_consistency_guid_writeback is false.
CONSISTENCY_GUID = {"consistency_guid_writeback": variable("aadsync_consistency_guid_writeback", "true")}


def ad_connectors(connectors: ConnectorsConfig | None) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(name, connection id, scope) of each AD connector in the configuration's order; without a configuration the
    one connector ``ad`` on the Variable ``aadsync_ad_conn_id``, unscoped (its connection's base DN)."""
    if connectors is None:
        return [("ad", AD_CONN_ID, None)]
    return [(ad.name, ad.conn_id, ad.model_dump(mode="json")) for ad in connectors.ad]


def preview_connectors(connectors: ConnectorsConfig | None) -> list[str]:
    """The connector spaces the preview form offers."""
    return [name for name, _, _ in ad_connectors(connectors)] + [connectors.entra.name if connectors else "entra"]


def common_params(connectors: ConnectorsConfig | None = None) -> dict[str, Param]:
    """The trigger form's params both shipped DAGs take (the cycle adds ``mode``); the preview offers the
    connector spaces of ``connectors``."""
    return {
        "staging": Param(
            False,
            type="boolean",
            title="Staging",
            description="Import and synchronize, store the export plan, write nothing to Entra ID "
            "(the report lists what an export would write).",
        ),
        "preflight": Param(
            False,
            type="boolean",
            title="Cutover preflight",
            description="Run as staging (write nothing) and put the cutover preflight in the report: how each "
            "in-scope AD object meets the tenant (hard match, soft match and on which attribute, create, conflict), "
            "the counts first, every row saved beside the report as CSV and JSON. A staging run reports it too.",
        ),
        "deletion_threshold": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            title="Deletion threshold for this run",
            description="More pending deletes than this stop the export before any write. Empty: the Variable "
            f"aadsync_deletion_threshold, else {defaults.DELETION_THRESHOLD}.",
        ),
        "confirm_mass_removal": Param(
            False,
            type="boolean",
            title="Confirm a mass removal",
            description="Let the imports apply deletes their guard stopped (stopped-deletion-threshold-exceeded: more "
            f"than the Variable aadsync_import_deletion_threshold, else {defaults.IMPORT_DELETION_THRESHOLD}, or more "
            f"than aadsync_import_deletion_share, else {defaults.IMPORT_DELETION_SHARE * 100:g} %, of a connector "
            "space, or a full import that saw nothing). Check the stopped run's detail first.",
        ),
        "disable_threshold": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            title="Disable threshold for this run",
            description="More accounts disabled (accountEnabled true → false) than this stop the export before any "
            f"write. Empty: the Variable aadsync_disable_threshold, else {defaults.DISABLE_THRESHOLD}.",
        ),
        "member_removal_threshold": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            title="Member removal threshold for this run",
            description="More group member removals than this stop the exports before any write. Empty: the Variable "
            f"aadsync_member_removal_threshold, else {defaults.MEMBER_REMOVAL_THRESHOLD}.",
        ),
        "member_removal_group_percent": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            maximum=100,
            title="Per-group member removal share (%) for this run",
            description="A group of 20 or more members losing more than this share of them stops the exports before "
            "any write (100 lets any share through). Empty: the Variable aadsync_member_removal_group_percent, else "
            f"{defaults.MEMBER_REMOVAL_GROUP_PERCENT}.",
        ),
        "endpoint": Param(
            "v2",
            type="string",
            enum=["v2", "v1"],
            title="Group member limit",
            description="v2: groups of up to 250,000 members (the V2 endpoint's capability); v1: 50,000. A group above "
            "the limit is a per-object sync error, never a truncated group. Changing it changes the rule set, so the "
            "next sync of each connector is a full one.",
        ),
        "preview_connector": Param(
            preview_connectors(connectors)[0],
            type="string",
            enum=preview_connectors(connectors),
            title="Preview: connector",
            description="Connector space of the object to preview.",
        ),
        "preview_dn": Param(
            None,
            type=["null", "string"],
            title="Preview: DN",
            description="Preview what sync would do with this object (rules in scope, join, flows, exports) instead of "
            "running the cycle: the run writes nothing. Give a DN or an anchor, not both.",
        ),
        "preview_anchor": Param(
            None,
            type=["null", "string"],
            title="Preview: anchor",
            description="As the DN, by anchor (AD: objectGUID; Entra ID: object id).",
        ),
    }


def default_args() -> dict[str, Any]:
    """Retries (Variables aadsync_retries, aadsync_retry_delay_seconds, read at parse time) with exponential backoff,
    and the shipped failure hook."""
    return {
        "retries": int(parse_time_setting("aadsync_retries", "2")),
        "retry_delay": dt.timedelta(seconds=float(parse_time_setting("aadsync_retry_delay_seconds", "60"))),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": dt.timedelta(minutes=30),
        "on_failure_callback": on_task_failure,
    }


def sync_cycle_dag(
    dag_id: str,
    *,
    schedule: dt.timedelta | None,
    mode: str,
    params: dict[str, Param],
    doc: str,
    on_failure_callback: Callable[..., Any] | Sequence[Callable[..., Any]] | None = None,
    connectors: ConnectorsConfig | None = None,
) -> DAG:
    """One cycle: the preview branch, the steps in the product's order, and the report as the cycle's teardown.

    :param connectors: the connectors configuration: one import task (``import_<name>``) and one sync task
        (``sync_<name>``) per AD connector, each import with its connector's scope, and the connection ids it names.
        None: the one connector ``ad`` on the Variable ``aadsync_ad_conn_id`` (tasks ``import_ad``, ``sync_ad``).
    :param on_failure_callback: what runs when a task fails for good, next to the shipped log line: Airflow notifiers
        (``SmtpNotifier``, ``SlackNotifier``, any ``BaseNotifier``) or callables taking the task context.
    """
    store = {"store_url": STORE_URL, "store_conn_id": STORE_CONN_ID, "instance": INSTANCE}
    args = default_args()
    if on_failure_callback is not None:
        extra = [on_failure_callback] if callable(on_failure_callback) else list(on_failure_callback)
        args["on_failure_callback"] = [on_task_failure, *extra]
    poke_seconds, wait = instance_wait()
    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,  # with the store lock: two runs of one sync instance never interleave
        params=params,
        default_args=args,
        doc_md=doc,
        tags=["aadsync"],
    ) as dag:
        choose = CyclePreviewBranchOperator(
            task_id="choose_path",
            preview_dn="{{ params.preview_dn or '' }}",
            preview_anchor="{{ params.preview_anchor or '' }}",
            preview_task_id="preview",
            cycle_task_id="acquire_instance",
            retries=0,  # deterministic: a retry would only repeat the same answer
        )
        preview = SyncPreviewOperator(
            task_id="preview",
            connector="{{ params.preview_connector }}",
            dn="{{ params.preview_dn or '' }}",
            anchor="{{ params.preview_anchor or '' }}",
            rules=RULES,
            endpoint=ENDPOINT,
            report_dir=REPORT_DIR,
            retries=0,
            **WRITEBACK,
            **store,
        )
        # The cycle holds the sync instance from its first step to its last: another DAG run of the same instance
        # (aadsync_cycle and aadsync_full) waits here, and the report (the teardown) releases it.
        acquire = InstanceLockSensor(
            task_id="acquire_instance",
            poke_interval=poke_seconds,
            timeout=wait.total_seconds(),
            retries=0,  # it waits by itself; giving up is final and names the holder
            **store,
        )
        imports, syncs = [], []
        for name, conn_id, scope in ad_connectors(connectors):
            imports.append(
                ADImportOperator(
                    task_id=f"import_{name}",
                    ad_conn_id=conn_id,
                    connector=name,
                    scope=scope,
                    mode=mode,
                    rules=RULES,
                    **IMPORT_GUARD,
                    **EXTENSIONS,
                    **store,
                )
            )
            syncs.append(
                SyncOperator(
                    task_id=f"sync_{name}",
                    connector=name,
                    mode=mode,
                    rules=RULES,
                    endpoint=ENDPOINT,
                    **WRITEBACK,
                    **MATCHING,
                    **EXTENSIONS,
                    **CONSISTENCY_GUID,
                    **store,
                )
            )
        entra_name = connectors.entra.name if connectors else "entra"
        entra_conn_id = connectors.entra.conn_id if connectors else ENTRA_CONN_ID
        import_entra = EntraImportOperator(
            task_id="import_entra",
            entra_conn_id=entra_conn_id,
            connector=entra_name,
            mode=mode,
            rules=RULES,
            **IMPORT_GUARD,
            **EXTENSIONS,
            **store,
        )
        sync_entra = SyncOperator(
            task_id="sync_entra",
            connector=entra_name,
            mode=mode,
            rules=RULES,
            endpoint=ENDPOINT,
            **WRITEBACK,
            **MATCHING,
            **EXTENSIONS,
            **CONSISTENCY_GUID,
            **store,
        )
        export_entra = EntraExportOperator(
            task_id="export_entra",
            entra_conn_id=entra_conn_id,
            connector=entra_name,
            staging=STAGING,
            deletion_threshold=DELETION_THRESHOLD,
            **GUARDS,
            **WRITE_BUDGET,
            pool=graph_writer_pool(),  # caps the tasks writing to Graph at once, across DAGs
            # runs after the AD export, also when that one is skipped (group and ConsistencyGuid writeback off)
            trigger_rule="none_failed",
            **store,
        )
        export_ad = ADExportOperator(
            task_id="export_ad",
            # group writeback goes to the connector ``ad`` (with a configuration: its connection, when it lists one)
            ad_conn_id=next((conn for name, conn, _ in ad_connectors(connectors) if name == "ad"), AD_CONN_ID),
            writeback_enabled=WRITEBACK["writeback_enabled"],  # both off: skipped, writes nothing
            **CONSISTENCY_GUID,
            staging=STAGING,
            deletion_threshold=DELETION_THRESHOLD,
            **GUARDS,
            **store,
        )
        report = SyncReportOperator(
            task_id="report", report_dir=REPORT_DIR, preflight=STAGING, plan_connector=entra_name, **MATCHING, **store
        )
        choose >> [preview, acquire]
        # The report is the cycle's teardown: it runs whatever happened before it (once the instance was acquired),
        # releases the instance, and a failed step still fails the DAG run.
        # The product's order: every import, then the syncs connector by connector (the configuration's order: the
        # account forest before the resource forest), then the exports. The imports run one after the other: each
        # step takes the store lock as this DAG run, and a second task of the same run would take it over.
        # The AD export goes first: the user's objectGUID is in mS-DS-ConsistencyGuid before its first Entra export.
        chain(acquire, *imports, import_entra, *syncs, sync_entra, export_ad, export_entra)
        export_entra >> report.as_teardown(setups=acquire)
    return dag
