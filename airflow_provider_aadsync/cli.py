"""The ``aadsync`` command: imports, sync, exports, reports, previews and expressions (the dev world, the demo and
the benchmarks are the dev kit's ``aadsync-dev``)."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import NoReturn

import click

from airflow_provider_aadsync import VERSION
from airflow_provider_aadsync.cli_airflow import airflow_group
from airflow_provider_aadsync.cli_extensions import register_extensions_command
from airflow_provider_aadsync.cli_options import (
    BLOCK_CLOUD_OBJECT_TAKEOVER_OPTION,
    BLOCK_SOFT_MATCH_OPTION,
    CONSISTENCY_GUID_OPTION,
    DIRECTORY_EXTENSIONS_OPTION,
    ENDPOINT_OPTION,
    IMPORT_RULES_OPTION,
    RULES_OPTION,
    WRITEBACK_LIMIT_OPTION,
    WRITEBACK_NAMING_OPTION,
    WRITEBACK_OPTION,
    WRITEBACK_OU_OPTION,
    guard_options,
    import_guard_options,
)
from airflow_provider_aadsync.cli_options import load_rules as _load_rules
from airflow_provider_aadsync.cli_status import status_command
from airflow_provider_aadsync.cli_store import echo_json as _echo_json
from airflow_provider_aadsync.cli_store import open_store as _open_store
from airflow_provider_aadsync.cli_store import open_store_to_read as _open_store_to_read
from airflow_provider_aadsync.cli_store import store_group
from airflow_provider_aadsync.cli_store import store_options as _store_options
from airflow_provider_aadsync.cli_values import EXPR_VALUE_HELP, json_value, name_values
from airflow_provider_aadsync.engine.runs import defaults
from airflow_provider_aadsync.engine.store import Store


def _ad_hook(conn_id: str):
    """The hook for the Airflow connection ``conn_id`` (never a dev DC by itself)."""
    from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook

    return ActiveDirectoryHook(conn_id)


#: Commands that moved to the dev kit's ``aadsync-dev`` (a name only: the product never imports the dev kit).
_MOVED_TO_DEVKIT = {"dev": "aadsync-dev up|down|status|seed|env", "demo": "aadsync-dev demo"}
_MOVED_TO_DEVKIT |= {"bench": "aadsync-dev bench ...", "emulator": "aadsync-dev emulator serve"}


class AadsyncGroup(click.Group):
    """The main group: an error that escapes a command (a missing connection, a bad extra, an unreachable server)
    is one line on stderr and exit code 1; ``-v`` prints the traceback instead. Both are scrubbed of known secrets."""

    def resolve_command(self, ctx: click.Context, args: list[str]):  # type: ignore[override]
        name = args[0] if args else ""
        if name in _MOVED_TO_DEVKIT and self.get_command(ctx, name) is None:
            raise click.UsageError(
                f"`{ctx.command_path} {name}` moved to the dev kit: `{_MOVED_TO_DEVKIT[name]}` "
                "(run.sh installs it; else pip install -e ./devkit)",
                ctx,
            )
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as error:
            from airflow_provider_aadsync.engine.secrets import describe_error, scrub

            if ctx.params.get("verbose"):
                click.echo(scrub("".join(traceback.format_exception(error))), err=True, nl=False)
            else:
                click.echo(f"Error: {describe_error(error)} (-v shows the traceback)", err=True)
            ctx.exit(1)


@click.group(cls=AadsyncGroup)
@click.version_option(VERSION, "--version", prog_name="aadsync", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level; show the traceback of an error.")
def main(verbose: bool) -> None:
    """AADSync: Entra Connect style identity sync as Airflow tasks."""
    from airflow_provider_aadsync.cli_progress import cli_progress

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from airflow_provider_aadsync.engine.secrets import scrub_log_handlers

    scrub_log_handlers()  # no known secret in a log line (-v logs every library's DEBUG lines)
    # Long work shows progress: a bar on a terminal, log lines otherwise (AADSYNC_PROGRESS_INTERVAL).
    click.get_current_context().with_resource(cli_progress())


# -------------------------------------------------------------------------------------------------- imports
def _import_guard(
    confirm_mass_removal: int | None, import_deletion_threshold: int | None, import_deletion_share: float | None
):
    from airflow_provider_aadsync.steps import import_guard

    try:
        return import_guard(
            deletion_threshold=import_deletion_threshold,
            deletion_share=import_deletion_share,
            confirm_mass_removal=confirm_mass_removal,
        )
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _import_command(name: str, conn_id: str, connector: str, what: str):
    """One import command's options (its connection and connector defaults) and body: both imports load the same
    rules (for the attributes they read), take the same guard, print the run report and exit 1 when stopped."""

    def declare(run_import):
        summary = f"Import {what} into the store and print the run report (exit 1 when the import stopped)."

        @main.command(name, help=summary)
        @click.option("--mode", type=click.Choice(["full", "delta"]), default="delta", show_default=True)
        @click.option("--conn-id", default=conn_id, show_default=True, help="Airflow connection id.")
        @_store_options
        @click.option("--instance", default="default", show_default=True, help="Sync instance name.")
        @click.option("--connector", default=connector, show_default=True, help="Connector space name.")
        @import_guard_options
        @IMPORT_RULES_OPTION
        @DIRECTORY_EXTENSIONS_OPTION
        def command(
            mode: str,
            conn_id: str,
            store_url: str | None,
            instance: str,
            connector: str,
            rule_paths: tuple[Path, ...],
            directory_extensions: tuple[str, ...],
            **guard_options,
        ) -> None:
            from airflow_provider_aadsync.engine.report import render_runs

            guard = _import_guard(**guard_options)
            with _open_store(store_url, instance) as store:
                rules = _load_rules(rule_paths, "v2", directory_extensions=directory_extensions)
                result = run_import(conn_id, store, mode=mode, connector=connector, guard=guard, rules=rules)
                click.echo(render_runs(store, [result["run_id"]]))
            if result["result"].startswith("stopped"):
                sys.exit(1)

        return command

    return declare


@_import_command("import-ad", "aadsync_ad", "ad", "Active Directory")
def import_ad(conn_id: str, store: Store, **options) -> dict:
    """Run the AD import step with the hook of ``conn_id``."""
    from airflow_provider_aadsync.steps import run_ad_import

    return run_ad_import(_ad_hook(conn_id), store, **options)


@_import_command("import-entra", "aadsync_entra", "entra", "Entra ID users and groups")
def import_entra_command(conn_id: str, store: Store, **options) -> dict:
    """Run the Entra ID import step with the hook of ``conn_id``."""
    from airflow_provider_aadsync.hooks.entra import EntraHook
    from airflow_provider_aadsync.steps import run_entra_import

    return run_entra_import(EntraHook(conn_id), store, **options)


@main.command("report")
@click.argument("run_ids", nargs=-1, type=int)
@_store_options
@click.option("--instance", default="default", show_default=True)
@click.option("--last", type=int, default=2, show_default=True, help="Without RUN_IDS: how many recent runs.")
@click.option("--json", "as_json", is_flag=True, help="The runs with their errors and conflicts as JSON.")
def report(run_ids: tuple[int, ...], store_url: str | None, instance: str, last: int, as_json: bool) -> None:
    """Print the run report of RUN_IDS (default: the most recent runs); --json gives the shape of the sync
    manager's /aadsync/api/runs/{id}: {"store", "runs": [run with "errors", "errors_total", "conflicts"]}."""
    from airflow_provider_aadsync.engine.report import render_runs

    with _open_store_to_read(store_url, instance) as store:
        if as_json:
            from airflow_provider_aadsync.engine.browse.runs import run_detail

            ids = list(run_ids) or [run["id"] for run in reversed(store.list_runs(limit=last))]
            runs = [run_detail(store, run_id) for run_id in ids if store.get_run(run_id)]
            _echo_json({"store": store.display_url, "runs": runs})
        else:
            click.echo(render_runs(store, list(run_ids), last=last))


