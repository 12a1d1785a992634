"""The DAG factory: the sync cycle in the product's order (the AD and Entra ID imports in parallel → sync AD → sync
Entra ID → export to AD (group and ConsistencyGuid writeback) → export to Entra ID, then the run report), importable
so users can build their own DAGs from it. The shipped DAGs (``aadsync_cycle`` every 30 minutes, ``aadsync_full`` by
hand) are ``dags/aadsync.py``, a thin composition::

    from airflow_provider_aadsync.dag_factory import common_params, connectors_from_variable, sync_cycle_dag

    connectors = connectors_from_variable()
    my_dag = sync_cycle_dag("my_cycle", schedule=None, mode="full", params=common_params(connectors),
                            doc="...", connectors=connectors)

Settings that decide a DAG's shape (pool, retries, the connectors file) are read when a function here is called, i.e.
when the DAG file is parsed; everything else is a template read when a task runs (see the README's "The DAGs").
``sync_cycle_dag(..., instance="emea")`` builds the DAGs of a named sync instance next to the default one, with its
own store, tenant and Variables (dag_settings.py; the shipped file builds them for each name in ``aadsync_instances``,
with ``common_params(connectors, instance)``, whose guard params name the instance's Variables).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from airflow.sdk import DAG, Param, chain

from airflow_provider_aadsync.dag_settings import (
    AD_CONN_ID,
    ENDPOINT,
    REEVALUATE,
    STAGING,
    Templates,
    check_instance_name,
    connectors_from_variable,
    graph_writer_pool,
    instance_wait,
    instances_from_variable,
    parse_time_setting,
    setting_variables,
)
from airflow_provider_aadsync.engine.connectors.config import (
    DEFAULT_AD_CONNECTOR,
    ConnectorsConfig,
    default_connectors_config,
)
from airflow_provider_aadsync.engine.runs import defaults
from airflow_provider_aadsync.engine.runs.export_confirmation import (
    CONFIRMATION_EXAMPLE,
    CONFIRMATION_NAMES,
    CONFIRMATION_PATTERN,
)
from airflow_provider_aadsync.operators.ad_export import ADExportOperator
from airflow_provider_aadsync.operators.ad_import import ADImportOperator
from airflow_provider_aadsync.operators.callbacks import on_task_failure
from airflow_provider_aadsync.operators.entra_export import EntraExportOperator
from airflow_provider_aadsync.operators.entra_import import EntraImportOperator
from airflow_provider_aadsync.operators.instance_lock import InstanceLockSensor
from airflow_provider_aadsync.operators.report import SyncReportOperator
from airflow_provider_aadsync.operators.sync import CyclePreviewBranchOperator, SyncOperator, SyncPreviewOperator

__all__ = [
    "common_params",
    "connectors_from_variable",
    "default_args",
    "instances_from_variable",
    "on_task_failure",
    "sync_cycle_dag",
]


#: The AD connector group writeback writes to (engine/sync/settings.py WRITEBACK_CONNECTOR).
WRITEBACK_CONNECTOR = DEFAULT_AD_CONNECTOR


def ad_connectors(
    connectors: ConnectorsConfig | None, ad_conn_id: str = AD_CONN_ID
) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(name, connection id, scope) of each AD connector in the configuration's order; without a configuration the
    one connector ``ad`` on ``ad_conn_id`` (the Variable ``aadsync_ad_conn_id``), unscoped (its connection's base
    DN)."""
    if connectors is None:
        return [("ad", ad_conn_id, None)]
    return [(ad.name, ad.conn_id, ad.model_dump(mode="json")) for ad in connectors.ad]


def ad_export_targets(
    connectors: ConnectorsConfig | None, ad_conn_id: str = AD_CONN_ID
) -> list[tuple[str, str, bool, dict[str, Any] | None]]:
    """(name, connection id, ConsistencyGuid writeback, scope) of each AD export task: one per AD connector, each to
    its own DC (ConsistencyGuid writeback reaches every forest's users) with its import's scope (what group
    writeback's OU is checked against), plus group writeback's connector ``ad`` on ``ad_conn_id``, unscoped, when the
    configuration names no connector ``ad`` (group writeback only)."""
    targets = [(name, conn_id, True, scope) for name, conn_id, scope in ad_connectors(connectors, ad_conn_id)]
    if all(name != WRITEBACK_CONNECTOR for name, *_ in targets):
        targets.append((WRITEBACK_CONNECTOR, ad_conn_id, False, None))
    return targets


