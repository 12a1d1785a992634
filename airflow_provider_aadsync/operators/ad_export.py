"""ADExportOperator: write the pending exports of the AD connector (group writeback) to Active Directory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from airflow_provider_aadsync.engine.connectors.ad.writer import ADExportSettings, run_ad_export
from airflow_provider_aadsync.engine.dn import DnError, dn_is_under
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook
from airflow_provider_aadsync.hooks.active_directory_settings import ActiveDirectoryConfigurationError
from airflow_provider_aadsync.operators.base import StoreLocation, run_recorded_step, templated_flag, templated_int
from airflow_provider_aadsync.operators.entra_export import (
    COMPLETED_EXPORT_RESULTS,
    DEFAULT_DELETION_THRESHOLD,
    DEFAULT_DISABLE_THRESHOLD,
    DEFAULT_MEMBER_REMOVAL_GROUP_PERCENT,
    DEFAULT_MEMBER_REMOVAL_THRESHOLD,
    guard_settings,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_MEMBER_CHUNK = ADExportSettings.model_fields["member_chunk"].default
#: What an AD export says when group writeback is off (the default): it writes nothing.
WRITEBACK_OFF_MESSAGE = (
    "group writeback is off: the AD export writes nothing (turn it on with the Variable aadsync_writeback_enabled = "
    "true and aadsync_writeback_ou, or `--writeback --writeback-ou OU` on the command line)"
)


def export_to_ad(
    hook: ActiveDirectoryHook,
    store: Store,
    *,
    settings: ADExportSettings,
    connector: str = "ad",
    lock_holder: str | None = None,
) -> dict[str, Any]:
    """Glue shared by the operator and the CLI: hook in, engine run, small summary out."""
    check_holding_ou(settings, hook.settings.base_dn)
    try:
        result = run_ad_export(store, hook, connector=connector, settings=settings, lock_holder=lock_holder)  # type: ignore[arg-type]
    finally:
        hook.close()
    return result.summary()


def check_holding_ou(settings: ADExportSettings, base_dn: str) -> None:
    """Refuse a holding OU inside the import's base DN: a group moved there would still be imported, still be
    managed, and be moved again by every cycle. Compared RDN by RDN (any spelling of the base DN)."""
    if settings.deprovision != "move" or not settings.holding_ou:
        return
    try:
        inside = dn_is_under(settings.holding_ou, base_dn)
    except DnError as error:
        raise ActiveDirectoryConfigurationError(f"holding_ou is not usable: {error}") from None
    if inside:
        raise ActiveDirectoryConfigurationError(
            f"holding_ou {settings.holding_ou!r} lies inside the AD connection's base DN {base_dn!r}; "
            "choose an OU outside it (groups moved there must leave the import's scope)"
        )


def ad_export_settings(
    *,
    staging: bool | str = False,
    deletion_threshold: int | str | None = None,
    member_chunk: int | str | None = None,
    deprovision: str | None = None,
    holding_ou: str | None = None,
    disable_threshold: int | str | None = None,
    member_removal_threshold: int | str | None = None,
    member_removal_group_percent: int | str | None = None,
) -> ADExportSettings:
    """Settings from templated task parameters (strings accepted; empty values mean the defaults)."""
    return ADExportSettings(
        staging=templated_flag(staging),
        **guard_settings(
            deletion_threshold=deletion_threshold,
            disable_threshold=disable_threshold,
            member_removal_threshold=member_removal_threshold,
            member_removal_group_percent=member_removal_group_percent,
        ),
        member_chunk=templated_int(member_chunk, DEFAULT_MEMBER_CHUNK),
        deprovision=(str(deprovision or "").strip() or "delete"),  # type: ignore[arg-type]
        holding_ou=(str(holding_ou or "").strip() or None),
    )


class ADExportOperator(StoreLocation, BaseOperator):
    """Export the sync store's pending operations for Active Directory (group writeback) over LDAP.

    A retried task resumes: confirmed writes are never sent again, interrupted ones are reconciled.

    :param ad_conn_id: the ``aadsync_ad`` connection (templated); its account needs write access to the writeback OU.
    :param writeback_enabled: group writeback is on (templated; default false): off, the task writes nothing and is
        skipped, saying so (group writeback is opt-in, like the sync's writeback rules).
    :param staging: compute and store the export plan, write nothing (templated).
    :param deletion_threshold: more pending deletes than this stop the export before any write (templated; empty
        means the default, 500).
    :param member_removal_threshold: more group member removals than this stop the export before any write
        (templated; empty: 500).
    :param member_removal_group_percent: a group of 20 or more members losing more than this share of them stops
        the export before any write (templated; empty: 50; 100 lets any share through).
    :param disable_threshold: as the Entra export's (counts userAccountControl disables; templated; empty: 500).
    :param member_chunk: member values per modify operation (templated; default 5,000).
    :param deprovision: ``delete`` (default) or ``move``: what happens to a written-back group whose cloud group
        is gone (templated).
    :param holding_ou: with ``deprovision="move"``, the OU outside the import's base DN to move groups to (templated).
    :param store_url: SQLAlchemy URL of the store (templated); empty or None: the embedded SQLite store.
    :param instance: sync instance name (templated).
    :param connector: connector space name (default ``ad``).
    :return: a small run summary (run id, result, counters such as ``ldap_writes`` vs ``ldap_writes_minimum``).
    """

    template_fields: Sequence[str] = (
        "ad_conn_id",
        "writeback_enabled",
        "staging",
        "deletion_threshold",
        "disable_threshold",
        "member_removal_threshold",
        "member_removal_group_percent",
        "member_chunk",
        "deprovision",
        "holding_ou",
        "store_url",
        "store_conn_id",
        "instance",
    )

    def __init__(
        self,
        *,
        ad_conn_id: str = ActiveDirectoryHook.default_conn_name,
        writeback_enabled: bool | str = False,
        staging: bool | str = False,
        deletion_threshold: int | str | None = DEFAULT_DELETION_THRESHOLD,
        disable_threshold: int | str | None = DEFAULT_DISABLE_THRESHOLD,
        member_removal_threshold: int | str | None = DEFAULT_MEMBER_REMOVAL_THRESHOLD,
        member_removal_group_percent: int | str | None = DEFAULT_MEMBER_REMOVAL_GROUP_PERCENT,
        member_chunk: int | str | None = DEFAULT_MEMBER_CHUNK,
        deprovision: str = "delete",
        holding_ou: str | None = None,
        store_url: str | None = None,
        instance: str = "default",
        connector: str = "ad",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ad_conn_id = ad_conn_id
        self.writeback_enabled = writeback_enabled
        self.staging = staging
        self.deletion_threshold = deletion_threshold
        self.disable_threshold = disable_threshold
        self.member_removal_threshold = member_removal_threshold
        self.member_removal_group_percent = member_removal_group_percent
        self.member_chunk = member_chunk
        self.deprovision = deprovision
        self.holding_ou = holding_ou
        self.store_url = store_url
        self.instance = instance
        self.connector = connector

    def execute(self, context: Context) -> dict[str, Any]:
        if not templated_flag(self.writeback_enabled):
            raise AirflowSkipException(WRITEBACK_OFF_MESSAGE)
        settings = ad_export_settings(
            staging=self.staging,
            deletion_threshold=self.deletion_threshold,
            disable_threshold=self.disable_threshold,
            member_removal_threshold=self.member_removal_threshold,
            member_removal_group_percent=self.member_removal_group_percent,
            member_chunk=self.member_chunk,
            deprovision=self.deprovision,
            holding_ou=self.holding_ou,
        )
        return run_recorded_step(
            self,
            context,
            store_url=self.store_location(),
            instance=self.instance,
            connector=self.connector,
            step_name="AD export",
            completed=COMPLETED_EXPORT_RESULTS,
            step=lambda store, holder: export_to_ad(
                ActiveDirectoryHook(self.ad_conn_id),
                store,
                settings=settings,
                connector=self.connector,
                lock_holder=holder,
            ),
        )
