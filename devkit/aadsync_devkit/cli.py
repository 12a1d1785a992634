"""The ``aadsync-dev`` command: the local dev world (Samba AD DC, Graph emulator), seeding, the demo, the emulator
server and the benchmarks. The product's ``aadsync`` command never imports this package."""

from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path

import click

from airflow_provider_aadsync.cli import AadsyncGroup

#: Forests `aadsync-dev up --forests` can start (aadsync_devkit.world.forests.FORESTS; not imported here, so the
#: command starts without loading ldap3).
MAX_FORESTS = 2


def _dev_dc():
    from aadsync_devkit.paths import dev_dc_home
    from aadsync_devkit.world.samba import SambaDC

    return SambaDC(dev_dc_home())


def _other_forests(count: int | None = None) -> list:
    """The dev world's forests after the first (``--forests``): all of them, or the first ``count - 1``."""
    from aadsync_devkit.world.forests import FORESTS

    return list(FORESTS[1:count])


def _dev_graph():
    from aadsync_devkit.paths import dev_graph_home
    from aadsync_devkit.world.graph import LocalGraphEmulator

    return LocalGraphEmulator(dev_graph_home())


def _dev_postgres():
    from aadsync_devkit.paths import dev_postgres_home
    from aadsync_devkit.world.postgres import LocalPostgres

    return LocalPostgres(dev_postgres_home())


def _dev_celery(postgres=None):
    """The dev world's Celery deployment (world/airflow_celery.py) over the dev DC, emulator and PostgreSQL."""
    from aadsync_devkit.paths import dev_airflow_home
    from aadsync_devkit.world.airflow_celery import CeleryAirflow
    from aadsync_devkit.world.airflow_runs import LocalAirflow
    from aadsync_devkit.world.seed import dev_writeback_variables

    dc, home = _dev_dc(), dev_airflow_home()
    world = LocalAirflow(
        home,
        connections={"aadsync_ad": {"conn_type": "aadsync_ad", **dc.connection_info()}}
        | ({"aadsync_entra": _dev_graph().connection_info()} if _dev_graph().is_running() else {}),
        variables=dev_writeback_variables(dc.base_dn),
        env={"AADSYNC_HOME": str(home / "aadsync")},
    )
    return CeleryAirflow(world, postgres or _dev_postgres())


def _celery_started() -> bool:
    """Whether `up --airflow celery` left a deployment record (checked before the dev DC's details are read)."""
    from aadsync_devkit.paths import dev_airflow_home

    return (dev_airflow_home() / "services.json").exists()


