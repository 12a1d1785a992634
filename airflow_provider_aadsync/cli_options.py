"""The ``aadsync`` command's shared options: the import and export guards, rule files, the endpoint and group
writeback. Their defaults come from engine/runs/defaults.py, as the operators' and the DAG params' do."""

from __future__ import annotations

from pathlib import Path

import click

from airflow_provider_aadsync.engine.runs import defaults
from airflow_provider_aadsync.engine.runs.export_confirmation import (
    CONFIRMATION_EXAMPLE,
    CONFIRMATION_NAMES,
    normalized_confirmation,
)


def import_guard_options(command):
    """The import guard's options, shared by import-ad and import-entra."""
    options = [
        click.option(
            "--confirm-mass-removal",
            type=click.IntRange(min=0),
            default=None,
            metavar="N",
            help="Apply the N deletes an import would otherwise stop at (stopped-deletion-threshold-exceeded): "
            "the number the stopped run's message names; a removal of another size stops again.",
        ),
        click.option(
            "--import-deletion-threshold",
            type=int,
            default=None,
            help=f"Stop above this many deletes (default {defaults.IMPORT_DELETION_THRESHOLD}).",
        ),
        click.option(
            "--import-deletion-share",
            type=float,
            default=None,
            help="Stop above this share of the connector space, once more than 10 objects would go "
            f"(default {defaults.IMPORT_DELETION_SHARE:g}).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


IMPORT_RULES_OPTION = click.option(
    "--rules",
    "rule_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="The rule files or folders sync uses (default: the shipped rules): every attribute their inbound rules "
    "read is imported.",
)


DIRECTORY_EXTENSIONS_OPTION = click.option(
    "--directory-extension",
    "directory_extensions",
    multiple=True,
    help="An AD attribute to sync as the sync app's directory extension extension_<appId>_<name> on users and "
    "groups (repeatable, or comma-separated; Variable aadsync_directory_extensions). Give the same list to the "
    "imports, sync and register-extensions.",
)


RULES_OPTION = click.option(
    "--rules",
    "rule_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Rule file or folder (repeatable; default: the shipped rules).",
)
ENDPOINT_OPTION = click.option(
    "--endpoint",
    type=click.Choice(["v2", "v1"]),
    default="v2",
    show_default=True,
    help="Group member limit of the shipped rules: v2 = 250,000, v1 = 50,000.",
)


WRITEBACK_LIMIT_OPTION = click.option(
    "--writeback-size-limit",
    default=None,
    help="Group writeback size limit (default 50,000; at most 250,000): larger groups are not written back.",
)
WRITEBACK_OU_OPTION = click.option(
    "--writeback-ou", default=None, help="OU for written-back groups (required with --writeback; no default)."
)
WRITEBACK_OPTION = click.option(
    "--writeback/--no-writeback",
    "writeback_enabled",
    default=False,
    show_default=True,
    help="Group writeback (Microsoft 365 groups → AD) is opt-in; --writeback needs --writeback-ou.",
)
WRITEBACK_NAMING_OPTION = click.option(
    "--writeback-naming",
    type=click.Choice(["objectId", "displayName"]),
    default="objectId",
    show_default=True,
    help="CN of written-back groups: Group_<objectId>, or <displayName>_<last 12 characters of the objectId>.",
)

BLOCK_SOFT_MATCH_OPTION = click.option(
    "--block-soft-match/--soft-match",
    "block_soft_match",
    default=False,
    show_default=True,
    help="Join cloud users by hard match only (onPremisesImmutableId), never by userPrincipalName or mail "
    "(the product's BlockSoftMatch).",
)

BLOCK_CLOUD_OBJECT_TAKEOVER_OPTION = click.option(
    "--block-cloud-object-takeover/--allow-cloud-object-takeover",
    "block_cloud_object_takeover",
    default=False,
    show_default=True,
    help="Refuse the hard match of a cloud-created user that no sync engine made or adopted (onPremisesSyncEnabled "
    "null, no anchor stamp): the product's BlockCloudObjectTakeoverThroughHardMatch.",
)

CONSISTENCY_GUID_OPTION = click.option(
    "--consistency-guid-writeback/--no-consistency-guid-writeback",
    "consistency_guid_writeback",
    default=True,
    show_default=True,
    help="Write each user's objectGUID into its empty mS-DS-ConsistencyGuid in AD (the AD export writes it).",
)


def _confirmation(_context: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--confirm-mass-change`` checked and written in its fixed form (None: nothing confirmed)."""
    try:
        return normalized_confirmation(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def guard_options(command):
    """The mass-change guards' flags, shared by both exports (engine/runs/export_guards.py)."""
    options = [
        click.option(
            "--confirm-mass-change", default=None, metavar="NAME=COUNT[,...]", callback=_confirmation,
            help="Apply this run's mass change a guard would stop at, by its exact counts as the stopped run's "
            f"message names them ({CONFIRMATION_EXAMPLE}; names: {', '.join(CONFIRMATION_NAMES)}); a count that "
            "differs stops again.",
        ),
        click.option(
            "--disable-threshold", type=click.IntRange(min=0), default=defaults.DISABLE_THRESHOLD, show_default=True,
            help="Stop before any write above this many accounts disabled (accountEnabled true → false).",
        ),
        click.option(
            "--member-removal-threshold", type=click.IntRange(min=0), default=defaults.MEMBER_REMOVAL_THRESHOLD,
            show_default=True,
            help="Stop before any write above this many group member removals plus managers cleared.",
        ),
        click.option(
            "--member-removal-group-percent", type=click.IntRange(0, 100),
            default=defaults.MEMBER_REMOVAL_GROUP_PERCENT, show_default=True,
            help="Stop before any write when a group of 20+ members would lose more than this share (100: never).",
        ),
        click.option(
            "--identity-change-threshold", type=click.IntRange(min=0), default=defaults.IDENTITY_CHANGE_THRESHOLD,
            show_default=True,
            help="Stop before any write above this many accounts getting another sign-in name or mail address.",
        ),
        click.option(
            "--attribute-clear-threshold", type=click.IntRange(min=0), default=defaults.ATTRIBUTE_CLEAR_THRESHOLD,
            show_default=True,
            help="Stop before any write above this many objects losing every value of an attribute they hold.",
        ),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def load_rules(rule_paths: tuple[Path, ...], endpoint: str, **writeback):
    """The sync's rule set from the rule options (a bad file or setting: a usage error naming it)."""
    from airflow_provider_aadsync.engine.rules import RuleLoadError
    from airflow_provider_aadsync.engine.sync.settings import load_sync_rules

    try:
        return load_sync_rules(rule_paths, mode=endpoint, **writeback)
    except RuleLoadError as error:
        raise click.ClickException(str(error)) from None
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def sync_rule_options(command):
    """The options that decide the sync's rule set, as ``aadsync sync`` takes them (read by :func:`load_rules`)."""
    for option in reversed((
        RULES_OPTION, ENDPOINT_OPTION, WRITEBACK_OPTION, WRITEBACK_LIMIT_OPTION, WRITEBACK_OU_OPTION,
        WRITEBACK_NAMING_OPTION, BLOCK_SOFT_MATCH_OPTION, BLOCK_CLOUD_OBJECT_TAKEOVER_OPTION,
        DIRECTORY_EXTENSIONS_OPTION, CONSISTENCY_GUID_OPTION,
    )):  # fmt: skip
        command = option(command)
    return command
