"""The benchmark runner behind ``aadsync-dev bench``: figures, the floor measured in the same run, and ratios.

Each import runs in a child process (``aadsync import-ad``), so its peak RSS is its own; its duration comes from
the run record in the store (the import itself, not interpreter start-up).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ldap3

from aadsync_devkit.processes import HOST, free_port
from aadsync_devkit.world.fixtures import cached_seeded_dc, seeded_cache_path
from aadsync_devkit.world.graph import DEV_TENANT_NAME, LocalGraphEmulator
from aadsync_devkit.world.samba import SambaDC
from airflow_provider_aadsync.engine.connectors.ad.schema import DEFAULT_AD_ATTRIBUTES
from airflow_provider_aadsync.engine.store import Store, apply_sqlite_pragmas, as_utc
from airflow_provider_aadsync.hooks.active_directory import IMPORT_FILTER

#: Targets from DESIGN §8.
FULL_IMPORT_VS_LDAPSEARCH = 1.5
DELTA_VS_FULL = 0.02
BENCH_CONN_ID = "aadsync_bench"
#: The extended-DN control the import sends (string GUID/SID form: BER SEQUENCE { INTEGER 1 }), so the floor asks
#: the DC for the same work.
EXTENDED_DN_OID = "1.2.840.113556.1.4.529"
EXTENDED_DN_STRING_FORM = base64.b64encode(bytes.fromhex("3003020101")).decode()


#: An ``aadsync`` command as a child process that reports its own peak RSS (``VmHWM``) afterwards: ``wait4``'s
#: figure would count this process's memory at fork time too.
_CLI_CHILD = """
import sys
from airflow_provider_aadsync.cli import main
from aadsync_devkit.bench.sync import own_peak_rss
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print("PEAK_RSS", own_peak_rss())
"""


def cli_child(arguments: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run ``aadsync ARGUMENTS`` in a child; return (wall seconds, the child's own peak RSS in bytes, stdout)."""
    wall, _, stdout = _child([sys.executable, "-c", _CLI_CHILD, *arguments], env)
    return wall, int(stdout.rsplit("PEAK_RSS", 1)[1].split()[0]), stdout


def cli_child_cpu(arguments: list[str], env: dict[str, str]) -> tuple[float, int, float]:
    """As :func:`cli_child`, returning (wall seconds, own peak RSS, CPU seconds user + sys of the child)."""
    usage: list[os.struct_rusage] = []
    wall, _, stdout = _child([sys.executable, "-c", _CLI_CHILD, *arguments], env, usage)
    return wall, int(stdout.rsplit("PEAK_RSS", 1)[1].split()[0]), usage[0].ru_utime + usage[0].ru_stime


