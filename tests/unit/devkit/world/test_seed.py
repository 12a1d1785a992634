"""Seed planning is deterministic and produces AD-valid attribute values (no DC needed)."""

from __future__ import annotations

from aadsync_devkit.world.seed import AT_LIMITS, PASSWORD_USERS_MAX, _plan_users, enabled_users


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


def test_plan_fills_every_exported_attribute_with_empty_unicode_and_limit_values() -> None:
    users = _plan_users(60, 42, "OU=Users,DC=x")
    exported = {"streetAddress", "l", "st", "postalCode", "co", "c", "preferredLanguage", "mobile", "employeeType",
                "physicalDeliveryOfficeName", "msDS-cloudExtensionAttribute1", "facsimileTelephoneNumber",
                "otherMailbox", "manager", "company", "employeeID", "telephoneNumber", "title"}  # fmt: skip
    assert exported <= set().union(*(u.attrs for u in users))
    assert any("streetAddress" not in u.attrs for u in users)  # some empty
    assert any(not str(u.attrs.get("l", "")).isascii() for u in users)  # some in other scripts
    assert [u for u in users if u.attrs.get("title") == AT_LIMITS["title"]]  # some at Graph's limits
    assert {len(v) for v in AT_LIMITS.values()} == {128, 40, 1024, 16}
    dns = [u.dn for u in users]
    assert all(dns.index(u.attrs["manager"]) < dns.index(u.dn) for u in users if "manager" in u.attrs)
    assert sum("manager" in u.attrs for u in users) > 45


def test_most_users_are_enabled_with_a_password() -> None:
    assert len(enabled_users(60)) == 54 and 10 not in enabled_users(60)
    assert max(enabled_users(PASSWORD_USERS_MAX * 2)) <= PASSWORD_USERS_MAX
