"""Exactness of the Entra export under faults, against the Graph emulator only (no Samba): a create, a member change
or a delete whose answer is lost, refused in part or throttled ends with every object once and every change made once,
in the same run or the next."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from aadsync_devkit.graph_emulator.server import EmulatorServer
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.runs.source import BatchRequest, WriteOutcomeUnknownError
from airflow_provider_aadsync.engine.store import pending_export, pending_export_reference
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.graph import graph_members, graph_users
from tests.support.servers import entra_hook_for, trust
from tests.support.world import ad_group, ad_user, guid, immutable_id, import_full

pytestmark = pytest.mark.integration

DOMAIN = "corp.example"
SETTINGS = ExportSettings(resend_settle_seconds=0)


@pytest.fixture
def tenant(tenant_verifying):
    return tenant_verifying(DOMAIN)


def set_emulator(server: EmulatorServer, **settings: Any) -> None:
    response = httpx.put(f"{server.base_url}/_emulator/settings", json=settings, verify=trust(server))
    assert response.status_code == 200, response.text


class FaultyCall:
    """The hook, with emulator ``settings`` on for the first ``$batch`` that ``matches`` (then the defaults again)."""

    def __init__(self, hook, server: EmulatorServer, matches: Callable[[Sequence[BatchRequest]], bool], **settings):
        self.hook, self.server, self.matches, self.settings = hook, server, matches, settings
        self.faulted = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.hook, name)

    def batch(self, requests, **kwargs):
        if self.faulted or not self.matches(requests):
            return self.hook.batch(requests, **kwargs)
        self.faulted += 1
        set_emulator(self.server, **self.settings)
        try:
            return self.hook.batch(requests, **kwargs)
        finally:
            set_emulator(self.server, **dict.fromkeys(self.settings))


def open_exports(store) -> list[tuple]:
    """The Entra export's open plan rows (objects and references)."""
    with store.engine.connect() as connection:
        objects = connection.execute(
            sa.select(pending_export.c.anchor, pending_export.c.state).where(pending_export.c.connector == "entra")
        ).all()
        references = connection.execute(
            sa.select(pending_export_reference.c.anchor, pending_export_reference.c.state).where(
                pending_export_reference.c.connector == "entra"
            )
        ).all()
    return [tuple(row) for row in [*objects, *references]]


def all_groups(hook) -> list[dict]:
    """Every group of the tenant, with the sourceAnchor the sync app's extension holds."""
    select = f"id,displayName,createdDateTime,{hook.extension_names.to_graph('extension_aadsyncSourceAnchor')}"
    return [g for page in hook.paginate("/groups", params={"$select": select, "$top": "999"}) for g in page["value"]]


def group_creates(requests: Sequence[BatchRequest]) -> bool:
    return any(r.method == "POST" and r.url == "/groups" for r in requests)


def same_named_groups(store) -> None:
    """Two groups of the same mailNickname and displayName, as two forests' "Staff" (sAMAccountName is unique in one
    domain only), each with a member."""
    import_full(
        store,
        "ad",
        [
            ad_user(1),
            ad_user(2),
            ad_group(1001, "Staff", [1], displayName="Staff", mailNickname="Staff"),
            ad_group(1002, "Staff2", [2], displayName="Staff", mailNickname="Staff"),
        ],
    )
    assert run_sync(store, load_sync_rules(), connector="ad", mode="full").result == "success"


def assert_each_group_once_with_its_member(store, hook) -> None:
    """Each group once, holding its own member: AD group 1001 user 1, group 1002 user 2 (by the anchors)."""
    anchor = hook.extension_names.to_graph("extension_aadsyncSourceAnchor")
    groups = all_groups(hook)
    assert len(groups) == 2, [(g["id"], g["displayName"], g["createdDateTime"]) for g in groups]
    users = graph_users(hook)
    members = {group[anchor]: graph_members(hook, group["id"]) for group in groups}
    assert members == {
        immutable_id(guid(1001)): {users[immutable_id(guid(1))]["id"]},
        immutable_id(guid(1002)): {users[immutable_id(guid(2))]["id"]},
    }
    assert open_exports(store) == []


@pytest.mark.parametrize("fault", [{"faultWrite504Ratio": 1.0}, {"faultDropRatio": 1.0}], ids=["504", "dropped"])
def test_groups_of_the_same_names_whose_creates_lost_their_answers_are_each_created_once(
    graph_server, tenant, store, fault
):
    """Reconciled in the same run: each group is found by its anchor (the sync app's extension), never by its names,
    by which each found both and, finding no single one of its own, was created again beside them."""
    same_named_groups(store)
    hook = entra_hook_for(graph_server, tenant)
    faulty = FaultyCall(hook, graph_server, group_creates, **fault)
    result = run_entra_export(store, faulty, settings=SETTINGS)
    assert faulty.faulted == 1
    assert result.result == "success", result
    assert_each_group_once_with_its_member(store, hook)
    assert result.counters["creates_reconciled"] == 4 and "group_creates" not in result.counters  # users too


def test_groups_of_the_same_names_a_stopped_run_had_created_are_adopted_by_the_next_run(graph_server, tenant, store):
    same_named_groups(store)
    hook = entra_hook_for(graph_server, tenant)
    faulty = FaultyCall(hook, graph_server, group_creates, faultDropRatio=1.0)
    with pytest.raises(WriteOutcomeUnknownError):  # it stops at the first call without an answer
        run_entra_export(store, faulty, settings=SETTINGS.model_copy(update={"unknown_outcome_limit": 1}))
    assert len(all_groups(hook)) == 2  # carried out, unconfirmed
    result = run_entra_export(store, hook, settings=SETTINGS)
    assert result.result == "success", result
    assert_each_group_once_with_its_member(store, hook)
    assert result.counters["creates_reconciled"] == 4 and "group_creates" not in result.counters  # users too
