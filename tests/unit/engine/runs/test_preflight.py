"""The cutover preflight on a hand-built world: hard match, soft match (UPN, mail), create, and the conflicts
(another engine, another ImmutableId, two AD users for one cloud user), counts first, JSON and CSV; nothing written."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pytest

from airflow_provider_aadsync.engine.runs.preflight import (
    FOREIGN_CONSISTENCY_GUID,
    preflight,
    render_csv,
    render_json,
    render_text,
)
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.world import ad_user, entra_user, exports, guid, immutable_id, import_full, links

AD = [
    ad_user(1),
    ad_user(2),
    ad_user(3, mail="three@corp.example"),
    ad_user(4),
    ad_user(5),
    ad_user(6),
    ad_user(7, mail="shared@corp.example"),
    ad_user(8, mail="shared@corp.example"),
]
CLOUD = [
    entra_user("c1", "someone-else@corp.example", immutable_id(guid(1))),
    entra_user("c2", "USER2@corp.example"),
    entra_user("c3", "three@corp.onmicrosoft.com", mail="Three@corp.example"),
    entra_user("c4", "user4@corp.example", immutable_id(guid(444))),
    entra_user("c5", "user5@corp.example", immutable_id(guid(5)), onPremisesSyncEnabled=True),
    entra_user("c7", "seven@corp.onmicrosoft.com", mail="shared@corp.example"),
]


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}", instance="test") as opened:
        import_full(opened, "ad", AD)
        import_full(opened, "entra", CLOUD)
        assert run_sync(opened, load_sync_rules(), connector="ad", mode="full").result == "success"
        yield opened


def by_user(rows):
    return {row.user_principal_name.split("@")[0]: row for row in rows}


def test_rows_say_how_each_ad_user_meets_the_tenant(store):
    staged, linked = exports(store), links(store)
    rows = by_user(preflight(store))
    assert (rows["user1"].outcome, rows["user1"].matched_on, rows["user1"].cloud_id) == (
        "hard match",
        "onPremisesImmutableId",
        "c1",
    )
    assert (rows["user2"].outcome, rows["user2"].matched_on, rows["user2"].cloud_id) == (
        "soft match",
        "userPrincipalName",
        "c2",
    )
    assert (rows["user3"].outcome, rows["user3"].matched_on) == ("soft match", "mail")
    assert rows["user4"].outcome == "conflict" and "another ImmutableId" in rows["user4"].conflict
    assert rows["user5"].outcome == "conflict" and "turn off the other engine first" in rows["user5"].conflict
    assert rows["user6"].outcome == "create" and rows["user6"].cloud_id == ""
    for n in (7, 8):
        assert rows[f"user{n}"].outcome == "conflict" and rows[f"user{n}"].conflict.startswith("two AD users")
    assert exports(store) == staged and links(store) == linked  # read only


def test_block_soft_match_and_outputs(store):
    rows = preflight(store, block_soft_match=True)
    assert {r.user_principal_name: r.outcome for r in rows}["user2@corp.example"] == "create"
    rows = preflight(store)
    data = json.loads(render_json(rows))
    assert data["counts"]["hard match"] == 1 and data["counts"]["soft match"] == 2
    assert data["counts"]["soft match on mail"] == 1 and data["counts"]["conflict"] == 4
    assert data["counts"]["create"] == 1 and len(data["rows"]) == 8
    table = list(csv.DictReader(io.StringIO(render_csv(rows))))
    assert len(table) == 8 and table[0]["ad_dn"].startswith("CN=user1,")
    text = render_text(rows)
    assert text.index("hard match: 1") < text.index("| AD DN |")


def test_an_anchor_from_an_mS_DS_ConsistencyGuid_unlike_the_objectGUID_is_noted(tmp_path):
    """Entra Connect's wizard takes an mS-DS-ConsistencyGuid set on any object as another application's and anchors on
    objectGUID; the shipped rules anchor on it. Where no cloud user holds that anchor yet (a create, a soft match), the
    row says so; a hard match (a migration) or a ConsistencyGuid equal to the objectGUID (an engine wrote it) is not
    noted."""
    other = str(uuid.UUID(int=0xBEEF))
    ad = [
        ad_user(1, mS_DS_ConsistencyGuid=str(uuid.UUID(int=0xC0FFEE))),  # create
        ad_user(2, mS_DS_ConsistencyGuid=other),  # soft match on the UPN
        ad_user(3, mS_DS_ConsistencyGuid=guid(33)),  # hard match: the cloud holds it (a migration)
        ad_user(4, mS_DS_ConsistencyGuid=guid(4)),  # equal to its objectGUID
        ad_user(5),  # none
    ]
    cloud = [entra_user("c2", "user2@corp.example"), entra_user("c3", "moved@corp.example", immutable_id(guid(33)))]
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}", instance="test") as opened:
        import_full(opened, "ad", ad)
        import_full(opened, "entra", cloud)
        assert run_sync(opened, load_sync_rules(), connector="ad", mode="full").result == "success"
        rows = by_user(preflight(opened))
    assert {name: row.note == FOREIGN_CONSISTENCY_GUID for name, row in rows.items()} == {
        "user1": True,
        "user2": True,
        "user3": False,
        "user4": False,
        "user5": False,
    }
    outcomes = (rows["user1"].outcome, rows["user2"].outcome, rows["user3"].outcome)
    assert outcomes == ("create", "soft match", "hard match")
    assert rows["user2"].source_anchor == immutable_id(other)
    text = render_text(list(rows.values()))
    assert "anchor from an mS-DS-ConsistencyGuid unlike its objectGUID: 2" in text
    assert "| create, anchor from mS-DS-ConsistencyGuid (not objectGUID) |" in text
