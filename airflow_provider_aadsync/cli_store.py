"""The ``aadsync`` commands' store options (``--store URL``, ``--store-conn-id ID``), opening the store they name,
and the reading commands' ``--json`` output, shared by cli.py and the cli_* modules; ``aadsync store claim``, the
deliberate re-claim of a store that moved to another sync instance (engine/store/owner.py); ``aadsync store
drop-connector``, the deliberate removal of a connector space the connectors configuration no longer names, and
``aadsync store rename-connector``, its move to the name the configuration gives it now."""

from __future__ import annotations

import json
import logging
import sys

import click

from airflow_provider_aadsync.cli_options import load_rules, sync_rule_options
from airflow_provider_aadsync.engine.store import Store, default_store_url

_STORE_CONN_KEY = "aadsync.store_conn_id"


def _remember_store_conn_id(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    ctx.meta[_STORE_CONN_KEY] = value


def store_options(command):
    """``--store URL`` and ``--store-conn-id ID`` (read by :func:`open_store`, so signatures stay as they are)."""
    command = click.option(
        "--store-conn-id",
        default=None,
        envvar="AADSYNC_STORE_CONN_ID",
        expose_value=False,
        callback=_remember_store_conn_id,
        help="Airflow connection (postgres) of the store: the password stays in the connection.",
    )(command)
    return click.option(
        "--store",
        "store_url",
        default=None,
        envvar="AADSYNC_STORE_URL",
        help="SQLAlchemy URL of the store (env AADSYNC_STORE_URL; default: embedded SQLite); one with a password: "
        "use --store-conn-id (env AADSYNC_STORE_CONN_ID).",
    )(command)


def _url_password(url: str) -> bool:
    """Whether ``url`` carries a password (its own or a query parameter's)."""
    from airflow_provider_aadsync.engine.store.urls import url_secrets

    try:
        return bool(url_secrets(url))
    except Exception:  # not a URL: Store.open says so
        return False


def store_url_given(store_url: str | None) -> str | None:
    """The URL of the store named by --store-conn-id (Airflow's connection lookup) or --store; None: neither."""
    conn_id = click.get_current_context().meta.get(_STORE_CONN_KEY)
    if conn_id:
        if store_url:
            raise click.UsageError("give --store or --store-conn-id, not both")
        from airflow_provider_aadsync.hooks.store import store_url_from_connection

        store_url = store_url_from_connection(conn_id)
    elif store_url and _url_password(store_url):
        logging.getLogger("airflow_provider_aadsync.cli").warning(
            "--store carries a password, which other local users can see in the process list: use --store-conn-id"
        )
    return store_url


def open_store(store_url: str | None, instance: str) -> Store:
    """The store named by --store-conn-id or --store, else the embedded SQLite one, opened for ``instance``."""
    return Store.open(store_url_given(store_url), instance=instance)


def open_store_to_read(store_url: str | None, instance: str) -> Store:
    """The store as :func:`open_store` names it, opened as it is for a command that only reads it (report, status,
    export-plan, preview): like the sync manager, it never creates, claims or migrates a store, so a mistyped --store
    or --instance is an error saying so, not a new empty store (``Store.open_existing``)."""
    return Store.open_existing(store_url_given(store_url), instance=instance)


@click.group("store")
def store_group() -> None:
    """The store itself: which sync instance owns it (engine/store/owner.py), and dropping the connector space of an
    AD connector removed for good from the connectors configuration (engine/runs/unconfigured.py)."""


@store_group.command("claim")
@store_options
@click.option("--instance", required=True, help="The sync instance that owns the store from now on.")
@click.option(
    "--tenant-id",
    default=None,
    help="The Entra tenant the store syncs from now on (default: keep the recorded one; an instance that moved "
    "tenant is better given a new store).",
)
@click.option(
    "--confirm-claim",
    is_flag=True,
    help="Really make INSTANCE the owner: the instance that owned the store can no longer open it.",
)
def claim_store_command(store_url: str | None, instance: str, tenant_id: str | None, confirm_claim: bool) -> None:
    """Make INSTANCE the owner of a store that really moved to it (a renamed sync instance): its connector spaces,
    metaverse and plans are kept, and the instance that owned it is refused from then on. Without --confirm-claim it
    only says what it would change. Refused while a cycle of the owning instance runs. Without --store or
    --store-conn-id: INSTANCE's embedded SQLite store."""
    from airflow_provider_aadsync.engine.store import owner

    if not instance.strip() or len(instance) > 128:
        raise click.BadParameter("an instance name of 1 to 128 characters", param_hint="--instance")
    with Store(store_url_given(store_url) or default_store_url(instance), instance=instance) as store:
        current = owner.read_owner(store.engine)
        if current is not None and current.instance == instance and tenant_id is None:
            click.echo(f"Store {store.display_url} already belongs to {current.describe()}: nothing to change.")
            return
        was = current.describe() if current else "no sync instance (unmarked)"
        if not confirm_claim:
            refused = f", and {current.instance!r} is refused" if current and current.instance != instance else ""
            click.echo(
                f"Store {store.display_url} belongs to {was}. Claiming it for sync instance {instance!r} keeps its "
                f"data{refused}. Give --confirm-claim to do it (nothing was changed).",
                err=True,
            )
            sys.exit(1)
        store.migrate()  # an older store gains the marker's table; a newer one is refused here
        _before, after = owner.reclaim(store, instance, tenant_id=tenant_id)
        click.echo(f"Store {store.display_url} now belongs to {after.describe()} (was: {was}).")


@store_group.command("drop-connector")
@click.option("--connector", required=True, help="The AD connector whose connector space to drop (its store name).")
@click.option(
    "--confirm-drop",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Drop it: the exact number of objects the space holds (without it: only say how many).",
)
@click.option(
    "--connectors-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The connectors configuration the cycles use: a connector it still names is refused.",
)
@click.option("--entra-connector", default="entra", show_default=True, help="The Entra ID connector space.")
@sync_rule_options
@store_options
@click.option("--instance", default="default", show_default=True, help="Sync instance name.")
def drop_connector_command(
    connector: str,
    confirm_drop: int | None,
    connectors_file: str | None,
    entra_connector: str,
    rule_paths: tuple,
    endpoint: str,
    store_url: str | None,
    instance: str,
    **rule_settings: object,
) -> None:
    """Drop the connector space of an AD connector removed for good from the connectors configuration: each of its
    objects is deleted as if its forest had emptied, and one sync of the connector (a recorded run) disconnects them
    and stages the deprovisioning of what only they fed (the cloud accounts it provisioned); the next export writes
    it, through its guards (a delete count above the deletion threshold stops until confirmed). Other connectors'
    spaces are not touched. Give the sync's rule options, as to `aadsync sync`. A connector removed or renamed by
    mistake is restored in the connectors file instead: its objects are then synced again as before."""
    from airflow_provider_aadsync.engine.connectors.config import ConnectorsConfigError, load_connectors_config
    from airflow_provider_aadsync.engine.report import render_runs
    from airflow_provider_aadsync.engine.rules import RuleSetError
    from airflow_provider_aadsync.engine.runs.unconfigured import DropRefused, drop_connector_space

    configured: list[str] = []
    if connectors_file:
        try:
            config = load_connectors_config(connectors_file)
        except ConnectorsConfigError as error:
            raise click.ClickException(str(error)) from None
        configured = config.connector_names()
    rules = load_rules(rule_paths, endpoint, **rule_settings)
    with open_store(store_url, instance) as store:
        try:
            result = drop_connector_space(
                store, rules, connector, confirm_drop=confirm_drop, entra_connector=entra_connector,
                configured=configured,
            )  # fmt: skip
        except (DropRefused, RuleSetError) as error:
            click.echo(f"Not dropped: {error}", err=True)
            sys.exit(1)
        click.echo(render_runs(store, [result.run_id]))
    if result.result.startswith("stopped"):
        sys.exit(1)
    click.echo(
        f"Connector space {connector!r} dropped. `aadsync export-plan --connector {entra_connector}` shows the "
        "deprovisioning staged; the next export writes it (a delete count above the deletion threshold stops until "
        "confirmed with --confirm-mass-change deletes=N)."
    )


@store_group.command("rename-connector")
@click.option("--connector", required=True, help="The connector's name in the store (the old name).")
@click.option("--to", "new_name", required=True, help="Its new name, as the connectors file names it now.")
@click.option(
    "--confirm-rename", is_flag=True, help="Do it (without it: only say what would move; nothing is changed)."
)
@click.option(
    "--connectors-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The connectors configuration the cycles use: it must name the new name and no longer the old one.",
)
@sync_rule_options
@store_options
@click.option("--instance", default="default", show_default=True, help="Sync instance name.")
def rename_connector_command(
    connector: str,
    new_name: str,
    confirm_rename: bool,
    connectors_file: str | None,
    rule_paths: tuple,
    endpoint: str,
    store_url: str | None,
    instance: str,
    **rule_settings: object,
) -> None:
    """Rename a connector in the store as it was renamed in the connectors file: its connector space, links, DirSync
    cookies, pending exports and metaverse contributions move to the new name, so the next cycle goes on where it was
    (its next sync is a full one) instead of reading the forest again as new objects. Refused while a cycle runs,
    when the new name already has a space, and when the rules (give the sync's rule options) would read or write the
    two names differently. Without --confirm-rename it only says what would move."""
    from airflow_provider_aadsync.engine.connectors.config import ConnectorsConfigError, load_connectors_config
    from airflow_provider_aadsync.engine.rules import RuleSetError
    from airflow_provider_aadsync.engine.runs.rename_connector import RenameRefused, rename_connector_space

    configured: list[str] = []
    if connectors_file:
        try:
            configured = load_connectors_config(connectors_file).connector_names()
        except ConnectorsConfigError as error:
            raise click.ClickException(str(error)) from None
    try:
        rules = load_rules(rule_paths, endpoint, **rule_settings)
        with open_store(store_url, instance) as store:
            renamed = rename_connector_space(
                store, connector, new_name, confirm=confirm_rename, configured=configured, rules=rules
            )
    except (RenameRefused, RuleSetError) as error:
        click.echo(f"Not renamed: {error}", err=True)
        sys.exit(1)
    click.echo(renamed.message(), err=not confirm_rename)
    if not confirm_rename:
        sys.exit(1)


def echo_json(value: object) -> None:
    """Reading commands' --json: one JSON document on stdout (dates as ISO text)."""
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))
