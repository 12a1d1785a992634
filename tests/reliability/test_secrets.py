"""Secrets never leak: the real flow runs with KNOWN secret values, and everything it leaves behind is scanned.

The secrets: the AD bind password (the DC's), an Entra client secret, an app certificate's private key (PEM, in the
connection's ``private_key`` extra) and the password of a PostgreSQL role that owns the store (the store comes from
an Airflow connection, ``--store-conn-id`` / Variable ``aadsync_store_conn_id``). The flow: the CLI imports AD from
Samba and Entra ID from the emulator, syncs both, exports to the emulator and prints the report; then Airflow runs
``aadsync_full`` (every task: imports, syncs, exports, report) with the same connections. Failures are provoked: a
wrong client secret, a wrong AD and store password, a key pasted where a file path belongs, the old ``certificate``
extra, a bad extra.

Scanned, for each secret in its plain, base64 (standard and URL-safe) and URL-encoded forms, and for the key also
each line of its body and the unwrapped body: the Python logs (caplog), the CLI's stdout and stderr, exception
messages, the Airflow run's output, every file of the Airflow home (task logs, report files) and every table of its
metadata DB (XCom values, rendered template fields), and every table of the store. Expected hits: zero.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes, serialization

from aadsync_devkit.processes import HOST
from aadsync_devkit.world.airflow_runs import LocalAirflow, task_states
from aadsync_devkit.world.samba import SambaDC
from aadsync_devkit.world.seed import MAIL_DOMAIN
from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.hooks.entra_settings import EntraConnectionSettings, EntraError
from tests.support.servers import GRAPH_CLIENT_ID, self_signed_certificate, trust

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RUN = uuid.uuid4().hex[:10]
ENTRA_SECRET = f"Entra-Cl1ent~S3cret/{RUN}+x="
STORE_PASSWORD = f"St0re Pa$$:{RUN}/@?&"
WRONG_ENTRA_SECRET = f"Wr0ng-Entra~{RUN}"
WRONG_AD_PASSWORD = f"Wr0ng-AD-Passw0rd-{RUN}"
WRONG_STORE_PASSWORD = f"Wr0ng-Store-{RUN}"
PRIVATE_KEY, CERTIFICATE = self_signed_certificate(f"aadsync-secrets-{RUN}")
THUMBPRINT = CERTIFICATE.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - Entra's thumbprint is SHA-1


def forms(secret: str) -> set[str]:
    """The forms a secret could leak in: as is, base64, URL-encoded; a PEM key also by line and unwrapped."""
    raw = secret.encode()
    found = {
        secret,
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode(),
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        json.dumps(secret)[1:-1],
    }
    body = [line.strip() for line in secret.splitlines() if line.strip() and not line.startswith("-----")]
    if len(body) > 1:
        found.add("".join(body))
        found.update(line for line in body if len(line) >= 16)
    return {form for form in found if len(form) >= 8}


class Scanner:
    """Collects what a run left behind, by where it came from, and finds any form of any known secret in it."""

    def __init__(self, secrets: dict[str, str]):
        self.forms = {name: forms(value) for name, value in secrets.items()}
        self.captured: list[tuple[str, str]] = []

    def add(self, where: str, text: object) -> None:
        self.captured.append((where, text if isinstance(text, str) else repr(text)))

    def add_files(self, root: Path, label: str) -> int:
        count = 0
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix not in (".db", ".sqlite", ".pyc"):
                self.add(f"{label}/{path.relative_to(root)}", path.read_bytes().decode("utf-8", "replace"))
                count += 1
        return count

    def add_sqlite(self, path: Path, label: str) -> dict[str, int]:
        """Every row of every table of a SQLite database (the Airflow metadata DB)."""
        rows: dict[str, int] = {}
        with sqlite3.connect(path) as connection:
            tables = [name for (name,) in connection.execute("select name from sqlite_master where type='table'")]
            for table in tables:
                found = connection.execute(f'select * from "{table}"').fetchall()  # noqa: S608 - names from the DB
                rows[table] = len(found)
                for row in found:
                    self.add(f"{label}:{table}", " | ".join(_text(value) for value in row))
        return rows

    def add_store(self, url: str) -> dict[str, int]:
        """Every row of every table of the store (PostgreSQL)."""
        engine = sa.create_engine(url)
        rows: dict[str, int] = {}
        try:
            meta = sa.MetaData()
            meta.reflect(engine)
            with engine.connect() as connection:
                for table in meta.sorted_tables:
                    found = connection.execute(sa.select(table)).fetchall()
                    rows[table.name] = len(found)
                    for row in found:
                        self.add(f"store:{table.name}", " | ".join(_text(value) for value in row))
        finally:
            engine.dispose()
        return rows

    def leaks(self) -> list[str]:
        return [
            f"{name} ({form[:12]}...) in {where}"
            for where, text in self.captured
            for name, secret_forms in self.forms.items()
            for form in secret_forms
            if form in text
        ]


def _text(value: object) -> str:
    if isinstance(value, bytes | memoryview):
        data = bytes(value)
        return data.decode("utf-8", "replace") + " " + base64.b64encode(data).decode()
    return str(value)


# ------------------------------------------------------------------------------------------------- the world
@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    return start_dc(users=200, groups=10, group_size=150)


@pytest.fixture(scope="module")
def tenant(graph_server):
    """A tenant whose app signs in with the known client secret or the known certificate."""
    created = httpx.post(
        f"{graph_server.base_url}/_emulator/tenants",
        json={"name": f"secrets{RUN}", "verifiedDomains": [MAIL_DOMAIN],
              "apps": [{"clientId": GRAPH_CLIENT_ID, "clientSecret": ENTRA_SECRET}]},
        verify=trust(graph_server),
    )  # fmt: skip
    assert created.status_code == 201, created.text
    tenant = created.json()
    registered = httpx.post(
        f"{graph_server.base_url}/_emulator/tenants/{tenant['id']}/apps/{GRAPH_CLIENT_ID}/certificates",
        json={"certificate": CERTIFICATE.public_bytes(serialization.Encoding.PEM).decode()},
        verify=trust(graph_server),
    )
    assert registered.status_code == 201, registered.text
    yield tenant
    httpx.delete(f"{graph_server.base_url}/_emulator/tenants/{tenant['id']}", verify=trust(graph_server))


@pytest.fixture(scope="module")
def store_url(postgres_server) -> str:
    """A store database owned by a role that must give its (known) password."""
    role, database = f"aadsync_{RUN}", f"store_{RUN}"
    url = postgres_server.create_password_role(role, STORE_PASSWORD, database)
    yield url
    postgres_server.drop_database(database)


def entra_conn(graph_server, tenant, **credential) -> dict:
    extra = {
        "tenant_id": tenant["id"],
        "authority_host": graph_server.base_url,
        "graph_url": graph_server.base_url,
        "ca_bundle": str(graph_server.ca_cert),
    }
    password = credential.pop("password", None)
    return {"conn_type": "aadsync_entra", "login": GRAPH_CLIENT_ID, "password": password, "extra": extra | credential}


@pytest.fixture(scope="module")
def connections(dc, graph_server, tenant, store_url, postgres_server) -> dict[str, dict]:
    store = sa.engine.make_url(store_url)
    return {
        "aadsync_ad": {"conn_type": "aadsync_ad", **dc.connection_info()},
        "aadsync_entra": entra_conn(graph_server, tenant, private_key=PRIVATE_KEY, thumbprint=THUMBPRINT),
        "sec_entra_secret": entra_conn(graph_server, tenant, password=ENTRA_SECRET),
        "aadsync_store": {
            "conn_type": "postgres", "host": HOST, "port": postgres_server.port, "login": store.username,
            "password": STORE_PASSWORD, "schema": store.database,
        },
    }  # fmt: skip


@pytest.fixture
def scanner(dc) -> Scanner:
    return Scanner(
        {
            "AD bind password": dc.admin_password,
            "Entra client secret": ENTRA_SECRET,
            "certificate private key": PRIVATE_KEY,
            "store password": STORE_PASSWORD,
            "wrong Entra secret": WRONG_ENTRA_SECRET,
            "wrong AD password": WRONG_AD_PASSWORD,
            "wrong store password": WRONG_STORE_PASSWORD,
        }
    )


def use_connections(monkeypatch, connections: dict[str, dict]) -> None:
    for conn_id, conn in connections.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def cli(scanner: Scanner, args: Iterable[str], *, expect: int = 0) -> str:
    result = CliRunner().invoke(main, list(args))
    scanner.add(f"aadsync {' '.join(args)}: stdout", result.stdout)
    scanner.add(f"aadsync {' '.join(args)}: stderr", result.stderr)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        scanner.add(f"aadsync {' '.join(args)}: exception", f"{result.exception!r} {result.exception}")
    assert result.exit_code == expect, (list(args), result.exit_code, result.stdout[-2000:], result.stderr[-2000:])
    return result.stdout + result.stderr


# --------------------------------------------------------------------------------------------------- the tests
def test_the_scanner_finds_every_form():
    """The scan itself is checked: a secret in any of its forms, or one line of the key, is a hit."""
    probe = Scanner({"key": PRIVATE_KEY, "secret": ENTRA_SECRET})
    line = PRIVATE_KEY.splitlines()[5]
    planted = [
        ENTRA_SECRET,
        base64.b64encode(ENTRA_SECRET.encode()).decode(),
        quote(ENTRA_SECRET, safe=""),
        f"OSError: [Errno 2] No such file: '{line}'",
        json.dumps({"private_key": PRIVATE_KEY}),
    ]
    for text in planted:
        probe.captured = [("probe", f"... {text} ...")]
        assert probe.leaks(), text
    probe.captured = [("probe", "Store: `postgresql+psycopg2://aadsync:***@127.0.0.1/store`")]
    assert probe.leaks() == []


def test_the_whole_flow_leaks_no_secret(
    dc, graph_server, connections, store_url, scanner, monkeypatch, caplog, tmp_path
):
    """CLI: import AD (bind password) and Entra ID (client secret) into the store (its password in a connection),
    sync both, export to Entra ID with the certificate's private key, print the report; then Airflow runs
    ``aadsync_full`` with the same connections. Nothing anywhere holds any form of any of the secrets."""
    use_connections(monkeypatch, connections)
    store = ["--store-conn-id", "aadsync_store"]
    with caplog.at_level("DEBUG"):
        cli(scanner, ["import-ad", "--mode", "full", "--conn-id", "aadsync_ad", *store])
        cli(scanner, ["import-entra", "--mode", "full", "--conn-id", "sec_entra_secret", *store])
        cli(scanner, ["sync", "--connector", "ad", "--mode", "full", *store])
        cli(scanner, ["sync", "--connector", "entra", "--mode", "full", *store])
        exported = cli(scanner, ["export-entra", "--conn-id", "aadsync_entra", *store])
        report = cli(scanner, ["report", "--last", "6", *store])
    assert "| success |" in report or "success" in report, report
    assert "postgresql+psycopg2://" in report and "***" in report  # the store's URL, its password hidden
    created = httpx.get(
        f"{graph_server.base_url}/_emulator/counters", verify=trust(graph_server)
    ).json()  # the export really wrote with the certificate credential
    assert any(key.endswith("/$batch") for key in created["requests"]), (created, exported[-1500:])

    home = tmp_path
    airflow = LocalAirflow(
        home / "airflow",
        dags_folder=REPO / "dags",
        connections=connections,
        variables={
            "aadsync_store_conn_id": "aadsync_store",
            "aadsync_instance": "default",
            "aadsync_retries": "0",
        },
        env={"AADSYNC_HOME": str(home / "aadsync"), "PYTHONPATH": str(REPO)},
    )
    airflow.migrate()
    run = airflow.dags_test("aadsync_full")
    scanner.add("airflow dags test aadsync_full", run.output)
    states = task_states(airflow.home, "aadsync_full", run.run_id or "")
    assert run.succeeded, (states, run.tail())
    assert states["export_entra"][0] == "success" and states["report"][0] == "success"

    # The discouraged form: the store URL, password and all, in the Variable aadsync_store_url. A preview run
    # renders it (and opens the store with it): the rendered field Airflow keeps has the password masked.
    engine = sa.create_engine(store_url)
    with engine.connect() as connection:
        dn = connection.execute(
            sa.text("select dn from cs_object where connector = 'ad' and object_type = 'user' limit 1")
        ).scalar_one()
    engine.dispose()
    preview = airflow.dags_test(
        "aadsync_full",
        {"preview_dn": dn},
        AIRFLOW_VAR_AADSYNC_STORE_CONN_ID="",
        AIRFLOW_VAR_AADSYNC_STORE_URL=store_url,
    )
    scanner.add("airflow dags test aadsync_full (preview, store_url)", preview.output)
    assert preview.succeeded, preview.tail()
    assert "store_url carries a password: put the store in an Airflow connection" in preview.output

    scanner.add("python logs (caplog)", caplog.text)
    files = scanner.add_files(airflow.home, "AIRFLOW_HOME")
    files += scanner.add_files(home / "aadsync", "AADSYNC_HOME") if (home / "aadsync").exists() else 0
    metadata = scanner.add_sqlite(airflow.home / "airflow.db", "airflow metadata DB")
    tables = scanner.add_store(store_url)
    # what was scanned is really there: XCom summaries, rendered fields, task logs, the report file, store rows
    assert metadata["xcom"] >= 6 and metadata["rendered_task_instance_fields"] >= 6, metadata
    rendered = [text for where, text in scanner.captured if where.endswith(":rendered_task_instance_fields")]
    assert any("aadsync_store" in text and "store_conn_id" in text for text in rendered), rendered[:2]
    masked = sa.engine.make_url(store_url).set(password="***").render_as_string(hide_password=False)
    assert any(masked.replace("%2A%2A%2A", "***") in text for text in rendered), rendered
    assert any(path.suffix == ".md" for path in airflow.home.rglob("*")), "no report file"
    # `airflow dags test` prints the task logs (scanned in its output); the home holds the config and the report
    assert files >= 2 and tables["cs_object"] > 200 and tables["run"] >= 10 and "run_error" in tables, tables
    assert scanner.leaks() == []


def test_provoked_failures_leak_no_secret(connections, store_url, scanner, monkeypatch, caplog, tmp_path):
    """Wrong secrets, a key pasted where a file path belongs, the old ``certificate`` extra, a bad extra: each is a
    one-line error (exit 1) that names what is wrong, and no form of any secret, right or wrong, is anywhere."""
    entra = connections["sec_entra_secret"]
    broken = {
        "wrong_secret": {**entra, "password": WRONG_ENTRA_SECRET},
        "key_as_path": {**entra, "password": None,
                        "extra": {**entra["extra"], "certificate_path": PRIVATE_KEY, "thumbprint": THUMBPRINT}},
        "old_certificate": {**entra, "password": None,
                            "extra": {**entra["extra"], "certificate": PRIVATE_KEY, "thumbprint": THUMBPRINT}},
        "key_without_header": {**entra, "password": None, "extra": {
            **entra["extra"], "private_key": "".join(PRIVATE_KEY.splitlines()[1:-1]), "thumbprint": THUMBPRINT}},
        "bad_extra": {**entra, "extra": {**entra["extra"], "cloud": "mars", "timeout": "soon"}},
        "wrong_ad": {**connections["aadsync_ad"], "password": WRONG_AD_PASSWORD},
        "wrong_store": {**connections["aadsync_store"], "password": WRONG_STORE_PASSWORD},
    }  # fmt: skip
    use_connections(monkeypatch, {**connections, **broken})
    store = ["--store-conn-id", "aadsync_store"]
    expected = {
        "wrong_secret": "no token for client",
        "key_as_path": "the certificate_path file could not be read: E",  # ENOENT or ENAMETOOLONG
        "old_certificate": "'certificate' extra is no longer read",
        "key_without_header": "private_key must be the PEM text",
        "bad_extra": "connection 'bad_extra' is not usable",
    }
    with caplog.at_level("DEBUG"):
        for conn_id, message in expected.items():
            for verbose in ([], ["-v"]):
                output = cli(scanner, [*verbose, "import-entra", "--mode", "full", "--conn-id", conn_id, *store],
                             expect=1)  # fmt: skip
                assert message in output, (conn_id, output[-1500:])
        cli(scanner, ["import-ad", "--mode", "full", "--conn-id", "wrong_ad", *store], expect=1)
        output = cli(scanner, ["report", "--store-conn-id", "wrong_store"], expect=1)
        assert "password authentication failed" in output, output[-1500:]
        output = cli(scanner, ["-v", "report", "--store-conn-id", "wrong_store"], expect=1)
        assert "Traceback" in output
    # the settings model's own errors, raised directly
    for conn_id in ("key_as_path",):
        extra = broken[conn_id]["extra"]
        settings = EntraConnectionSettings(client_id=GRAPH_CLIENT_ID, **extra)
        with pytest.raises(EntraError) as caught:
            settings.client_credential()
        scanner.add(f"{conn_id}: exception", f"{caught.value!r} {caught.value}")
    scanner.add("python logs (caplog)", caplog.text)
    scanner.add_store(store_url)
    assert scanner.leaks() == []
