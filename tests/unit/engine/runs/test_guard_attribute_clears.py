"""The attribute clear guard: an import that can no longer read an attribute (the AD sync account lost read access to
department and employeeID through an attribute ACL) makes sync clear it on every user; the export stops before its
first write instead of writing the clears, and goes on only when the exact count is confirmed."""

from __future__ import annotations

import logging
import re

import pytest

from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.report import render_runs
from airflow_provider_aadsync.engine.runs.export_confirmation import CONFIRMATION_PATTERN, parse_confirmation
from airflow_provider_aadsync.engine.runs.export_guard_check import check_guards, guard_report_line
from airflow_provider_aadsync.engine.runs.export_guards import (
    STOPPED_ATTRIBUTE_CLEARS,
    MassChanges,
    _clears,
    count_mass_changes,
)
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.fakes import FakeGraphWriter
from tests.support.plans import cs_row, plan_row
from tests.support.world import ad_user, cloud_twin, exports, import_full


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}", instance="test") as opened:
        yield opened


def lost_read_access(store: Store, users: int, losing: int) -> None:
    """``users`` users synced with their department and employee id, then a full import that reads neither for the
    first ``losing`` of them (the attribute ACL), synced: the clears are staged for the Entra export."""
    logging.disable(logging.WARNING)  # thousands of per-object notes would slow the test, not prove anything
    try:
        rules = load_sync_rules()
        numbers = range(1, users + 1)
        import_full(store, "ad", [ad_user(n, department="Sales", employeeID=f"E{n}") for n in numbers])
        import_full(store, "entra", [cloud_twin(n, department="Sales", employeeId=f"E{n}") for n in numbers])
        assert run_sync(store, rules, connector="ad", mode="full").result == "success"
        assert run_sync(store, rules, connector="entra", mode="full").result == "success"
        assert exports(store) == {}
        kept = {"department": "Sales"}
        import_full(
            store,
            "ad",
            [ad_user(n) if n <= losing else ad_user(n, employeeID=f"E{n}", **kept) for n in numbers],
        )
        assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    finally:
        logging.disable(logging.NOTSET)


def tenant(users: int) -> FakeGraphWriter:
    """The cloud twins as the fake tenant holds them, under the ids the connector space knows them by."""
    graph = FakeGraphWriter()
    for n in range(1, users + 1):
        twin = cloud_twin(n, department="Sales", employeeId=f"E{n}").attrs
        graph.objects[f"cloud-{n}"] = {
            "@kind": "user",
            "id": f"cloud-{n}",
            "createdDateTime": "2020-01-01T00:00:00Z",
            **{key: values[0] if len(values) == 1 else values for key, values in twin.items()},
        }
    return graph


# ------------------------------------------------------------------------------------------------- what counts
def test_what_counts_as_an_attribute_clear():
    held = {"department": ["Sales"], "employeeId": ["E1"], "otherMails": ["a@x.example", "b@x.example"]}
    assert _clears({"department": []}, held) == ["department"]
    assert _clears({"Department": None}, held) == ["Department"]  # null, any spelling
    assert _clears({"department": [""]}, held) == ["department"]  # an empty string holds nothing either
    assert _clears({"department": [], "employeeId": []}, held) == ["department", "employeeId"]
    assert _clears({"department": ["Engineering"]}, held) == []  # a change, not a clear
    assert _clears({"otherMails": ["a@x.example"]}, held) == []  # some values stay
    assert _clears({"jobTitle": []}, held) == []  # nothing held: nothing taken
    assert _clears({"department": []}, {"department": []}) == []
    assert _clears({"department": []}, {}) == []  # no connector-space object (yet): nothing held
    references = {"manager": ["m"], "member": ["g"], "members": ["g"], "managedBy": ["o"]}
    assert _clears(dict.fromkeys(references, []), references) == []  # the removal guard's
    names = {"userPrincipalName": ["a@corp.example"], "mail": ["a@corp.example"], "sAMAccountName": ["a"]}
    assert _clears(dict.fromkeys(names, []), names) == []  # the identity guard's


def test_clears_are_counted_per_object_from_updates_only_and_named_by_attribute(store):
    for n in range(1, 5):
        attrs = {"department": ["Sales"], "employeeId": [f"E{n}"], "jobTitle": ["Clerk"]}
        cs_row(store, "entra", f"u{n}", f"u{n}", object_type="user", attrs=attrs)
    plan_row(store, "entra", "u1", "u1", operation="update", object_type="user",
             changes={"department": [], "employeeId": [], "jobTitle": []})  # fmt: skip
    plan_row(store, "entra", "u2", "u2", operation="update", object_type="user", changes={"department": None})
    plan_row(store, "entra", "u3", "u3", operation="delete", object_type="user")  # the deletion guard's
    # written already (confirmed): not open, not counted
    plan_row(store, "entra", "u4", "u4", operation="update", object_type="user", changes={"department": [], "x": []},
             state="confirmed")  # fmt: skip
    plan_row(store, "entra", "new", "new", operation="add", object_type="user", changes={"department": []})

    changes = count_mass_changes(store, "entra", ExportSettings())
    assert changes.attribute_clears == 2  # u1 once, though it loses three attributes
    assert changes.cleared_attributes == (("department", 2), ("employeeId", 1), ("jobTitle", 1))
    assert changes.deletes == 1 and changes.count_of("attribute_clears") == 2
    counters = changes.counters(ExportSettings())
    assert counters["planned_attribute_clears"] == 2 and counters["attribute_clear_threshold"] == 500


