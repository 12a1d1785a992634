"""The sync manager shows each connector space the instance's connectors configuration no longer names (an AD
connector removed or renamed in the file: neither imported nor synced again, so the cloud objects it feeds are
frozen), first on its runs page and in its API, with the same notice and ways out as every cycle report; a missing or
invalid connectors file is said, with its file, key and line, without hiding the runs."""

from __future__ import annotations

import html
from pathlib import Path

import pytest

from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.plugins.config import ManagerConfig
from tests.support.manager import get, manager_client
from tests.support.world import ad_user, cloud_twin, cs_count, sync_connectors

CORP = [ad_user(1), ad_user(2)]
FABRIKAM = [ad_user(11, "fab11"), ad_user(12, "fab12")]
CLOUD = [cloud_twin(1), cloud_twin(2), cloud_twin(11, "fab11"), cloud_twin(12, "fab12")]


@pytest.fixture(scope="module")
def store_url(tmp_path_factory) -> str:
    """Two forests synced (``ad`` and ``ad_fabrikam``), each user joined to its cloud twin."""
    url = f"sqlite:///{tmp_path_factory.mktemp('spaces') / 'store.sqlite'}"
    with Store.open(url, instance="ui") as store:
        sync_connectors(store, {"ad": CORP, "ad_fabrikam": FABRIKAM, "entra": CLOUD})
    return url


def connectors_file(folder: Path, *ad_names: str, text: str | None = None) -> str:
    """A connectors configuration naming the AD connectors ``ad_names`` (or holding ``text``), and its path."""
    path = folder / "connectors.yaml"
    lines = ["ad:"] + [f"  - name: {name}\n    conn_id: aadsync_{name}" for name in ad_names]
    path.write_text(text if text is not None else "\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def served(store_url: str, path: str):
    return manager_client(lambda: ManagerConfig(store_url=store_url, instance="ui", connectors_file=path))


def test_a_connector_removed_from_the_file_is_shown_first_with_its_ways_out(store_url, tmp_path, headers):
    with served(store_url, connectors_file(tmp_path, "ad")) as client:
        answer = get(client, headers, "/api/connector-spaces").json()
        page = html.unescape(get(client, headers, "/").text)
    assert answer["configured"] == ["ad", "entra"]
    (space,) = answer["unconfigured"]
    assert {key: space[key] for key in ("connector", "objects", "cloud_objects", "entra_connector")} == {
        "connector": "ad_fabrikam",
        "objects": 2,
        "cloud_objects": 2,
        "entra_connector": "entra",
    }
    assert "aadsync store drop-connector --connector ad_fabrikam --confirm-drop 2" in space["message"]
    assert "put the name back in the connectors file" in space["message"]
    # On the runs page, above the charts and the runs, which are still listed.
    notice = page.index('id="connector-spaces"')
    assert notice < page.index('id="runs"') and "Connector spaces no configured connector reads" in page
    assert space["message"] in page and "full-sync" in page
    # Reading it writes nothing.
    with Store.open_existing(store_url, instance="ui") as store:
        assert cs_count(store, "ad_fabrikam") == 2


def test_every_connector_named_shows_no_notice_and_no_file_means_the_one_connector_ad(store_url, tmp_path, headers):
    with served(store_url, connectors_file(tmp_path, "ad", "ad_fabrikam")) as client:
        assert get(client, headers, "/api/connector-spaces").json() == {
            "configured": ["ad", "ad_fabrikam", "entra"],
            "unconfigured": [],
        }
        assert 'id="connector-spaces"' not in get(client, headers, "/").text
    with served(store_url, "") as client:  # the DAGs without a connectors file: ``ad`` and Entra only
        answer = get(client, headers, "/api/connector-spaces").json()
    assert answer["configured"] == ["ad", "entra"]
    assert [space["connector"] for space in answer["unconfigured"]] == ["ad_fabrikam"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "cannot be read"),  # the Variable names a file that is not there
        ("ad:\n  - name: ad\n    conn_id: aadsync_ad\n    partitons: []\n", "line 4: ad[0].partitons: unknown key"),
    ],
)
def test_a_missing_or_invalid_connectors_file_is_said_and_the_runs_still_shown(
    store_url, tmp_path, headers, text, expected
):
    path = connectors_file(tmp_path, "ad", text=text) if text is not None else str(tmp_path / "gone.yaml")
    with served(store_url, path) as client:
        answer = get(client, headers, "/api/connector-spaces", status=503).json()
        page = html.unescape(get(client, headers, "/").text)
    assert answer["detail"].startswith("the connectors configuration cannot be read: ConnectorsConfigError")
    assert path in answer["detail"] and expected in answer["detail"]
    assert expected in page and 'id="connector-spaces"' in page and "full-sync" in page