def entra_connection(connectors: ConnectorsConfig | None, own: str, *, named: bool) -> str:
    """The Entra connection: the connectors file's, else ``own`` (the Variable template). A named instance whose file
    does not name one takes its own (``aadsync_entra_<instance>``), never the default instance's tenant."""
    if connectors is None:
        return own
    if named and ("entra" not in connectors.model_fields_set or "conn_id" not in connectors.entra.model_fields_set):
        return own
    return connectors.entra.conn_id


def preview_connectors(connectors: ConnectorsConfig | None) -> list[str]:
    """The connector spaces the preview form offers."""
    return [name for name, _, _ in ad_connectors(connectors)] + [connectors.entra.name if connectors else "entra"]


def _variables(name: str, instance: str | None) -> str:
    """The Variables an empty param falls back to, in the order they are read: ``aadsync_<name>`` for the default
    instance; ``aadsync_<instance>__<name>``, else ``aadsync_<name>``, for a named one (dag_settings.py)."""
    return ", else ".join(setting_variables(f"aadsync_{name}", instance))


def _guard_param(
    name: str, title: str, meaning: str, default: int, instance: str | None = None, **bounds: int
) -> dict[str, Param]:
    """One export guard's param: empty (the instance's Variable for ``name``, else ``default``) or a number from 0."""
    return {
        name: Param(
            None,
            type=["null", "integer"],
            minimum=0,
            **bounds,
            title=title,
            description=f"{meaning} Empty: the Variable {_variables(name, instance)}, else {default}.",
        )
    }