def _child(
    command: list[str], env: dict[str, str], usages: list[os.struct_rusage] | None = None
) -> tuple[float, int, str]:
    """Run a child; return (wall seconds, peak RSS in bytes, stdout); its rusage is appended to ``usages``."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        if usages is not None:
            usages.append(usage)
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr = process.stderr.read() if process.stderr else ""
        out.seek(0)
        stdout = out.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed ({process.returncode}): {stderr[-2000:]}")
    return time.perf_counter() - started, usage.ru_maxrss * 1024, stdout


def ldapsearch_floor(dc: SambaDC, attributes: list[str]) -> tuple[float, int, float]:
    """A raw paged ldapsearch dump of the same objects, attributes and controls (C client, output discarded).

    Returns (wall seconds, entries, CPU seconds user + sys of the ldapsearch process)."""
    if not shutil.which("ldapsearch"):
        raise RuntimeError("ldapsearch is missing: apt-get install ldap-utils")
    command = [
        "ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-H", dc.ldaps_url, "-x", "-D", dc.admin_dn, "-y", "/dev/stdin",
        "-b", dc.base_dn, "-E", "pr=1000/noprompt", "-E", f"{EXTENDED_DN_OID}=::{EXTENDED_DN_STRING_FORM}",
        IMPORT_FILTER, *attributes,
    ]  # fmt: skip
    env = {**os.environ, "LDAPTLS_CACERT": str(dc.tls_files.ca_cert)}
    # The dump goes to a file, never into this process: its memory would show in the import child's peak RSS.
    with tempfile.TemporaryFile() as dump:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=dump)
        assert process.stdin is not None
        process.stdin.write(dc.admin_password.encode())
        process.stdin.close()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        if process.returncode:
            raise RuntimeError(f"ldapsearch failed ({process.returncode})")
        dump.seek(0)
        # extended DNs start with "<", so LDIF writes them base64-encoded as "dn:: ..."
        entries = sum(1 for line in dump if line.startswith(b"dn:"))
    return seconds, entries, usage.ru_utime + usage.ru_stime


def _run_seconds(store_url: str) -> tuple[float, dict[str, Any]]:
    with Store(store_url) as store:
        run = store.list_runs(limit=1)[0]
    return (as_utc(run["ended_at"]) - as_utc(run["started_at"])).total_seconds(), run


def _change_users(dc: SambaDC, count: int) -> None:
    conn = dc.connect()
    try:
        conn.search(f"OU=Users,OU=AADSync,{dc.base_dn}", "(employeeID=*)", attributes=["1.1"], size_limit=count)
        entries = [e for e in conn.response if e["type"] == "searchResEntry"][:count]
        for number, entry in enumerate(entries):
            conn.modify(entry["dn"], {"title": [(ldap3.MODIFY_REPLACE, [f"Bench title {time.time():.0f}-{number}"])]})
    finally:
        conn.unbind()


def bench_ad_import(
    users: int,
    groups: int,
    group_size: int,
    changes: int,
    home: Path,
    *,
    dc_host: str = HOST,
    full_read_client: str = "auto",
) -> dict[str, Any]:
    results: dict[str, Any] = {
        "users": users,
        "groups": groups,
        "group_size": group_size,
        "full_read_client": full_read_client,
    }
    cached = seeded_cache_path(users=users, groups=groups, group_size=group_size).exists()
    started = time.perf_counter()
    dc = cached_seeded_dc(home / "samba", users=users, groups=groups, group_size=group_size, host=dc_host)
    results["fixture_seconds"] = time.perf_counter() - started
    results["fixture"] = "restored from cache" if cached else "built and cached"
    try:
        attributes = [name for name in DEFAULT_AD_ATTRIBUTES]
        floor, entries, floor_cpu = ldapsearch_floor(dc, attributes)
        results.update(ldapsearch_seconds=floor, ldapsearch_entries=entries, ldapsearch_cpu_seconds=floor_cpu)
        info = dc.connection_info()
        info["extra"]["full_read_client"] = full_read_client
        env = {**os.environ, f"AIRFLOW_CONN_{BENCH_CONN_ID.upper()}": json.dumps({"conn_type": "aadsync_ad", **info})}
        store_url = f"sqlite:///{home / 'bench-store.sqlite'}"
        command = ["import-ad", "--conn-id", BENCH_CONN_ID, "--store", store_url]
        wall, rss, cpu = cli_child_cpu([*command, "--mode", "full"], env)
        seconds, run = _run_seconds(store_url)
        results.update(
            full_seconds=seconds,
            full_wall_seconds=wall,
            full_cpu_seconds=cpu,
            load_average=os.getloadavg(),
            full_peak_rss=rss,
            full_objects=run["counters"].get("objects_read", 0),
        )
        cli_child([*command, "--mode", "full"], env)
        results["full_again_seconds"], run = _run_seconds(store_url)
        results["full_again_unchanged"] = run["counters"].get("unchanged", 0)
        _change_users(dc, changes)
        _, delta_rss, _ = cli_child([*command, "--mode", "delta"], env)
        results["delta_seconds"], run = _run_seconds(store_url)
        results.update(delta_changes=changes, delta_updates=run["counters"].get("updates", 0), delta_peak_rss=delta_rss)
    finally:
        dc.stop()
    return results


def render(results: dict[str, Any]) -> str:
    full, floor = results["full_seconds"], results["ldapsearch_seconds"]
    lines = [
        f"AD import benchmark: {results['users']:,} users, {results['groups']:,} groups"
        + (f", one group of {results['group_size']:,}" if results["group_size"] else "")
        + f"; full read client: {results['full_read_client']}",
        f"fixture: {results['fixture']} in {results['fixture_seconds']:.1f} s",
        "",
        "| figure | value | floor / target | ratio |",
        "|---|---:|---:|---:|",
        f"| raw paged ldapsearch dump (floor) | {floor:.2f} s ({results['ldapsearch_entries']:,} entries) | | |",
        f"| full import | {full:.2f} s, {results['full_objects'] / full:,.0f} objects/s | "
        f"≤ {FULL_IMPORT_VS_LDAPSEARCH} × floor | {full / floor:.2f} × floor |",
        f"| CPU s (user + sys): ldapsearch / full import process (wall {results['full_wall_seconds']:.2f} s with "
        f"start-up) | {results['ldapsearch_cpu_seconds']:.2f} s / {results['full_cpu_seconds']:.2f} s | | |",
        f"| load average (1, 5, 15 min) after the full import | "
        f"{', '.join(f'{value:.2f}' for value in results['load_average'])} | | |",
        f"| full import peak RSS (the importing process) | {results['full_peak_rss'] / 2**20:,.0f} MiB | | |",
        f"| full import again, nothing changed | {results['full_again_seconds']:.2f} s "
        f"({results['full_again_unchanged']:,} unchanged) | | {results['full_again_seconds'] / full:.2f} × full |",
        f"| delta import of {results['delta_changes']} changes | {results['delta_seconds']:.3f} s "
        f"({results['delta_updates']} updates) | ≤ {DELTA_VS_FULL:.0%} of full | "
        f"{results['delta_seconds'] / full:.2%} of full |",
    ]
    return "\n".join(lines) + "\n"


ENTRA_IMPORT_VS_HTTPX = 1.3


def _seed_tenant(emulator: LocalGraphEmulator, users: int, groups: int) -> None:
    """Bulk-seed the emulator's dev tenant through its admin API: users, and groups of up to 20 members each."""
    user_ids = [
        created["id"]
        for created in emulator.seed(
            [
                {
                    "@odata.type": "#microsoft.graph.user",
                    "accountEnabled": True,
                    "displayName": f"Bench User {n}",
                    "mailNickname": f"bench{n}",
                    "userPrincipalName": f"bench{n}@{DEV_TENANT_NAME}.onmicrosoft.com",
                    "department": ("Sales", "Engineering", "Finance")[n % 3],
                }
                for n in range(users)
            ]  # fmt: skip
        )
    ]
    graph = "https://graph.microsoft.com/v1.0/directoryObjects"
    emulator.seed(
        [
            {
                "@odata.type": "#microsoft.graph.group",
                "displayName": f"Bench Group {n}",
                "mailNickname": f"bgroup{n}",
                "mailEnabled": False,
                "securityEnabled": True,
                "members@odata.bind": [f"{graph}/{user_ids[(n * 20 + k) % len(user_ids)]}" for k in range(20)],
            }
            for n in range(groups)
        ]  # fmt: skip
    )


