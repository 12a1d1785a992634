"""`aadsync sync` and `aadsync preview` on a store seeded through the connector-space writer."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.engine.store import Store
from tests.support.world import ad_group, ad_user, import_full, metaverse


def seeded(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with Store.open(url) as store:
        import_full(store, "ad", [ad_user(1, department="Sales"), ad_group(20, "Staff", members=[1])])
    return url


def test_sync_prints_the_run_report(tmp_path):
    url = seeded(tmp_path)
    result = CliRunner().invoke(main, ["sync", "--connector", "ad", "--mode", "full", "--store", url])
    assert result.exit_code == 0, result.output
    assert "full-sync on `ad` — success" in result.output
    assert "| projections | 2 |" in result.output and "| export_adds_staged | 2 |" in result.output
    with Store.open(url) as store:
        assert len(metaverse(store)) == 2


def test_a_second_full_sync_skips_the_unchanged_and_reevaluate_evaluates_them(tmp_path):
    url = seeded(tmp_path)
    args = ["sync", "--connector", "ad", "--mode", "full", "--store", url]
    assert CliRunner().invoke(main, args).exit_code == 0
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "| objects_unchanged | 2 |" in again.output
    forced = CliRunner().invoke(main, [*args, "--reevaluate"])
    assert forced.exit_code == 0, forced.output
    assert "objects_unchanged" not in forced.output and "| objects_memoized | 2 |" in forced.output


def test_preview_prints_decisions_and_writes_nothing(tmp_path):
    url = seeded(tmp_path)
    dn = "cn=user1,ou=users,dc=corp,dc=example"
    result = CliRunner().invoke(main, ["preview", "--connector", "ad", "--dn", dn, "--store", url])
    assert result.exit_code == 0, result.output
    assert "Inbound rules in scope: In from AD - User Join" in result.output
    assert "Decision: projected by rule 'In from AD - User Join'" in result.output
    assert "department = 'Sales'" in result.output and "entra: add users/provisional:" in result.output
    assert result.output.rstrip().endswith("Nothing was written.")
    as_json = CliRunner().invoke(main, ["preview", "--connector", "ad", "--dn", dn, "--store", url, "--json"])
    pending = json.loads(as_json.output)["pending_exports"]
    (to_entra,) = [export for export in pending if "department" in export["changes"]]
    assert to_entra["changes"]["department"] == ["Sales"]
    with Store.open(url) as store:
        assert metaverse(store) == {}


def test_preview_takes_the_rule_options_of_sync(tmp_path):
    """The options the sync runs with change what the preview shows: without the ConsistencyGuid writeback, no
    update of the AD user is staged."""
    url = seeded(tmp_path)
    args = ["preview", "--connector", "ad", "--dn", "cn=user1,ou=users,dc=corp,dc=example", "--store", url, "--json"]

    def connectors_staged(*options: str) -> set[str]:
        result = CliRunner().invoke(main, [*args, *options])
        assert result.exit_code == 0, result.output
        return {export["connector"] for export in json.loads(result.output)["pending_exports"]}

    assert connectors_staged() == {"ad", "entra"}
    assert connectors_staged("--no-consistency-guid-writeback", "--block-soft-match") == {"entra"}


def test_preview_of_an_unknown_object_and_a_bad_rule_file(tmp_path):
    url = seeded(tmp_path)
    unknown = CliRunner().invoke(main, ["preview", "--connector", "ad", "--anchor", "nope", "--store", url])
    assert unknown.exit_code == 1 and "no object 'nope' in the 'ad' connector space" in unknown.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  - name: Broken\n    direction: inbound\n    connector: ad\n    source_object_type: user\n"
        "    target_object_type: person\n    link_type: Provision\n    precedence: 1\n"
        "    flows:\n      - {type: Expression, target: x, expression: 'Left([a], '}\n"
    )
    result = CliRunner().invoke(main, ["sync", "--connector", "ad", "--rules", str(bad), "--store", url])
    assert result.exit_code == 1
    assert "bad.yaml" in result.output and "Broken" in result.output and "flows[0].expression" in result.output


def test_a_flow_to_a_property_graph_does_not_have_fails_when_the_rules_load(tmp_path):
    """Before anything is read or written: the file, the rule, the flow and the line, one error per bad target."""
    url = seeded(tmp_path)
    bad = Path(__file__).resolve().parents[1] / "support" / "rules" / "unknown-targets.yaml"
    line = next(n for n, text in enumerate(bad.read_text().splitlines(), start=1) if "target: costCenter}" in text)
    result = CliRunner().invoke(main, ["sync", "--connector", "ad", "--rules", str(bad), "--store", url])
    assert result.exit_code == 1, result.output
    assert "Error: 3 errors in sync rules:" in result.output
    assert (
        f"unknown-targets.yaml:{line}:52: rule 'Out to AAD - My User Extras': flows[1].target: 'costCenter' is not a "
        "Graph property the entra connector writes on user objects"
    ) in result.output
    with Store.open(url) as store:
        assert metaverse(store) == {}  # nothing synchronized


def test_export_plan_lists_counts_and_operations(tmp_path):
    url = seeded(tmp_path)
    CliRunner().invoke(main, ["sync", "--connector", "ad", "--mode", "full", "--store", url])
    result = CliRunner().invoke(main, ["export-plan", "--store", url])
    assert result.exit_code == 0, result.output
    assert "| planned_user_adds | 1 |" in result.output and "| planned_member_adds | 1 |" in result.output
    assert "- add group `groups/provisional:" in result.output and "1 member changes" in result.output
    assert "    - department: ['Sales']" in result.output


def test_preflight_counts_then_rows_as_text_json_and_csv(tmp_path):
    from tests.support.world import entra_user

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with Store.open(url) as store:
        import_full(store, "ad", [ad_user(1), ad_user(2)])
        import_full(store, "entra", [entra_user("c1", "USER1@corp.example")])
    assert CliRunner().invoke(main, ["sync", "--connector", "ad", "--mode", "full", "--store", url]).exit_code == 0
    text = CliRunner().invoke(main, ["preflight", "--store", url])
    assert text.exit_code == 0, text.output
    assert text.output.index("create: 1") < text.output.index("| AD DN |")
    assert "soft match on userPrincipalName: 1" in text.output
    data = json.loads(CliRunner().invoke(main, ["preflight", "--store", url, "--json"]).output)
    assert [(r["outcome"], r["cloud_id"]) for r in data["rows"]] == [("soft match", "c1"), ("create", "")]
    blocked = json.loads(CliRunner().invoke(main, ["preflight", "--store", url, "--json", "--block-soft-match"]).output)
    assert blocked["counts"] == {"create": 2}
    rows = CliRunner().invoke(main, ["preflight", "--store", url, "--csv"]).output.splitlines()
    assert rows[0].startswith("ad_dn,") and len(rows) == 3
    both = CliRunner().invoke(main, ["preflight", "--store", url, "--csv", "--json"])
    assert both.exit_code != 0 and "exclude each other" in both.output


def test_block_cloud_object_takeover_in_the_preflight_and_the_sync(tmp_path):
    """A cloud-created user holding the AD user's ImmutableId: a hard match by default, a conflict in the preflight
    and a refused match (invalid-hard-match) in the sync with --block-cloud-object-takeover."""
    from tests.support.world import entra_user, guid, immutable_id, links

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with Store.open(url) as store:
        import_full(store, "ad", [ad_user(1)])
        import_full(store, "entra", [entra_user("c1", "someone@corp.example", immutable_id(guid(1)))])
    assert CliRunner().invoke(main, ["sync", "--connector", "ad", "--mode", "full", "--store", url]).exit_code == 0
    allowed = json.loads(CliRunner().invoke(main, ["preflight", "--store", url, "--json"]).output)
    assert allowed["counts"] == {"hard match": 1}
    flag = "--block-cloud-object-takeover"
    blocked = json.loads(CliRunner().invoke(main, ["preflight", "--store", url, "--json", flag]).output)
    assert blocked["rows"][0]["outcome"] == "conflict" and "BlockCloudObjectTakeover" in blocked["rows"][0]["conflict"]
    result = CliRunner().invoke(main, ["sync", "--connector", "entra", "--mode", "full", "--store", url, flag])
    assert "invalid-hard-match" in result.output, result.output
    with Store.open(url) as store:
        assert ("entra", "c1") not in links(store)
