"""`aadsync-dev up --forests 2`: two Samba AD DCs of two realms, each bound only to its own loopback address, seeded
with the people the forests share, read over LDAPS (ldap3, CA-validated) and through the Airflow connections `env`
prints, and stopped by PID with `down`."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import ssl
from collections.abc import Collection
from pathlib import Path

import ldap3
import pytest
import yaml
from click.testing import CliRunner
from ldap3.protocol.formatters.formatters import format_sid

from aadsync_devkit.cli import main as dev_main
from aadsync_devkit.paths import fixture_cache_dir
from aadsync_devkit.processes import proc_state
from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook

pytestmark = pytest.mark.integration

CORP, FABRIKAM = "127.0.0.1", "127.0.0.2"


def invoke(*args: str) -> str:
    result = CliRunner().invoke(dev_main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def dev_home(tmp_path, monkeypatch):
    monkeypatch.setenv("AADSYNC_FIXTURE_CACHE", str(fixture_cache_dir()))  # the realms' provisioned bases are cached
    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path))
    yield tmp_path
    CliRunner().invoke(dev_main, ["down"])


def listening_addresses(port: int, sessions: Collection[int] | None = None) -> set[str]:
    """IPv4 addresses with a socket listening on *port* (from /proc/net/tcp: state 0A is LISTEN); with *sessions*,
    only the sockets of those process sessions (a DC and its forked workers), so that a benchmark's DC on another
    loopback address of the same machine is not counted."""
    owned = None if sessions is None else socket_inodes(sessions)
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port and (owned is None or inode in owned):
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def socket_inodes(sessions: Collection[int]) -> set[str]:
    """The inodes of the sockets that processes of these sessions hold open."""
    inodes = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            # the session id is field 6 of /proc/PID/stat, counted after the command name's closing parenthesis
            if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[3]) not in sessions:
                continue
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[len("socket:[") : -1])
    return inodes


def ldaps(connection: dict) -> ldap3.Connection:
    """Bind as the connection's login over LDAPS, validating the DC's certificate against the address dialled."""
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=connection["extra"]["ca_cert"])
    server = ldap3.Server(connection["host"], port=connection["port"], use_ssl=True, tls=tls, get_info=ldap3.DSA)
    return ldap3.Connection(server, connection["login"], connection["password"], auto_bind=True)


def users_under(conn: ldap3.Connection, base: str, *attributes: str) -> dict[str, dict]:
    conn.search(base, "(&(objectCategory=person)(objectClass=user))", attributes=["sAMAccountName", *attributes])
    return {text(e, "sAMAccountName"): e for e in conn.response if e["type"] == "searchResEntry"}


def text(entry: dict, name: str) -> str:
    """An attribute's first value as text (the connection reads no schema, so values come raw)."""
    return entry["raw_attributes"][name][0].decode()