def httpx_delta_floor(hook: Any) -> tuple[float, int]:
    """Raw httpx paging of the same delta endpoints with the same $select (JSON parsed, nothing stored).

    The directory extensions (the anchor's ``extension_<name>``) are left out: Graph names them with the app id
    (``extension_<appId>_<name>``), which the import works out after registering them on the app.
    """
    from airflow_provider_aadsync.engine.connectors.entra.extensions import is_extension
    from airflow_provider_aadsync.engine.connectors.entra.schema import (
        DEFAULT_GROUP_PROPERTIES,
        DEFAULT_USER_PROPERTIES,
    )

    token = hook.get_token()
    client = hook.get_conn()
    started = time.perf_counter()
    items = 0
    for resource, select in (("users", DEFAULT_USER_PROPERTIES), ("groups", DEFAULT_GROUP_PROPERTIES)):
        url: str | None = f"/{resource}/delta?$select={','.join(a for a in select if not is_extension(a))}"
        while url:
            page = client.get(url, headers={"Authorization": f"Bearer {token}"}).raise_for_status().json()
            items += len(page["value"])
            url = page.get("@odata.nextLink")
    return time.perf_counter() - started, items


def sqlite_insert_floor(store_url: str, scratch: Path) -> tuple[float, int]:
    """The store's own share of a full import: the rows it wrote, inserted again, nothing compared or computed.

    Every ``cs_object`` and ``cs_reference`` row of ``store_url`` goes into an empty store of the same schema and
    pragmas with sqlite3's ``executemany`` in one transaction, key order as read. Returns (seconds, rows).
    """
    target = scratch / "insert-floor.sqlite"
    Store.open(f"sqlite:///{target}").close()
    with contextlib.closing(sqlite3.connect(store_url.removeprefix("sqlite:///"))) as source:
        tables = {name: source.execute(f"SELECT * FROM {name}").fetchall() for name in ("cs_object", "cs_reference")}
    with contextlib.closing(sqlite3.connect(target)) as connection:
        apply_sqlite_pragmas(connection, None)
        started = time.perf_counter()
        for name, rows in tables.items():
            if rows:
                connection.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(rows[0]))})", rows)
        connection.commit()
        seconds = time.perf_counter() - started
    return seconds, sum(len(rows) for rows in tables.values())


def emulator_throughput(hook: Any, requests: int = 2_000) -> float:
    """Sequential small Graph reads over one keep-alive connection: the emulator's requests per second."""
    token = hook.get_token()
    client = hook.get_conn()
    started = time.perf_counter()
    for _ in range(requests):
        client.get("/organization", headers={"Authorization": f"Bearer {token}"}).raise_for_status()
    return requests / (time.perf_counter() - started)


