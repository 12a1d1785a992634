"""ADExportOperator: write the pending exports of the AD connector (group writeback) to Active Directory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowSkipException

from airflow_provider_aadsync.engine.connectors.ad.writer import ADExportSettings
from airflow_provider_aadsync.engine.connectors.config import ADConnectorConfig
from airflow_provider_aadsync.engine.runs import defaults
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync.settings import writeback_ou_required
from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook
from airflow_provider_aadsync.operators.base import StoreStepOperator, refuse_settings
from airflow_provider_aadsync.operators.templated import (
    named_int,
    templated_flag,
    templated_flag_on,
    templated_value,
)
from airflow_provider_aadsync.steps import (
    COMPLETED_EXPORT_RESULTS,
    WRITEBACK_OFF_MESSAGE,
    ad_export_settings,
    export_to_ad,
)

if TYPE_CHECKING:
    from airflow.sdk import Context


class ADExportOperator(StoreStepOperator):
    """Export the sync store's pending operations for Active Directory (group writeback) over LDAP.

    A retried task resumes: confirmed writes are never sent again, interrupted ones are reconciled.

    :param ad_conn_id: the ``aadsync_ad`` connection (templated); its account needs write access to the writeback OU.
    :param writeback_enabled: group writeback is on (templated; default false): off, the task writes nothing and is
        skipped, saying so (group writeback is opt-in, like the sync's writeback rules).
    :param writeback_ou: group writeback's OU, the sync's (templated); required when ``writeback_enabled``, and
        refused before any write unless the connector's import reads it (else it would never read the groups back):
        it lies under the AD connection's base DN, or, with ``scope``, in the scope of its partitions and OU filters.
    :param scope: the connector's entry in the connectors configuration (an :class:`ADConnectorConfig` or its dict),
        as its import task gets it; None: the connection's base DN, unfiltered.
    :param consistency_guid_writeback: ConsistencyGuid writeback is on (templated; default true): the users'
        mS-DS-ConsistencyGuid the sync staged are written; with it and group writeback off the task is skipped.
    :param staging: compute and store the export plan, write nothing (templated).
    :param deletion_threshold: more pending deletes than this stop the export before any write (templated; empty
        means the default, ``DELETION_THRESHOLD`` of engine/runs/defaults.py).
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
    :param disable_threshold: as the Entra export's (counts userAccountControl disables; templated; empty:
        ``DISABLE_THRESHOLD``).
    :param member_chunk: member values per modify operation (templated; default ``MEMBER_CHUNK``).
    :param deprovision: ``delete`` (default) or ``move``: what happens to a written-back group whose cloud group
        is gone (templated).
    :param holding_ou: with ``deprovision="move"``, the OU outside the import's base DN to move groups to (templated).
    :param store_url: SQLAlchemy URL of the store (templated); empty or None: the embedded SQLite store.
    :param instance: sync instance name (templated).
    :param connector: connector space name (default ``ad``); the DAGs make one task per AD connector, each with its
        own ``ad_conn_id`` (group writeback goes to ``ad``, ConsistencyGuid writeback to every AD connector).
    :return: a small run summary (run id, result, counters such as ``ldap_writes`` vs ``ldap_writes_minimum``).
    """

    template_fields: Sequence[str] = (
        "ad_conn_id",
        "writeback_enabled",
        "writeback_ou",
        "consistency_guid_writeback",
        "staging",
        "deletion_threshold",
        "disable_threshold",
        "member_removal_threshold",
        "member_removal_group_percent",
        "identity_change_threshold",
        "attribute_clear_threshold",
        "confirm_mass_change",
        "member_chunk",
        "deprovision",
        "holding_ou",
        *StoreStepOperator.template_fields,
    )
    step_name = "AD export"
    completed_results = COMPLETED_EXPORT_RESULTS

    def __init__(
        self,
        *,
        ad_conn_id: str = ActiveDirectoryHook.default_conn_name,
        writeback_enabled: bool | str = False,
        writeback_ou: str | None = None,
        consistency_guid_writeback: bool | str = True,
        staging: bool | str = False,
        deletion_threshold: int | str | None = defaults.DELETION_THRESHOLD,
        disable_threshold: int | str | None = defaults.DISABLE_THRESHOLD,
        member_removal_threshold: int | str | None = defaults.MEMBER_REMOVAL_THRESHOLD,
        member_removal_group_percent: int | str | None = defaults.MEMBER_REMOVAL_GROUP_PERCENT,
        identity_change_threshold: int | str | None = defaults.IDENTITY_CHANGE_THRESHOLD,
        attribute_clear_threshold: int | str | None = defaults.ATTRIBUTE_CLEAR_THRESHOLD,
        confirm_mass_change: str | None = None,
        member_chunk: int | str | None = defaults.MEMBER_CHUNK,
        deprovision: str = "delete",
        holding_ou: str | None = None,
        connector: str = "ad",
        scope: ADConnectorConfig | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(connector=connector, **kwargs)
        self.ad_conn_id = ad_conn_id
        # Validated when the DAG is built, as the import's: a bad scope is a DAG import error, not a failed run.
        self.scope = ADConnectorConfig.of(scope)
        self.writeback_enabled = writeback_enabled
        self.writeback_ou = writeback_ou
        self.consistency_guid_writeback = consistency_guid_writeback
        self.staging = staging
        self.deletion_threshold = deletion_threshold
        self.disable_threshold = disable_threshold
        self.member_removal_threshold = member_removal_threshold
        self.member_removal_group_percent = member_removal_group_percent
        self.identity_change_threshold = identity_change_threshold
        self.attribute_clear_threshold = attribute_clear_threshold
        self.confirm_mass_change = confirm_mass_change
        self.member_chunk = member_chunk
        self.deprovision = deprovision
        self.holding_ou = holding_ou
        self._settings: ADExportSettings | None = None
        self._writeback_ou: str | None = None

    def export_settings(self) -> ADExportSettings:
        """The export's settings from the rendered parameters (empty values: the defaults)."""
        return ad_export_settings(
            staging=templated_flag(self.staging),
            deletion_threshold=named_int("deletion_threshold", self.deletion_threshold),
            disable_threshold=named_int("disable_threshold", self.disable_threshold),
            member_removal_threshold=named_int("member_removal_threshold", self.member_removal_threshold),
            member_removal_group_percent=named_int("member_removal_group_percent", self.member_removal_group_percent),
            identity_change_threshold=named_int("identity_change_threshold", self.identity_change_threshold),
            attribute_clear_threshold=named_int("attribute_clear_threshold", self.attribute_clear_threshold),
            confirm_mass_change=templated_value(self.confirm_mass_change),
            member_chunk=named_int("member_chunk", self.member_chunk),
            deprovision=templated_value(self.deprovision),
            holding_ou=templated_value(self.holding_ou),
        )

    def writeback_ou_setting(self) -> str | None:
        """Group writeback's OU when writeback is on (required then), else None (nothing to check)."""
        if not templated_flag(self.writeback_enabled):
            return None
        return writeback_ou_required(templated_value(self.writeback_ou))

    def execute(self, context: Context) -> dict[str, Any]:
        writeback = templated_flag(self.writeback_enabled)
        if not writeback and not templated_flag_on(self.consistency_guid_writeback):
            raise AirflowSkipException(WRITEBACK_OFF_MESSAGE)
        # refused settings fail before AD or the store is opened, without retries
        self._settings = refuse_settings(self.step_name, self.export_settings)
        self._writeback_ou = refuse_settings(self.step_name, self.writeback_ou_setting)
        return super().execute(context)

    def run_step(self, store: Store, lock_holder: str) -> dict[str, Any]:
        settings = self._settings or self.export_settings()
        hook = ActiveDirectoryHook(self.ad_conn_id)
        return export_to_ad(
            hook,
            store,
            settings=settings,
            connector=self.connector,
            lock_holder=lock_holder,
            writeback_ou=self._writeback_ou,  # checked against what the connector's import reads before any write
            scope=self.scope,
        )
