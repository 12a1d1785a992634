"""EntraExportOperator: write the pending exports of the Entra connector to Entra ID as one Airflow task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings
from airflow_provider_aadsync.engine.runs import defaults
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.hooks.entra import EntraHook
from airflow_provider_aadsync.operators.base import StoreStepOperator, refuse_settings
from airflow_provider_aadsync.operators.templated import named_float, named_int, templated_flag, templated_value
from airflow_provider_aadsync.steps import COMPLETED_EXPORT_RESULTS, entra_export_settings, export_to_entra

if TYPE_CHECKING:
    from airflow.sdk import Context


class EntraExportOperator(StoreStepOperator):
    """Export the sync store's pending operations for Entra ID through Microsoft Graph (V2 capabilities).

    A retried task resumes: confirmed writes are never sent again, interrupted ones are reconciled.

    One instance, one writer per tenant: the export of an instance is this one task (it takes the whole instance
    lock), never split into parallel tasks, because Graph's write budget is per app and tenant: two writers would
    share it and throttle each other. Writers of several instances are capped across DAGs by the Graph writer pool.

    :param entra_conn_id: the ``aadsync_entra`` connection (templated).
    :param staging: compute and store the export plan, write nothing (templated; ``"True"``/``"False"`` accepted).
    :param deletion_threshold: more pending deletes than this stop the export before any write (templated; an
        empty value means the default, ``DELETION_THRESHOLD`` of engine/runs/defaults.py).
    :param disable_threshold: more accounts disabled (accountEnabled true → false) than this stop the export before
        any write (templated; empty: ``DISABLE_THRESHOLD``).
    :param member_removal_threshold: more group member removals plus users whose manager would be cleared than
        this stop the export before any write (templated; empty: ``MEMBER_REMOVAL_THRESHOLD``).
    :param member_removal_group_percent: a group of 20 or more members losing more than this share of them stops
        the export before any write (templated; empty: ``MEMBER_REMOVAL_GROUP_PERCENT``; 100 lets any share through).
    :param identity_change_threshold: more accounts getting another sign-in name or mail address than this
        stop the export before any write (templated; empty: ``IDENTITY_CHANGE_THRESHOLD``).
    :param attribute_clear_threshold: more objects losing every value of an attribute they hold (``department``
        cleared on every user) than this stop the export before any write (templated; empty:
        ``ATTRIBUTE_CLEAR_THRESHOLD``).
    :param confirm_mass_change: the exact counts confirmed for this run, as a guard's stop names them
        (``deletes=812,member_removals=1204``; templated; empty: none): a guard over its threshold lets the export
        through only when its count is exactly the one named; a count that differs stops again, a malformed value
        fails the task without retries. Unlike a raised threshold, a rerun that finds another plan is not let through.
    :param write_budget: writes per ``write_window_seconds`` the export paces itself to (templated; Graph's per-app
        limit, ``WRITE_BUDGET`` per ``WRITE_WINDOW_SECONDS``, by default).
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
        "identity_change_threshold",
        "attribute_clear_threshold",
        "confirm_mass_change",
        "write_budget",
        "write_window_seconds",
        *StoreStepOperator.template_fields,
    )
    step_name = "Entra export"
    completed_results = COMPLETED_EXPORT_RESULTS

    def __init__(
        self,
        *,
        entra_conn_id: str = EntraHook.default_conn_name,
        staging: bool | str = False,
        deletion_threshold: int | str | None = defaults.DELETION_THRESHOLD,
        disable_threshold: int | str | None = defaults.DISABLE_THRESHOLD,
        member_removal_threshold: int | str | None = defaults.MEMBER_REMOVAL_THRESHOLD,
        member_removal_group_percent: int | str | None = defaults.MEMBER_REMOVAL_GROUP_PERCENT,
        identity_change_threshold: int | str | None = defaults.IDENTITY_CHANGE_THRESHOLD,
        attribute_clear_threshold: int | str | None = defaults.ATTRIBUTE_CLEAR_THRESHOLD,
        confirm_mass_change: str | None = None,
        write_budget: int | str = defaults.WRITE_BUDGET,
        write_window_seconds: float | str = defaults.WRITE_WINDOW_SECONDS,
        connector: str = "entra",
        **kwargs: Any,
    ) -> None:
        super().__init__(connector=connector, **kwargs)
        self.entra_conn_id = entra_conn_id
        self.staging = staging
        self.deletion_threshold = deletion_threshold
        self.disable_threshold = disable_threshold
        self.member_removal_threshold = member_removal_threshold
        self.member_removal_group_percent = member_removal_group_percent
        self.identity_change_threshold = identity_change_threshold
        self.attribute_clear_threshold = attribute_clear_threshold
        self.confirm_mass_change = confirm_mass_change
        self.write_budget = write_budget
        self.write_window_seconds = write_window_seconds
        self._settings: ExportSettings | None = None

    def export_settings(self) -> ExportSettings:
        """The export's settings from the rendered parameters (empty values: the defaults)."""
        return entra_export_settings(
            staging=templated_flag(self.staging),
            deletion_threshold=named_int("deletion_threshold", self.deletion_threshold),
            disable_threshold=named_int("disable_threshold", self.disable_threshold),
            member_removal_threshold=named_int("member_removal_threshold", self.member_removal_threshold),
            member_removal_group_percent=named_int("member_removal_group_percent", self.member_removal_group_percent),
            identity_change_threshold=named_int("identity_change_threshold", self.identity_change_threshold),
            attribute_clear_threshold=named_int("attribute_clear_threshold", self.attribute_clear_threshold),
            confirm_mass_change=templated_value(self.confirm_mass_change),
            write_budget=named_int("write_budget", self.write_budget),
            write_window_seconds=named_float("write_window_seconds", self.write_window_seconds),
        )

    def execute(self, context: Context) -> dict[str, Any]:
        # refused settings fail before the store is opened, without retries
        self._settings = refuse_settings(self.step_name, self.export_settings)
        return super().execute(context)

    def run_step(self, store: Store, lock_holder: str) -> dict[str, Any]:
        settings = self._settings or self.export_settings()
        hook = EntraHook(self.entra_conn_id)
        return export_to_entra(hook, store, settings=settings, connector=self.connector, lock_holder=lock_holder)