def test_the_stop_names_the_attributes_cleared_most_and_how_many_more():
    cleared = (("department", 900), ("employeeId", 800), ("companyName", 700), ("jobTitle", 5), ("city", 1))
    changes = MassChanges(0, 0, 0, attribute_clears=950, cleared_attributes=cleared)
    stop = check_guards(changes, ExportSettings(), "export-entra")
    assert stop is not None and stop.result == STOPPED_ATTRIBUTE_CLEARS
    assert stop.detail.startswith(
        "950 objects would lose every value of an attribute they hold (most cleared: department on 900, employeeId "
        "on 800, companyName on 700; 2 more attributes), more than the attribute clear threshold of 500; nothing was "
        "written."
    )
    assert "`confirm_mass_change` = `attribute_clears=950`" in stop.detail
    assert "--confirm-mass-change attribute_clears=950" in stop.detail
    assert "`attribute_clear_threshold`" in stop.detail and "--attribute-clear-threshold 950`" in stop.detail
    assert check_guards(changes, ExportSettings(attribute_clear_threshold=950), "export-entra") is None


def test_attribute_clears_is_a_name_a_confirmation_takes():
    assert parse_confirmation("attribute_clears=600,deletes=3") == {"attribute_clears": 600, "deletes": 3}
    assert parse_confirmation("attribute-clears=600") == {"attribute_clears": 600}
    assert re.fullmatch(CONFIRMATION_PATTERN, "identity_changes=1,attribute_clears=600")
    counters = {"disable_threshold": 500, "attribute_clear_threshold": 500, "planned_attribute_clears": 600}
    assert "attribute clears 600 of 500 (exceeded)" in (guard_report_line(counters) or "")
    assert "attribute clears" not in (guard_report_line({"disable_threshold": 500}) or "")  # runs before the guard


# ------------------------------------------------------------------------------------------ the reviewer's case
def test_a_lost_read_permission_clearing_every_users_department_stops_before_any_write(store):
    lost_read_access(store, 600, losing=600)
    plan = exports(store)
    assert len(plan) == 600 and {"department": [], "employeeId": []} in [row["changes"] for row in plan.values()]
    graph = tenant(600)

    stopped = run_entra_export(store, graph)
    assert stopped.result == STOPPED_ATTRIBUTE_CLEARS, stopped.detail
    assert graph.calls == [] and graph.objects["cloud-1"]["department"] == "Sales"  # the tenant got nothing
    assert stopped.detail.startswith(
        "600 objects would lose every value of an attribute they hold (most cleared: department on 600, employeeId on "
        "600), more than the attribute clear threshold of 500; nothing was written."
    )
    assert "`confirm_mass_change` = `attribute_clears=600`" in stopped.detail
    assert stopped.counters["planned_attribute_clears"] == 600 and len(exports(store)) == 600  # the plan is kept
    assert "attribute clears 600 of 500 (exceeded)" in render_runs(store, [stopped.run_id])

    again = run_entra_export(store, graph, settings=ExportSettings(confirm_mass_change="attribute_clears=599"))
    assert again.result == STOPPED_ATTRIBUTE_CLEARS and graph.calls == []  # another count lets nothing through
    assert "This run confirmed attribute_clears=599, but 600 are pending now" in again.detail

    confirmed = run_entra_export(store, graph, settings=ExportSettings(confirm_mass_change="attribute_clears=600"))
    assert confirmed.result == "success", confirmed.detail
    assert "mass change confirmed for this run: attribute_clears=600" in (confirmed.detail or "")
    assert graph.calls and "department" not in graph.objects["cloud-1"] and exports(store) == {}
    assert "attribute clears 600 of 500 (exceeded, confirmed)" in render_runs(store, [confirmed.run_id])


def test_499_clears_pass_at_the_default_threshold(store):
    lost_read_access(store, 510, losing=499)
    assert len(exports(store)) == 499
    changes = count_mass_changes(store, "entra", ExportSettings())
    assert (changes.attribute_clears, changes.cleared_attributes) == (499, (("department", 499), ("employeeId", 499)))
    graph = tenant(510)
    done = run_entra_export(store, graph)
    assert done.result == "success", done.detail
    assert graph.calls and exports(store) == {}
    assert "department" not in graph.objects["cloud-1"] and graph.objects["cloud-510"]["department"] == "Sales"
