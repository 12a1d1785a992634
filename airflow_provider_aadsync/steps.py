"""The steps of a sync cycle as plain functions: hook in, engine run, small summary out.

Both the ``aadsync`` CLI and the Airflow operators call these, so an import, a sync's rule set or an export is
configured the same way whichever starts it. Nothing here imports Airflow: the hooks are passed in (their types are
named for type checkers only), every parameter is typed (None means "the default", defined once in
:mod:`airflow_provider_aadsync.engine.runs.defaults`), and what Airflow renders for an unset templated value is read
by the operators before they call in (:mod:`airflow_provider_aadsync.operators.templated`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_aadsync.engine.connectors.ad.entries import EntryDecoder
from airflow_provider_aadsync.engine.connectors.ad.reader import import_active_directory
from airflow_provider_aadsync.engine.connectors.ad.schema import DEFAULT_AD_ATTRIBUTES, DEFAULT_BINARY_ATTRIBUTES
from airflow_provider_aadsync.engine.connectors.ad.writer import ADExportSettings, run_ad_export
from airflow_provider_aadsync.engine.connectors.config import ADConnectorConfig
from airflow_provider_aadsync.engine.connectors.entra.extensions import (
    DEFAULT_ANCHOR_EXTENSION,
    PREFIX,
    extension_names,
    needed_extensions,
)
from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
from airflow_provider_aadsync.engine.connectors.entra.schema import (
    BESIDE_DELTA,
    DEFAULT_GROUP_PROPERTIES,
    DEFAULT_USER_PROPERTIES,
)
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.dn import DnError, dn_is_under
from airflow_provider_aadsync.engine.runs import defaults
from airflow_provider_aadsync.engine.runs.export_confirmation import normalized_confirmation
from airflow_provider_aadsync.engine.runs.import_attributes import complete_attribute_list
from airflow_provider_aadsync.engine.runs.import_guard import ImportGuard
from airflow_provider_aadsync.engine.sync.settings import check_writeback_ou, load_sync_rules
from airflow_provider_aadsync.hooks.active_directory_settings import ActiveDirectoryConfigurationError

if TYPE_CHECKING:
    from airflow_provider_aadsync.engine.rules import RuleSet
    from airflow_provider_aadsync.engine.store import Store
    from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook
    from airflow_provider_aadsync.hooks.entra import EntraHook

log = logging.getLogger(__name__)

__all__ = [
    "COMPLETED_EXPORT_RESULTS",
    "COMPLETED_RESULTS",
    "COMPLETED_SYNC_RESULTS",
    "TRANSIENT_RESULTS",
    "WRITEBACK_OFF_MESSAGE",
    "ad_export_settings",
    "check_holding_ou",
    "entra_export_settings",
    "export_to_ad",
    "export_to_entra",
    "guard_settings",
    "import_guard",
    "load_rules_for",
    "parse_write_budget",
    "rule_paths",
    "run_ad_import",
    "run_entra_import",
    "store_url_or_default",
]

# ------------------------------------------------------------------------------------------------ results
#: Step results after which an import succeeds; anything else (stopped-*) is a stop, with the result in the message.
COMPLETED_RESULTS = ("success", "completed-import-errors")
#: Sync results after which the step succeeds.
COMPLETED_SYNC_RESULTS = ("success", "completed-sync-errors")
#: Export results after which the step succeeds.
COMPLETED_EXPORT_RESULTS = ("success", "completed-export-errors", "staged")
#: Stops that a retry may get past (the server came back, the lock was taken over by a newer attempt). Every other
#: ``stopped-*`` result is deterministic (a threshold, the error limit, a refused configuration).
TRANSIENT_RESULTS = ("stopped-server-down", "stopped-lock-lost")
#: What an AD export says when group writeback and ConsistencyGuid writeback are off: it writes nothing.
WRITEBACK_OFF_MESSAGE = (
    "group writeback and ConsistencyGuid writeback are off: the AD export writes nothing (turn group writeback on "
    "with the Variable aadsync_writeback_enabled = true and aadsync_writeback_ou, or `--writeback --writeback-ou OU` "
    "on the command line)"
)


def store_url_or_default(url: str | None) -> str | None:
    """A store URL; empty (a Variable that is not set) means the embedded SQLite store (None)."""
    return (url or "").strip() or None


# -------------------------------------------------------------------------------------------------- rules
def rule_paths(rules: str | Sequence[str] | None) -> list[str]:
    """Rule files or folders from a list, or from one string separated by commas or newlines (a DAG's templated
    ``rules``); empty means the shipped default rules."""
    if rules is None:
        return []
    if isinstance(rules, str):
        rules = re.split(r"[,\n]", rules)
    return [str(path).strip() for path in rules if path and str(path).strip()]


def load_rules_for(
    rules: str | Sequence[str] | None,
    endpoint: str = "v2",
    *,
    writeback_enabled: bool = False,
    writeback_size_limit: int | str | None = None,
    writeback_ou: str | None = None,
    writeback_naming: str | None = None,
    block_soft_match: bool = False,
    directory_extensions: str | Sequence[str] | None = None,
    consistency_guid_writeback: bool = True,
    block_cloud_object_takeover: bool = False,
) -> RuleSet:
    """The rule set a sync (or an import reading what its rules need) uses: the group writeback settings left None
    take their defaults; with writeback on, ``writeback_ou`` is required (a ``ValueError`` naming it);
    ``block_soft_match`` leaves the soft-match join groups out (hard match only); ``directory_extensions`` names AD
    attributes synced as the sync app's directory extensions (a list, or text separated by commas);
    ``consistency_guid_writeback`` false leaves out the rule writing the user's anchor into an empty
    mS-DS-ConsistencyGuid; ``block_cloud_object_takeover`` refuses the hard match of a cloud-created user no sync
    engine made or adopted (Entra ID's BlockCloudObjectTakeoverThroughHardMatch)."""
    if endpoint not in ("v2", "v1"):
        raise ValueError(f"endpoint must be 'v2' or 'v1', not {endpoint!r}")
    chosen: dict[str, Any] = {
        name: value
        for name, value in (
            ("writeback_size_limit", writeback_size_limit),
            ("writeback_ou", writeback_ou),
            ("writeback_naming", writeback_naming),
        )
        if value is not None
    }
    return load_sync_rules(
        rule_paths(rules),
        mode=endpoint,
        writeback_enabled=writeback_enabled,
        block_soft_match=block_soft_match,
        directory_extensions=directory_extensions,
        consistency_guid_writeback=consistency_guid_writeback,
        block_cloud_object_takeover=block_cloud_object_takeover,
        **chosen,
    )


# ------------------------------------------------------------------------------------------------ imports
def import_guard(
    *,
    deletion_threshold: int | None = None,
    deletion_share: float | None = None,
    confirm_mass_removal: int | None = None,
) -> ImportGuard:
    """The import guard (None: ``IMPORT_DELETION_THRESHOLD`` / ``IMPORT_DELETION_SHARE``)."""
    return ImportGuard.from_params(
        deletion_threshold=deletion_threshold,
        deletion_share=deletion_share,
        confirm_mass_removal=confirm_mass_removal,
    )


def run_ad_import(
    hook: ActiveDirectoryHook,
    store: Store,
    *,
    mode: str,
    connector: str = "ad",
    lock_holder: str | None = None,
    guard: ImportGuard | None = None,
    rules: RuleSet | None = None,
    scope: ADConnectorConfig | None = None,
) -> dict[str, Any]:
    """Import AD into ``store``; return the run's small summary.

    The attributes read are the connection's list (or the shipped one) plus every attribute the inbound rules of
    ``connector`` read: ``rules``, the rule set sync uses (default: the shipped rules). ``scope``: the connector's
    entry in the connectors configuration (its partitions, OUs and pilot group); None reads the connection's
    base DN as before."""
    settings = hook.settings
    attributes, added = complete_attribute_list(
        settings.attributes or DEFAULT_AD_ATTRIBUTES,
        rules or load_sync_rules(),
        connector,
        what=f"AD connection's attribute list ({'its attributes extra' if settings.attributes else 'the default'})",
    )
    decoder = EntryDecoder(binary_attributes=DEFAULT_BINARY_ATTRIBUTES | frozenset(settings.binary_attributes or ()))
    try:
        result = import_active_directory(
            hook,
            store,
            connector=connector,
            mode=mode,  # type: ignore[arg-type]
            attributes=attributes,
            decoder=decoder,
            scope_dn=settings.base_dn,
            partitions=scope.partitions if scope else None,
            pilot_group=scope.pilot_group if scope else None,
            lock_holder=lock_holder,
            guard=guard,
        )
    finally:
        hook.close()
    summary = result.summary()
    if added:
        summary["attributes_added_for_rules"] = sorted(added)
    return summary


def run_entra_import(
    hook: EntraHook,
    store: Store,
    *,
    mode: str,
    connector: str = "entra",
    lock_holder: str | None = None,
    guard: ImportGuard | None = None,
    rules: RuleSet | None = None,
) -> dict[str, Any]:
    """Import Entra ID into ``store``; return the run's small summary with the Graph request counters.

    ``$select`` holds the shipped properties plus every property the inbound rules of ``connector`` read, by
    object type: ``rules``, the rule set sync uses (default: the shipped rules)."""
    store.check_tenant(hook.settings.tenant_id)  # another tenant than the store's: refused (engine/store/owner.py)
    rules = rules or load_sync_rules()
    users, added = complete_attribute_list(
        DEFAULT_USER_PROPERTIES,
        rules,
        connector,
        object_types=["user"],
        what="$select of users",
        made_by_import=BESIDE_DELTA,
    )
    groups, added_groups = complete_attribute_list(
        DEFAULT_GROUP_PROPERTIES,
        rules,
        connector,
        object_types=["group"],
        what="$select of groups",
        made_by_import=BESIDE_DELTA,
    )
    # What the export writes as directory extensions is read back, so a written value is confirmed, not rewritten.
    for compiled in rules.outbound(connector):
        listed = users if compiled.target_object_type == "user" else groups
        if compiled.target_object_type in ("user", "group"):
            listed += [t for t in compiled.targets if t.startswith(PREFIX) and t not in listed]
    # Learn which directory extensions the app has, registering none (a staging run writes nothing). The lists stay
    # the configured ones: they key the delta links (a changed list imports fully), so the export registering an
    # extension later does not make the next delta a full import; the reader selects only the registered ones.
    extensions = prepare_extensions(hook, rules, connector, register=False)
    try:
        result = import_entra(
            hook,
            store,
            connector=connector,
            mode=mode,  # type: ignore[arg-type]
            user_properties=users,
            group_properties=groups,
            lock_holder=lock_holder,
            guard=guard,
        )
    finally:
        hook.close()
    summary = result.summary()
    summary["graph"] = {name: round(value, 3) for name, value in hook.counters.items()}
    if added or added_groups:
        summary["attributes_added_for_rules"] = sorted({*added, *added_groups})
    if extensions:
        summary["directory_extensions"] = extensions
    return summary


def needed_extensions_of(rules: RuleSet, connector: str = "entra") -> dict[str, set[str]]:
    """Directory extensions (definition name → User/Group) the rules use on ``connector``, the anchor's always."""
    needed = needed_extensions(rules, connector)
    needed.setdefault(DEFAULT_ANCHOR_EXTENSION, set()).update({"User", "Group"})
    return needed


def prepare_extensions(
    hook: Any, rules: RuleSet | None, connector: str = "entra", *, register: bool = True
) -> dict[str, Any]:
    """Register the sync app's directory extensions the rules use (idempotent: two reads when nothing is missing)
    and remember on the hook which are registered, so the import selects and the export writes only those. Never
    fails a run: a missing permission is reported (summary, log) and the extensions are left out.

    ``register=False`` (the import) only learns: the summary lists what is registered, and what is not yet as
    ``not_registered`` (the first export, or `aadsync register-extensions`, registers it)."""
    names = extension_names(hook)
    if names.app_id is None:
        return {}
    needed = needed_extensions_of(rules or load_sync_rules(), connector)
    try:
        names.ensure(hook, [PREFIX + name for name in needed], register=register)
    except Exception as error:  # noqa: BLE001 - Graph down or failing: the import's own run records it
        log.warning("the sync app's directory extensions could not be checked before the import: %s", error)
        return {}
    if names.problem:
        return {"problem": f"directory extensions are not used: {names.problem}"}
    summary: dict[str, Any] = {
        "registered": sorted(names.to_graph(PREFIX + name) for name in needed if names.is_registered(PREFIX + name))
    }
    missing = sorted(names.to_graph(PREFIX + name) for name in needed if not names.is_registered(PREFIX + name))
    if missing:
        summary["not_registered"] = missing
    return summary


# ------------------------------------------------------------------------------------------------ exports
def guard_settings(
    *,
    deletion_threshold: int | None = None,
    disable_threshold: int | None = None,
    member_removal_threshold: int | None = None,
    member_removal_group_percent: int | None = None,
    identity_change_threshold: int | None = None,
    attribute_clear_threshold: int | None = None,
    confirm_mass_change: str | None = None,
) -> dict[str, Any]:
    """The mass-change guards' thresholds of both exports (None: the defaults) and the counts confirmed for one run
    (``deletes=812,member_removals=1204``; None: none). A malformed confirmation is a ``ValueError`` saying the form."""
    confirmed = normalized_confirmation(confirm_mass_change)
    chosen = {
        "deletion_threshold": (deletion_threshold, defaults.DELETION_THRESHOLD),
        "disable_threshold": (disable_threshold, defaults.DISABLE_THRESHOLD),
        "member_removal_threshold": (member_removal_threshold, defaults.MEMBER_REMOVAL_THRESHOLD),
        "member_removal_group_percent": (member_removal_group_percent, defaults.MEMBER_REMOVAL_GROUP_PERCENT),
        "identity_change_threshold": (identity_change_threshold, defaults.IDENTITY_CHANGE_THRESHOLD),
        "attribute_clear_threshold": (attribute_clear_threshold, defaults.ATTRIBUTE_CLEAR_THRESHOLD),
    }
    settings: dict[str, Any] = {name: default if value is None else value for name, (value, default) in chosen.items()}
    return {**settings, "confirm_mass_change": confirmed}


def parse_write_budget(text: str) -> tuple[int, float]:
    """``WRITES/SECONDS`` (``3000/150``; ``WRITES`` alone: per second) as the Entra export's write budget."""
    writes, _, seconds = text.partition("/")
    return int(writes), float(seconds or 1)


def entra_export_settings(
    *,
    staging: bool = False,
    deletion_threshold: int | None = None,
    disable_threshold: int | None = None,
    member_removal_threshold: int | None = None,
    member_removal_group_percent: int | None = None,
    identity_change_threshold: int | None = None,
    attribute_clear_threshold: int | None = None,
    confirm_mass_change: str | None = None,
    write_budget: int | None = None,
    write_window_seconds: float | None = None,
) -> ExportSettings:
    """The Entra export's settings (None: the defaults); a value out of range is a ``ValueError`` naming it."""
    return ExportSettings(
        staging=staging,
        **guard_settings(
            deletion_threshold=deletion_threshold,
            disable_threshold=disable_threshold,
            member_removal_threshold=member_removal_threshold,
            member_removal_group_percent=member_removal_group_percent,
            identity_change_threshold=identity_change_threshold,
            attribute_clear_threshold=attribute_clear_threshold,
            confirm_mass_change=confirm_mass_change,
        ),
        write_budget=defaults.WRITE_BUDGET if write_budget is None else write_budget,
        write_window_seconds=defaults.WRITE_WINDOW_SECONDS if write_window_seconds is None else write_window_seconds,
    )


def ad_export_settings(
    *,
    staging: bool = False,
    deletion_threshold: int | None = None,
    member_chunk: int | None = None,
    deprovision: str | None = None,
    holding_ou: str | None = None,
    disable_threshold: int | None = None,
    member_removal_threshold: int | None = None,
    member_removal_group_percent: int | None = None,
    identity_change_threshold: int | None = None,
    attribute_clear_threshold: int | None = None,
    confirm_mass_change: str | None = None,
) -> ADExportSettings:
    """The AD export's settings (None or empty: the defaults; ``deprovision`` defaults to ``delete``)."""
    return ADExportSettings(
        staging=staging,
        **guard_settings(
            deletion_threshold=deletion_threshold,
            disable_threshold=disable_threshold,
            member_removal_threshold=member_removal_threshold,
            member_removal_group_percent=member_removal_group_percent,
            identity_change_threshold=identity_change_threshold,
            attribute_clear_threshold=attribute_clear_threshold,
            confirm_mass_change=confirm_mass_change,
        ),
        member_chunk=defaults.MEMBER_CHUNK if member_chunk is None else member_chunk,
        deprovision=(deprovision or "").strip() or "delete",  # type: ignore[arg-type]
        holding_ou=(holding_ou or "").strip() or None,
    )


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


def export_to_entra(
    hook: EntraHook,
    store: Store,
    *,
    settings: ExportSettings,
    connector: str = "entra",
    lock_holder: str | None = None,
) -> dict[str, Any]:
    """Write the Entra connector's pending exports to Entra ID; return the run's small summary. (The import
    registers the directory extensions; the export writes only registered ones, see ``phases.py``.)"""
    store.check_tenant(hook.settings.tenant_id)  # before any write, as in the import
    try:
        result = run_entra_export(store, hook, connector=connector, settings=settings, lock_holder=lock_holder)  # type: ignore[arg-type]
    finally:
        hook.close()
    return result.summary()


def export_to_ad(
    hook: ActiveDirectoryHook,
    store: Store,
    *,
    settings: ADExportSettings,
    connector: str = "ad",
    lock_holder: str | None = None,
    writeback_ou: str | None = None,
    scope: ADConnectorConfig | None = None,
) -> dict[str, Any]:
    """Write one AD connector's pending exports (group writeback, ConsistencyGuid writeback) to its AD through
    ``hook`` (that forest's connection); return the run's small summary.

    ``writeback_ou``: group writeback's OU (the sync's setting; the caller gives it when group writeback is on for
    this connector): refused before any write unless this connector's import reads it: the connection's base DN, or
    the partitions and OU filters of ``scope``, the connector's entry in the connectors configuration, as its import
    gets it (:class:`~airflow_provider_aadsync.engine.sync.settings.WritebackSettingsError`)."""
    check_holding_ou(settings, hook.settings.base_dn)
    if writeback_ou is not None:
        check_writeback_ou(writeback_ou, hook.settings.base_dn, scope.partitions if scope else None)
    try:
        result = run_ad_export(store, hook, connector=connector, settings=settings, lock_holder=lock_holder)  # type: ignore[arg-type]
    finally:
        hook.close()
    return result.summary()
