"""SyncOperator and the preview path: synchronize one connector space with the metaverse, or show what a sync would
do with one object, as Airflow tasks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseBranchOperator, BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_aadsync.engine.report import render_preview
from airflow_provider_aadsync.engine.rules import RuleSet
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import preview, run_sync
from airflow_provider_aadsync.operators.base import ModeStepOperator, StoreLocation, open_task_store
from airflow_provider_aadsync.operators.report import save_report
from airflow_provider_aadsync.operators.templated import load_rules_templated, templated_flag, templated_value
from airflow_provider_aadsync.steps import COMPLETED_SYNC_RESULTS

if TYPE_CHECKING:
    from airflow.sdk import Context


def load_task_rules(step_name: str, rules: str | Sequence[str] | None, endpoint: str, **writeback: Any) -> RuleSet:
    """:func:`load_rules_templated` in a task: a refused setting (writeback on without an OU, a bad limit) fails the
    task without retries, naming what to fix; a retry would only be refused again."""
    try:
        return load_rules_templated(rules, endpoint, **writeback)
    except ValueError as error:
        raise AirflowFailException(f"{step_name}: refused configuration, not retried: {error}") from error


class SyncOperator(ModeStepOperator):
    """Synchronize one connector space with the metaverse and stage the pending exports (full or delta sync).

    :param connector: the connector space to synchronize (``ad``, ``entra``, ...).
    :param mode: ``full`` or ``delta`` (templated); a delta becomes a full sync when no full sync ran yet or the rule
        set (files or endpoint) changed since the last one, and the run says why.
    :param rules: rule files or folders (templated): a list, or one string separated by commas or newlines; empty:
        the shipped default rules.
    :param endpoint: ``v2`` (groups up to 250,000 members, the default) or ``v1`` (50,000) (templated).
    :param writeback_enabled: run the group writeback rules (templated; default false: group writeback is opt-in).
    :param writeback_size_limit: group writeback size limit (templated; empty: 50,000; at most 250,000).
    :param writeback_ou: OU for written-back groups (templated); required when writeback is on.
    :param writeback_naming: ``objectId`` or ``displayName`` naming of written-back groups (templated).
    :param block_soft_match: join cloud users by hard match only (templated; default false: soft match on).
    :param block_cloud_object_takeover: refuse the hard match of a cloud-created user no sync engine made or adopted,
        as Entra ID's BlockCloudObjectTakeoverThroughHardMatch (templated; default false, as in Entra ID).
    :param directory_extensions: AD attributes synced as the sync app's directory extensions (templated; a list or
        text separated by commas; default none).
    :param consistency_guid_writeback: write the user's sourceAnchor into an empty mS-DS-ConsistencyGuid in AD
        (templated; default true; the AD export writes it).
    :param reevaluate: a full sync evaluates every object, also those the sync memo shows unchanged since a pass
        that evaluated them (templated; default false).
    :param store_url: SQLAlchemy URL of the store (templated); empty or None: the embedded SQLite store.
    :param instance: sync instance name (templated).
    :return: a small run summary (run id, mode, result, counters, why a delta became full) for XCom.
    """

    template_fields: Sequence[str] = (
        *ModeStepOperator.template_fields,
        "reevaluate",
        "rules",
        "endpoint",
        "writeback_enabled",
        "writeback_size_limit",
        "writeback_ou",
        "writeback_naming",
        "block_soft_match",
        "block_cloud_object_takeover",
        "directory_extensions",
        "consistency_guid_writeback",
    )
    completed_results = COMPLETED_SYNC_RESULTS

    def __init__(
        self,
        *,
        connector: str,
        rules: str | Sequence[str] | None = None,
        endpoint: str = "v2",
        writeback_enabled: bool | str = False,
        writeback_size_limit: int | str | None = None,
        writeback_ou: str | None = None,
        writeback_naming: str | None = None,
        block_soft_match: bool | str = False,
        block_cloud_object_takeover: bool | str = False,
        directory_extensions: str | Sequence[str] | None = None,
        consistency_guid_writeback: bool | str = True,
        reevaluate: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(connector=connector, **kwargs)
        self.reevaluate = reevaluate
        self.block_soft_match = block_soft_match
        self.block_cloud_object_takeover = block_cloud_object_takeover
        self.directory_extensions = directory_extensions
        self.consistency_guid_writeback = consistency_guid_writeback
        self.rules = rules
        self.endpoint = endpoint
        self.writeback_enabled = writeback_enabled
        self.writeback_size_limit = writeback_size_limit
        self.writeback_ou = writeback_ou
        self.writeback_naming = writeback_naming
        self.step_name = f"sync of {connector}"

    def run_step(self, store: Store, lock_holder: str) -> dict[str, Any]:
        rules = load_task_rules(
            self.step_name,
            self.rules,
            self.endpoint,
            writeback_enabled=self.writeback_enabled,
            writeback_size_limit=self.writeback_size_limit,
            writeback_ou=self.writeback_ou,
            writeback_naming=self.writeback_naming,
            block_soft_match=self.block_soft_match,
            block_cloud_object_takeover=self.block_cloud_object_takeover,
            directory_extensions=self.directory_extensions,
            consistency_guid_writeback=self.consistency_guid_writeback,
        )
        return run_sync(
            store,
            rules,
            connector=self.connector,
            mode=self.mode,  # type: ignore[arg-type]
            lock_holder=lock_holder,
            reevaluate=templated_flag(self.reevaluate),
        ).summary()


def preview_requested(dn: str | None, anchor: str | None) -> bool:
    """Whether a DN or an anchor was given (templated ``None`` params render as the string ``"None"``)."""
    return any(templated_value(value) for value in (dn, anchor))


class CyclePreviewBranchOperator(BaseBranchOperator):
    """Choose the path of a DAG run: the sync cycle, or only the preview of one object when a DN or anchor is given.

    :param preview_dn: DN of the object to preview (templated); empty: run the cycle.
    :param preview_anchor: anchor of the object to preview (templated); empty: run the cycle.
    :param preview_task_id: the task that shows the preview.
    :param cycle_task_id: the first task of the cycle.
    """

    template_fields: Sequence[str] = ("preview_dn", "preview_anchor")

    def __init__(
        self,
        *,
        preview_dn: str | None = None,
        preview_anchor: str | None = None,
        preview_task_id: str,
        cycle_task_id: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.preview_dn = preview_dn
        self.preview_anchor = preview_anchor
        self.preview_task_id = preview_task_id
        self.cycle_task_id = cycle_task_id

    def choose_branch(self, context: Context) -> str:
        if preview_requested(self.preview_dn, self.preview_anchor):
            self.log.info("a preview was asked for: this run previews one object and writes nothing")
            return self.preview_task_id
        return self.cycle_task_id


class SyncPreviewOperator(StoreLocation, BaseOperator):
    """Show what a sync would do with one connector-space object, and write nothing (neither store nor directory).

    The preview goes to the task log and to the run's report file (see :class:`SyncReportOperator`).

    :param connector: connector space of the object (templated).
    :param dn: the object's DN (templated); give this or ``anchor``.
    :param anchor: the object's anchor (objectGUID, Graph id) (templated).
    :param rules: rule files or folders (templated), as for :class:`SyncOperator`; empty: the shipped rules.
    :param endpoint: ``v2`` or ``v1`` member limit (templated).
    :param writeback_enabled: ``writeback_ou``, ``writeback_size_limit``, ``writeback_naming``: the group writeback
        settings, as for :class:`SyncOperator` (templated; writeback is off by default).
    :param block_soft_match: ``block_cloud_object_takeover``, ``directory_extensions``, ``consistency_guid_writeback``:
        the other rule settings, as for
        :class:`SyncOperator` (templated): give the sync's, or the preview shows what another rule set would do.
    :param store_url: SQLAlchemy URL of the store (templated); empty or None: the embedded SQLite store.
    :param instance: sync instance name (templated).
    :param report_dir: folder or fsspec URL of the report files (templated); empty: ``$AIRFLOW_HOME/aadsync/reports``.
    :return: a small summary: the object, the decision, the number of exports it would stage, the report path.
    """

    template_fields: Sequence[str] = (
        "connector", "dn", "anchor", "rules", "endpoint", "store_url", "store_conn_id", "instance", "report_dir",
        "writeback_enabled", "writeback_ou", "writeback_size_limit", "writeback_naming",
        "block_soft_match", "block_cloud_object_takeover", "directory_extensions", "consistency_guid_writeback",
    )  # fmt: skip

    def __init__(
        self,
        *,
        connector: str = "ad",
        dn: str | None = None,
        anchor: str | None = None,
        rules: str | Sequence[str] | None = None,
        endpoint: str = "v2",
        store_url: str | None = None,
        instance: str = "default",
        report_dir: str | None = None,
        writeback_enabled: bool | str = False,
        writeback_ou: str | None = None,
        writeback_size_limit: int | str | None = None,
        writeback_naming: str | None = None,
        block_soft_match: bool | str = False,
        block_cloud_object_takeover: bool | str = False,
        directory_extensions: str | Sequence[str] | None = None,
        consistency_guid_writeback: bool | str = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.block_soft_match = block_soft_match
        self.block_cloud_object_takeover = block_cloud_object_takeover
        self.directory_extensions = directory_extensions
        self.consistency_guid_writeback = consistency_guid_writeback
        self.writeback_enabled = writeback_enabled
        self.writeback_ou = writeback_ou
        self.writeback_size_limit = writeback_size_limit
        self.writeback_naming = writeback_naming
        self.connector = connector
        self.dn = dn
        self.anchor = anchor
        self.rules = rules
        self.endpoint = endpoint
        self.store_url = store_url
        self.instance = instance
        self.report_dir = report_dir

    def execute(self, context: Context) -> dict[str, Any]:
        dn, anchor = templated_value(self.dn), templated_value(self.anchor)
        if (dn is None) == (anchor is None):
            raise ValueError("a preview needs exactly one of a DN and an anchor")
        rules = load_task_rules(
            "preview",
            self.rules,
            self.endpoint,
            writeback_enabled=self.writeback_enabled,
            writeback_ou=self.writeback_ou,
            writeback_size_limit=self.writeback_size_limit,
            writeback_naming=self.writeback_naming,
            block_soft_match=self.block_soft_match,
            block_cloud_object_takeover=self.block_cloud_object_takeover,
            directory_extensions=self.directory_extensions,
            consistency_guid_writeback=self.consistency_guid_writeback,
        )
        with open_task_store(self.store_location(), self.instance) as store:
            trace = preview(store, rules, connector=self.connector, anchor=anchor, dn=dn)
        text = render_preview(trace)
        self.log.info("Sync preview (nothing was written):\n%s", text)
        title = f"# AADSync preview: {context['dag'].dag_id} / {context['run_id']}\n\n"
        path = save_report(title + "```\n" + text + "```\n", context, self.report_dir)
        self.log.info("preview saved to %s", path)
        return {
            "connector": self.connector,
            "dn": trace.get("dn"),
            "anchor": trace.get("anchor"),
            "decision": trace.get("decision"),
            "exports_it_would_stage": len(trace.get("pending_exports") or []),
            "report": str(path),
        }
