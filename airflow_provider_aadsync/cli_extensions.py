"""``aadsync register-extensions``: the setup step that registers the sync app's directory extensions once.

The imports and exports register what is missing by themselves when the app holds the permission; this command does
it up front (and says which permission is missing otherwise), e.g. for an administrator who grants
Application.ReadWrite.OwnedBy only for the setup. Idempotent: what is registered already is kept.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from airflow_provider_aadsync.cli_options import DIRECTORY_EXTENSIONS_OPTION, IMPORT_RULES_OPTION


@click.command("register-extensions")
@click.option("--conn-id", default="aadsync_entra", show_default=True, help="Airflow connection id of Entra ID.")
@click.option("--connector", default="entra", show_default=True, help="Connector space name.")
@click.option("--check", is_flag=True, help="Only list what is registered and what is missing; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="The outcome as JSON.")
@IMPORT_RULES_OPTION
@DIRECTORY_EXTENSIONS_OPTION
def register_extensions_command(
    conn_id: str,
    connector: str,
    check: bool,
    as_json: bool,
    rule_paths: tuple[Path, ...],
    directory_extensions: tuple[str, ...],
) -> None:
    """Register the directory extensions the rules use on the sync app (extension_<appId>_<name>: the group and
    user anchor, and every --directory-extension), through POST /applications/{id}/extensionProperties. Needs
    Application.ReadWrite.OwnedBy (the app owning its registration) or Application.ReadWrite.All or
    Directory.ReadWrite.All; exit 1 when something could not be registered."""
    from airflow_provider_aadsync.engine.connectors.entra.extensions import (
        PREFIX,
        ExtensionRegistrationError,
        register_extensions,
    )
    from airflow_provider_aadsync.hooks.entra import EntraHook
    from airflow_provider_aadsync.steps import load_rules_for, needed_extensions_of

    try:
        rules = load_rules_for([str(p) for p in rule_paths], directory_extensions=directory_extensions)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    hook = EntraHook(conn_id)
    names = hook.extension_names
    needed = {names.graph_short(PREFIX + name): t for name, t in needed_extensions_of(rules, connector).items()}
    try:
        outcome = register_extensions(hook, hook.application_id, needed, dry_run=check)
    except ExtensionRegistrationError as error:
        raise click.ClickException(str(error)) from None
    finally:
        hook.close()
    if as_json:
        click.echo(json.dumps({"application": outcome.application_object_id, **outcome.summary()}, indent=2))
    else:
        click.echo(f"Application object {outcome.application_object_id} (appId {hook.application_id})")
        for label, listed in (("registered now", outcome.created), ("already registered", outcome.existing)):
            for name in listed:
                click.echo(f"  {label}: {name}")
        for problem in outcome.problems:
            click.echo(f"  problem: {problem}")
    if outcome.problems:
        raise SystemExit(1)
