"""Shared fixtures of the integration and reliability suites: a real Samba AD DC (from the fixture cache), PostgreSQL
and the Graph emulator, and hooks pointed at them (tests/integration and tests/reliability load them in conftest).

Only one DC can listen on 127.0.0.1:389/636, so each module starts its own and stops it when the module ends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import shutil
import ssl
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.sdk import Connection
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from aadsync_devkit.graph_emulator.server import EmulatorServer
from aadsync_devkit.world.fixtures import cached_seeded_dc
from aadsync_devkit.world.postgres import LocalPostgres, PostgresNotInstalledError
from aadsync_devkit.world.samba import SambaDC
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook
from airflow_provider_aadsync.hooks.active_directory_settings import ADConnectionSettings
from airflow_provider_aadsync.hooks.entra import EntraHook
from airflow_provider_aadsync.hooks.entra_settings import EntraConnectionSettings


def settings_for(dc: SambaDC, **overrides) -> ADConnectionSettings:
    """The DC's connection fields with some replaced (port and password are fields, the rest live in extra)."""
    info = dc.connection_info()
    fields = {name: overrides.pop(name) for name in ("port", "password") if name in overrides}
    return ADConnectionSettings.from_fields(
        name="of the test DC", **{**info, **fields, "extra": {**info["extra"], **overrides}}
    )


def hook_for(dc: SambaDC, **overrides) -> ActiveDirectoryHook:
    return ActiveDirectoryHook(settings=settings_for(dc, **overrides))


@pytest.fixture(scope="module")
def start_dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., SambaDC]]:
    """Start a DC seeded with the given parameters (cached); stopped when the module ends."""
    started: list[SambaDC] = []

    def start(*, users: int, groups: int, group_size: int = 0) -> SambaDC:
        home: Path = tmp_path_factory.mktemp("samba") / "home"
        dc = cached_seeded_dc(home, users=users, groups=groups, group_size=group_size)
        started.append(dc)
        return dc

    yield start
    for dc in started:
        dc.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}", instance="test") as opened:
        yield opened