def test_two_forests_up_read_and_down(dev_home, monkeypatch):
    output = invoke("up", "--forests", "2")
    assert "fabrikam DC running at ldaps://127.0.0.2:636" in output, output
    assert "2 linked mailboxes" in output, output

    # Each DC listens only on its own address, on the standard ports.
    status = json.loads(invoke("status"))
    corp_pid, fabrikam_pid = status["samba"]["pid"], status["samba_fabrikam"]["pid"]
    for port in (389, 636):
        assert listening_addresses(port, [corp_pid]) == {CORP}, port
        assert listening_addresses(port, [fabrikam_pid]) == {FABRIKAM}, port
    assert (
        status["samba_fabrikam"]["running"] and status["samba_fabrikam"]["base_dn"] == "DC=fabrikam,DC=example,DC=test"
    )
    assert corp_pid != fabrikam_pid

    exports = {}
    for line in invoke("env").strip().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        exports[name] = shlex.split(value)[0]
        monkeypatch.setenv(name, exports[name])
    corp_conn = json.loads(exports["AIRFLOW_CONN_AADSYNC_AD"])
    fabrikam_conn = json.loads(exports["AIRFLOW_CONN_AADSYNC_AD_FABRIKAM"])
    assert (corp_conn["host"], fabrikam_conn["host"]) == (CORP, FABRIKAM)
    config = yaml.safe_load(Path(exports["AIRFLOW_VAR_AADSYNC_CONNECTORS_FILE"]).read_text())
    assert [(c["name"], c["conn_id"]) for c in config["ad"]] == [
        ("ad", "aadsync_ad"),
        ("ad_fabrikam", "aadsync_ad_fabrikam"),
    ]
    assert config["ad"][1]["partitions"][0]["dn"] == "DC=fabrikam,DC=example,DC=test"
    assert config["entra"]["conn_id"] == "aadsync_entra"

    # Each address answers for its own realm.
    corp, fabrikam = ldaps(corp_conn), ldaps(fabrikam_conn)
    assert corp.server.info.other["defaultNamingContext"] == ["DC=corp,DC=example,DC=test"]
    assert fabrikam.server.info.other["defaultNamingContext"] == ["DC=fabrikam,DC=example,DC=test"]

    accounts = users_under(corp, "OU=Accounts,OU=AADSync,DC=corp,DC=example,DC=test", "mail", "objectSid")
    resources = users_under(
        fabrikam,
        "OU=Resources,OU=AADSync,DC=fabrikam,DC=example,DC=test",
        "mail",
        "msExchRecipientTypeDetails",
        "msExchMasterAccountSid",
        "userAccountControl",
    )
    assert sorted(accounts) == ["owner1", "owner2", "shared1", "shared2", "shared3"]
    assert len(resources) == 7
    # Overlap by mail: the same three people in both forests, as different objects.
    for n in (1, 2, 3):
        mail = f"shared{n}@example.test"
        assert text(accounts[f"shared{n}"], "mail") == text(resources[f"fab.shared{n}"], "mail") == mail
    # Linked mailboxes: disabled, recipient type 2, master account SID = the owner's objectSid in the other forest.
    for n in (1, 2):
        mailbox = resources[f"fab.mailbox{n}"]
        assert int(text(mailbox, "msExchRecipientTypeDetails")) == 2
        assert int(text(mailbox, "userAccountControl")) & 2
        master = format_sid(mailbox["raw_attributes"]["msExchMasterAccountSid"][0])
        assert master == format_sid(accounts[f"owner{n}"]["raw_attributes"]["objectSid"][0])
    # A foreign security principal: the account forest's shared1 is a member of a FABRIKAM group.
    shared1_sid = format_sid(accounts["shared1"]["raw_attributes"]["objectSid"][0])
    fabrikam.search(
        "CN=Fabrikam Staff,OU=Resources,OU=AADSync,DC=fabrikam,DC=example,DC=test",
        "(objectClass=group)",
        ldap3.BASE,
        attributes=["member"],
    )
    members = {value.decode() for value in fabrikam.response[0]["raw_attributes"]["member"]}
    assert f"CN={shared1_sid},CN=ForeignSecurityPrincipals,DC=fabrikam,DC=example,DC=test" in members
    corp.unbind()
    fabrikam.unbind()

    # The product's hook reads the second forest through the connection `env` printed.
    ok, message = ActiveDirectoryHook("aadsync_ad_fabrikam").test_connection()
    assert ok, message

    # Up again: both already running, the seed is idempotent.
    again = invoke("up", "--forests", "2")
    assert "fabrikam DC already running" in again and "local DC already running" in again

    down = invoke("down")
    assert "local DC stopped" in down and "fabrikam DC stopped" in down
    for pid in (corp_pid, fabrikam_pid):
        assert proc_state(pid) in (None, "Z")
    assert listening_addresses(636) & {CORP, FABRIKAM, "0.0.0.0"} == set()
    status = json.loads(invoke("status"))
    assert status["samba"]["running"] is False and status["samba_fabrikam"]["running"] is False
