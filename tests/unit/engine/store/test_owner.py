"""The store's owner marker (schema step 10): a store belongs to one sync instance and, once an Entra step ran, one
Entra tenant; another instance opening it, or an Entra step of another tenant, is refused before anything is read or
written; ``aadsync store claim`` re-claims it on purpose; a store made before the marker is adopted by the first
instance that opens it."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings
from airflow_provider_aadsync.engine.store import (
    SCHEMA_VERSION,
    Store,
    StoreInstanceError,
    cs_object,
    schema_version,
    store_instance,
    utcnow,
)
from airflow_provider_aadsync.engine.store import owner as marker
from airflow_provider_aadsync.steps import export_to_entra, run_entra_import
from tests.support.stores import store_digest

TENANT_A = "11111111-2222-3333-4444-555555555555"
TENANT_B = "99999999-8888-7777-6666-555555555555"


def _user(anchor: str) -> dict:
    return {
        "connector": "ad", "anchor": anchor, "dn": f"CN={anchor}", "object_type": "user", "attrs": "{}",
        "attrs_hash": "h", "refs_hash": "0", "is_deleted": False, "updated_at": utcnow(),
    }  # fmt: skip


def _marker(url: str) -> list[tuple]:
    """The marker rows as (instance, tenant_id, how)."""
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        columns = (store_instance.c.instance, store_instance.c.tenant_id, store_instance.c.how)
        found = [tuple(row) for row in connection.execute(sa.select(*columns))]
    engine.dispose()
    return found


def _anchors(url: str) -> list[str]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        found = connection.execute(sa.select(cs_object.c.anchor).order_by(cs_object.c.anchor)).scalars().all()
    engine.dispose()
    return list(found)


@pytest.fixture
def emea_store(tmp_path) -> tuple[Path, str]:
    """A store claimed by instance ``emea``, holding one imported user and its Entra tenant."""
    path = tmp_path / "shared.sqlite"
    url = f"sqlite:///{path}"
    with Store.open(url, instance="emea") as emea:
        with emea.transaction() as connection:
            connection.execute(sa.insert(cs_object), [_user("alice")])
        emea.check_tenant(TENANT_A)
    return path, url


def test_the_first_open_claims_the_store_and_the_same_instance_opens_it_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    with Store.open(url, instance="emea") as store:
        assert store.current_version() == SCHEMA_VERSION
    assert _marker(url) == [("emea", None, "created")]
    with Store.open(url, instance="emea") as again:
        with again.transaction() as connection:
            connection.execute(sa.insert(cs_object), [_user("alice")])
    assert _marker(url) == [("emea", None, "created")] and _anchors(url) == ["alice"]


def test_a_second_instance_on_one_store_is_refused_before_it_reads_or_writes(emea_store):
    path, url = emea_store
    before = store_digest(path)
    with pytest.raises(StoreInstanceError) as refused:
        Store.open(url, instance="apac")
    message = str(refused.value)
    assert f"store {url} belongs to sync instance 'emea' (Entra tenant {TENANT_A}), not to sync instance 'apac'" in (
        message
    )
    assert "refused before anything was read or written" in message
    assert "aadsync_apac__store_url" in message and "its own store" in message
    assert f"aadsync store claim --instance apac --store {url} --confirm-claim" in message
    assert store_digest(path) == before  # not a byte changed
    with Store.open(url, instance="emea") as again:  # its owner opens it as before
        assert again.current_version() == SCHEMA_VERSION
    assert _anchors(url) == ["alice"]


def test_the_default_instance_and_a_named_one_cannot_share_a_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    Store.open(url).close()  # the default instance ("default") claims it
    with pytest.raises(StoreInstanceError, match="belongs to sync instance 'default', not to sync instance 'emea'"):
        Store.open(url, instance="emea")
    assert _marker(url) == [("default", None, "created")]


def test_the_store_url_in_a_refusal_has_its_password_masked():
    secret = "pw-never-shown"
    handle = Store(f"postgresql+psycopg2://sync:{secret}@db.example.test/aadsync", instance="apac")  # never connects
    try:
        refusal = str(marker.refusal(handle, marker.Owner("emea", TENANT_A, "created", None)))
    finally:
        handle.close()
    assert secret not in refusal
    assert "store postgresql+psycopg2://sync:***@db.example.test/aadsync belongs to sync instance 'emea'" in refusal
    assert "--store postgresql+psycopg2://sync:***@db.example.test/aadsync --confirm-claim" in refusal


def test_an_entra_step_of_another_tenant_is_refused_before_it_reads_or_writes(emea_store):
    path, url = emea_store
    before = store_digest(path)
    hook = SimpleNamespace(settings=SimpleNamespace(tenant_id=TENANT_B))  # refused before the hook is used
    with Store.open(url, instance="emea") as store:
        store.check_tenant(TENANT_A.upper())  # the same tenant in another case
        steps = (
            lambda: run_entra_import(hook, store, mode="delta"),
            lambda: export_to_entra(hook, store, settings=ExportSettings()),
        )
        for step in steps:
            with pytest.raises(StoreInstanceError) as refused:
                step()
            message = str(refused.value)
            assert f"syncs Entra tenant {TENANT_A}, and this step's Entra connection names tenant {TENANT_B}" in message
            assert f"--confirm-claim --tenant-id {TENANT_B}" in message
    assert store_digest(path) == before and _marker(url) == [("emea", TENANT_A, "created")]


def test_claim_needs_confirmation_is_refused_while_the_owner_runs_and_then_re_claims(emea_store):
    path, url = emea_store
    runner = CliRunner()
    claim = ["store", "claim", "--store", url, "--instance", "europe"]
    before = store_digest(path)
    unconfirmed = runner.invoke(main, claim)
    assert unconfirmed.exit_code == 1
    assert f"belongs to sync instance 'emea' (Entra tenant {TENANT_A})" in unconfirmed.output
    assert "Give --confirm-claim to do it (nothing was changed)" in unconfirmed.output
    assert store_digest(path) == before

    with Store.open(url, instance="emea") as emea:
        emea.acquire_lock("aadsync_emea_cycle:manual__1", hold=None)  # a cycle of the owner holds the instance
        running = runner.invoke(main, [*claim, "--confirm-claim"])
        assert running.exit_code == 1 and "sync instance 'emea' is running" in running.output, running.output
        assert _marker(url) == [("emea", TENANT_A, "created")]
        emea.release_lock("aadsync_emea_cycle:manual__1")

    done = runner.invoke(main, [*claim, "--confirm-claim"])
    assert done.exit_code == 0, done.output
    assert f"now belongs to sync instance 'europe' (Entra tenant {TENANT_A})" in done.output
    assert _marker(url) == [("europe", TENANT_A, "claimed from emea")]
    with pytest.raises(StoreInstanceError, match="belongs to sync instance 'europe'"):
        Store.open(url, instance="emea")
    with Store.open(url, instance="europe"):
        pass
    assert _anchors(url) == ["alice"]  # the data moved with the claim

    again = runner.invoke(main, claim)
    assert again.exit_code == 0 and "already belongs to sync instance 'europe'" in again.output
    moved = runner.invoke(main, [*claim, "--tenant-id", TENANT_B, "--confirm-claim"])
    assert moved.exit_code == 0, moved.output
    assert _marker(url) == [("europe", TENANT_B, "claimed")]


def test_claim_without_a_store_option_takes_the_instances_embedded_store(tmp_path, monkeypatch):
    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path))
    monkeypatch.delenv("AADSYNC_STORE_URL", raising=False)
    result = CliRunner().invoke(main, ["store", "claim", "--instance", "emea", "--confirm-claim"])
    assert result.exit_code == 0, result.output
    assert "now belongs to sync instance 'emea' (was: no sync instance (unmarked))" in result.output
    with Store.open(instance="emea") as store:
        assert marker.read_owner(store.engine).instance == "emea"


def test_a_store_made_before_the_marker_is_adopted_by_the_first_instance_that_opens_it(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    with Store.open(url, instance="emea") as store, store.engine.begin() as connection:
        connection.execute(sa.insert(cs_object), [_user("alice")])
        connection.execute(sa.delete(schema_version).where(schema_version.c.version >= marker.MARKER_VERSION))
        connection.execute(sa.text("DROP TABLE store_instance"))  # as an older version left it: no marker
    with caplog.at_level(logging.INFO, logger="airflow_provider_aadsync.engine.store.owner"):
        with Store.open(url, instance="apac") as store:
            assert store.current_version() == SCHEMA_VERSION
    assert _marker(url) == [("apac", None, "adopted")]
    [line] = [record for record in caplog.records if "adopted" in record.getMessage()]
    assert line.levelno == logging.WARNING
    assert line.getMessage() == (
        f"store {url} had no owner marker (made by an older version): adopted by sync instance 'apac'; "
        "no other instance can open it now"
    )
    with pytest.raises(StoreInstanceError, match="belongs to sync instance 'apac'"):
        Store.open(url, instance="emea")


def test_a_cli_step_of_a_second_instance_on_the_first_ones_store_is_refused_before_it_writes(emea_store, monkeypatch):
    """Two instances whose settings name one SQLite store: the first one's step runs; the second one's import is
    refused at the store's open, before its connection is even looked up and before any cs_object row is written."""
    path, url = emea_store
    monkeypatch.setenv("AADSYNC_STORE_URL", url)  # both instances' setting, as a copied Variable would make it
    runner = CliRunner()
    first = runner.invoke(main, ["sync", "--instance", "emea", "--connector", "ad"])
    assert first.exit_code == 0, first.output
    before = store_digest(path)
    for command in ("import-ad", "import-entra"):
        refused = runner.invoke(main, [command, "--mode", "full", "--instance", "apac", "--conn-id", "nowhere"])
        assert refused.exit_code == 1, refused.output
        assert "belongs to sync instance 'emea'" in refused.output and "not to sync instance 'apac'" in refused.output
        assert "nowhere" not in refused.output  # refused before the connection was looked up
    assert store_digest(path) == before and _anchors(url) == ["alice"]