# ----------------------------------------------------------------------------------------------- PostgreSQL
# Imported here rather than at the top so this section stays an append-only addition to the file.


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """One throw-away PostgreSQL server for the whole session, stopped at the end.

    Its home is a ``tempfile.mkdtemp()`` directory, not ``tmp_path_factory``: as root the server runs as the
    ``postgres`` user, which cannot enter pytest's root-private temp tree. Skips if PostgreSQL is not installed.
    """
    home = Path(tempfile.mkdtemp(prefix="aadsync-pg-"))
    server = LocalPostgres(home)
    try:
        server.start()
    except PostgresNotInstalledError:  # a failure, not a skip: run.sh installs PostgreSQL
        shutil.rmtree(home, ignore_errors=True)
        raise
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def pg_store(postgres_server: LocalPostgres) -> Iterator[Store]:
    """A store in a fresh PostgreSQL database of its own, so tests never see each other's rows or locks."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with Store.open(postgres_server.create_database(name), instance="test") as opened:
        yield opened
    postgres_server.drop_database(name)


# ------------------------------------------------------------------------------------------- Graph emulator


GRAPH_CLIENT_ID = "0c1e7a7e-0000-4000-8000-00000000a11d"
GRAPH_SECRET = "integration-test-secret"


def trust(server: EmulatorServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca_cert))


@pytest.fixture(scope="module")
def graph_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """The Graph emulator over TLS on a free loopback port, for one test module."""
    emulator = EmulatorServer(tmp_path_factory.mktemp("emulator")).start()
    yield emulator
    emulator.stop()


def post_tenant(graph_server: EmulatorServer, name: str, domains: Sequence[str] = (), **settings: Any) -> dict:
    """A new emulator tenant with the test app registration and these verified domains (``settings``: more of the
    admin API's tenant settings, ``pimLicensed`` say)."""
    body: dict[str, Any] = {
        "name": name,
        "apps": [{"clientId": GRAPH_CLIENT_ID, "clientSecret": GRAPH_SECRET}],
        **settings,
    }
    if domains:
        body["verifiedDomains"] = list(domains)
    response = httpx.post(f"{graph_server.base_url}/_emulator/tenants", json=body, verify=trust(graph_server))
    assert response.status_code == 201, response.text
    return response.json()


def drop_tenant(graph_server: EmulatorServer, tenant: Mapping[str, Any]) -> None:
    httpx.delete(f"{graph_server.base_url}/_emulator/tenants/{tenant['id']}", verify=trust(graph_server))


@pytest.fixture
def graph_tenant(graph_server: EmulatorServer) -> Iterator[dict]:
    """A fresh tenant with one app registration; removed after the test."""
    tenant = post_tenant(graph_server, "fabrikam")
    yield tenant
    drop_tenant(graph_server, tenant)


@contextlib.contextmanager
def made_tenants(graph_server: EmulatorServer, prefix: str = "t") -> Iterator[Callable[[str], dict]]:
    """Make tenants (with the test app) that have verified the given UPN domain; removed when the block ends."""
    made: list[dict] = []

    def make(domain: str, **settings: Any) -> dict:
        made.append(post_tenant(graph_server, f"{prefix}{len(made)}{domain.split('.')[0]}", [domain], **settings))
        return made[-1]

    try:
        yield make
    finally:
        for tenant in made:
            drop_tenant(graph_server, tenant)


@pytest.fixture
def tenant_verifying(graph_server: EmulatorServer) -> Iterator[Callable[[str], dict]]:
    """Make tenants (with the test app) that have verified the given UPN domain; removed after the test."""
    with made_tenants(graph_server) as make:
        yield make


def entra_connection(server: EmulatorServer, tenant: dict, secret: str = GRAPH_SECRET) -> Connection:
    return Connection(
        conn_id="aadsync_entra",
        conn_type="aadsync_entra",
        login=GRAPH_CLIENT_ID,
        password=secret,
        extra=json.dumps({"tenant_id": tenant["id"], "authority_host": server.base_url,
                          "graph_url": server.base_url, "ca_bundle": str(server.ca_cert)}),
    )  # fmt: skip


def entra_hook_for(server: EmulatorServer, tenant: dict, secret: str = GRAPH_SECRET) -> EntraHook:
    return EntraHook(settings=EntraConnectionSettings.from_connection(entra_connection(server, tenant, secret)))


def self_signed_certificate(common_name: str = "aadsync") -> tuple[str, x509.Certificate]:
    """An app credential for tests: (PKCS#8 private key PEM, its self-signed certificate valid for 30 days)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256())
    )  # fmt: skip
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private.decode(), cert


@pytest.fixture
def unused_tcp_port() -> int:
    from aadsync_devkit.processes import free_port

    return free_port()


@pytest.fixture
def emulator_settings_for() -> Iterator[Callable[..., None]]:
    """Change Graph emulator settings for one test; the defaults come back afterwards (servers live per module)."""
    changed: list[tuple[EmulatorServer, list[str]]] = []

    def apply(server: EmulatorServer, **settings) -> None:
        changed.append((server, list(settings)))
        response = emulator_admin(server, "PUT", "/settings", json=settings)
        assert response.status_code == 200, response.text

    yield apply
    for server, names in changed:
        emulator_admin(server, "PUT", "/settings", json=dict.fromkeys(names))


def emulator_admin(server: EmulatorServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """An emulator admin call on a connection of its own (never counted as one of the run's requests); its answer,
    asserted a success."""
    with httpx.Client(verify=trust(server)) as client:
        response = client.request(method, f"{server.base_url}/_emulator{path}", **kwargs)
    assert response.status_code < 300, response.text
    return response


def graph_status_counts(server: EmulatorServer) -> dict[str, int]:
    """How many Graph answers the emulator gave per HTTP status since its counters were last reset."""
    return emulator_admin(server, "GET", "/counters").json()["status"]


@contextlib.contextmanager
def after_graph_requests(count: int, action: Callable[[], None], *, every: bool = False) -> Iterator[None]:
    """Run ``action`` right after this process's ``count``-th Graph request got its answer (with ``every``, after
    each ``count``-th: a token revoked every few requests is a run whose tokens keep expiring under it)."""
    original = httpx.Client.send
    seen = [0]

    @functools.wraps(original)
    def send(self, request, **kwargs):
        response = original(self, request, **kwargs)
        if "/v1.0/" in request.url.path:
            seen[0] += 1
            if seen[0] == count or (every and seen[0] % count == 0):
                action()
        return response

    httpx.Client.send = send
    try:
        yield
    finally:
        httpx.Client.send = original