#: Emulated Graph latencies (ms per request) at which the full import is measured again against its floor.
DEFAULT_LATENCIES_MS = (10,)


def _set_latency(emulator: LocalGraphEmulator, milliseconds: int) -> None:
    emulator.admin("PUT", "/_emulator/settings", json={"latencyMs": milliseconds}).raise_for_status()
    emulator.admin("POST", "/_emulator/flush", timeout=600).raise_for_status()  # the change schedules a state save


def bench_entra_import(
    users: int, groups: int, home: Path, latencies_ms: Sequence[int] = DEFAULT_LATENCIES_MS
) -> dict[str, Any]:
    """Floor, full import, raw insert and delta at the emulator's own speed; then floor and full import again with
    each of ``latencies_ms`` added to every Graph request (a real Graph request crosses a network)."""
    emulator = LocalGraphEmulator(home / "graph", port=free_port())
    results: dict[str, Any] = {"users": users, "groups": groups, "latencies": []}
    emulator.start()
    try:
        started = time.perf_counter()
        _seed_tenant(emulator, users, groups)
        emulator.admin("POST", "/_emulator/flush", timeout=600).raise_for_status()  # no deferred save while measuring
        results["seed_seconds"] = time.perf_counter() - started
        info = emulator.connection_info()
        hook = emulator.entra_hook("aadsync_bench_entra")
        results["emulator_requests_per_second"] = emulator_throughput(hook)
        results["httpx_seconds"], results["httpx_items"] = httpx_delta_floor(hook)
        emulator.admin("DELETE", "/_emulator/counters")
        env = {**os.environ, "AIRFLOW_CONN_AADSYNC_BENCH_ENTRA": json.dumps(info)}
        store_url = f"sqlite:///{home / 'entra-store.sqlite'}"
        command = ["import-entra", "--conn-id", "aadsync_bench_entra", "--store", store_url, "--mode"]
        wall, rss, _ = cli_child([*command, "full"], env)
        results["full_seconds"], run = _run_seconds(store_url)
        results.update(full_wall_seconds=wall, full_peak_rss=rss, full_objects=run["counters"].get("objects_read", 0))
        results["full_graph_requests"] = emulator.admin("GET", "/_emulator/counters").json()["total"]
        results["insert_seconds"], results["insert_rows"] = sqlite_insert_floor(store_url, home)
        cli_child([*command, "delta"], env)
        results["delta_seconds"], _ = _run_seconds(store_url)
        for milliseconds in latencies_ms:
            _set_latency(emulator, milliseconds)
            floor, _ = httpx_delta_floor(hook)
            store_url = f"sqlite:///{home / f'entra-store-{milliseconds}ms.sqlite'}"
            cli_child(["import-entra", "--conn-id", "aadsync_bench_entra", "--store", store_url, "--mode", "full"], env)
            full, _ = _run_seconds(store_url)
            results["latencies"].append({"milliseconds": milliseconds, "httpx_seconds": floor, "full_seconds": full})
        _set_latency(emulator, 0)
    finally:
        emulator.stop()
    return results


def render_entra(results: dict[str, Any]) -> str:
    full, floor = results["full_seconds"], results["httpx_seconds"]
    lines = [
        f"Entra import benchmark: {results['users']:,} users, {results['groups']:,} groups of 20 (emulator seeded "
        f"in {results['seed_seconds']:.1f} s)",
        "",
        "| figure | value | floor / target | ratio |",
        "|---|---:|---:|---:|",
        f"| raw httpx paging of /users/delta + /groups/delta (floor) | {floor:.2f} s ({results['httpx_items']:,} "
        "items) | | |",
        f"| full import | {full:.2f} s, {results['full_objects'] / full:,.0f} objects/s | "
        f"≤ {ENTRA_IMPORT_VS_HTTPX} × floor | {full / floor:.2f} × floor |",
        f"| full import: Graph requests | {results['full_graph_requests']:,} | | |",
        f"| raw sqlite3 insert of the rows the import wrote ({results['insert_rows']:,}), one transaction | "
        f"{results['insert_seconds']:.2f} s | | |",
        f"| full import vs floor + raw insert ({floor + results['insert_seconds']:.2f} s, done one after the other) "
        f"| | | {full / (floor + results['insert_seconds']):.2f} × |",
        f"| full import peak RSS (the importing process) | {results['full_peak_rss'] / 2**20:,.0f} MiB | | |",
        f"| delta import, nothing changed | {results['delta_seconds']:.3f} s | | |",
        f"| emulator throughput, sequential GET /organization | "
        f"{results['emulator_requests_per_second']:,.0f} requests/s | | |",
    ]
    for measured in results["latencies"]:
        delayed_floor, delayed_full = measured["httpx_seconds"], measured["full_seconds"]
        lines += [
            f"| with {measured['milliseconds']} ms added to every Graph request: floor | {delayed_floor:.2f} s | | |",
            f"| with {measured['milliseconds']} ms added to every Graph request: full import | {delayed_full:.2f} s "
            f"| ≤ {ENTRA_IMPORT_VS_HTTPX} × floor | {delayed_full / delayed_floor:.2f} × floor |",
        ]
    return "\n".join(lines) + "\n"


