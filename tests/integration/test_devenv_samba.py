"""End-to-end checks of the local Samba AD DC: provision, LDAPS, strong auth, seeding, snapshots, stop.

Only one DC can listen on 127.0.0.1:389/636, so the module uses one DC at a time and every DC started here
is stopped by a finalizer.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import ldap3
import pytest

from aadsync_devkit.processes import group_members, port_in_use
from aadsync_devkit.world import samba as samba_mod
from aadsync_devkit.world.samba import SambaDC, SambaError
from aadsync_devkit.world.seed import seed_directory

pytestmark = pytest.mark.integration

USERS, GROUPS, BIG = 50, 5, 20
PERSON = "(&(objectCategory=person)(objectClass=user))"


def _ports_busy() -> bool:
    return port_in_use(samba_mod.LDAP_PORT) or port_in_use(samba_mod.LDAPS_PORT)


def _count(conn: ldap3.Connection, base: str, flt: str) -> int:
    entries = conn.extend.standard.paged_search(base, flt, attributes=["1.1"], paged_size=500, generator=True)
    return sum(1 for e in entries if e.get("type") == "searchResEntry")


@pytest.fixture(scope="module")
def dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaDC]:
    home = tmp_path_factory.mktemp("samba") / "home"
    dc = SambaDC(home)
    try:
        dc.provision()
        dc.start()
        yield dc
    finally:
        dc.stop()


def test_provision_is_idempotent(dc: SambaDC) -> None:
    assert dc.provision() == 0.0
    assert dc.is_running()
    conf = dc.conf_path.read_text()
    assert "interfaces = 127.0.0.1" in conf and "bind interfaces only = yes" in conf
    assert "server services = ldap" in conf


def test_ldaps_bind_with_ca_validation(dc: SambaDC) -> None:
    info = dc.connection_info()
    assert info["host"] == "127.0.0.1" and info["port"] == 636
    assert info["login"] == "CN=Administrator,CN=Users,DC=corp,DC=example,DC=test"
    assert info["extra"]["base_dn"] == "DC=corp,DC=example,DC=test" and info["extra"]["tls"] == "ldaps"
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=info["extra"]["ca_cert"])
    for host in ("127.0.0.1", "localhost"):
        server = ldap3.Server(host, port=info["port"], use_ssl=True, tls=tls, get_info=ldap3.NONE)
        conn = ldap3.Connection(server, info["login"], info["password"])
        assert conn.bind(), conn.result
        assert conn.search(info["extra"]["base_dn"], "(objectClass=domain)", ldap3.BASE)
        conn.unbind()


def test_ldaps_without_our_ca_is_rejected(dc: SambaDC) -> None:
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED)  # system trust store only
    server = ldap3.Server("127.0.0.1", port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE)
    conn = ldap3.Connection(server, dc.admin_dn, dc.admin_password)
    with pytest.raises(ldap3.core.exceptions.LDAPSocketOpenError):
        conn.bind()


def test_plain_ldap_simple_bind_is_refused(dc: SambaDC) -> None:
    server = ldap3.Server("127.0.0.1", port=389, get_info=ldap3.NONE)
    conn = ldap3.Connection(server, dc.admin_dn, dc.admin_password)
    assert not conn.bind()
    assert conn.result["description"] == "strongerAuthRequired"


def test_second_dc_reports_port_in_use(dc: SambaDC, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = SambaDC(tmp_path / "other")
    monkeypatch.setattr(SambaDC, "is_provisioned", lambda self: True)
    with pytest.raises(SambaError, match=r"port 389 .*already in use.*aadsync-dev down"):
        other.start()


def test_seed_counts_and_idempotency(dc: SambaDC) -> None:
    conn = dc.connect()
    report = seed_directory(conn, dc.base_dn, users=USERS, groups=GROUPS, group_size=BIG)
    assert (report.users, report.groups) == (USERS, GROUPS)
    assert report.big_group_dn == "CN=BigGroup-20,OU=Groups,OU=AADSync,DC=corp,DC=example,DC=test"

    assert _count(conn, report.root_dn, PERSON) == USERS
    assert _count(conn, report.root_dn, "(objectClass=group)") == GROUPS + 1
    assert conn.search(report.big_group_dn, "(objectClass=group)", ldap3.BASE, attributes=["member"])
    assert len(conn.entries[0].member.values) == BIG

    # Server-generated identity attributes are there, and nesting exists.
    conn.search(
        report.user_dns[0],
        "(objectClass=*)",
        ldap3.BASE,
        attributes=["objectGUID", "objectSid", "uSNChanged", "proxyAddresses", "sAMAccountName"],
    )
    e = conn.entries[0]
    assert e.objectGUID.value and e.objectSid.value and int(e.uSNChanged.value) > 0
    assert len(e.proxyAddresses.values) == 2
    groups_with_group_members = [
        g
        for g in report.group_dns
        if conn.search(g, "(objectClass=*)", ldap3.BASE, attributes=["member"])
        and any("OU=Groups" in m for m in conn.entries[0].member.values)
    ]
    assert groups_with_group_members

    again = seed_directory(conn, dc.base_dn, users=USERS, groups=GROUPS, group_size=BIG)
    assert again.reused and again.users == USERS and again.groups == GROUPS
    assert again.user_dns == report.user_dns and again.group_dns == report.group_dns
    with pytest.raises(ValueError, match="different parameters"):
        seed_directory(conn, dc.base_dn, users=USERS + 1, groups=GROUPS, group_size=BIG)
    conn.unbind()


def test_snapshot_restore_round_trip_and_stop(dc: SambaDC, tmp_path: Path) -> None:
    dc.stop()
    assert not dc.is_running() and not _ports_busy()
    with pytest.raises(SambaError, match="no provisioned DC"):
        SambaDC(tmp_path / "empty").start()
    tar = tmp_path / "snap.tar.zst"
    dc.snapshot(tar)
    assert tar.stat().st_size > 0

    copy = SambaDC(tmp_path / "elsewhere" / "home")  # a different HOME: smb.conf is regenerated
    copy.restore(tar)
    try:
        copy.start()
        status = copy.status()
        assert status["running"] and status["home"] == str(copy.home)
        conn = copy.connect()
        assert _count(conn, f"OU=AADSync,{copy.base_dn}", PERSON) == USERS
        conn.unbind()
        pid = status["pid"]
    finally:
        copy.stop()
    assert not copy.is_running()
    assert not group_members(pid)
    assert not copy.pid_path.exists()
    assert not _ports_busy()
    copy.stop()  # no-op when stopped
