"""A lost store rebuilt while two AD users hold the same ms-DS-ConsistencyGuid (a copied user). The cloud
user's hard match is ambiguous (a per-object error), but the creates sync planned for both AD users stayed pending:
the next export would create a second cloud account for the user that has one. A refused soft match holds them
(state refused); an ambiguous hard match must as well."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.world import ad_user, entra_user, exports, guid, immutable_id, import_full


@pytest.mark.parametrize("order", [("ad", "entra"), ("entra", "ad", "entra")])
def test_a_duplicated_source_anchor_stages_no_create_on_a_rebuild(store, order):
    rules = load_sync_rules()
    copied = {"mS-DS-ConsistencyGuid": guid(1)}
    import_full(store, "ad", [ad_user(1, **copied), ad_user(2, **copied)])
    anchor = immutable_id(guid(1))
    twin = entra_user("cloud-1", "user1@corp.example", anchor, accountEnabled=True, displayName="User 1",
                      givenName="Given1", surname="Surname1", mailNickname="user1",
                      extension_aadsyncSourceAnchor=anchor)  # fmt: skip
    import_full(store, "entra", [twin])
    for connector in order:
        run_sync(store, rules, connector=connector, mode="full")
    pending = {a: e for a, e in exports(store).items() if e["state"] == "pending"}
    assert pending == {}, f"creates staged beside the existing cloud account: {pending}"