@click.group(cls=AadsyncGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level; show the traceback of an error.")
def main(verbose: bool) -> None:
    """AADSync dev kit: the local world (Samba AD DC + Graph emulator), the demo and the benchmarks."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# ------------------------------------------------------------------------------------------------ dev world
@main.command("up")
@click.option("--users", type=int, default=0, help="Restore (or build once and cache) a directory seeded with N users.")
@click.option("--groups", type=int, default=0, help="Groups for the seeded directory.")
@click.option("--group-size", type=int, default=0, help="Members of one extra big group.")
@click.option(
    "--forests",
    type=click.IntRange(1, MAX_FORESTS),
    default=1,
    show_default=True,
    help="AD forests: 2 adds the resource forest FABRIKAM on 127.0.0.2 (linked mailboxes, shared mail addresses).",
)
@click.option(
    "--airflow",
    "airflow_mode",
    type=click.Choice(["none", "celery"]),
    default="none",
    show_default=True,
    help="celery: also Redis, PostgreSQL and Airflow with the CeleryExecutor (api-server, scheduler, dag-processor, "
    "triggerer, two workers) as local processes, the topology of docker/compose.yaml.",
)
@click.option(
    "--empty-tenant",
    is_flag=True,
    help="Start from an empty dev tenant. The emulator keeps its tenant between runs, and the demo leaves its own: "
    "a directory restored from another fixture would then meet cloud users holding other anchors.",
)
def dev_up(users: int, groups: int, group_size: int, forests: int, airflow_mode: str, empty_tenant: bool) -> None:
    """Start the local world: the Samba AD DC (provisioned once; with --users, from a cached seeded fixture) and
    the Graph emulator with its dev tenant (kept from the last run unless --empty-tenant); with --forests 2 also a
    second forest's DC, and both forests seeded with the people they share; with --airflow celery also Airflow on
    Celery over them."""
    from aadsync_devkit.world.fixtures import cached_seeded_dc
    from aadsync_devkit.world.seed import ensure_writeback_ou

    dc = _dev_dc()
    if users:
        dc.stop()
        dc = cached_seeded_dc(dc.home, users=users, groups=groups, group_size=group_size)
    elif dc.is_running():
        click.echo(f"local DC already running (pid {dc.status()['pid']})")
    else:
        if not dc.is_provisioned():
            seconds = dc.provision()
            click.echo(f"provisioned {dc.realm} in {seconds:.1f} s at {dc.home}")
        dc.start()
    click.echo(f"local DC running at {dc.ldaps_url} (base DN {dc.base_dn})")
    conn = dc.connect()
    try:
        click.echo(f"group writeback OU {ensure_writeback_ou(conn, dc.base_dn)} (writeback on for the dev world)")
        if forests > 1:
            _up_other_forests(conn, dc.base_dn, forests)
    finally:
        conn.unbind()
    graph = _dev_graph()
    graph.start()
    if empty_tenant:
        graph.reset_dev_tenant()
    tenant = "an empty tenant" if empty_tenant else "tenant"
    click.echo(f"Graph emulator running at {graph.base_url} ({tenant} {graph.status()['tenant_id']})")
    if airflow_mode == "celery":
        postgres = _dev_postgres()
        postgres.start()
        click.echo(f"PostgreSQL running on 127.0.0.1:{postgres.port} (pid {postgres.pid})")
        celery = _dev_celery(postgres).start()
        for name, service in celery.status()["services"].items():
            click.echo(f"{name} running (pid {service['pid']})")
        click.echo(f"Airflow (CeleryExecutor) at {celery.base_url}, user admin")
    click.echo('`eval "$(aadsync-dev env)"` points Airflow at both')


def _up_other_forests(account, account_base: str, forests: int) -> None:
    """Start (provisioning once) the DCs of the forests after the first and seed the pairs they share with it."""
    from aadsync_devkit.world.fixtures import provisioned_dc
    from aadsync_devkit.world.forests import ensure_exchange_schema, seed_forest_pair

    ensure_exchange_schema(account, account_base)
    for spec in _other_forests(forests):
        dc = spec.dc()
        if dc.is_running():
            click.echo(f"{spec.name} DC already running (pid {dc.status()['pid']})")
        else:
            if not dc.is_provisioned():
                dc = provisioned_dc(dc.home, realm=spec.realm, domain=spec.domain, host=spec.host)
                click.echo(f"provisioned {dc.realm} at {dc.home}")
            dc.start()
        click.echo(f"{spec.name} DC running at {dc.ldaps_url} (base DN {dc.base_dn})")
        conn = dc.connect()
        try:
            ensure_exchange_schema(conn, dc.base_dn)
            report = seed_forest_pair(account, account_base, conn, dc.base_dn)
        finally:
            conn.unbind()
        click.echo(
            f"seeded {len(report.account_users)} account-forest users, {len(report.resource_users)} {spec.name} users "
            f"({len(report.linked_mailboxes)} linked mailboxes), group {report.fsp_group_dn} with a foreign member"
        )


@main.command("down")
def dev_down() -> None:
    """Stop the local DCs and the Graph emulator, and the Celery deployment and PostgreSQL if `up --airflow celery`
    started them (all by their PIDs); their data stays for the next `aadsync-dev up`."""
    if _celery_started():
        _dev_celery().stop()
        click.echo("Celery deployment stopped (redis, api-server, scheduler, dag-processor, triggerer, workers)")
    postgres = _dev_postgres()
    if postgres.is_running():
        postgres.stop()
        click.echo("PostgreSQL stopped")
    others = [(f"{spec.name} DC", spec.dc()) for spec in _other_forests() if spec.home().exists()]
    for name, server in (("local DC", _dev_dc()), *others, ("Graph emulator", _dev_graph())):
        was_running = server.is_running()
        server.stop()
        click.echo(f"{name} stopped" if was_running else f"{name} was not running")


@main.command("status")
def dev_status() -> None:
    """Print the local world's state as JSON (a second forest's DC as samba_<name>, once it was provisioned)."""
    status = {"samba": _dev_dc().status()}
    status |= {f"samba_{spec.name}": spec.dc().status() for spec in _other_forests() if spec.home().exists()}
    status |= {"graph": _dev_graph().status()}
    if _celery_started():
        celery = _dev_celery()
        status |= {"postgres": {"pid": celery.postgres.pid, "port": celery.postgres.port}}
        status |= {"airflow_celery": celery.status()}
    click.echo(json.dumps(status, indent=2))


@main.command("seed")
@click.option("--users", type=int, required=True)
@click.option("--groups", type=int, required=True)
@click.option("--group-size", type=int, default=0, help="Members of one extra big group (needs users >= K).")
@click.option("--seed", "seed_value", type=int, default=42, help="Random seed: same seed, same directory.")
def dev_seed(users: int, groups: int, group_size: int, seed_value: int) -> None:
    """Fill the running local DC with OUs, users, nested groups and optionally one big group."""
    from aadsync_devkit.world.seed import seed_directory

    dc = _dev_dc()
    if not dc.is_running():
        raise click.ClickException("the local DC is not running: start it with `aadsync-dev up`")
    conn = dc.connect()
    try:
        report = seed_directory(conn, dc.base_dn, users=users, groups=groups, group_size=group_size, seed=seed_value)
    finally:
        conn.unbind()
    state = "already seeded" if report.reused else f"seeded in {report.seconds:.1f} s"
    click.echo(f"{state}: {report.users} users, {report.groups} groups, big group {report.big_group_dn or 'none'}")


@main.command("env")
def dev_env() -> None:
    """Print the local world's Airflow connections, and the Variables that turn group writeback on for it (into the
    OU `aadsync-dev up` created), as `export AIRFLOW_...` lines, for eval. With a second forest running (`up
    --forests 2`), also its connection and the connectors configuration naming both forests (written next to the
    dev world, its path in the Variable aadsync_connectors_file)."""
    import yaml

    from aadsync_devkit.paths import aadsync_home
    from aadsync_devkit.world.forests import FORESTS, connectors_configuration
    from aadsync_devkit.world.seed import dev_writeback_variables

    dc = _dev_dc()
    ad = {"conn_type": "aadsync_ad", **dc.connection_info()}
    click.echo(f"export AIRFLOW_CONN_AADSYNC_AD={shlex.quote(json.dumps(ad))}")
    # Only the forests whose DC runs: a forest provisioned once (`up --forests 2`) and stopped since would give the
    # DAGs an import task that fails after its retries, and every step after it would not run.
    others = []
    for spec in _other_forests():
        forest_dc = spec.dc()
        if forest_dc.is_running():
            others.append(spec)
        elif forest_dc.is_provisioned():
            click.echo(f"# {spec.name}: provisioned, not running: left out (`aadsync-dev up --forests 2` starts it)")
    for spec in others:
        other = {"conn_type": "aadsync_ad", **spec.dc().connection_info()}
        click.echo(f"export AIRFLOW_CONN_{spec.conn_id.upper()}={shlex.quote(json.dumps(other))}")
    click.echo(f"export AIRFLOW_CONN_AADSYNC_ENTRA={shlex.quote(json.dumps(_dev_graph().connection_info()))}")
    if others:
        config = aadsync_home() / "dev" / "connectors.yaml"
        config.write_text(yaml.safe_dump(connectors_configuration((FORESTS[0], *others)), sort_keys=False))
        click.echo(f"export AIRFLOW_VAR_AADSYNC_CONNECTORS_FILE={shlex.quote(str(config))}")
    for name, value in dev_writeback_variables(dc.base_dn).items():
        click.echo(f"export AIRFLOW_VAR_{name.upper()}={shlex.quote(value)}")
    # `up --airflow celery`: the REST API's address and user, and the PostgreSQL store
    celery = _dev_celery() if _celery_started() else None
    if celery is not None and celery.is_running():
        from aadsync_devkit.world.airflow_celery import STORE_CONN_ID

        environment = celery.environment()
        click.echo(f"export AADSYNC_AIRFLOW_API_URL={shlex.quote(celery.base_url)}")
        click.echo("export AADSYNC_AIRFLOW_USER=admin")
        click.echo(f"export AADSYNC_AIRFLOW_PASSWORD={shlex.quote(celery.admin_password())}")
        for key in (f"AIRFLOW_CONN_{STORE_CONN_ID.upper()}", "AIRFLOW_VAR_AADSYNC_STORE_CONN_ID"):
            click.echo(f"export {key}={shlex.quote(environment[key])}")


@main.group()
def emulator() -> None:
    """The Microsoft Graph emulator (identity platform + Graph v1.0 over TLS on 127.0.0.1)."""


@emulator.command("serve")
@click.option("--port", type=int, default=8443, show_default=True, help="TCP port on 127.0.0.1 (0: any free port).")
@click.option("--state", "state_file", type=click.Path(path_type=Path), help="SQLite state file (default: in memory).")
@click.option("--home", type=click.Path(path_type=Path), default=None, help="TLS files (default: next to the state).")
def emulator_serve(port: int, state_file: Path | None, home: Path | None) -> None:
    """Serve the emulator in the foreground until interrupted."""
    from aadsync_devkit.graph_emulator.server import EmulatorServer
    from aadsync_devkit.paths import aadsync_home

    home = home or (state_file.parent if state_file else aadsync_home() / "emulator")
    EmulatorServer(home, port=port, state_file=state_file).serve_forever()


# ----------------------------------------------------------------------------------------------- main job
@main.command("demo")
@click.option("--users", type=int, default=2000, show_default=True)
@click.option("--groups", type=int, default=50, show_default=True)
@click.option("--group-size", type=int, default=1501, show_default=True)
@click.option("--report-file", type=click.Path(path_type=Path), default=None, help="Also save the reports here.")
@click.option(
    "--keep-running", is_flag=True, help="Leave the local DC and the emulator running afterwards (aadsync-dev down)."
)
def demo(users: int, groups: int, group_size: int, report_file: Path | None, keep_running: bool) -> None:
    """The main job: the local AD (seeded) and the Graph emulator up, then Airflow itself runs the sync cycle DAGs
    (`airflow dags test`, embedded SQLite metadata DB): aadsync_full, a few changes in AD, aadsync_cycle. Prints both
    cycle reports, with the Entra ID export counters. Resets the local DC and the emulator's dev tenant."""
    from aadsync_devkit.world.demo import run_demo

    result = run_demo(
        users=users,
        groups=groups,
        group_size=group_size,
        keep_running=keep_running,
        progress=lambda line: click.echo(line, err=True),
    )
    click.echo(result.text)
    if report_file:
        report_file.write_text(result.text)
    if not result.succeeded:
        raise SystemExit(1)


@main.command("bench", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Run the benchmark (see bench/README.md); arguments go to the benchmark runner."""
    from aadsync_devkit.bench.runner import main as bench_main

    raise SystemExit(bench_main(list(args)))


if __name__ == "__main__":  # pragma: no cover
    main()
