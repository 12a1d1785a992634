"""The sync benchmark's report: its figures as a Markdown table with the targets (DESIGN §8, issue 19 point 6) and
the ratios to them."""

from __future__ import annotations

from typing import Any

from aadsync_devkit.bench.sync import (
    DELTA_VS_FULL,
    FULL_TARGET_SECONDS,
    RULE_OBJECTS_PER_SECOND,
    SMALL_GROUP_MEMBERS,
    STAGED_COUNTERS,
    UNCHANGED_TARGET_SECONDS,
)


def _staged(counters: dict[str, int]) -> str:
    """The nonzero staged-export counters, e.g. "adds 105,000, reference_adds 100,000"."""
    staged = [
        f"{name.removeprefix('export_').removesuffix('_staged')} {counters[name]:,}"
        for name in STAGED_COUNTERS
        if counters.get(name)
    ]
    return ", ".join(staged) or "nothing staged"


def _rule_rows(label: str, figures: dict[str, float], objects: int) -> list[tuple[str, ...]]:
    seconds = figures["typing"] + figures["rule"]
    rate = objects / seconds
    return [
        (
            f"{label}: typed columns + scoping + flows",
            f"{seconds:.3f} s ({figures['typing']:.3f} typing + {figures['rule']:.3f} rule), {rate:,.0f} objects/s",
            f"≥ {RULE_OBJECTS_PER_SECOND:,} objects/s",
            f"{rate / RULE_OBJECTS_PER_SECOND:.2f} × target",
        ),
        (
            f"{label}: value-cell frame (frame_from_records, not in the rate)",
            f"{figures['frame']:.3f} s, {objects / figures['frame']:,.0f} objects/s",
            "",
            "",
        ),
    ]


def _mib(run: dict[str, Any]) -> str:
    return f"{run['peak_rss'] / 2**20:,.0f} MiB"


def _floor_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """The store's write floor of the full sync (SQLite only), and the full sync as a multiple of it."""
    floor = results.get("store_floor")
    if not floor:
        return []
    biggest = sorted(floor["tables"].items(), key=lambda item: -item[1]["seconds"])[:4]
    tables = ", ".join(f"{name} {figures['rows']:,} in {figures['seconds']:.2f} s" for name, figures in biggest)
    return [
        (
            f"full sync: the store's write floor ({floor['rows']:,} rows it added, by sqlite3 alone in one "
            "transaction, commit and checkpoint included)",
            f"{floor['seconds']:.2f} s (commit {floor['commit_seconds']:.2f} s; {tables})",
            "",
            f"full sync = {results['full']['seconds'] / floor['seconds']:.2f} × floor",
        )
    ]


def render_sync(results: dict[str, Any]) -> str:
    full, again, delta = results["full"], results["full_again"], results["delta"]
    reevaluated = results["full_reevaluated"]
    objects = full["counters"].get("objects_evaluated", 0)
    rule_objects = results["rule_objects"]
    rows = [
        *_rule_rows(f"User Join as shipped, {rule_objects:,} users", results["rule_shipped"], rule_objects),
        *_rule_rows("User Join, Direct/Constant flows only", results["rule_direct"], rule_objects),
        (
            "full sync",
            f"{full['seconds']:.2f} s, {objects / full['seconds']:,.0f} objects/s",
            f"≤ {FULL_TARGET_SECONDS:g} s at 100k + 5k",
            "",
        ),
        ("full sync: peak RSS (whole child process)", _mib(full), "", ""),
        *_floor_rows(results),
        (
            "full sync: counters",
            f"{full['result']}; projections {full['counters'].get('projections', 0):,}; {_staged(full['counters'])}",
            "",
            "",
        ),
        (
            "full sync again, nothing changed",
            f"{again['seconds']:.2f} s, {again['counters'].get('objects_unchanged', 0):,} objects skipped as "
            f"unchanged (sync memo); {_staged(again['counters'])}",
            f"stages nothing; ≤ {UNCHANGED_TARGET_SECONDS:g} s at 100k + 5k",
            f"{again['seconds'] / full['seconds']:.2f} × full",
        ),
        (
            "full sync again, every object evaluated (--reevaluate)",
            f"{reevaluated['seconds']:.2f} s; {_staged(reevaluated['counters'])}",
            "stages nothing",
            f"{reevaluated['seconds'] / full['seconds']:.2f} × full",
        ),
        (
            f"delta sync of {results['changes']} department changes",
            f"{delta['seconds']:.3f} s; {delta['counters'].get('objects_evaluated', 0)} evaluated; "
            f"{_staged(delta['counters'])}",
            f"≤ {DELTA_VS_FULL:.0%} of full",
            f"{delta['seconds'] / full['seconds']:.2%} of full",
        ),
    ]
    if "big_group_delta" in results:
        run = results["big_group_delta"]
        rows.append(
            (
                f"delta sync: {results['member_changes']:,} of the {results['group_size']:,}-member group's "
                "members swapped (its export confirmed)",
                f"{run['seconds']:.2f} s, peak RSS {_mib(run)}; {_staged(run['counters'])}",
                "",
                f"{run['seconds'] / full['seconds']:.2%} of full",
            )
        )
    if "limit_delta" in results:
        run, limit = results["limit_delta"], results["member_limit"]
        errors = "; ".join(f"{error['code']}: {error['message']}" for error in run["errors"]) or "no errors"
        rows.append(
            (
                f"delta sync adding groups of {limit:,} and {limit + 1:,} members",
                f"{run['seconds']:.2f} s, peak RSS {_mib(run)}; {run['result']}; {_staged(run['counters'])}; {errors}",
                f"{limit + 1:,}: flow-error",
                "",
            )
        )
    lines = [
        f"Sync benchmark: {results['users']:,} users, {results['groups']:,} groups of {SMALL_GROUP_MEMBERS}"
        + (f", one group of {results['group_size']:,}" if results["group_size"] else "")
        + f", {results.get('store', 'sqlite')} store",
        f"AD connector space written by a full import in {results['import_seconds']:.1f} s "
        f"({results['import_counters'].get('objects_read', 0):,} objects)",
        "",
        "| figure | value | floor / target | ratio |",
        "|---|---:|---:|---:|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    if "profile" in results:
        lines += ["", "cProfile of a full sync (same data, separate run):", "", "```", results["profile"], "```"]
    return "\n".join(lines) + "\n"