# ------------------------------------------------------------------------------------------------- sync
@main.command("sync")
@click.option("--connector", required=True, help="Connector space to synchronize (ad, entra, ...).")
@click.option("--mode", type=click.Choice(["full", "delta"]), default="delta", show_default=True)
@click.option(
    "--reevaluate",
    is_flag=True,
    help="Full sync: evaluate every object, also those unchanged since a sync evaluated them without error.",
)
@RULES_OPTION
@ENDPOINT_OPTION
@WRITEBACK_OPTION
@WRITEBACK_LIMIT_OPTION
@WRITEBACK_OU_OPTION
@WRITEBACK_NAMING_OPTION
@BLOCK_SOFT_MATCH_OPTION
@BLOCK_CLOUD_OBJECT_TAKEOVER_OPTION
@DIRECTORY_EXTENSIONS_OPTION
@CONSISTENCY_GUID_OPTION
@_store_options
@click.option("--instance", default="default", show_default=True, help="Sync instance name.")
def sync_command(
    connector: str,
    mode: str,
    reevaluate: bool,
    rule_paths: tuple[Path, ...],
    endpoint: str,
    writeback_enabled: bool,
    writeback_size_limit: str | None,
    writeback_ou: str | None,
    writeback_naming: str,
    block_soft_match: bool,
    block_cloud_object_takeover: bool,
    directory_extensions: tuple[str, ...],
    consistency_guid_writeback: bool,
    store_url: str | None,
    instance: str,
) -> None:
    """Synchronize one connector space with the metaverse and stage pending exports; print the run report."""
    from airflow_provider_aadsync.engine.report import render_runs
    from airflow_provider_aadsync.engine.rules import RuleSetError
    from airflow_provider_aadsync.engine.sync import run_sync

    rules = _load_rules(
        rule_paths, endpoint, writeback_enabled=writeback_enabled, writeback_size_limit=writeback_size_limit,
        writeback_ou=writeback_ou, writeback_naming=writeback_naming, block_soft_match=block_soft_match,
        directory_extensions=directory_extensions, consistency_guid_writeback=consistency_guid_writeback,
        block_cloud_object_takeover=block_cloud_object_takeover,
    )  # fmt: skip
    with _open_store(store_url, instance) as store:
        try:
            result = run_sync(store, rules, connector=connector, mode=mode, reevaluate=reevaluate)
        except RuleSetError as error:  # refused before the store was touched
            raise click.ClickException(str(error)) from None
        click.echo(render_runs(store, [result.run_id]))
    if result.result.startswith("stopped"):
        sys.exit(1)


