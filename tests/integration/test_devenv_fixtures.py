"""The fixture cache: first call builds and caches a seeded DC, the second restores it."""

from __future__ import annotations

from pathlib import Path

import pytest

from aadsync_devkit.world import fixtures

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


def test_offline_seed_gives_the_directory_an_ldap_seed_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Big fixtures add their users offline; the result must read back exactly like an LDAP-seeded directory."""
    monkeypatch.setenv("AADSYNC_FIXTURE_CACHE", str(tmp_path / "cache"))
    params = {"users": 40, "groups": 3, "group_size": 12, "seed": 9}
    flt = "(&(objectCategory=person)(objectClass=user))"
    attributes = ["sAMAccountName", "userPrincipalName", "displayName", "department", "proxyAddresses", "mail",
                  "employeeID", "userAccountControl", "objectSid", "objectGUID"]  # fmt: skip
    seen: dict[bool, dict[str, dict[str, object]]] = {}
    for offline in (False, True):
        monkeypatch.setattr(fixtures, "OFFLINE_SEED_MIN_USERS", 1 if offline else 10**9)
        dc = fixtures.cached_seeded_dc(tmp_path / f"home-{offline}", **params)
        try:
            conn = dc.connect()
            conn.search(f"OU=AADSync,{dc.base_dn}", flt, attributes=attributes, paged_size=500)
            seen[offline] = {entry.entry_dn: entry.entry_attributes_as_dict for entry in conn.entries}
            conn.search(
                f"CN=BigGroup-12,OU=Groups,OU=AADSync,{dc.base_dn}", "(objectClass=group)", attributes=["member"]
            )
            assert len(conn.entries[0].member.values) == 12
            conn.unbind()
        finally:
            dc.stop()
        fixtures.seeded_cache_path(**params).unlink()  # build again the other way
    assert len(seen[True]) == 40 and seen[True].keys() == seen[False].keys()
    for dn, ldap_seeded in seen[False].items():
        offline_seeded = seen[True][dn]
        generated = {"objectSid", "objectGUID"}
        assert {k: v for k, v in offline_seeded.items() if k not in generated} == {
            k: v for k, v in ldap_seeded.items() if k not in generated
        }
        assert offline_seeded["objectSid"] and offline_seeded["objectGUID"]  # generated as for an LDAP add
