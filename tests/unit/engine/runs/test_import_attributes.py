"""What an import asks for: the configured list plus every attribute the inbound rules read; a changed list makes
the next delta a full import."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from airflow_provider_aadsync.engine.connectors.ad.reader import import_active_directory
from airflow_provider_aadsync.engine.connectors.ad.schema import DEFAULT_AD_ATTRIBUTES
from airflow_provider_aadsync.engine.connectors.entra.schema import (
    BESIDE_DELTA,
    DEFAULT_GROUP_PROPERTIES,
    DEFAULT_USER_PROPERTIES,
    DIRECTORY_ROLES,
)
from airflow_provider_aadsync.engine.rules import load_rules_text
from airflow_provider_aadsync.engine.runs.import_attributes import (
    ATTRIBUTE_LIST_PARTITION,
    complete_attribute_list,
    rule_attributes,
)
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.steps import run_ad_import
from tests.support.fakes import ATTRS, NC, FakeDirectory
from tests.support.stores import fresh_store

CUSTOM_RULES = """
rules:
  - name: In from AD - Badge
    direction: inbound
    connector: ad
    source_object_type: user
    target_object_type: person
    link_type: Join
    precedence: 50
    scoping:
      - - {attribute: EmployeeNumber, operator: ISNOTNULL}
        - {attribute: memberOf, operator: ISMEMBEROF, value: "CN=Staff,DC=corp,DC=test"}
    join:
      - - {source: objectGUID, target: sourceAnchor}
    flows:
      - {type: Expression, target: badge, expression: 'Left([employeeNumber], 4) & [physicalDeliveryOfficeName]'}
  - name: In from AAD - Office
    direction: inbound
    connector: entra
    source_object_type: user
    target_object_type: person
    link_type: Join
    precedence: 60
    join:
      - - {source: onPremisesImmutableId, target: sourceAnchor}
    flows:
      - {type: Direct, source: ageGroup, target: office}
"""


@pytest.fixture
def store(tmp_path):
    with fresh_store(tmp_path) as opened:
        yield opened


def test_the_shipped_lists_hold_everything_the_shipped_rules_read():
    rules = load_sync_rules()
    assert "userAccountControl" in rule_attributes(rules, "ad")
    assert complete_attribute_list(DEFAULT_AD_ATTRIBUTES, rules, "ad")[1] == {}
    for kind, listed in (("user", DEFAULT_USER_PROPERTIES), ("group", DEFAULT_GROUP_PROPERTIES)):
        names, added = complete_attribute_list(listed, rules, "entra", object_types=[kind], made_by_import=BESIDE_DELTA)
        assert added == {}
        # the roles the import reads beside its rounds are listed (the list keys the delta links), never warned of
        assert DIRECTORY_ROLES in names


def test_attributes_a_rule_reads_are_added_once_and_named_with_their_rule(caplog):
    rules = load_rules_text(CUSTOM_RULES, name="custom.yaml")
    configured = ["objectGUID", "physicaldeliveryofficename"]  # case differs from the rule's: already there
    with caplog.at_level(logging.WARNING):
        attributes, added = complete_attribute_list(configured, rules, "ad", what="AD connection's attributes extra")
    assert attributes == ["objectGUID", "physicaldeliveryofficename", "EmployeeNumber"]
    assert added == {"EmployeeNumber": ["In from AD - Badge"]}  # memberOf (ISMEMBEROF) is computed by sync
    assert "EmployeeNumber (read by 'In from AD - Badge')" in caplog.text
    users, added = complete_attribute_list(DEFAULT_USER_PROPERTIES, rules, "entra", object_types=["user"])
    assert added == {"ageGroup": ["In from AAD - Office"]} and users[-1] == "ageGroup"
    assert complete_attribute_list(DEFAULT_GROUP_PROPERTIES, rules, "entra", object_types=["group"])[1] == {}


class RecordingDirectory(FakeDirectory):
    """The fake directory as a hook: connection settings, and the attribute lists each read asked for."""

    def __init__(self, attributes):
        super().__init__()
        self.settings = SimpleNamespace(attributes=attributes, binary_attributes=None, base_dn=NC)
        self.asked: list[list[str]] = []
        self.add_user(1, "user1")

    def full_import_pages(self, attributes):
        self.asked.append(list(attributes))
        return super().full_import_pages(attributes)

    def dirsync_pages(self, attributes, cookie):
        self.asked.append(list(attributes))
        return super().dirsync_pages(attributes, cookie)

    def close(self) -> None:
        pass


def test_the_ad_import_asks_for_what_the_rules_read_even_when_the_connection_leaves_it_out(store):
    directory = RecordingDirectory(["objectGUID", "objectClass", "sAMAccountName"])
    summary = run_ad_import(directory, store, mode="full")  # type: ignore[arg-type]
    assert summary["result"] == "success"
    assert "userAccountControl" in directory.asked[0] and "mS-DS-ConsistencyGuid" in directory.asked[0]
    assert "userAccountControl" in summary["attributes_added_for_rules"]
    default = RecordingDirectory(None)
    assert "attributes_added_for_rules" not in run_ad_import(default, store, mode="full")  # type: ignore[arg-type]
    assert default.asked[0] == list(DEFAULT_AD_ATTRIBUTES)


def test_a_changed_attribute_list_makes_the_next_delta_a_full_import(store):
    directory = FakeDirectory()
    directory.add_user(1, "user1")

    def run(mode, attributes):
        return import_active_directory(directory, store, mode=mode, attributes=attributes)

    assert run("full", ATTRS).mode == "full"
    assert run("delta", ATTRS).mode == "delta"
    wider = [*ATTRS, "employeeNumber"]
    changed = run("delta", wider)
    assert changed.mode == "full" and ATTRIBUTE_LIST_PARTITION in changed.fallback_reason
    assert run("delta", [name.upper() for name in reversed(wider)]).mode == "delta"  # order and case do not count
    assert run("delta", ATTRS).mode == "full"  # back to the older list: its values were dropped meanwhile
    assert run("delta", ATTRS).mode == "delta"
