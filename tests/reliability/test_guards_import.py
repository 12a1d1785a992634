"""Import guards against the real Samba AD DC: a base DN spelled unlike the DC's DNs still imports everything, a
base DN that does not exist fails when connecting, and an import whose scope suddenly sees nothing stops with the
connector space untouched until a confirmed run applies the deletes (through the CLI, as an operator would)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from aadsync_devkit.world.airflow_runs import task_states
from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.engine.runs.import_guard import STOPPED_DELETION_THRESHOLD
from airflow_provider_aadsync.engine.store import Store, cs_object, cs_reference
from airflow_provider_aadsync.hooks.active_directory_settings import ActiveDirectoryConnectionError
from airflow_provider_aadsync.steps import run_ad_import
from tests.support.servers import hook_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dc(start_dc):
    return start_dc(users=200, groups=10, group_size=150)


def snapshot(store: Store, connector: str | None = None) -> tuple[list, list]:
    """The connector space's rows (of ``connector`` only, when given), to compare before and after a stop."""
    objects = sa.select(cs_object).order_by(cs_object.c.connector, cs_object.c.anchor)
    references = sa.select(cs_reference).order_by(*cs_reference.c)
    if connector is not None:
        objects = objects.where(cs_object.c.connector == connector)
        references = references.where(cs_reference.c.connector == connector)
    with store.engine.connect() as connection:
        objects_rows = [tuple(row) for row in connection.execute(objects)]
        return objects_rows, [tuple(row) for row in connection.execute(references)]


def live_objects(store: Store, connector: str = "ad") -> int:
    with store.engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count()).where(~cs_object.c.is_deleted, cs_object.c.connector == connector)
        ).scalar_one()


def test_base_dn_spelled_unlike_the_dc_imports_everything(dc, store, tmp_path):
    """`dc=corp, dc=example, dc=test` is a base the DC accepts, but it returns `...,DC=corp,DC=example,DC=test`:
    compared as text, the import saw nothing in scope and deleted every object; compared RDN by RDN it sees all."""
    odd = ", ".join(part.lower() for part in dc.base_dn.split(","))
    assert odd != dc.base_dn
    spelled = run_ad_import(hook_for(dc, base_dn=odd), store, mode="full")
    assert spelled["result"] == "success", spelled
    with Store.open(f"sqlite:///{tmp_path / 'reference.sqlite'}") as reference:
        canonical = run_ad_import(hook_for(dc), reference, mode="full")
    assert spelled["counters"]["adds"] == canonical["counters"]["adds"] > 200
    again = run_ad_import(hook_for(dc), store, mode="full")
    assert again["result"] == "success"
    assert (again["counters"]["adds"], again["counters"]["updates"], again["counters"]["deletes"]) == (0, 0, 0)


def test_base_ou_with_escapes_written_differently_imports_its_objects(dc, tmp_path):
    """An OU named `Sales, Nord Café`: the DC takes `ou=sales\\2c nord caf\\c3\\a9` as its base and answers with
    `OU=Sales\\, Nord Café`. Compared as lower-cased text (the old scope check) none of its objects was in scope."""
    ou = f"OU=Sales\\, Nord Café,{dc.base_dn}"
    admin = dc.connect()
    try:
        if not admin.add(ou, "organizationalUnit"):
            assert admin.result["description"] == "entryAlreadyExists", admin.result
        for n in range(3):
            user = f"CN=Nord {n},{ou}"
            if not admin.add(user, "user", {"sAMAccountName": f"nord{n}", "displayName": f"Nord {n}"}):
                assert admin.result["description"] == "entryAlreadyExists", admin.result
    finally:
        admin.unbind()
    escaped = "ou=sales\\2c nord caf\\c3\\a9," + dc.base_dn.lower()
    with Store.open(f"sqlite:///{tmp_path / 'escaped.sqlite'}") as store:
        result = run_ad_import(hook_for(dc, base_dn=escaped), store, mode="full")
        assert result["result"] == "success" and result["counters"]["adds"] == 4, result  # the OU and its 3 users
        with store.engine.connect() as connection:
            dns = set(connection.execute(sa.select(cs_object.c.dn)).scalars())
    assert f"CN=Nord 0,{ou}" in dns


def test_base_dn_that_does_not_exist_or_lies_outside_the_naming_context_fails_at_connect(dc, store):
    missing = f"OU=Does Not Exist,{dc.base_dn}"
    with pytest.raises(ActiveDirectoryConnectionError) as caught:
        run_ad_import(hook_for(dc, base_dn=missing), store, mode="full")
    message = str(caught.value)
    assert repr(missing) in message and f"naming context {dc.base_dn!r}" in message and "does not exist" in message
    assert store.list_runs() == []  # refused before any import work

    hook = hook_for(dc, base_dn="DC=elsewhere,DC=test")
    ok, message = hook.test_connection()
    assert not ok and "lies outside the naming context" in message and "'DC=elsewhere,DC=test'" in message


