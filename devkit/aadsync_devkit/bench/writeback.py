"""Group writeback benchmark: one Microsoft 365 group of N members written back to a real Samba AD.

``bench/run writeback --members 60000`` (and ``--members 250000``): a DC with N users (built once and cached), their
cloud twins in the Graph emulator (same ImmutableId, so the Entra import joins them), one M365 group holding all of
them; imports and syncs run in-process (not measured); then ``aadsync export-ad`` writes the group back in a child
process that reports its own peak RSS. Every member is read back from AD with ranged retrieval.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from aadsync_devkit.bench.runner import BENCH_CONN_ID, _run_seconds, cli_child
from aadsync_devkit.processes import free_port
from aadsync_devkit.world.fixtures import cached_seeded_dc, seeded_cache_path
from aadsync_devkit.world.graph import LocalGraphEmulator
from aadsync_devkit.world.seed import DEV_WRITEBACK_OU, MAIL_DOMAIN
from airflow_provider_aadsync.engine.store import Store, link, mv_object
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.steps import run_ad_import, run_entra_import

#: Group writeback is opt-in: the benchmark turns it on, into the dev DC's writeback OU.
WRITEBACK_ON = {"writeback_enabled": True, "writeback_ou": DEV_WRITEBACK_OU}

#: Member values per LDAP modify (the exporter's default): the minimum is one add plus ceil(N / chunk) modifies.
MEMBER_CHUNK = 5_000
_GRAPH = "https://graph.microsoft.com/v1.0/directoryObjects"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--members", type=int, default=60_000, help="members of the written-back group")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")


def _cloud_twins(store: Store, count: int) -> list[str]:
    """The sourceAnchors (ImmutableIds) of the first ``count`` AD users the sync projected."""
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(mv_object.c.attrs)
            .join(link, sa.and_(link.c.mv_id == mv_object.c.id, link.c.connector == "ad"))
            .where(mv_object.c.object_type == "person")
            .order_by(mv_object.c.id)
            .limit(count)
        ).scalars()
        return [json.loads(attrs)["sourceAnchor"][0] for attrs in rows]


def _seed_cloud(emulator: LocalGraphEmulator, anchors: list[str]) -> str:
    """Cloud twins of the AD users and one Microsoft 365 group holding all of them; returns the group's id."""
    twins = emulator.seed(
        [
            {
                "@odata.type": "#microsoft.graph.user",
                "accountEnabled": True,
                "displayName": f"Twin {n}",
                "mailNickname": f"twin{n}",
                "userPrincipalName": f"twin{n}@{MAIL_DOMAIN}",
                "onPremisesImmutableId": anchor,
            }
            for n, anchor in enumerate(anchors)
        ]  # fmt: skip
    )
    (group,) = emulator.seed(
        [{"@odata.type": "#microsoft.graph.group", "displayName": "Everyone Writeback", "mailNickname": "everyone",
          "mailEnabled": True, "securityEnabled": False, "groupTypes": ["Unified"],
          "members@odata.bind": [f"{_GRAPH}/{twin['id']}" for twin in twins]}]
    )  # fmt: skip
    emulator.admin("POST", "/_emulator/flush", timeout=600).raise_for_status()
    return group["id"]


