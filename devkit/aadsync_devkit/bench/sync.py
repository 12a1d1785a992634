"""The sync engine benchmark behind ``aadsync-dev bench sync``: rule evaluation, full and delta sync, big groups.

No directory server is involved: the AD connector space is written through :class:`ConnectorSpaceWriter`, exactly
as a real AD import writes it (objects in pages of 5,000, member references as rows, deltas as partial objects with
DirSync's incremental member values). Each sync runs in a child process (``python -m`` this module) that reports its
own peak RSS; its duration comes from the run record in the store.

The phases: rule evaluation throughput in this process (DESIGN §8: ≥ 100,000 objects/s through scoping + flows);
a full sync of the directory and, on SQLite, the store's write floor of it (store_floor.py: the rows it added, written
by sqlite3 alone), the same full sync with nothing changed, a delta sync of a few department changes (≤ 2 % of the
full sync); with ``--group-size`` a big group whose export is then confirmed and 1,000 of its members swapped; with
more users than the member limit, two groups at and over the limit (the second is a per-object ``flow-error``).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from aadsync_devkit.bench.store_floor import sqlite_write_floor
from aadsync_devkit.world.postgres import LocalPostgres
from aadsync_devkit.world.seed import (
    COMPANY,
    DEPARTMENTS,
    FIRST_NAMES,
    GROUP_TYPE_GLOBAL_SECURITY,
    LAST_NAMES,
    MAIL_DOMAIN,
    TITLES,
    USER_CLASSES,
)
from airflow_provider_aadsync.engine.connectors.ad.schema import SCHEMA as ACTIVE_DIRECTORY
from airflow_provider_aadsync.engine.rules import (
    DEFAULT_RULES_DIR,
    CompiledRule,
    FlowType,
    frame_from_records,
    load_default_rules,
    load_rules_text,
)
from airflow_provider_aadsync.engine.runs.cs_writer import ConnectorSpaceWriter, attrs_digest, serialize_attrs
from airflow_provider_aadsync.engine.runs.source import SourceObject, format_hash, references_hash
from airflow_provider_aadsync.engine.store import (
    Store,
    cs_object,
    cs_reference,
    link,
    pending_export,
    pending_export_reference,
)
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import V2_MEMBER_LIMIT, rule_parameters

#: Targets from DESIGN §8.
RULE_OBJECTS_PER_SECOND = 100_000
DELTA_VS_FULL = 0.02
#: Issue 19, point 6: a full sync of 100,000 users + 5,000 groups, and the same full sync with nothing changed.
FULL_TARGET_SECONDS = 10
UNCHANGED_TARGET_SECONDS = 5
#: Users the rule evaluation phase runs over (fewer when the directory is smaller).
RULE_BENCH_USERS = 100_000

CONNECTOR = "ad"
ENTRA = "entra"
ENTRA_MEMBERS = "members"
PAGE_ROWS = 5_000
SMALL_GROUP_MEMBERS = 20
USER_JOIN_RULE = "In from AD - User Join"
BASE_DN = "OU=AADSync,DC=corp,DC=example,DC=test"
DOMAIN_SID = "S-1-5-21-2447931902-1787058256-3961074038"
BIG_GROUP = "Bench Big Group"
#: Relative ids of objectSid: users from USER_RID, groups of 20 from GROUP_RID, the big and the limit groups after.
USER_RID, GROUP_RID, BIG_GROUP_RID = 10_000, 5_000_000, 9_000_000
STAGED_COUNTERS = (
    "export_adds_staged",
    "export_updates_staged",
    "export_deletes_staged",
    "export_reference_adds_staged",
    "export_reference_removes_staged",
)


# ================================================================================================ the directory
def object_guid(key: str) -> str:
    """A deterministic objectGUID (text form) that looks random, as AD's do: users and groups interleave by anchor."""
    return str(uuid.UUID(bytes=hashlib.blake2b(key.encode(), digest_size=16).digest()))


def user_guid(n: int) -> str:
    return object_guid(f"user:{n}")


def user_dn(n: int) -> str:
    return f"CN=Bench User {n},OU={DEPARTMENTS[n % len(DEPARTMENTS)]},OU=Users,{BASE_DN}"