def test_scope_that_suddenly_sees_nothing_stops_and_the_confirmed_rerun_applies_the_deletes(dc, store, monkeypatch):
    empty_ou = f"OU=Empty Scope,{dc.base_dn}"
    admin = dc.connect()
    try:
        if not admin.add(empty_ou, "organizationalUnit"):
            assert admin.result["description"] == "entryAlreadyExists", admin.result
    finally:
        admin.unbind()
    first = run_ad_import(hook_for(dc), store, mode="full")
    assert first["result"] == "success"
    with store.transaction() as connection:  # as after a sync: deletes now become pending deletes for the sync
        connection.execute(sa.update(cs_object).values(pending_import=None))
    before, imported = snapshot(store), live_objects(store)
    cookie = store.get_watermark("ad", dc.base_dn)

    info = dc.connection_info()
    connection = {"conn_type": "aadsync_ad", **info, "extra": {**info["extra"], "base_dn": empty_ou}}
    monkeypatch.setenv("AIRFLOW_CONN_GUARD_AD", json.dumps(connection))
    command = ["import-ad", "--mode", "full", "--conn-id", "guard_ad", "--store", store.url, "--instance", "test"]
    stopped = CliRunner().invoke(main, command)
    assert stopped.exit_code == 1, stopped.output
    # the import reads the empty OU itself (it stays), and nothing below it: it saw nothing
    assert STOPPED_DELETION_THRESHOLD in stopped.output
    assert f"would delete {imported - 1:,} of the {imported:,} objects" in stopped.output
    assert f"saw no user, group or contact in scope, but the connector space holds {imported:,}" in stopped.output
    assert f"--confirm-mass-removal {imported - 1}" in stopped.output and "OU=Empty Scope" in stopped.output
    assert snapshot(store) == before  # the connector space is untouched
    assert store.get_watermark("ad", dc.base_dn) == cookie  # and the DirSync cookie did not move

    too_few = CliRunner().invoke(main, [*command, "--confirm-mass-removal", str(imported - 2)])
    assert too_few.exit_code == 1
    assert f"confirmed a removal of {imported - 2:,} objects, not {imported - 1:,}" in too_few.output
    assert snapshot(store) == before
    confirmed = CliRunner().invoke(main, [*command, "--confirm-mass-removal", str(imported - 1)])
    assert confirmed.exit_code == 0, confirmed.output
    assert "full-import on `ad` — success" in confirmed.output
    assert live_objects(store) == 1  # the empty OU itself, the only object left in scope
    run = store.list_runs(limit=1)[0]
    assert run["counters"]["deletes"] == imported - 1
    with store.engine.connect() as connection:
        pending = connection.execute(
            sa.select(sa.func.count()).where(cs_object.c.pending_import == "delete", cs_object.c.is_deleted)
        ).scalar_one()
    assert pending == imported - 1


def test_dag_run_stops_at_the_import_and_the_confirm_param_applies_it(dc, graph_server, tmp_path_factory):
    """Airflow runs the shipped DAG: with the AD connection's base DN switched to an empty OU the cycle stops at
    import_ad (not retried), the report shows the stop, nothing changes in the store or in Entra ID; a run
    triggered with ``confirm_mass_removal`` (and staging, so nothing is written to Entra ID) applies the deletes."""
    from tests.support.airflow_world import airflow_world, main_store, new_tenant, succeeded, write_requests

    empty_ou = f"OU=Empty Scope,{dc.base_dn}"
    admin = dc.connect()
    try:
        if not admin.add(empty_ou, "organizationalUnit"):
            assert admin.result["description"] == "entryAlreadyExists", admin.result
    finally:
        admin.unbind()
    tenant = new_tenant(graph_server, "guard")
    airflow = airflow_world(
        tmp_path_factory.mktemp("guard-airflow"), dc, graph_server, tenant, variables={"aadsync_instance": "main"}
    )
    airflow.migrate()
    succeeded(airflow.dags_test("aadsync_full"), dc)
    with main_store(airflow) as store:
        before, imported = snapshot(store, "ad"), live_objects(store)
    writes = write_requests(graph_server)

    info = dc.connection_info()
    switched = {"conn_type": "aadsync_ad", **info, "extra": {**info["extra"], "base_dn": empty_ou}}
    env = {"AIRFLOW_CONN_AADSYNC_AD": json.dumps(switched), "AIRFLOW_VAR_AADSYNC_RETRIES": "2"}
    stopped = airflow.dags_test("aadsync_cycle", {"mode": "full"}, **env)
    assert stopped.state == "failed", stopped.tail()
    assert f"AD import stopped: {STOPPED_DELETION_THRESHOLD}" in stopped.output
    states = task_states(airflow.home, "aadsync_cycle", stopped.run_id)
    assert states["import_ad"] == ("failed", 1) and states["report"][0] == "success"  # a deterministic stop: no retry
    # The Entra import runs in parallel and may refresh its own rows; nothing after the imports runs.
    after_imports = {task: state for task, (state, _try) in states.items() if task.startswith(("sync_", "export_"))}
    assert after_imports and set(after_imports.values()) <= {"upstream_failed", "skipped"}, after_imports
    report = airflow.report(stopped)
    assert f"| {STOPPED_DELETION_THRESHOLD} | stopped before any change:" in report, report
    assert "saw no user, group or contact in scope" in report and f"`confirm_mass_removal` = {imported - 1}" in report
    with main_store(airflow) as store:
        assert snapshot(store, "ad") == before  # the stopped AD import's rows as they were
    assert write_requests(graph_server) == writes

    confirmed = airflow.dags_test(
        "aadsync_cycle", {"mode": "full", "confirm_mass_removal": imported - 1, "staging": True}, **env
    )
    states = task_states(airflow.home, "aadsync_cycle", confirmed.run_id)
    assert states["import_ad"][0] == "success", confirmed.tail()
    with main_store(airflow) as store:
        runs = [
            run for run in store.list_runs(limit=20) if run["connector"] == "ad" and run["profile"] == "full-import"
        ]
        assert runs[0]["result"] == "success" and runs[0]["counters"]["deletes"] == imported - 1
    assert write_requests(graph_server) == writes  # staging: the deletes reach no tenant