def bench_writeback(members: int, home: Path) -> dict[str, Any]:
    from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook
    from airflow_provider_aadsync.hooks.active_directory_settings import ADConnectionSettings

    results: dict[str, Any] = {"members": members}
    cached = seeded_cache_path(users=members, groups=0).exists()
    started = time.perf_counter()
    dc = cached_seeded_dc(home / "samba", users=members, groups=0)
    results.update(fixture_seconds=time.perf_counter() - started, fixture="restored" if cached else "built")
    emulator = LocalGraphEmulator(home / "graph", port=free_port())
    emulator.start()
    try:
        info = dc.connection_info()
        ad = ActiveDirectoryHook(settings=ADConnectionSettings.from_fields(name="of the bench DC", **info))
        ad.get_conn().add(DEV_WRITEBACK_OU, "organizationalUnit")
        store_url = f"sqlite:///{home / 'writeback-store.sqlite'}"
        rules = load_sync_rules(**WRITEBACK_ON, writeback_size_limit=max(members, 50_000))
        started = time.perf_counter()
        with Store.open(store_url) as store:
            if run_ad_import(ad, store, mode="full")["result"] != "success":
                raise RuntimeError("the AD import failed")
            run_sync(store, rules, connector="ad", mode="full")
            group_id = _seed_cloud(emulator, _cloud_twins(store, members))
            if run_entra_import(emulator.entra_hook(), store, mode="full")["result"] != "success":
                raise RuntimeError("the Entra import failed")
            synced = run_sync(store, rules, connector="entra", mode="full")
            if synced.result != "success":
                raise RuntimeError(f"the Entra sync ended {synced.result}: {store.run_errors(synced.run_id, 3)}")
        results["prepare_seconds"] = time.perf_counter() - started
        env = {**os.environ, f"AIRFLOW_CONN_{BENCH_CONN_ID.upper()}": json.dumps({"conn_type": "aadsync_ad", **info})}
        arguments = ["export-ad", "--conn-id", BENCH_CONN_ID, "--store", store_url, "--member-chunk", str(MEMBER_CHUNK)]
        results["export_wall_seconds"], results["export_peak_rss"], _ = cli_child(arguments, env)
        results["export_seconds"], run = _run_seconds(store_url)
        if run["result"] != "success":
            raise RuntimeError(f"the AD export ended {run['result']}: {run.get('detail')}")
        results["counters"] = run["counters"]
        started = time.perf_counter()
        conn = ad.get_conn()
        conn.search(DEV_WRITEBACK_OU, f"(cn=Group_{group_id})", attributes=["objectGUID"])
        (entry,) = [e for e in conn.response if e["type"] == "searchResEntry"]
        guid = str(uuid.UUID(bytes_le=entry["raw_attributes"]["objectGUID"][0]))
        values = ad.read_values(guid, "member")
        results.update(read_back_seconds=time.perf_counter() - started, members_in_ad=len(set(values)))
        cli_child(arguments, env)  # again: nothing left to write
        results["second_export_writes"] = _run_seconds(store_url)[1]["counters"].get("ldap_writes", 0)
        ad.close()
    finally:
        emulator.stop()
        dc.stop()
    return results


def render_writeback(results: dict[str, Any]) -> str:
    counters = results["counters"]
    members = results["members"]
    minimum = 1 + math.ceil(members / MEMBER_CHUNK)
    seconds = results["export_seconds"]
    lines = [
        f"Group writeback benchmark: one Microsoft 365 group of {members:,} members written back to Samba AD "
        f"(fixture {results['fixture']} in {results['fixture_seconds']:.0f} s; imports and syncs "
        f"{results['prepare_seconds']:.0f} s, not measured)",
        "",
        "| figure | value | target | ratio |",
        "|---|---:|---:|---:|",
        f"| export: seconds (run record) | {seconds:.1f} s ({members / seconds:,.0f} members/s) | reported | |",
        f"| export: LDAP writes (1 add + member modifies of {MEMBER_CHUNK:,}) | {counters.get('ldap_writes', 0):,} | "
        f"{minimum:,} | {counters.get('ldap_writes', 0) / minimum:.2f} × |",
        f"| export: member values written | {counters.get('member_adds', 0):,} | {members:,} | |",
        f"| export: peak RSS (the exporting process) | {results['export_peak_rss'] / 2**20:,.0f} MiB | reported | |",
        f"| members read back from AD (ranged retrieval) | {results['members_in_ad']:,} in "
        f"{results['read_back_seconds']:.1f} s | {members:,} | |",
        f"| second export: LDAP writes | {results['second_export_writes']} | 0 | |",
    ]
    return "\n".join(lines) + "\n"