@main.command("export-entra")
@click.option("--conn-id", default="aadsync_entra", show_default=True, help="Airflow connection id.")
@click.option("--staging", is_flag=True, help="Compute and store the export plan; write nothing.")
@click.option(
    "--deletion-threshold", type=int, default=defaults.DELETION_THRESHOLD, show_default=True,
    help="Stop above this many deletes.",
)  # fmt: skip
@guard_options
@click.option(
    "--write-budget",
    default=f"{defaults.WRITE_BUDGET}/{defaults.WRITE_WINDOW_SECONDS:g}",
    show_default=True,
    help="Writes per seconds the export paces itself to (Graph's per-app limit: "
    f"{defaults.WRITE_BUDGET}/{defaults.WRITE_WINDOW_SECONDS:g}).",
)
@_store_options
@click.option("--instance", default="default", show_default=True, help="Sync instance name.")
@click.option("--connector", default="entra", show_default=True, help="Connector space name.")
def export_entra_command(
    conn_id: str,
    staging: bool,
    deletion_threshold: int,
    disable_threshold: int,
    member_removal_threshold: int,
    member_removal_group_percent: int,
    identity_change_threshold: int,
    attribute_clear_threshold: int,
    confirm_mass_change: str | None,
    write_budget: str,
    store_url: str | None,
    instance: str,
    connector: str,
) -> None:
    """Write the pending exports to Entra ID (V2 capabilities) and print the run report and what is left."""
    from airflow_provider_aadsync.engine.report import render_pending_exports, render_runs
    from airflow_provider_aadsync.hooks.entra import EntraHook
    from airflow_provider_aadsync.steps import (
        COMPLETED_EXPORT_RESULTS,
        entra_export_settings,
        export_to_entra,
        parse_write_budget,
    )

    try:
        writes, seconds = parse_write_budget(write_budget)
        settings = entra_export_settings(
            staging=staging,
            deletion_threshold=deletion_threshold,
            disable_threshold=disable_threshold,
            member_removal_threshold=member_removal_threshold,
            member_removal_group_percent=member_removal_group_percent,
            identity_change_threshold=identity_change_threshold,
            attribute_clear_threshold=attribute_clear_threshold,
            confirm_mass_change=confirm_mass_change,
            write_budget=writes,
            write_window_seconds=seconds,
        )
    except ValueError as error:
        raise click.BadParameter(f"{write_budget!r}: {error}", param_hint="--write-budget") from None
    with _open_store(store_url, instance) as store:
        summary = export_to_entra(EntraHook(conn_id), store, settings=settings, connector=connector)
        click.echo(render_runs(store, [summary["run_id"]]) + "\n" + render_pending_exports(store, connector=connector))
    if summary["result"] not in COMPLETED_EXPORT_RESULTS:
        sys.exit(1)