def bench_user(n: int) -> SourceObject:
    """User ``n`` as the AD import decodes it; every 10th disabled, every 4th with ms-DS-ConsistencyGuid."""
    first = FIRST_NAMES[n % len(FIRST_NAMES)]
    last = LAST_NAMES[(n // len(FIRST_NAMES)) % len(LAST_NAMES)]
    sam = f"buser{n}"
    local = f"{first.lower()}.{n}"
    attrs = {
        "objectGUID": [user_guid(n)],
        "objectSid": [f"{DOMAIN_SID}-{USER_RID + n}"],
        "objectClass": USER_CLASSES,
        "cn": [f"Bench User {n}"],
        "name": [f"Bench User {n}"],
        "sAMAccountName": [sam],
        "userPrincipalName": [f"{local}@{MAIL_DOMAIN}"],
        "givenName": [first],
        "sn": [last],
        "displayName": [f"{first} {last}"],
        "department": [DEPARTMENTS[n % len(DEPARTMENTS)]],
        "title": [TITLES[n % len(TITLES)]],
        "company": [COMPANY],
        "employeeID": [f"E{n:07d}"],
        "mail": [f"{local}@{MAIL_DOMAIN}"],
        "proxyAddresses": [f"SMTP:{local}@{MAIL_DOMAIN}", f"smtp:{sam}@{MAIL_DOMAIN}"],
        "userAccountControl": ["514" if n % 10 == 9 else "512"],
    }
    if n % 4 == 0:
        attrs["mS-DS-ConsistencyGuid"] = [object_guid(f"consistency:{n}")]
    return SourceObject(anchor=user_guid(n), dn=user_dn(n), object_type="user", attrs=attrs)


def group_dn(name: str) -> str:
    return f"CN={name},OU=Groups,{BASE_DN}"


def bench_group(name: str, rid: int, members: Iterable[int]) -> SourceObject:
    """A global security group of the given users (member references carry the user's anchor and DN)."""
    attrs = {
        "objectGUID": [object_guid(f"group:{name}")],
        "objectSid": [f"{DOMAIN_SID}-{rid}"],
        "objectClass": ["top", "group"],
        "cn": [name],
        "name": [name],
        "sAMAccountName": [name.replace(" ", "-")],
        "groupType": [str(GROUP_TYPE_GLOBAL_SECURITY)],
        "description": [f"Benchmark group {name}"],
    }
    references = {"member": [(user_guid(m), user_dn(m)) for m in members]}
    return SourceObject(
        anchor=object_guid(f"group:{name}"), dn=group_dn(name), object_type="group", attrs=attrs, references=references
    )


def small_group(g: int, users: int) -> SourceObject:
    members = [(g * SMALL_GROUP_MEMBERS + k) % users for k in range(SMALL_GROUP_MEMBERS)]
    return bench_group(f"Bench Group {g}", GROUP_RID + g, members)


def directory(users: int, groups: int, group_size: int) -> Iterator[SourceObject]:
    """The whole directory, generated as it is consumed: users, groups of 20, and the big group when asked."""
    yield from (bench_user(n) for n in range(users))
    yield from (small_group(g, users) for g in range(groups))
    if group_size:
        yield bench_group(BIG_GROUP, BIG_GROUP_RID, range(group_size))


def _pages(objects: Iterable[SourceObject], size: int = PAGE_ROWS) -> Iterator[list[SourceObject]]:
    iterator = iter(objects)
    while page := list(itertools.islice(iterator, size)):
        yield page


def import_full(store: Store, objects: Iterable[SourceObject]) -> dict[str, int]:
    """A full import of ``objects`` into the AD connector space, page by page, recorded as a run."""
    run_id = store.start_run("full-import", CONNECTOR)
    with store.transaction() as connection:
        writer = ConnectorSpaceWriter(store, connection, CONNECTOR, run_id)
        writer.begin_full()
        for page in _pages(objects):
            writer.write_full_page(page)
        writer.finish_full()
    store.finish_run(run_id, "success", dict(writer.counters))
    return dict(writer.counters)


def import_delta(store: Store, objects: Iterable[SourceObject]) -> dict[str, int]:
    """A delta import of partial objects (changed attributes, incremental member values), recorded as a run."""
    run_id = store.start_run("delta-import", CONNECTOR)
    with store.transaction() as connection:
        writer = ConnectorSpaceWriter(store, connection, CONNECTOR, run_id)
        for page in _pages(objects):
            writer.write_delta_page(page)
    store.finish_run(run_id, "success", dict(writer.counters))
    return dict(writer.counters)


def department_changes(users: int, changes: int) -> list[SourceObject]:
    """``changes`` users spread over the directory get a new department, as DirSync reports it."""
    step = max(users // max(changes, 1), 1)
    return [
        SourceObject(
            anchor=user_guid(n), dn=user_dn(n), object_type="user", attrs={"department": [f"Bench Delta {n}"]},
            partial=True,
        )
        for n in range(0, step * changes, step)
    ]  # fmt: skip


def member_swap(group_size: int, count: int) -> SourceObject:
    """The big group loses its first ``count`` members and gains ``count`` users outside it (incremental values)."""
    return SourceObject(
        anchor=object_guid(f"group:{BIG_GROUP}"),
        dn=group_dn(BIG_GROUP),
        object_type="group",
        reference_adds={"member": [(user_guid(m), user_dn(m)) for m in range(group_size, group_size + count)]},
        reference_removes={"member": [(user_guid(m), user_dn(m)) for m in range(count)]},
        partial=True,
    )


def confirm_group_export(store: Store, name: str) -> int:
    """Leave the store as an export that created the group will; return how many members it confirmed.

    The sync benchmark does not export (250,000 users through the Graph emulator would be a benchmark of their own),
    so this writes what the Entra export's ``Reconciler._adopt`` and ``_confirm_members`` write for the group: its
    Graph id replaces the provisional anchor, the connector space holds the exported attributes and members, the
    pending rows are gone.
    """
    ad_link, entra_link = link.alias("ad_link"), link.alias("entra_link")
    provisional_query = (
        sa.select(entra_link.c.anchor)
        .join(ad_link, ad_link.c.mv_id == entra_link.c.mv_id)
        .where(
            ad_link.c.connector == CONNECTOR,
            ad_link.c.anchor == object_guid(f"group:{name}"),
            entra_link.c.connector == ENTRA,
        )
    )
    entra_id = object_guid(f"entra-group:{name}")
    with store.transaction() as connection:
        provisional = connection.execute(provisional_query).scalar_one()
        exported = sa.and_(pending_export.c.connector == ENTRA, pending_export.c.anchor == provisional)
        staged = sa.and_(
            pending_export_reference.c.connector == ENTRA, pending_export_reference.c.anchor == provisional
        )
        attrs = json.loads(connection.execute(sa.select(pending_export.c.changes).where(exported)).scalar_one())
        attrs["id"] = [entra_id]
        members = (
            connection.execute(
                sa.select(pending_export_reference.c.target_anchor).where(
                    staged, pending_export_reference.c.operation == "add"
                )
            )
            .scalars()
            .all()
        )
        serialized = serialize_attrs(attrs)
        connection.execute(
            sa.update(cs_object)
            .where(cs_object.c.connector == ENTRA, cs_object.c.anchor == provisional)
            .values(
                anchor=entra_id,
                dn=f"groups/{entra_id}",
                attrs=serialized,
                attrs_hash=attrs_digest(serialized),
                refs_hash=format_hash(references_hash((ENTRA_MEMBERS, member) for member in members)),
                pending_export=None,
            )
        )
        connection.execute(
            sa.update(link).where(link.c.connector == ENTRA, link.c.anchor == provisional).values(anchor=entra_id)
        )
        rows = [
            {"connector": ENTRA, "anchor": entra_id, "attribute": ENTRA_MEMBERS, "target_anchor": member}
            for member in members
        ]
        store.insert_chunked(connection, cs_reference, rows)
        connection.execute(sa.delete(pending_export_reference).where(staged))
        connection.execute(sa.delete(pending_export).where(exported))
    return len(members)


# ========================================================================================== rule evaluation
def _user_join_without_expressions() -> CompiledRule:
    """The shipped User Join rule with its Expression flows removed: scoping plus Direct/Constant flows."""
    document = yaml.safe_load((DEFAULT_RULES_DIR / "in-from-ad.yaml").read_text(encoding="utf-8"))
    rule = next(rule for rule in document["rules"] if rule["name"] == USER_JOIN_RULE)
    rule["flows"] = [flow for flow in rule["flows"] if flow["type"] != FlowType.EXPRESSION.value]
    ruleset = load_rules_text(yaml.safe_dump({"rules": [rule]}), name="user-join-direct.yaml")
    return ruleset.rules[0]


def _time_rule(rule: CompiledRule, records: Sequence[dict[str, Any]], repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` seconds of each step the engine runs per batch: frame, typed columns, scope + flows."""
    best = {"frame": float("inf"), "typing": float("inf"), "rule": float("inf")}
    for _ in range(repeats):
        started = time.perf_counter()
        frame = frame_from_records(records, rule.attributes)
        built = time.perf_counter()
        ACTIVE_DIRECTORY.type_columns(frame)
        typed = time.perf_counter()
        outcome = rule.evaluate_flows(frame.loc[rule.in_scope(frame)])
        done = time.perf_counter()
        if outcome.errors:
            raise RuntimeError(
                f"{rule.name}: {len(outcome.errors)} flow errors, e.g. {next(iter(outcome.errors.values()))}"
            )
        for step, seconds in (("frame", built - started), ("typing", typed - built), ("rule", done - typed)):
            best[step] = min(best[step], seconds)
    return best


def bench_rule_evaluation(objects: int, repeats: int = 3) -> dict[str, Any]:
    """Throughput of the User Join rule over ``objects`` AD users, as shipped and with Direct/Constant flows only."""
    # The dicts sync gets from json.loads of the stored attrs: what bench_user's attrs are.
    records = [bench_user(n).attrs for n in range(objects)]
    shipped = load_default_rules(rule_parameters()).get(USER_JOIN_RULE)
    assert shipped is not None, f"the shipped rules have no {USER_JOIN_RULE!r}"
    return {
        "rule_objects": objects,
        "rule_shipped": _time_rule(shipped, records, repeats),
        "rule_direct": _time_rule(_user_join_without_expressions(), records, repeats),
    }


# =============================================================================================== sync runs
def _sync(
    store_url: str, mode: str, member_limit: int, profile: Path | None = None, *, reevaluate: bool = False
) -> dict[str, Any]:
    """One sync of the AD connector in a child process: seconds (run record), peak RSS, counters, errors."""
    # Imported here, not at the top: the child imports this module, and bench.py's imports (ldap3, the Airflow
    # SDK through the hooks) would add to the peak RSS being measured.
    from aadsync_devkit.bench.runner import _child, _run_seconds

    command = [
        sys.executable,
        "-m",
        __name__,
        "--store",
        store_url,
        "--mode",
        mode,
        "--member-limit",
        str(member_limit),
    ]
    if profile is not None:
        command += ["--profile", str(profile)]
    if reevaluate:
        command.append("--reevaluate")
    # Not _child's peak RSS: wait4 reports at least the parent's RSS at fork (the kernel carries the pre-exec
    # high-water mark over), and this process holds the rule-evaluation records. The child reports its own.
    wall, _, stdout = _child(command, dict(os.environ))
    seconds, run = _run_seconds(store_url)
    with Store(store_url) as store:
        errors = store.run_errors(run["id"], limit=10)
    summary = json.loads(stdout.strip().splitlines()[-1])
    return {
        "seconds": seconds,
        "wall_seconds": wall,
        "peak_rss": summary["peak_rss"],
        "result": summary["result"],
        "mode": summary["mode"],
        "counters": run["counters"],
        "errors": [{"code": error["code"], "message": error["message"]} for error in errors],
    }


def _sync_child(argv: list[str]) -> int:
    """The child's side of :func:`_sync`: run the sync, print its summary as JSON (optionally under cProfile)."""
    parser = argparse.ArgumentParser(prog="bench_sync child")
    parser.add_argument("--store", required=True)
    parser.add_argument("--mode", choices=["full", "delta"], required=True)
    parser.add_argument("--member-limit", type=int, default=V2_MEMBER_LIMIT)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--reevaluate", action="store_true")
    args = parser.parse_args(argv)
    rules = load_default_rules({**rule_parameters(), "MemberLimit": args.member_limit})
    with Store.open(args.store) as store:
        if args.profile is None:
            result = run_sync(store, rules, connector=CONNECTOR, mode=args.mode, reevaluate=args.reevaluate)
        else:
            import cProfile

            with cProfile.Profile() as profiler:
                result = run_sync(store, rules, connector=CONNECTOR, mode=args.mode, reevaluate=args.reevaluate)
            profiler.dump_stats(args.profile)
    print(json.dumps({**result.summary(), "peak_rss": own_peak_rss()}))
    return 0


def own_peak_rss() -> int:
    """This process's peak RSS in bytes since its exec (``VmHWM``), not counting the parent it was forked from."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def profile_top(path: Path, entries: int = 25) -> str:
    """The top entries of a cProfile dump, by own time and by cumulative time."""
    import io
    import pstats

    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(entries)
    stats.sort_stats("cumulative").print_stats(entries)
    return out.getvalue()


def bench_sync(
    users: int,
    groups: int,
    group_size: int,
    changes: int,
    home: Path,
    *,
    member_changes: int = 1_000,
    member_limit: int = V2_MEMBER_LIMIT,
    rule_objects: int | None = None,
    profile: bool = False,
    postgres: bool = False,
) -> dict[str, Any]:
    """Run every phase; return the figures (see :func:`aadsync_devkit.bench.sync_report.render_sync`). ``postgres``:
    on a PostgreSQL store (a throw-away local server, as a multi-worker deployment keeps it) instead of SQLite."""
    options: dict[str, Any] = {"member_changes": member_changes, "member_limit": member_limit}
    options["rule_objects"] = rule_objects
    sizes = (users, groups, group_size, changes, home)
    if not postgres:
        return _bench_sync(*sizes, f"sqlite:///{home / 'sync-bench.sqlite'}", profile=profile, **options)
    # Its own home: as root the server runs as ``postgres``, which cannot enter the root-private bench directory.
    pg_home = Path(tempfile.mkdtemp(prefix="aadsync-bench-pg-"))
    server = LocalPostgres(pg_home)
    try:
        server.start()
        return _bench_sync(*sizes, server.create_database("sync_bench"), profile=False, **options)
    finally:
        server.stop()
        shutil.rmtree(pg_home, ignore_errors=True)


def _bench_sync(
    users: int,
    groups: int,
    group_size: int,
    changes: int,
    home: Path,
    store_url: str,
    *,
    member_changes: int,
    member_limit: int,
    rule_objects: int | None,
    profile: bool,
) -> dict[str, Any]:
    if group_size > member_limit:
        raise ValueError(f"--group-size {group_size:,} is over the member limit ({member_limit:,}): nothing to export")
    member_changes = min(member_changes, group_size)
    if group_size:
        users = max(users, group_size + member_changes)  # the swap adds users from outside the group
    store_kind = sa.make_url(store_url).get_backend_name()
    results: dict[str, Any] = {
        "users": users,
        "groups": groups,
        "group_size": group_size,
        "changes": changes,
        "store": store_kind,
    }
    results.update(bench_rule_evaluation(rule_objects or min(users, RULE_BENCH_USERS)))

    with Store.open(store_url) as store:
        started = time.perf_counter()
        results["import_counters"] = import_full(store, directory(users, groups, group_size))
        results["import_seconds"] = time.perf_counter() - started
    store_file = Path(str(sa.make_url(store_url).database)) if store_kind == "sqlite" else None
    before_full = home / "before-full.sqlite"  # a SQLite store's file, copied before its first sync
    if store_file is not None:
        shutil.copyfile(store_file, before_full)

    results["full"] = _sync(store_url, "full", member_limit)
    if store_file is not None:  # what SQLite alone takes to write the rows the full sync added (store_floor.py)
        floor_work = home / "store-floor.sqlite"
        results["store_floor"] = sqlite_write_floor(before_full, store_file, floor_work)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{floor_work}{suffix}").unlink(missing_ok=True)
    results["full_again"] = _sync(store_url, "full", member_limit)
    results["full_reevaluated"] = _sync(store_url, "full", member_limit, reevaluate=True)
    with Store(store_url) as store:
        import_delta(store, department_changes(users, changes))
    results["delta"] = _sync(store_url, "delta", member_limit)

    if group_size:
        with Store(store_url) as store:
            results["big_group_confirmed_members"] = confirm_group_export(store, BIG_GROUP)
            import_delta(store, [member_swap(group_size, member_changes)])
        results["member_changes"] = member_changes
        results["big_group_delta"] = _sync(store_url, "delta", member_limit)

    if users > member_limit:
        limit_groups = [
            bench_group("Bench Limit At", BIG_GROUP_RID + 1, range(member_limit)),
            bench_group("Bench Limit Over", BIG_GROUP_RID + 2, range(member_limit + 1)),
        ]
        with Store(store_url) as store:
            import_delta(store, limit_groups)
        results["member_limit"] = member_limit
        results["limit_delta"] = _sync(store_url, "delta", member_limit)

    if profile:
        stats_path = home / "full-sync.prof"
        _sync(f"sqlite:///{before_full}", "full", member_limit, profile=stats_path)
        results["profile"] = profile_top(stats_path)
    before_full.unlink(missing_ok=True)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``aadsync-dev bench sync`` options."""
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=5_000)
    parser.add_argument("--group-size", type=int, default=0, help="add one group of this size (users ≥ it + 1,000)")
    parser.add_argument("--changes", type=int, default=10, help="department changes in the delta sync")
    parser.add_argument("--member-changes", type=int, default=1_000, help="big-group members swapped in its delta")
    parser.add_argument("--profile", action="store_true", help="also profile a full sync (cProfile top entries)")
    parser.add_argument("--postgres", action="store_true", help="on a PostgreSQL store (a throw-away local server)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")


if __name__ == "__main__":
    raise SystemExit(_sync_child(sys.argv[1:]))
