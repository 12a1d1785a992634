"""Seed planning is deterministic and produces AD-valid attribute values (no DC needed)."""

from __future__ import annotations

from aadsync_devkit.world.seed import _plan_users


def test_plan_is_deterministic_and_valid() -> None:
    a = _plan_users(500, 42, "OU=Users,DC=x")
    b = _plan_users(500, 42, "OU=Users,DC=x")
    assert a == b
    assert _plan_users(500, 43, "OU=Users,DC=x") != a
    sams = [u.attrs["sAMAccountName"] for u in a]
    assert len(set(sams)) == 500
    assert all(len(s) <= 20 for s in sams)
    upns = {u.attrs["userPrincipalName"] for u in a}
    assert len(upns) == 500
    assert len({u.dn.lower() for u in a}) == 500
    u = a[0]
    assert u.attrs["proxyAddresses"][0] == f"SMTP:{u.attrs['mail']}"
    assert str(u.attrs["userPrincipalName"]).endswith(".1@corp.example.test")
