"""``aadsync-dev bench export``: the V2 export to Entra ID against the Graph emulator (its own process, over TLS).

Three figures, each against its DESIGN §8 target:

- the initial export of N users and G groups of 20 (plus, with ``--group-size K``, one K-member group): ``$batch``
  calls against the protocol minimum (target ≤ 1.05 ×), seconds, objects/s, peak RSS of the exporting process;
  the big group's member calls are reported on their own (250,000 members: 625 calls, RSS ≤ 1 GiB);
- sustained writes under the emulated write throttle: T attribute updates through a tenant capped at W writes per
  S seconds, paced by the export to the same budget: throughput against the cap (target ≥ 0.90 ×), 429s, and the
  updates read back from Graph (target: none lost).

The connector space comes from the sync benchmark's generated directory (no AD needed); sync runs in-process
before each export and is not part of the figures. Each export runs as ``aadsync export-entra`` in a child process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

from aadsync_devkit.bench.runner import _run_seconds, cli_child
from aadsync_devkit.bench.sync import directory, import_delta, import_full, user_dn, user_guid
from aadsync_devkit.processes import free_port
from aadsync_devkit.world.graph import LocalGraphEmulator
from airflow_provider_aadsync.engine.runs.source import SourceObject
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules

#: Targets from DESIGN §8.
ROUND_TRIPS_VS_MINIMUM = 1.05
THROUGHPUT_VS_CAP = 0.90
BIG_GROUP_RSS_BYTES = 2**30
CONN_ID = "aadsync_bench_entra"
UNPACED = "1000000000/1"


def _export(store_url: str, env: dict[str, str], budget: str) -> dict[str, Any]:
    """One export in a child process: its run's seconds and counters, and the child's wall time and peak RSS."""
    arguments = ["export-entra", "--conn-id", CONN_ID, "--store", store_url, "--write-budget", budget]
    wall, rss, _ = cli_child(arguments, env)
    seconds, run = _run_seconds(store_url)
    if run["result"] != "success":
        raise RuntimeError(f"export ended {run['result']}: {run.get('detail')}")
    return {"seconds": seconds, "wall": wall, "rss": rss, "counters": run["counters"]}


def _department_updates(count: int) -> list[SourceObject]:
    return [
        SourceObject(
            anchor=user_guid(n), dn=user_dn(n), object_type="user", attrs={"department": [f"Bench Throttle {n}"]},
            partial=True,
        )
        for n in range(count)
    ]  # fmt: skip


def _throttled_updates_in_graph(hook: Any) -> int:
    return sum(
        1
        for page in hook.paginate("/users", params={"$select": "id,department", "$top": "999"})
        for user in page["value"]
        if (user.get("department") or "").startswith("Bench Throttle ")
    )


def bench_export(
    users: int, groups: int, group_size: int, updates: int, cap_writes: int, cap_seconds: float, home: Path
) -> dict[str, Any]:
    if group_size > users:
        raise ValueError("--group-size needs at least as many --users")
    results: dict[str, Any] = {
        "users": users, "groups": groups, "group_size": group_size, "updates": updates,
        "cap_writes": cap_writes, "cap_seconds": cap_seconds,
    }  # fmt: skip
    store_url = f"sqlite:///{home / 'export-store.sqlite'}"
    rules = load_sync_rules()
    with Store.open(store_url) as store:
        import_full(store, directory(users, groups, group_size))
        run_sync(store, rules, connector="ad", mode="full")
    emulator = LocalGraphEmulator(home / "graph", port=free_port())
    emulator.start()
    try:
        info = emulator.connection_info()
        env = {**os.environ, f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(info)}
        results["initial"] = _export(store_url, env, UNPACED)

        # sustained writes under the emulated throttle: the export paces itself to the tenant's budget
        with Store.open(store_url) as store:
            import_delta(store, _department_updates(updates))
            run_sync(store, rules, connector="ad", mode="delta")
        emulator.admin("DELETE", "/_emulator/counters")
        emulator.admin(
            "PUT",
            "/_emulator/settings",
            json={
                "throttlingEnabled": True,
                "throttleAppWrites": cap_writes,
                "throttleAppWriteWindowSeconds": cap_seconds,
            },
        ).raise_for_status()
        results["throttled"] = _export(store_url, env, f"{cap_writes}/{cap_seconds}")
        results["throttled_429s"] = emulator.admin("GET", "/_emulator/counters").json()["429"]
        emulator.admin("PUT", "/_emulator/settings", json={"throttlingEnabled": False}).raise_for_status()
        hook = emulator.entra_hook(CONN_ID)
        results["throttled_in_graph"] = _throttled_updates_in_graph(hook)
        hook.close()
    finally:
        emulator.stop()
    return results


def render_export(results: dict[str, Any]) -> str:
    initial = results["initial"]
    counters = initial["counters"]
    calls, minimum = counters["batch_calls"], counters["batch_calls_minimum"]
    objects = counters.get("user_creates", 0) + counters.get("group_creates", 0)
    lines = [
        f"Export benchmark (Graph emulator, own process, TLS): {results['users']:,} users, {results['groups']:,} "
        f"groups of 20" + (f", one {results['group_size']:,}-member group" if results["group_size"] else ""),
        "",
        "| figure | value | floor / target | ratio |",
        "|---|---:|---:|---:|",
        f"| initial export: $batch calls | {calls:,} | minimum {minimum:,}, ≤ {ROUND_TRIPS_VS_MINIMUM} × | "
        f"{calls / minimum:.3f} × |",
        f"| initial export: duration | {initial['seconds']:.1f} s, {objects / initial['seconds']:,.0f} objects/s, "
        f"{counters.get('member_adds', 0):,} member adds | | |",
        f"| initial export: peak RSS (exporting process) | {initial['rss'] / 2**20:,.0f} MiB | "
        + (f"≤ {BIG_GROUP_RSS_BYTES / 2**20:,.0f} MiB | {initial['rss'] / BIG_GROUP_RSS_BYTES:.2f} × |" if results[
            "group_size"] else "| |"),
    ]  # fmt: skip
    if results["group_size"]:
        member_calls = counters.get("member_batch_calls", 0)
        member_minimum = math.ceil((math.ceil(results["group_size"] / 20) + results["groups"]) / 20)
        lines.append(
            f"| {results['group_size']:,}-member group: member $batch calls | {member_calls:,} (with the "
            f"{results['groups']:,} small groups' adds) | minimum {member_minimum:,} "
            f"({math.ceil(results['group_size'] / 400):,} for the big group) | {member_calls / member_minimum:.3f} × |"
        )
    throttled = results["throttled"]
    cap = results["cap_writes"] / results["cap_seconds"]
    writes = throttled["counters"]["planned_requests"]
    fastest = (math.ceil(writes / results["cap_writes"]) - 1) * results["cap_seconds"]
    lines += [
        f"| throttled: {writes:,} updates, cap {results['cap_writes']:,} writes / {results['cap_seconds']:g} s "
        f"({cap:,.0f}/s) | {throttled['seconds']:.1f} s, {writes / throttled['seconds']:,.1f} writes/s | "
        f"≥ {THROUGHPUT_VS_CAP} × of the fastest the cap allows ({fastest:.0f} s) | "
        f"{fastest / throttled['seconds']:.3f} × |",
        f"| throttled: 429 answers / pacing waits | {results['throttled_429s']:,} / "
        f"{throttled['counters'].get('pacing_wait_seconds', 0):.1f} s | | |",
        f"| throttled: updates read back from Graph | {results['throttled_in_graph']:,} of {results['updates']:,} | "
        "none lost | |",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=5_000)
    parser.add_argument("--group-size", type=int, default=0, help="one extra group of this many users")
    parser.add_argument("--updates", type=int, default=3_000, help="attribute updates exported under the throttle")
    parser.add_argument("--cap-writes", type=int, default=600, help="the emulated tenant's writes per window")
    parser.add_argument("--cap-seconds", type=float, default=10.0, help="the write window in seconds")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