@main.command("export-ad")
@click.option("--conn-id", default="aadsync_ad", show_default=True, help="Airflow connection id.")
@click.option(
    "--writeback/--no-writeback",
    "writeback_enabled",
    default=False,
    show_default=True,
    help="Group writeback is opt-in: without it (and --no-consistency-guid-writeback) the AD export writes nothing.",
)
@WRITEBACK_OU_OPTION
@CONSISTENCY_GUID_OPTION
@click.option("--staging", is_flag=True, help="Compute and store the export plan; write nothing.")
@click.option(
    "--deletion-threshold", type=int, default=defaults.DELETION_THRESHOLD, show_default=True,
    help="Stop above this many deletes.",
)  # fmt: skip
@guard_options
@click.option(
    "--member-chunk", type=int, default=defaults.MEMBER_CHUNK, show_default=True,
    help="Member values per modify operation.",
)  # fmt: skip
@click.option(
    "--deprovision",
    type=click.Choice(["delete", "move"]),
    default="delete",
    show_default=True,
    help="What happens to a written-back group whose cloud group is gone.",
)
@click.option("--holding-ou", default=None, help="With --deprovision move: the OU (outside the base DN) to move to.")
@_store_options
@click.option("--instance", default="default", show_default=True, help="Sync instance name.")
@click.option("--connector", default="ad", show_default=True, help="Connector space name.")
def export_ad_command(
    conn_id: str,
    writeback_enabled: bool,
    writeback_ou: str | None,
    consistency_guid_writeback: bool,
    staging: bool,
    deletion_threshold: int,
    disable_threshold: int,
    member_removal_threshold: int,
    member_removal_group_percent: int,
    identity_change_threshold: int,
    attribute_clear_threshold: int,
    confirm_mass_change: str | None,
    member_chunk: int,
    deprovision: str,
    holding_ou: str | None,
    store_url: str | None,
    instance: str,
    connector: str,
) -> None:
    """Write the pending exports of one AD connector (group writeback, ConsistencyGuid writeback) to its AD; print the
    run report and what is left. With several forests, run it once per AD connector (--connector, --conn-id). With
    --writeback, --writeback-ou (the sync's) must lie under the connection's base DN: checked before any write."""
    from airflow_provider_aadsync.engine.report import render_pending_exports, render_runs
    from airflow_provider_aadsync.engine.sync.settings import WritebackSettingsError, writeback_ou_required
    from airflow_provider_aadsync.steps import (
        COMPLETED_EXPORT_RESULTS,
        WRITEBACK_OFF_MESSAGE,
        ad_export_settings,
        export_to_ad,
    )

    if not writeback_enabled and not consistency_guid_writeback:
        click.echo(WRITEBACK_OFF_MESSAGE)
        return
    try:
        settings = ad_export_settings(
            staging=staging,
            deletion_threshold=deletion_threshold,
            disable_threshold=disable_threshold,
            member_removal_threshold=member_removal_threshold,
            member_removal_group_percent=member_removal_group_percent,
            identity_change_threshold=identity_change_threshold,
            attribute_clear_threshold=attribute_clear_threshold,
            confirm_mass_change=confirm_mass_change,
            member_chunk=member_chunk,
            deprovision=deprovision,
            holding_ou=holding_ou,
        )
        checked_ou = writeback_ou_required(writeback_ou) if writeback_enabled else None
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    with _open_store(store_url, instance) as store:
        try:
            summary = export_to_ad(
                _ad_hook(conn_id), store, settings=settings, connector=connector, writeback_ou=checked_ou
            )
        except WritebackSettingsError as error:  # the OU outside the connection's base DN: refused before writing
            raise click.ClickException(str(error)) from None
        click.echo(render_runs(store, [summary["run_id"]]) + "\n" + render_pending_exports(store, connector=connector))
    if summary["result"] not in COMPLETED_EXPORT_RESULTS:
        sys.exit(1)