def common_params(connectors: ConnectorsConfig | None = None, instance: str | None = None) -> dict[str, Param]:
    """The trigger form's params both shipped DAGs take (the cycle adds ``mode``); the preview offers the
    connector spaces of ``connectors``. ``instance``: the named sync instance whose DAGs take them (None: the default
    one), whose Variables the guards' params name."""
    if instance is not None:
        check_instance_name(instance)
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
        **_guard_param(
            "deletion_threshold",
            "Deletion threshold for this run",
            "More pending deletes than this stop the export before any write.",
            defaults.DELETION_THRESHOLD,
            instance,
        ),
        "confirm_mass_removal": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            title="Confirm a mass removal of this many objects",
            description="Let an import apply exactly this many deletes its guard stopped (stopped-deletion-threshold-"
            f"exceeded: more than the Variable {_variables('import_deletion_threshold', instance)}, else "
            f"{defaults.IMPORT_DELETION_THRESHOLD}, or more than {_variables('import_deletion_share', instance)}, else "
            f"{defaults.IMPORT_DELETION_SHARE * 100:g} %, of a connector space, or a full import that saw nothing). "
            "The stopped run's detail names the number: check it first. A removal of another size stops again.",
        ),
        "confirm_mass_change": Param(
            None,
            type=["null", "string"],
            pattern=CONFIRMATION_PATTERN,
            title="Confirm an export's mass change by its exact counts",
            description="Let the exports of this run apply the mass change a guard stopped, by the exact counts its "
            f"stopped run's detail names ({CONFIRMATION_EXAMPLE}; names: {', '.join(CONFIRMATION_NAMES)}): a guard "
            "over its threshold lets an export through only when its count is exactly the one named, so clearing this "
            "run later lets through no other plan. Check the counts first. A standing change: raise the threshold.",
        ),
        **_guard_param(
            "disable_threshold",
            "Disable threshold for this run",
            "More accounts disabled (accountEnabled true → false) than this stop the export before any write.",
            defaults.DISABLE_THRESHOLD,
            instance,
        ),
        **_guard_param(
            "member_removal_threshold",
            "Member removal threshold for this run",
            "More group member removals plus users whose manager would be cleared (not replaced) than this stop "
            "the exports before any write.",
            defaults.MEMBER_REMOVAL_THRESHOLD,
            instance,
        ),
        **_guard_param(
            "member_removal_group_percent",
            "Per-group member removal share (%) for this run",
            "A group of 20 or more members losing more than this share of them stops the exports before any write "
            "(100 lets any share through).",
            defaults.MEMBER_REMOVAL_GROUP_PERCENT,
            instance,
            maximum=100,
        ),
        **_guard_param(
            "identity_change_threshold",
            "Identity change threshold for this run",
            "More accounts getting another sign-in name or mail address (userPrincipalName, mail, sAMAccountName; not "
            "a change of letter case) than this stop the exports before any write.",
            defaults.IDENTITY_CHANGE_THRESHOLD,
            instance,
        ),
        **_guard_param(
            "attribute_clear_threshold",
            "Attribute clear threshold for this run",
            "More objects losing every value of an attribute they hold (department or employeeId cleared on every "
            "user: an import that no longer reads it; not members or managers) than this stop the exports before any "
            "write.",
            defaults.ATTRIBUTE_CLEAR_THRESHOLD,
            instance,
        ),
        "reevaluate": Param(
            False,
            type="boolean",
            title="Full sync: evaluate every object",
            description="A full sync skips the objects whose inputs (rules, values, links, pending exports) are "
            "unchanged since a sync evaluated them without error; this evaluates every object all the same.",
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


def _for_instance(params: dict[str, Param], instance: str | None) -> dict[str, Param]:
    """``params`` for the DAGs of ``instance``: in a named instance's, each param :func:`common_params` made for the
    default instance (a DAG file that did not pass it the instance) is a copy describing the instance's Variables."""
    if instance is None:
        return params
    default, named = common_params(), common_params(instance=instance)
    fixed = dict(params)
    for name, param in params.items():
        if name in named and isinstance(param, Param) and param.description == default[name].description:
            fixed[name] = copy.copy(param)
            fixed[name].description = named[name].description
    return fixed


def default_args(instance: str | None = None) -> dict[str, Any]:
    """Retries (Variables aadsync_retries, aadsync_retry_delay_seconds, read at parse time) with exponential backoff,
    and the shipped failure hook."""
    retry_delay = float(parse_time_setting("aadsync_retry_delay_seconds", "60", instance))
    return {
        "retries": int(parse_time_setting("aadsync_retries", "2", instance)),
        "retry_delay": dt.timedelta(seconds=retry_delay),
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
    instance: str | None = None,
) -> DAG:
    """One cycle: the preview branch, the steps in the product's order, and the report as the cycle's teardown.

    :param connectors: the connectors configuration: one import task (``import_<name>``) and one sync task
        (``sync_<name>``) per AD connector, each import with its connector's scope, and the connection ids it names.
        None: the one connector ``ad`` on the Variable ``aadsync_ad_conn_id`` (tasks ``import_ad``, ``sync_ad``).
    :param on_failure_callback: what runs when a task fails for good, next to the shipped log line: Airflow notifiers
        (``SmtpNotifier``, ``SlackNotifier``, any ``BaseNotifier``) or callables taking the task context.
    :param instance: None: the default sync instance (its name the Variable ``aadsync_instance``, its settings the
        Variables ``aadsync_<setting>``). A name: a named instance of that name next to it in one deployment, whose
        settings are the Variables ``aadsync_<instance>__<setting>``, else the shared ones, except its store, its Entra
        connection (default ``aadsync_entra_<instance>``) and its connectors file, which are only its own (see
        dag_settings.py and the README's "Several sync instances in one deployment").
    """
    t = Templates(check_instance_name(instance) if instance is not None else None)
    store = t.store
    args = default_args(instance)
    if on_failure_callback is not None:
        extra = [on_failure_callback] if callable(on_failure_callback) else list(on_failure_callback)
        args["on_failure_callback"] = [on_task_failure, *extra]
    poke_seconds, wait = instance_wait(instance)
    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,  # with the store lock: two runs of one sync instance never interleave
        params=_for_instance(params, instance),
        default_args=args,
        doc_md=doc,
        tags=["aadsync"] if instance is None else ["aadsync", f"aadsync:{instance}"],
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
            rules=t.rules,
            endpoint=ENDPOINT,
            report_dir=t.report_dir,
            retries=0,
            **t.writeback,
            **t.matching,  # the sync tasks' rule settings: the preview shows what they would do
            **t.extensions,
            **t.consistency_guid,
            **store,
        )
        entra_name = connectors.entra.name if connectors else "entra"
        entra_conn_id = entra_connection(connectors, t.entra_conn_id, named=instance is not None)
        # The cycle holds the sync instance from its first step to its last: another DAG run of the same instance
        # (aadsync_cycle and aadsync_full) waits here, and the report (the teardown) releases it.
        acquire = InstanceLockSensor(
            task_id="acquire_instance",
            poke_interval=poke_seconds,
            timeout=wait.total_seconds(),
            retries=0,  # it waits by itself; giving up is final and names the holder
            entra_conn_id=entra_conn_id,  # a store of another tenant stops the cycle here (engine/store/owner.py)
            **store,
        )
        imports, syncs = [], []
        for name, conn_id, scope in ad_connectors(connectors, t.ad_conn_id):
            imports.append(
                ADImportOperator(
                    task_id=f"import_{name}",
                    ad_conn_id=conn_id,
                    connector=name,
                    scope=scope,
                    mode=mode,
                    rules=t.rules,
                    **t.import_guard,
                    **t.extensions,
                    **store,
                )
            )
            syncs.append(
                SyncOperator(
                    task_id=f"sync_{name}",
                    connector=name,
                    mode=mode,
                    rules=t.rules,
                    endpoint=ENDPOINT,
                    reevaluate=REEVALUATE,
                    **t.writeback,
                    **t.matching,
                    **t.extensions,
                    **t.consistency_guid,
                    **store,
                )
            )
        import_entra = EntraImportOperator(
            task_id="import_entra",
            entra_conn_id=entra_conn_id,
            connector=entra_name,
            mode=mode,
            rules=t.rules,
            **t.import_guard,
            **t.extensions,
            **store,
        )
        sync_entra = SyncOperator(
            task_id="sync_entra",
            connector=entra_name,
            mode=mode,
            rules=t.rules,
            endpoint=ENDPOINT,
            reevaluate=REEVALUATE,
            **t.writeback,
            **t.matching,
            **t.extensions,
            **t.consistency_guid,
            **store,
        )
        export_entra = EntraExportOperator(
            task_id="export_entra",
            entra_conn_id=entra_conn_id,
            connector=entra_name,
            staging=STAGING,
            deletion_threshold=t.deletion_threshold,
            **t.guards,
            **t.write_budget,
            pool=graph_writer_pool(instance),  # caps the tasks writing to Graph at once, across DAGs and instances
            # runs after the AD export, also when that one is skipped (group and ConsistencyGuid writeback off)
            trigger_rule="none_failed",
            **store,
        )
        export_ads = [
            ADExportOperator(
                task_id=f"export_{name}",
                ad_conn_id=conn_id,
                connector=name,
                # group writeback goes to the connector ``ad`` only; ConsistencyGuid writeback to every AD connector
                # (each task skipped, writing nothing, when neither is on for it)
                writeback_enabled=t.writeback["writeback_enabled"] if name == WRITEBACK_CONNECTOR else False,
                # checked before the first write against what this connector's import reads (its scope)
                writeback_ou=t.writeback["writeback_ou"] if name == WRITEBACK_CONNECTOR else None,
                scope=scope,
                consistency_guid_writeback=t.consistency_guid["consistency_guid_writeback"] if consistency else False,
                staging=STAGING,
                deletion_threshold=t.deletion_threshold,
                **t.guards,
                # runs after another AD export, also when that one is skipped (nothing to write there)
                trigger_rule="none_failed",
                **store,
            )
            for name, conn_id, consistency, scope in ad_export_targets(connectors, t.ad_conn_id)
        ]
        report = SyncReportOperator(
            task_id="report",
            report_dir=t.report_dir,
            preflight=STAGING,
            plan_connector=entra_name,
            # a connector space of a connector removed or renamed in the connectors file is named in every report
            configured_connectors=(connectors or default_connectors_config()).connector_names(),
            **t.matching,
            **store,
        )
        choose >> [preview, acquire]
        # The report is the cycle's teardown: it runs whatever happened before it (once the instance was acquired),
        # releases the instance, and a failed step still fails the DAG run.
        # The product's order: every import, then the syncs connector by connector (the configuration's order: the
        # account forest before the resource forest), then the exports. The imports run in parallel tasks: each
        # writes only its own connector space and takes only its connector's scope of the instance lock
        # (engine/store/lock.py), so on PostgreSQL they overlap (on SQLite they take turns). The syncs stay ordered.
        # The AD exports go first: the user's objectGUID is in mS-DS-ConsistencyGuid before its first Entra export;
        # each AD connector's export (its own DC, its own connection) in the configuration's order, one at a time.
        # The export to Entra ID stays one task, one writer per tenant: Graph's write budget is per app and tenant.
        all_imports = [*imports, import_entra]
        acquire >> all_imports
        all_imports >> (syncs[0] if syncs else sync_entra)
        chain(*syncs, sync_entra, *export_ads, export_entra)
        export_entra >> report.as_teardown(setups=acquire)
    return dag
