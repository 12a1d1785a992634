"""The fixture cache: first call builds and caches a seeded DC, the second restores it."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_aadsync.devenv import fixtures

pytestmark = pytest.mark.integration


def test_cached_seeded_dc_builds_then_restores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AADSYNC_FIXTURE_CACHE", str(tmp_path / "cache"))
    params = {"users": 30, "groups": 3, "group_size": 10, "seed": 7}
    home = tmp_path / "home"
    dc = fixtures.cached_seeded_dc(home, **params)
    try:
        assert dc.is_running()
        assert fixtures.seeded_cache_path(**params).exists()
        assert fixtures.base_cache_path().exists()
        conn = dc.connect()
        flt = "(&(objectCategory=person)(objectClass=user))"
        assert conn.search(f"OU=AADSync,{dc.base_dn}", flt, attributes=["1.1"], paged_size=500)
        assert len(conn.entries) == 30
        conn.unbind()
    finally:
        dc.stop()

    # Second call: restored from the cache into a different HOME, same directory content.
    dc2 = fixtures.cached_seeded_dc(tmp_path / "home2", **params)
    try:
        conn = dc2.connect()
        assert conn.search(
            f"CN=BigGroup-10,OU=Groups,OU=AADSync,{dc2.base_dn}", "(objectClass=group)", attributes=["member"]
        )
        assert len(conn.entries[0].member.values) == 10
        conn.unbind()
    finally:
        dc2.stop()
    assert not dc2.is_running()
