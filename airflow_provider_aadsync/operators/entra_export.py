"""EntraExportOperator: write the pending exports of the Entra connector to Entra ID as one Airflow task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.hooks.entra import EntraHook
from airflow_provider_aadsync.operators.base import StoreLocation, run_recorded_step, templated_flag, templated_int

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Export results after which the task succeeds; ``stopped-*`` fails it with the result in the message.
COMPLETED_EXPORT_RESULTS = ("success", "completed-export-errors", "staged")
#: Pending deletes above which an export stops before writing anything (Entra Connect's default).
DEFAULT_DELETION_THRESHOLD = ExportSettings.model_fields["deletion_threshold"].default
#: The other mass-change guards' defaults (engine/runs/export_guards.py): disables, member removals, per-group share.
DEFAULT_DISABLE_THRESHOLD = ExportSettings.model_fields["disable_threshold"].default
DEFAULT_MEMBER_REMOVAL_THRESHOLD = ExportSettings.model_fields["member_removal_threshold"].default
DEFAULT_MEMBER_REMOVAL_GROUP_PERCENT = ExportSettings.model_fields["member_removal_group_percent"].default


def guard_settings(
    *,
    deletion_threshold: object = None,
    disable_threshold: object = None,
    member_removal_threshold: object = None,
    member_removal_group_percent: object = None,
) -> dict[str, int]:
    """The guards' thresholds from templated task parameters (empty values mean the defaults), for both exports."""
    return {
        "deletion_threshold": templated_int(deletion_threshold, DEFAULT_DELETION_THRESHOLD),
        "disable_threshold": templated_int(disable_threshold, DEFAULT_DISABLE_THRESHOLD),
        "member_removal_threshold": templated_int(member_removal_threshold, DEFAULT_MEMBER_REMOVAL_THRESHOLD),
        "member_removal_group_percent": templated_int(
            member_removal_group_percent, DEFAULT_MEMBER_REMOVAL_GROUP_PERCENT
        ),
    }


def export_to_entra(
    hook: EntraHook,
    store: Store,
    *,
    settings: ExportSettings,
    connector: str = "entra",
    lock_holder: str | None = None,
) -> dict[str, Any]:
    """Glue shared by the operator and the CLI: hook in, engine run, small summary out."""
    try:
        result = run_entra_export(store, hook, connector=connector, settings=settings, lock_holder=lock_holder)  # type: ignore[arg-type]
    finally:
        hook.close()
    return result.summary()


class EntraExportOperator(StoreLocation, BaseOperator):
    """Export the sync store's pending operations for Entra ID through Microsoft Graph (V2 capabilities).

    A retried task resumes: confirmed writes are never sent again, interrupted ones are reconciled.

    :param entra_conn_id: the ``aadsync_entra`` connection (templated).
    :param staging: compute and store the export plan, write nothing (templated; ``"True"``/``"False"`` accepted).
    :param deletion_threshold: more pending deletes than this stop the export before any write (templated; an
        empty value means the default, 500).
    :param disable_threshold: more accounts disabled (accountEnabled true → false) than this stop the export before
        any write (templated; empty: 500).
    :param member_removal_threshold: more group member removals than this stop the export before any write
        (templated; empty: 500).
    :param member_removal_group_percent: a group of 20 or more members losing more than this share of them stops
        the export before any write (templated; empty: 50; 100 lets any share through).
    :param write_budget: writes per ``write_window_seconds`` the export paces itself to (templated; Graph's per-app
        limit, 3,000 per 150 s, by default).
    :param write_window_seconds: the pacing window in seconds (templated).
    :param store_url: SQLAlchemy URL of the store (templated); empty or None: the embedded SQLite store.
    :param instance: sync instance name (templated).
    :param connector: connector space name (default ``entra``).
    :return: a small run summary (run id, result, counters such as ``batch_calls`` vs ``batch_calls_minimum``).
    """

    template_fields: Sequence[str] = (
        "entra_conn_id",
        "staging",
        "deletion_threshold",
        "disable_threshold",
        "member_removal_threshold",
        "member_removal_group_percent",
        "write_budget",
        "write_window_seconds",
        "store_url",
        "store_conn_id",
        "instance",
    )

    def __init__(
        self,
        *,
        entra_conn_id: str = EntraHook.default_conn_name,
        staging: bool | str = False,
        deletion_threshold: int | str | None = DEFAULT_DELETION_THRESHOLD,
        disable_threshold: int | str | None = DEFAULT_DISABLE_THRESHOLD,
        member_removal_threshold: int | str | None = DEFAULT_MEMBER_REMOVAL_THRESHOLD,
        member_removal_group_percent: int | str | None = DEFAULT_MEMBER_REMOVAL_GROUP_PERCENT,
        write_budget: int | str = ExportSettings.model_fields["write_budget"].default,
        write_window_seconds: float | str = ExportSettings.model_fields["write_window_seconds"].default,
        store_url: str | None = None,
        instance: str = "default",
        connector: str = "entra",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.entra_conn_id = entra_conn_id
        self.staging = staging
        self.deletion_threshold = deletion_threshold
        self.disable_threshold = disable_threshold
        self.member_removal_threshold = member_removal_threshold
        self.member_removal_group_percent = member_removal_group_percent
        self.write_budget = write_budget
        self.write_window_seconds = write_window_seconds
        self.store_url = store_url
        self.instance = instance
        self.connector = connector

    def execute(self, context: Context) -> dict[str, Any]:
        settings = ExportSettings(
            staging=templated_flag(self.staging),
            **guard_settings(
                deletion_threshold=self.deletion_threshold,
                disable_threshold=self.disable_threshold,
                member_removal_threshold=self.member_removal_threshold,
                member_removal_group_percent=self.member_removal_group_percent,
            ),
            write_budget=int(self.write_budget),
            write_window_seconds=float(self.write_window_seconds),
        )
        return run_recorded_step(
            self,
            context,
            store_url=self.store_location(),
            instance=self.instance,
            connector=self.connector,
            step_name="Entra export",
            completed=COMPLETED_EXPORT_RESULTS,
            step=lambda store, holder: export_to_entra(
                EntraHook(self.entra_conn_id), store, settings=settings, connector=self.connector, lock_holder=holder
            ),
        )