@main.command("export-plan")
@click.option("--connector", default="entra", show_default=True, help="Connector space name.")
@click.option("--limit", type=int, default=20, show_default=True, help="How many operations to list.")
@_store_options
@click.option("--instance", default="default", show_default=True, help="Sync instance name.")
@click.option("--json", "as_json", is_flag=True, help="Counts and the first operations as JSON.")
def export_plan_command(connector: str, limit: int, store_url: str | None, instance: str, as_json: bool) -> None:
    """Show what the next export would write: counts by operation and type, the least number of writes (Graph
    $batch calls for entra, LDAP writes for ad), and the first operations; --json gives the shape of the sync
    manager's /aadsync/api/export-plan."""
    from airflow_provider_aadsync.engine.report import render_export_plan

    with _open_store_to_read(store_url, instance) as store:
        if as_json:
            from airflow_provider_aadsync.engine.browse.plan import export_plan

            _echo_json(export_plan(store, connector=connector, limit=limit))
        else:
            click.echo(render_export_plan(store, connector=connector, limit=limit))


@main.command("preflight")
@click.option("--entra-connector", default="entra", show_default=True, help="The Entra ID connector space.")
@click.option("--json", "as_json", is_flag=True, help="Counts and every row as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Every row as CSV.")
@BLOCK_SOFT_MATCH_OPTION
@BLOCK_CLOUD_OBJECT_TAKEOVER_OPTION
@_store_options
@click.option("--instance", default="default", show_default=True, help="Sync instance name.")
def preflight_command(
    entra_connector: str,
    as_json: bool,
    as_csv: bool,
    block_soft_match: bool,
    block_cloud_object_takeover: bool,
    store_url: str | None,
    instance: str,
) -> None:
    """Cutover preflight: for every in-scope AD user and group, hard match / soft match (on which attribute) /
    create, and every conflict, counts first. Run it after the imports and `aadsync sync --connector ad`; it writes
    nothing."""
    from airflow_provider_aadsync.engine.runs import preflight as checks

    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other")
    render = checks.render_json if as_json else checks.render_csv if as_csv else checks.render_text
    with _open_store(store_url, instance) as store:
        rows = checks.preflight(
            store,
            entra_connector=entra_connector,
            block_soft_match=block_soft_match,
            block_cloud_object_takeover=block_cloud_object_takeover,
        )
        click.echo(render(rows), nl=False)


