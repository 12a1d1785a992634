"""Directory extensions of the sync app: naming, which ones the rules need, idempotent registration (a fake Graph
that answers as the Create extensionProperty reference documents), and the reader's and writer's name mapping."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aadsync.engine.connectors.entra.extensions import (
    ExtensionNameError,
    ExtensionNames,
    ExtensionRegistrationError,
    cs_attribute,
    extension_name,
    graph_attribute,
    register_extensions,
)
from airflow_provider_aadsync.engine.connectors.entra.graph import graph_body
from airflow_provider_aadsync.engine.connectors.entra.reader import graph_object
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.steps import needed_extensions_of

APP_ID = "0ab1c2d3-4e5f-6789-abcd-ef0123456789"
KEY = "0ab1c2d34e5f6789abcdef0123456789"


class FakeGraphError(Exception):
    def __init__(self, status: int, code: str = "") -> None:
        super().__init__(f"{status} {code}")
        self.status, self.code = status, code


class FakeApplications:
    """One app registration and its extensionProperties, as Graph keeps them."""

    def __init__(self, *, writable: bool = True, readable: bool = True) -> None:
        self.definitions: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str]] = []
        self.writable, self.readable = writable, readable

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        self.calls.append((method, url))
        if url == f"/applications(appId='{APP_ID}')":
            if not self.readable:
                raise FakeGraphError(403, "Authorization_RequestDenied")
            return {"id": "app-object-1", "appId": APP_ID}
        assert url == "/applications/app-object-1/extensionProperties", url
        if method == "GET":
            return {"value": list(self.definitions)}
        if not self.writable:
            raise FakeGraphError(403, "Authorization_RequestDenied")
        body = kwargs["json"]
        full = f"extension_{KEY}_{body['name']}"
        if any(d["name"] == full for d in self.definitions):
            raise FakeGraphError(400, "Request_BadRequest")
        assert body["dataType"] == "String" and body["isMultiValued"] is False
        self.definitions.append({**body, "id": f"def-{len(self.definitions)}", "name": full})
        return self.definitions[-1]


def test_names_follow_graph_and_ad_dashes_become_underscores():
    assert graph_attribute(APP_ID, "aadsyncSourceAnchor") == f"extension_{KEY}_aadsyncSourceAnchor"
    assert graph_attribute(APP_ID.upper(), "extension_employeeNumber") == f"extension_{KEY}_employeeNumber"
    assert extension_name("msDS-cloudExtensionAttribute1") == "msDS_cloudExtensionAttribute1"
    assert cs_attribute("departmentNumber") == "extension_departmentNumber"
    for bad in ("1st", "has space", "x" * 121, "ümlaut"):
        with pytest.raises(ExtensionNameError, match="cannot be a directory extension name"):
            extension_name(bad)


def test_connector_space_names_map_to_the_apps_graph_names_and_back():
    names = ExtensionNames(APP_ID)
    assert names.to_graph("extension_employeeNumber") == f"extension_{KEY}_employeeNumber"
    assert names.to_graph("displayName") == "displayName"
    assert names.from_graph(f"extension_{KEY}_employeeNumber") == "extension_employeeNumber"
    assert names.from_graph("extension_ffffffffffffffffffffffffffffffff_other") is None  # another app's
    renamed = ExtensionNames(APP_ID, "corpAnchor")
    assert renamed.to_graph("extension_aadsyncSourceAnchor") == f"extension_{KEY}_corpAnchor"
    assert renamed.from_graph(f"extension_{KEY}_corpAnchor") == "extension_aadsyncSourceAnchor"
    assert ExtensionNames(None).to_graph("extension_x") == "extension_x"  # a fake without an app: unchanged


def test_the_reader_and_the_writer_translate_names():
    names = ExtensionNames(APP_ID)
    item = {"id": "g1", "displayName": "Staff", f"extension_{KEY}_aadsyncSourceAnchor": "QUJD",
            "extension_ffffffffffffffffffffffffffffffff_other": "x"}  # fmt: skip
    obj = graph_object("groups", item, partial=False, names=names)
    assert obj.attrs == {"id": ["g1"], "displayName": ["Staff"], "extension_aadsyncSourceAnchor": ["QUJD"]}
    body = graph_body({"extension_aadsyncSourceAnchor": ["QUJD"], "extension_employeeNumber": []}, names)
    assert body == {f"extension_{KEY}_aadsyncSourceAnchor": "QUJD", f"extension_{KEY}_employeeNumber": None}
    names.registered = {f"extension_{KEY}_aadsyncsourceanchor"}
    assert graph_body({"extension_employeeNumber": ["7"], "displayName": ["A"]}, names) == {"displayName": "A"}


def test_the_rules_need_the_anchor_on_users_and_groups_and_each_chosen_attribute():
    assert needed_extensions_of(load_sync_rules()) == {"aadsyncSourceAnchor": {"User", "Group"}}
    rules = load_sync_rules(directory_extensions="employeeNumber, msDS-cloudExtensionAttribute1")
    assert needed_extensions_of(rules) == {
        "aadsyncSourceAnchor": {"User", "Group"},
        "employeeNumber": {"User", "Group"},
        "msDS_cloudExtensionAttribute1": {"User", "Group"},
    }
    user_in = next(r for r in rules.inbound("ad") if r.name == "In from AD - User Join")
    user_out = next(r for r in rules.outbound("entra") if r.name == "Out to AAD - User Join")
    assert {"employeeNumber", "msDS-cloudExtensionAttribute1"} <= set(user_in.targets)
    assert "extension_employeeNumber" in user_out.targets and "employeeNumber" in user_out.attributes
    assert rules.fingerprint != load_sync_rules().fingerprint  # a changed list forces a full sync


def test_registration_posts_what_is_missing_once_and_is_idempotent():
    graph = FakeApplications()
    needed = {"aadsyncSourceAnchor": {"User", "Group"}, "employeeNumber": {"User"}}
    first = register_extensions(graph, APP_ID, needed)
    assert sorted(first.created) == [f"extension_{KEY}_aadsyncSourceAnchor", f"extension_{KEY}_employeeNumber"]
    assert [d["targetObjects"] for d in graph.definitions] == [["Group", "User"], ["User"]]
    posts = [c for c in graph.calls if c[0] == "POST"]
    second = register_extensions(graph, APP_ID, needed)
    assert second.created == [] and len(second.existing) == 2 and not second.problems
    assert [c for c in graph.calls if c[0] == "POST"] == posts  # nothing posted again
    third = register_extensions(graph, APP_ID, {"employeeNumber": {"User", "Group"}})
    assert third.problems and "cannot be changed" in third.problems[0] and "Group" in third.problems[0]


def test_a_missing_permission_names_the_permissions_and_the_limit_is_checked_before_any_write():
    with pytest.raises(ExtensionRegistrationError, match=r"Application\.ReadWrite\.OwnedBy.*Directory\.ReadWrite"):
        register_extensions(FakeApplications(writable=False), APP_ID, {"aadsyncSourceAnchor": {"User"}})
    with pytest.raises(ExtensionRegistrationError, match="Application.ReadWrite.OwnedBy"):
        register_extensions(FakeApplications(readable=False), APP_ID, {"aadsyncSourceAnchor": {"User"}})
    graph = FakeApplications()
    graph.definitions = [{"id": str(n), "name": f"extension_{KEY}_x{n}", "targetObjects": ["User"]} for n in range(99)]
    outcome = register_extensions(graph, APP_ID, {"a": {"User"}, "b": {"User"}})
    assert outcome.created == [] and "more than Graph's 100" in outcome.problems[0]
    assert not [c for c in graph.calls if c[0] == "POST"]


def test_a_check_run_writes_nothing():
    graph = FakeApplications()
    outcome = register_extensions(graph, APP_ID, {"aadsyncSourceAnchor": {"User"}}, dry_run=True)
    assert outcome.problems == [f"extension_{KEY}_aadsyncSourceAnchor is not registered"]
    assert all(method == "GET" for method, _ in graph.calls)
