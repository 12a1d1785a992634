"""The engine's secret scrubber, and the store scrubbing run details and errors, and its private file modes."""

from __future__ import annotations

import base64
import stat
from urllib.parse import quote

import pytest

from airflow_provider_aadsync.engine import secrets
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.store.urls import url_secrets

PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
    "-----END PRIVATE KEY-----\n"
)
PASSWORD = "Sup3r$ecret/Pa ss+word"


@pytest.fixture(autouse=True)
def clean_registry():
    secrets.forget_secrets()
    yield
    secrets.forget_secrets()


def test_every_form_of_a_secret_is_scrubbed():
    secrets.register_secret(PASSWORD)
    forms = [
        PASSWORD,
        base64.b64encode(PASSWORD.encode()).decode(),
        base64.urlsafe_b64encode(PASSWORD.encode()).decode(),
        quote(PASSWORD, safe=""),
        quote(PASSWORD),
    ]
    for form in forms:
        assert secrets.scrub(f"bind failed for {form}!") == "bind failed for ***!", form


def test_a_pem_key_is_scrubbed_whole_in_lines_and_unwrapped():
    secrets.register_secret(PEM)
    line = PEM.splitlines()[1]
    body = "".join(PEM.splitlines()[1:3])
    assert secrets.scrub(f"[Errno 36] File name too long: '{PEM}'") == "[Errno 36] File name too long: '***'"
    assert line not in secrets.scrub(f"could not parse {line[:40]}{line[40:]} at offset 3")
    assert body not in secrets.scrub(f"key={body}")
    assert "MIIE" not in secrets.scrub(repr(PEM))  # escaped line breaks, as in JSON or a repr()


def test_short_values_are_not_registered_and_data_is_scrubbed_deeply():
    secrets.register_secret("abc")
    secrets.register_secret(None)
    secrets.register_secret("postgres")  # a common word: scrubbing it would garble every report
    assert secrets.scrub("abc abc postgres") == "abc abc postgres"
    secrets.register_secret(PASSWORD)
    data = {"detail": [f"x {PASSWORD}", 3], PASSWORD: (PASSWORD,)}
    assert secrets.scrub_value(data) == {"detail": ["x ***", 3], "***": ("***",)}
    assert secrets.describe_error(OSError(f"no {PASSWORD}")) == "OSError: no ***"


def test_store_scrubs_run_details_counters_and_errors(tmp_path):
    secrets.register_secret(PASSWORD)
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as store:
        run_id = store.start_run("full-import", "ad")
        store.update_run(run_id, {"note": f"plan {PASSWORD}"}, detail=f"plan {PASSWORD}")
        store.record_errors(run_id, [{"anchor": "a", "dn": "CN=A", "code": "x", "message": f"refused {PASSWORD}"}])
        store.finish_run(run_id, "success", {"note": f"done {PASSWORD}"}, detail=f"server said {PASSWORD}")
        run = store.get_run(run_id)
        (error,) = store.run_errors(run_id)
    assert run["detail"] == "server said ***" and run["counters"] == {"note": "done ***"}
    assert error["message"] == "refused ***"


def test_store_password_in_the_url_is_registered_and_hidden(tmp_path):
    store = Store(f"postgresql+psycopg2://aadsync:{quote(PASSWORD, safe='')}@127.0.0.1:1/db")
    try:
        assert PASSWORD not in store.display_url and "***" in store.display_url
        assert secrets.scrub(f"failed: {PASSWORD}") == "failed: ***"
    finally:
        store.close()


@pytest.mark.parametrize("parameter", ["password", "PASSWORD", "sslpassword"])
def test_a_store_password_given_as_a_query_parameter_is_registered_and_hidden(parameter):
    # libpq takes the password in the query too; SQLAlchemy's hide_password masks only the URL's own
    url = f"postgresql+psycopg2://aadsync@127.0.0.1:1/db?sslmode=require&{parameter}={quote(PASSWORD, safe='')}"
    store = Store(url)
    try:
        shown = store.display_url
        assert PASSWORD not in shown and quote(PASSWORD, safe="") not in shown
        assert f"{parameter}=***" in shown.replace("%2A%2A%2A", "***") and "sslmode=require" in shown
        assert secrets.scrub(f"failed: {PASSWORD}") == "failed: ***"
    finally:
        store.close()
    assert url_secrets(url) == [PASSWORD]
    assert url_secrets("postgresql://aadsync:one-secret@h/db?password=two-secret") == ["one-secret", "two-secret"]
    assert url_secrets("sqlite:////tmp/store.sqlite") == []


def test_the_store_file_and_its_new_folders_are_private(tmp_path, monkeypatch):
    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("os.umask", lambda mask: 0)  # nothing else may be relied on to narrow the modes
    with Store.open(None, instance="inst") as store:
        store.start_run("full-import", "ad")
    file = tmp_path / "home" / "store" / "inst.sqlite"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(file.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700
    for sidecar in file.parent.glob("inst.sqlite-*"):  # SQLite gives its WAL files the database's mode
        assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600, sidecar


def test_an_existing_readable_store_file_is_warned_about(tmp_path, caplog):
    file = tmp_path / "open.sqlite"
    file.touch(mode=0o644)
    file.chmod(0o644)
    with caplog.at_level("WARNING"), Store.open(f"sqlite:///{file}"):
        pass
    assert "can be read by other local users" in caplog.text


QUOTED = 'Pa"ss\\wörd-42'  # a quote, a backslash and a non-ASCII letter: each escaped in JSON and repr()


def test_a_secret_escaped_as_in_json_or_repr_is_scrubbed(tmp_path):
    """An error quoting a JSON body or a dict (a server's answer, a library's repr) holds the secret escaped: ``\\"``,
    ``\\\\``, ``\\u00f6``; it was stored and printed as is. The store's run row and describe_error hold none of it."""
    import json

    secrets.register_secret(QUOTED)
    quoted = [
        json.dumps({"password": QUOTED}),
        json.dumps({"password": QUOTED}, ensure_ascii=False),
        repr({"password": QUOTED}),
        repr(QUOTED.encode()),
    ]
    for text in quoted:
        assert secrets.scrub(f"server said {text}") in (
            'server said {"password": "***"}',
            "server said {'password': '***'}",
            "server said b'***'",
        ), text
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as store:
        run_id = store.start_run("full-import", "entra")
        store.finish_run(run_id, "failed", {}, detail=f"token endpoint answered {quoted[0]}")
        run = store.get_run(run_id)
    assert run["detail"] == 'token endpoint answered {"password": "***"}'
    assert "w\\u00f6rd" not in secrets.describe_error(ValueError(quoted[0]))