def exit_on_signals() -> None:
    """SIGTERM and SIGINT end a benchmark through its ``finally`` blocks, which stop every server it started (a DC,
    PostgreSQL, the emulator, a whole Celery deployment). Without this, SIGTERM kills the process where it stands and
    the servers run on; and a benchmark started in the background of a script ignores SIGINT (the shell sets it so)."""

    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)


def main(argv: list[str]) -> int:
    exit_on_signals()
    parser = argparse.ArgumentParser(prog="aadsync-dev bench")
    sub = parser.add_subparsers(dest="bench", required=True)
    ad = sub.add_parser("ad-import", help="full and delta AD import against the local Samba DC")
    ad.add_argument("--users", type=int, default=100_000)
    ad.add_argument("--groups", type=int, default=5_000)
    ad.add_argument("--group-size", type=int, default=0)
    ad.add_argument("--changes", type=int, default=10)
    ad.add_argument(
        "--dc-host",
        default=HOST,
        help="the DC's loopback address (another one, e.g. 127.0.0.22, leaves 127.0.0.1:389 to the tests)",
    )
    ad.add_argument(
        "--full-read-client",
        choices=("auto", "python-ldap", "ldap3"),
        default="auto",
        help="the connection's full_read_client: the paged and DirSync reads through python-ldap or ldap3 "
        "(auto: python-ldap when installed)",
    )
    ad.add_argument("--json", type=Path, default=None, help="also write the figures here")
    entra = sub.add_parser("entra-import", help="full and delta Entra import against the Graph emulator")
    entra.add_argument("--users", type=int, default=100_000)
    entra.add_argument("--groups", type=int, default=5_000)
    entra.add_argument(
        "--latency-ms",
        type=int,
        nargs="*",
        default=list(DEFAULT_LATENCIES_MS),
        help="also measure floor and full import with this latency added to every Graph request (none: skip)",
    )
    entra.add_argument("--json", type=Path, default=None, help="also write the figures here")
    # they import this module: load them last
    from aadsync_devkit.bench import cycle as bench_cycle
    from aadsync_devkit.bench import export as bench_export
    from aadsync_devkit.bench import sync as bench_sync
    from aadsync_devkit.bench import writeback as bench_writeback
    from aadsync_devkit.bench.sync_report import render_sync

    bench_sync.add_arguments(sub.add_parser("sync", help="rule evaluation, full and delta sync (no servers)"))
    bench_export.add_arguments(sub.add_parser("export", help="the Entra export against the Graph emulator"))
    bench_writeback.add_arguments(sub.add_parser("writeback", help="an M365 group written back to the Samba DC"))
    bench_cycle.add_arguments(sub.add_parser("cycle", help="aadsync_full then delta cycles through Airflow (Celery)"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aadsync-bench-") as scratch:
        if args.bench == "cycle":
            bench_cycle.run_from_arguments(args, Path(scratch))
            return 0
        if args.bench == "sync":
            results = bench_sync.bench_sync(
                args.users,
                args.groups,
                args.group_size,
                args.changes,
                Path(scratch),
                member_changes=args.member_changes,
                profile=args.profile,
                postgres=args.postgres,
            )
            print(render_sync(results))
        elif args.bench == "export":
            results = bench_export.bench_export(
                args.users,
                args.groups,
                args.group_size,
                args.updates,
                args.cap_writes,
                args.cap_seconds,
                Path(scratch),
            )
            print(bench_export.render_export(results))
        elif args.bench == "writeback":
            results = bench_writeback.bench_writeback(args.members, Path(scratch))
            print(bench_writeback.render_writeback(results))
        elif args.bench == "ad-import":
            results = bench_ad_import(
                args.users,
                args.groups,
                args.group_size,
                args.changes,
                Path(scratch),
                dc_host=args.dc_host,
                full_read_client=args.full_read_client,
            )
            print(render(results))
        else:
            results = bench_entra_import(args.users, args.groups, Path(scratch), args.latency_ms)
            print(render_entra(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0
