"""Issue 13: a rule set that would let a sync disconnect everything is refused before the store is touched."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.engine.rules import RuleLoadError, RuleSetError, load_rules, load_rules_text
from airflow_provider_aadsync.engine.store import Store, run, store_lock
from airflow_provider_aadsync.engine.sync import run_sync
from tests.support.rules import rule_dict
from tests.support.world import ad_user, import_full, links, metaverse


def _rules_text(**overrides) -> str:
    rule = rule_dict(
        name="In from AD - User",
        flows=[{"type": "Direct", "source": "sAMAccountName", "target": "accountName"}],
        join=[[{"source": "objectGUID", "target": "sourceAnchorBinary"}]],
        **overrides,
    )
    return yaml.safe_dump({"rules": [rule]}, sort_keys=False)


@pytest.fixture
def synced_store(tmp_path):
    """A store whose AD connector space was synced once: two objects projected into the metaverse."""
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with Store.open(url, instance="test") as store:
        import_full(store, "ad", [ad_user(1), ad_user(2)])
        result = run_sync(store, load_rules_text(_rules_text(), name="good.yaml"), connector="ad", mode="full")
        assert result.result == "success" and len(metaverse(store)) == 2
    return url


def _state(store: Store) -> tuple:
    with store.engine.connect() as connection:
        runs = connection.execute(sa.select(sa.func.count()).select_from(run)).scalar_one()
        locks = connection.execute(sa.select(store_lock)).mappings().all()
    return metaverse(store), links(store, "ad"), runs, [dict(row) for row in locks]


@pytest.mark.parametrize(
    "rules_yaml",
    [
        _rules_text(connector="hr"),  # rules for another connector only
        _rules_text(enabled=False),  # the only inbound rule disabled
        _rules_text(direction="outbound", connector="ad", source_object_type="person", target_object_type="user"),
    ],
    ids=["other-connector", "disabled", "outbound-only"],
)
def test_sync_without_an_inbound_rule_is_refused_before_touching_the_store(synced_store, rules_yaml):
    rules = load_rules_text(rules_yaml, name="/etc/aadsync/rules.yaml")
    with Store.open(synced_store, instance="test") as store:
        before = _state(store)
        with pytest.raises(RuleSetError) as info:
            run_sync(store, rules, connector="ad", mode="full")
        assert _state(store) == before  # no run recorded, no lock taken, nothing disconnected
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("/etc/aadsync/rules.yaml: connector 'ad' has no enabled inbound rule")
    assert info.value.connector == "ad" and info.value.source == "/etc/aadsync/rules.yaml"
    assert isinstance(info.value, RuleLoadError)  # the operators fail RuleLoadError without retries


def test_rule_set_error_names_the_folder_it_was_loaded_from(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "hr.yaml").write_text(_rules_text(connector="hr"))
    rules = load_rules([folder])
    with pytest.raises(RuleSetError, match=rf"^{folder}: connector 'ad' has no enabled inbound rule \(inbound rules"):
        rules.require_inbound("ad")
    rules.require_inbound("HR")  # connector names match ignoring case, as everywhere in the rule set


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, "holds no *.yaml or *.yml rule file"),
        ({"a.yaml": ""}, "a.yaml: the file holds no rules"),
        ({"a.yaml": "rules:\n"}, "a.yaml:1:7: rules: no rule in the list"),
    ],
    ids=["empty-folder", "empty-file", "rules-nothing"],
)
def test_cli_sync_refuses_an_empty_rule_set_and_leaves_the_metaverse(synced_store, tmp_path, files, expected):
    folder = tmp_path / "rules"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    args = ["sync", "--connector", "ad", "--mode", "full", "--rules", str(folder), "--store", synced_store]
    result = CliRunner().invoke(main, [*args, "--instance", "test"])
    assert result.exit_code == 1
    assert expected in result.output and "Traceback" not in result.output
    with Store.open(synced_store, instance="test") as store:
        assert len(metaverse(store)) == 2


def test_cli_sync_refusal_for_a_connector_without_inbound_rules_is_one_line(synced_store, tmp_path):
    path = tmp_path / "hr.yaml"
    path.write_text(_rules_text(connector="hr"))
    args = ["sync", "--connector", "ad", "--mode", "full", "--rules", str(path), "--store", synced_store]
    result = CliRunner().invoke(main, [*args, "--instance", "test"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == [f"Error: {path}: " + lines[0].split(f"{path}: ", 1)[1]] and "'ad'" in lines[0]
    with Store.open(synced_store, instance="test") as store:
        assert len(metaverse(store)) == 2
