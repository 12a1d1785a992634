"""The operators take their store from an Airflow connection (store_conn_id), resolved when the task runs, so a store
password never becomes a template field's value; a password-less store_url still works, and a URL that carries a
password is masked in rendered fields and logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_aadsync.operators.base import resolve_store_url
from airflow_provider_aadsync.operators.report import SyncReportOperator

PASSWORD = "St0re-Pa55/word@x"
REPO = Path(__file__).resolve().parents[3]


def set_connection(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_a_postgres_connection_becomes_the_store_url(monkeypatch):
    set_connection(
        monkeypatch,
        "aadsync_store",
        conn_type="postgres",
        host="db.internal",
        port=5433,
        login="aadsync",
        password=PASSWORD,
        schema="aadsync_store",
        extra={"sslmode": "verify-full", "cursor": "ignored"},
    )
    url = resolve_store_url(None, "aadsync_store")
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    assert parsed.drivername == "postgresql+psycopg2" and parsed.password == PASSWORD
    assert (parsed.host, parsed.port, parsed.database) == ("db.internal", 5433, "aadsync_store")
    assert parsed.username == "aadsync"
    assert dict(parsed.query) == {"sslmode": "verify-full"}


def test_a_sqlite_connection_and_a_plain_url_and_the_default(monkeypatch, tmp_path):
    set_connection(monkeypatch, "local_store", conn_type="sqlite", host=str(tmp_path / "s.sqlite"))
    assert resolve_store_url("", "local_store") == f"sqlite:///{tmp_path / 's.sqlite'}"
    assert resolve_store_url(" sqlite:////x.sqlite ", "None") == "sqlite:////x.sqlite"
    assert resolve_store_url("", "") is None  # the embedded SQLite store


def test_refused_store_settings_say_what_to_fix(monkeypatch):
    set_connection(monkeypatch, "mysql_store", conn_type="mysql", host="h")
    with pytest.raises(AirflowFailException, match="has type 'mysql': the store needs a postgres connection"):
        resolve_store_url(None, "mysql_store")
    with pytest.raises(AirflowFailException, match="both a store connection .* keep one"):
        resolve_store_url("sqlite:////x.sqlite", "mysql_store")


@pytest.mark.parametrize("where", ["userinfo", "query"])
def test_a_password_in_store_url_is_masked_in_the_rendered_field(capsys, where):
    """Airflow redacts the rendered fields it stores with its masker: the password is registered before that. libpq
    takes it as a query parameter too (``?password=``)."""
    from airflow.sdk._shared.secrets_masker import redact

    encoded = PASSWORD.replace("/", "%2F").replace("@", "%40")
    url = (
        f"postgresql+psycopg2://aadsync:{encoded}@db/aadsync_store"
        if where == "userinfo"
        else f"postgresql+psycopg2://aadsync@db/aadsync_store?password={encoded}"
    )
    operator = SyncReportOperator(task_id="report", store_url=url)
    operator.render_template_fields(context={}, jinja_env=None)
    rendered = str(redact(operator.store_url, "store_url"))
    assert "St0re" not in rendered and "%2F" not in rendered and "***" in rendered
    logged = capsys.readouterr()
    assert "put the store in an Airflow connection and pass store_conn_id" in logged.out + logged.err
    assert "store_conn_id" in SyncReportOperator.template_fields


@pytest.mark.parametrize(
    ("url", "password", "shown"),
    [
        # SQLAlchemy cannot parse it (the port): nothing was registered, and the rendered field showed the password
        (
            "postgresql://aadsync:Sup3rS3cretPw@db:54x2/aadsync",
            "Sup3rS3cretPw",
            "postgresql://aadsync:***@db:54x2/aadsync",
        ),
        # a raw '@': SQLAlchemy's password "Pa55" is too short to register, and its tail was taken for the host
        (
            "postgresql://aadsync:Pa55@word-2024@db.example.invalid/aadsync",
            "Pa55@word-2024",
            "postgresql://aadsync:***@db.example.invalid/aadsync",
        ),
    ],
)
def test_a_store_url_password_sqlalchemy_misreads_is_masked_whole(url, password, shown):
    """The password is read by hand, registered before Airflow stores the rendered field, and the store refuses to
    open such a URL with an error that quotes neither the URL nor the password."""
    from airflow.sdk._shared.secrets_masker import redact

    from airflow_provider_aadsync.engine import secrets
    from airflow_provider_aadsync.engine.store import Store
    from airflow_provider_aadsync.operators.base import hide_store_password

    operator = SyncReportOperator(task_id="report", store_url=url)
    try:
        hide_store_password(operator, url)
        assert secrets.scrub(url) == shown
        assert str(redact(url, "store_url")) == shown  # Airflow's masker: what the UI shows of the field
        with pytest.raises(ValueError) as refused:
            Store.open(url)
        for part in (password, *password.split("@")):
            assert part not in str(refused.value)
    finally:
        secrets.forget_secrets()


def test_the_store_password_as_the_connection_url_renders_it_is_scrubbed(monkeypatch):
    """The store URL built from a connection is rendered by SQLAlchemy, which leaves a space, ``+`` and ``$`` as they
    are but encodes ``:``, ``/`` and ``@``: neither the plain nor the fully URL-encoded form of the password matched
    it, so a message quoting that URL kept the password."""
    from airflow_provider_aadsync.engine import secrets
    from airflow_provider_aadsync.engine.store import Store

    password = "St0re Pa$$:x/@?&+y"
    set_connection(monkeypatch, "aadsync_store", conn_type="postgres", host="db", login="aadsync", password=password,
                   schema="s")  # fmt: skip
    url = resolve_store_url(None, "aadsync_store")
    store = Store(url)  # registers the URL's secrets, as every step's open does
    try:
        assert secrets.scrub(f"could not open {url}") == "could not open postgresql+psycopg2://aadsync:***@db/s"
    finally:
        store.close()
        secrets.forget_secrets()


def test_the_dag_factory_takes_notifiers_and_no_variable_names_code():
    from airflow_provider_aadsync import dag_factory as module

    calls = []
    dag = module.sync_cycle_dag(
        "aadsync_paged", schedule=None, mode="full", params={}, doc="", on_failure_callback=calls.append
    )
    task = dag.get_task("export_entra")
    assert task.on_failure_callback == [module.on_task_failure, calls.append]
    assert task.store_conn_id == "{{ var.value.get('aadsync_store_conn_id', '') }}"
    assert "aadsync_on_failure_callback" not in (REPO / "airflow_provider_aadsync" / "dag_factory.py").read_text()


def test_reports_are_saved_owner_only(tmp_path, monkeypatch):
    import stat
    from types import SimpleNamespace

    from airflow_provider_aadsync.operators.report import save_report

    monkeypatch.setattr("os.umask", lambda mask: 0)
    context = {"dag": SimpleNamespace(dag_id="aadsync_cycle"), "run_id": "manual__1"}
    path = save_report("# report", context, tmp_path / "reports")
    assert path.read_text() == "# report"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "reports").stat().st_mode) == 0o700