@main.command("preview")
@click.option("--connector", required=True, help="Connector space of the object.")
@click.option("--dn", default=None, help="The object's DN (case-insensitive).")
@click.option("--anchor", default=None, help="The object's anchor (objectGUID, Graph id).")
@RULES_OPTION
@ENDPOINT_OPTION
@WRITEBACK_OPTION
@WRITEBACK_LIMIT_OPTION
@WRITEBACK_OU_OPTION
@WRITEBACK_NAMING_OPTION
@BLOCK_SOFT_MATCH_OPTION
@BLOCK_CLOUD_OBJECT_TAKEOVER_OPTION
@DIRECTORY_EXTENSIONS_OPTION
@CONSISTENCY_GUID_OPTION
@_store_options
@click.option("--instance", default="default", show_default=True, help="Sync instance name.")
@click.option("--json", "as_json", is_flag=True, help="Print the preview as JSON.")
def preview_command(
    connector: str,
    dn: str | None,
    anchor: str | None,
    rule_paths: tuple[Path, ...],
    endpoint: str,
    writeback_enabled: bool,
    writeback_size_limit: str | None,
    writeback_ou: str | None,
    writeback_naming: str,
    block_soft_match: bool,
    block_cloud_object_takeover: bool,
    directory_extensions: tuple[str, ...],
    consistency_guid_writeback: bool,
    store_url: str | None,
    instance: str,
    as_json: bool,
) -> None:
    """Show what sync would do with one object (rules, join, flows, exports) without writing anything; give the
    rule options the sync runs with (--block-soft-match, --directory-extension …) to see what it would do."""
    from airflow_provider_aadsync.engine.report import render_preview
    from airflow_provider_aadsync.engine.sync import PreviewError, preview

    if (dn is None) == (anchor is None):
        raise click.UsageError("give exactly one of --dn and --anchor")
    rules = _load_rules(
        rule_paths, endpoint, writeback_enabled=writeback_enabled, writeback_size_limit=writeback_size_limit,
        writeback_ou=writeback_ou, writeback_naming=writeback_naming, block_soft_match=block_soft_match,
        directory_extensions=directory_extensions, consistency_guid_writeback=consistency_guid_writeback,
        block_cloud_object_takeover=block_cloud_object_takeover,
    )  # fmt: skip
    with _open_store_to_read(store_url, instance) as store:
        try:
            trace = preview(store, rules, connector=connector, anchor=anchor, dn=dn)
        except PreviewError as error:
            raise click.ClickException(str(error)) from None
    click.echo(json.dumps(trace, indent=2, default=str) if as_json else render_preview(trace), nl=not as_json)


# ------------------------------------------------------------------------------------------- expressions
@main.command("expr", epilog=EXPR_VALUE_HELP)
@click.argument("expression")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME=VALUE",
    help="An attribute value; repeat a name for a "
    "multi-valued attribute (--set proxyAddresses=SMTP:a@x --set proxyAddresses=smtp:b@x).",
)
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A %NAME% parameter's value.")
def expr(expression: str, sets: tuple[str, ...], params: tuple[str, ...]) -> None:
    """Compile EXPRESSION (sync rule expression language) and evaluate it against the --set attribute values;
    print the result as JSON (null for NULL, binary as base64, sentinels by name).

    Exit code 2 with line and column on stderr for an expression that does not compile, 1 when evaluating fails;
    either is one line, never a traceback (``-v`` adds it).
    """
    from airflow_provider_aadsync.engine.expressions import (
        ExpressionEvaluationError,
        ExpressionSyntaxError,
        compile_expression,
    )

    attributes = name_values(sets, "--set")
    try:
        compiled = compile_expression(expression, parameters=name_values(params, "--param"))
    except ExpressionSyntaxError as exc:
        _expr_failed("syntax error", exc, 2)
    except Exception as exc:  # noqa: BLE001 - bad input must end as one line, not a traceback
        _expr_failed("cannot compile", exc, 2)
    try:
        result = compiled.evaluate(attributes)
    except ExpressionEvaluationError as exc:
        _expr_failed("evaluation error", exc, 1)
    except Exception as exc:  # noqa: BLE001 - e.g. a value Python cannot hold
        _expr_failed("evaluation error", exc, 1)
    text = json.dumps(json_value(result), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate (argv bytes that are not UTF-8): JSON's \u escapes
        text = json.dumps(json_value(result))
    click.echo(text)


def _expr_failed(kind: str, exc: Exception, code: int) -> NoReturn:
    """One line on stderr (the traceback only with ``-v``), then exit with ``code``."""
    from airflow_provider_aadsync.engine.expressions import ExpressionError

    detail = str(exc) if isinstance(exc, ExpressionError) else f"{type(exc).__name__}: {exc}"
    logging.getLogger(__name__).debug("aadsync expr failed", exc_info=exc)
    click.echo(f"{kind}: {detail}".encode("utf-8", "backslashreplace").decode("utf-8"), err=True)
    raise SystemExit(code) from None


main.add_command(register_extensions_command)
main.add_command(status_command)
main.add_command(store_group)
main.add_command(airflow_group)

if __name__ == "__main__":  # pragma: no cover
    main()
