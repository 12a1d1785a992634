"""The shipped DAGs parse with no import errors and have the shape the README promises: schedule, one run at a time,
the cycle's order, the params of the trigger form, the Graph writer pool, retries and the failure hook."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGING = "{{ params.staging or params.get('preflight', False) }}"
CYCLE = ["acquire_instance", "import_ad", "import_entra", "sync_ad", "sync_entra", "export_ad", "export_entra"]
CYCLE += ["report"]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == {"aadsync_cycle", "aadsync_full"}


def test_cycle_runs_every_30_minutes_one_at_a_time_without_catchup(dagbag):
    cycle = dagbag.dags["aadsync_cycle"]
    assert cycle.timetable.delta == dt.timedelta(minutes=30)
    assert cycle.max_active_runs == 1 and cycle.catchup is False
    full = dagbag.dags["aadsync_full"]
    assert type(full.timetable).__name__ == "NullTimetable" and full.max_active_runs == 1  # manual trigger only


@pytest.mark.parametrize("dag_id", ["aadsync_cycle", "aadsync_full"])
def test_steps_run_in_the_products_order_after_the_preview_branch(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    # the imports run in parallel after the acquisition; the syncs, the exports and the report stay in order
    assert dag.get_task("import_ad").upstream_task_ids == dag.get_task("import_entra").upstream_task_ids
    assert dag.get_task("import_ad").upstream_task_ids == {"acquire_instance"}
    assert dag.get_task("sync_ad").upstream_task_ids == {"import_ad", "import_entra"}
    after = CYCLE[CYCLE.index("sync_ad") : -1]
    for upstream, downstream in zip(after[:-1], after[1:], strict=False):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
    assert dag.get_task("choose_path").downstream_task_ids == {"preview", "acquire_instance"}
    # The cycle holds the instance from its first step to its last: acquired by a setup task that waits without a
    # worker slot, released by the report, the teardown (which reports failed cycles without changing the run's state)
    acquire, report = dag.get_task("acquire_instance"), dag.get_task("report")
    assert acquire.is_setup and acquire.mode == "reschedule" and acquire.retries == 0
    assert report.is_teardown and report.upstream_task_ids == {"export_entra", "acquire_instance"}
    assert report.release_instance
    modes = {dag.get_task(task_id).mode for task_id in ("import_ad", "import_entra", "sync_ad", "sync_entra")}
    assert modes == ({"{{ params.mode }}"} if dag_id == "aadsync_cycle" else {"full"})


def test_params_of_the_trigger_form(dagbag):
    params = dagbag.dags["aadsync_cycle"].params
    schema = {name: params.get_param(name).schema for name in params}
    assert schema["mode"]["enum"] == ["delta", "full"] and params["mode"] == "delta"
    assert schema["staging"]["type"] == "boolean" and params["staging"] is False
    assert schema["preflight"]["type"] == "boolean" and params["preflight"] is False
    # a preflight run is a staging run whose report holds the cutover preflight (counts, rows as CSV and JSON)
    dag = dagbag.dags["aadsync_cycle"]
    assert dag.get_task("export_entra").staging == dag.get_task("export_ad").staging == STAGING
    assert dag.get_task("report").preflight == STAGING
    assert dag.get_task("report").configured_connectors == ["ad", "entra"]  # no connectors file: the one "ad"
    assert schema["deletion_threshold"]["type"] == ["null", "integer"] and params["deletion_threshold"] is None
    assert schema["confirm_mass_removal"]["type"] == ["null", "integer"] and params["confirm_mass_removal"] is None
    assert schema["confirm_mass_change"]["type"] == ["null", "string"] and params["confirm_mass_change"] is None
    assert "deletes=812,member_removals=1204" in params.get_param("confirm_mass_change").description
    assert schema["endpoint"]["enum"] == ["v2", "v1"] and params["endpoint"] == "v2"
    assert schema["reevaluate"]["type"] == "boolean" and params["reevaluate"] is False
    for dag_id in ("aadsync_cycle", "aadsync_full"):  # both syncs of both DAGs read it
        syncs = [t for t in dagbag.dags[dag_id].tasks if t.task_id.startswith("sync_")]
        assert syncs and {t.reevaluate for t in syncs} == {"{{ params.get('reevaluate', False) }}"}
    assert schema["preview_connector"]["enum"] == ["ad", "entra"]
    assert params["preview_dn"] is None and params["preview_anchor"] is None
    assert all(params.get_param(name).description for name in params)
    assert "mode" not in dagbag.dags["aadsync_full"].params


@pytest.mark.parametrize("dag_id", ["aadsync_cycle", "aadsync_full"])
def test_the_trigger_form_refuses_a_malformed_confirmation(dagbag, dag_id):
    import copy

    from airflow.sdk.definitions.param import ParamValidationError

    param = copy.deepcopy(dagbag.dags[dag_id].params.get_param("confirm_mass_change"))
    for good in (None, "", "deletes=812", "deletes=812,member_removals=1204", " identity_changes = 3 , disables=0 "):
        assert param.resolve(good) == good
    for bad in ("812", "true", "deletes:812", "deletes=1,204", "delete=812", "deletes=812,", "deletes=8.12"):
        with pytest.raises(ParamValidationError, match="does not match"):
            param.resolve(bad)


def test_retries_backoff_failure_hook_and_the_default_pool(dagbag):
    from airflow_provider_aadsync.operators.callbacks import on_task_failure

    task = dagbag.dags["aadsync_cycle"].get_task("export_entra")
    assert task.retries == 2 and task.retry_delay == dt.timedelta(seconds=60)
    assert task.retry_exponential_backoff == 2.0 and task.max_retry_delay == dt.timedelta(minutes=30)
    assert task.on_failure_callback == [on_task_failure]
    assert task.pool == "default_pool"


def test_pool_and_retries_come_from_variables_when_the_file_is_parsed(tmp_path):
    code = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r})\n"
        "task = bag.dags['aadsync_full'].get_task('export_entra')\n"
        "print(task.pool, task.retries, task.retry_delay.total_seconds())\n"
    )
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW_VAR_AADSYNC_GRAPH_WRITER_POOL": "aadsync_graph_writers",
        "AIRFLOW_VAR_AADSYNC_RETRIES": "5",
        "AIRFLOW_VAR_AADSYNC_RETRY_DELAY_SECONDS": "7",
    }
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["aadsync_graph_writers", "5", "7.0"]


def test_configuration_is_templated_from_variables_with_defaults(dagbag):
    dag = dagbag.dags["aadsync_cycle"]
    assert dag.get_task("import_ad").ad_conn_id == "{{ var.value.get('aadsync_ad_conn_id', 'aadsync_ad') }}"
    export = dag.get_task("export_entra")
    assert export.entra_conn_id == "{{ var.value.get('aadsync_entra_conn_id', 'aadsync_entra') }}"
    assert export.store_url == "{{ var.value.get('aadsync_store_url', '') }}"
    assert export.instance == "{{ var.value.get('aadsync_instance', 'default') }}"
    assert "aadsync_deletion_threshold" in export.deletion_threshold and export.staging == STAGING
    for task_id in ("import_ad", "import_entra"):
        guarded = dag.get_task(task_id)
        assert guarded.confirm_mass_removal == "{{ params.confirm_mass_removal }}"
        assert guarded.import_deletion_threshold == "{{ var.value.get('aadsync_import_deletion_threshold', '') }}"
        assert guarded.import_deletion_share == "{{ var.value.get('aadsync_import_deletion_share', '') }}"
    for task_id in ("export_ad", "export_entra"):  # a param only: a confirmation is for one run's plan
        assert dag.get_task(task_id).confirm_mass_change == "{{ params.confirm_mass_change }}"
    assert dag.get_task("sync_ad").rules == "{{ var.value.get('aadsync_rules_path', '') }}"


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("disable_threshold", 500),
        ("member_removal_threshold", 500),
        ("member_removal_group_percent", 50),
        ("identity_change_threshold", 500),
        ("attribute_clear_threshold", 500),
    ],
)
def test_mass_change_guards_take_the_param_else_the_variable_else_the_default(dagbag, name, default):
    import jinja2

    params = dagbag.dags["aadsync_cycle"].params
    assert params[name] is None and params.get_param(name).schema["type"] == ["null", "integer"]
    templates = {getattr(dagbag.dags["aadsync_cycle"].get_task(task), name) for task in ("export_entra", "export_ad")}
    assert len(templates) == 1
    template = jinja2.Environment().from_string(templates.pop())

    class Variables:
        def __init__(self, values):
            self.values = values

        def get(self, key, fallback):
            return self.values.get(key, fallback)

    def render(param, variables):
        return template.render(params={name: param}, var={"value": Variables(variables)})

    assert render(None, {}) == str(default)
    assert render(None, {f"aadsync_{name}": "7"}) == "7"
    assert render(3, {f"aadsync_{name}": "7"}) == "3"


def test_group_writeback_is_opt_in_through_variables(dagbag):
    """Off unless the Variable aadsync_writeback_enabled says true; the OU has no default (required when on)."""
    dag = dagbag.dags["aadsync_cycle"]
    for task_id in ("sync_ad", "sync_entra", "preview", "export_ad"):
        flag = dag.get_task(task_id).writeback_enabled
        assert "aadsync_writeback_enabled" in flag and "'false'" in flag, (task_id, flag)
    assert "var.value.get('aadsync_writeback_ou', '')" in dag.get_task("sync_entra").writeback_ou
    # the AD export checks that OU against its connection's base DN before its first write
    assert dag.get_task("export_ad").writeback_ou == dag.get_task("sync_entra").writeback_ou


@pytest.mark.parametrize("dag_id", ["aadsync_cycle", "aadsync_full"])
def test_the_preview_loads_the_rules_the_sync_tasks_load(dagbag, dag_id):
    """Soft match, directory extensions and the ConsistencyGuid writeback as the sync tasks get them: the preview
    shows what they would do (with soft match blocked, no join on userPrincipalName or mail)."""
    dag = dagbag.dags[dag_id]
    preview, sync = dag.get_task("preview"), dag.get_task("sync_ad")
    settings = ("block_soft_match", "block_cloud_object_takeover", "directory_extensions", "consistency_guid_writeback")
    for setting in (*settings, "writeback_enabled"):
        assert getattr(preview, setting) == getattr(sync, setting), setting
    assert "aadsync_block_cloud_object_takeover" in sync.block_cloud_object_takeover
    assert dag.get_task("report").block_cloud_object_takeover == sync.block_cloud_object_takeover


TWO_FORESTS = """\
ad:
  - name: ad
    conn_id: aadsync_ad
    partitions:
      - dn: DC=corp,DC=example,DC=test
        exclude_ous: ['OU=Excluded,DC=corp,DC=example,DC=test']
  - name: ad_fabrikam
    conn_id: aadsync_ad_fabrikam
entra:
  conn_id: aadsync_entra_prod
"""


def dagbag_with_connectors_file(monkeypatch, path: Path):
    """The DAG folder parsed with the Variable aadsync_connectors_file set (its environment form, as parse time
    reads it)."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW_VAR_AADSYNC_CONNECTORS_FILE", str(path))
    return DagBag(dag_folder=str(REPO / "dags"))


@pytest.mark.parametrize("dag_id", ["aadsync_cycle", "aadsync_full"])
def test_a_connectors_file_gives_one_import_and_one_sync_per_ad_connector_in_the_products_order(
    monkeypatch, tmp_path, dag_id
):
    path = tmp_path / "connectors.yaml"
    path.write_text(TWO_FORESTS)
    bag = dagbag_with_connectors_file(monkeypatch, path)
    assert bag.import_errors == {}
    dag = bag.dags[dag_id]
    # every import at once (AD connectors and Entra), then the syncs connector by connector (account forest before
    # resource forest), then the exports and the report
    imports = {"import_ad", "import_ad_fabrikam", "import_entra"}  # in parallel
    for task_id in imports:
        assert dag.get_task(task_id).upstream_task_ids == {"acquire_instance"}
    assert dag.get_task("sync_ad").upstream_task_ids == imports
    order = ["sync_ad", "sync_ad_fabrikam", "sync_entra", "export_ad", "export_ad_fabrikam", "export_entra"]
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}, downstream
    assert dag.get_task("report").upstream_task_ids == {"export_entra", "acquire_instance"}
    fabrikam = dag.get_task("import_ad_fabrikam")
    assert (fabrikam.connector, fabrikam.ad_conn_id, fabrikam.scope.partitions) == (
        "ad_fabrikam",
        "aadsync_ad_fabrikam",
        None,
    )
    corp = dag.get_task("import_ad")
    assert corp.ad_conn_id == "aadsync_ad"
    assert corp.scope.partitions[0].exclude_ous == ("OU=Excluded,DC=corp,DC=example,DC=test",)
    assert dag.get_task("sync_ad_fabrikam").connector == "ad_fabrikam"
    # each AD connector's export to its own DC: ConsistencyGuid writeback everywhere, group writeback to "ad" only
    corp_export, fabrikam_export = dag.get_task("export_ad"), dag.get_task("export_ad_fabrikam")
    assert (fabrikam_export.connector, fabrikam_export.ad_conn_id) == ("ad_fabrikam", "aadsync_ad_fabrikam")
    assert (corp_export.connector, corp_export.ad_conn_id) == ("ad", "aadsync_ad")
    assert fabrikam_export.writeback_enabled is False and "aadsync_writeback_enabled" in corp_export.writeback_enabled
    # the writeback OU is checked (writeback connector only) against what its import reads: the import's scope
    assert fabrikam_export.writeback_ou is None and "aadsync_writeback_ou" in corp_export.writeback_ou
    assert corp_export.scope == corp.scope and fabrikam_export.scope == fabrikam.scope
    assert fabrikam_export.consistency_guid_writeback == corp_export.consistency_guid_writeback != False  # noqa: E712
    assert fabrikam_export.trigger_rule == "none_failed"  # runs when export_ad is skipped (writeback off)
    assert {dag.get_task(t).entra_conn_id for t in ("import_entra", "export_entra")} == {"aadsync_entra_prod"}
    assert dag.params.get_param("preview_connector").schema["enum"] == ["ad", "ad_fabrikam", "entra"]
    # the report lists every step of the cycle in its order
    assert dag.get_task("report")._steps() == ["import_ad", "import_ad_fabrikam", "import_entra", *order]
    # and names any connector space of a connector the file no longer names
    assert dag.get_task("report").configured_connectors == ["ad", "ad_fabrikam", "entra"]


def test_an_invalid_connectors_file_is_a_dag_import_error_naming_the_file_key_and_line(monkeypatch, tmp_path):
    path = tmp_path / "connectors.yaml"
    path.write_text(TWO_FORESTS.replace("OU=Excluded,DC=corp", "OU=Excluded,DC=other"))
    bag = dagbag_with_connectors_file(monkeypatch, path)
    assert bag.dags == {}
    (error,) = bag.import_errors.values()
    assert str(path) in error and "line 5" in error, error
    assert "ad[0].partitions[0]:" in error and "is not inside the partition" in error, error


def test_the_dag_factory_is_importable_and_the_dag_file_is_a_thin_composition():
    """Users build their own DAGs from the package's factory; dags/aadsync.py only composes it."""
    from airflow_provider_aadsync.dag_factory import common_params, sync_cycle_dag

    dag = sync_cycle_dag("my_cycle", schedule=None, mode="full", params=common_params(), doc="mine")
    assert dag.dag_id == "my_cycle" and dag.get_task("report").is_teardown
    assert [t for t in CYCLE if t in dag.task_ids] == CYCLE
    assert dag.params["preview_connector"] == "ad"  # no connectors configuration: the one connector ad
    shipped = (REPO / "dags" / "aadsync.py").read_text(encoding="utf-8")
    assert "from airflow_provider_aadsync.dag_factory import" in shipped and len(shipped.splitlines()) < 80
    assert "Operator(" not in shipped  # the tasks are the factory's


def test_a_named_instances_dag_describes_its_own_variables_even_from_the_default_params():
    """A DAG file that builds a named instance's DAG from ``common_params(connectors)`` (without the instance): the
    factory describes the instance's Variables all the same; ``common_params(connectors, instance)`` does too."""
    from airflow_provider_aadsync.dag_factory import common_params, sync_cycle_dag

    for params in (common_params(), common_params(instance="emea")):
        dag = sync_cycle_dag("emea_mine", schedule=None, mode="full", params=params, doc="mine", instance="emea")
        described = {name: dag.params.get_param(name).description for name in params}
        assert described["disable_threshold"].endswith(
            "Empty: the Variable aadsync_emea__disable_threshold, else aadsync_disable_threshold, else 500."
        )
        assert "Variable aadsync_emea__import_deletion_threshold, else " in described["confirm_mass_removal"]
        assert "aadsync_emea__" not in described["staging"]
    default = common_params()
    assert default["member_removal_group_percent"].description.endswith(
        "Empty: the Variable aadsync_member_removal_group_percent, else 50."
    )
    assert default["member_removal_group_percent"].schema["maximum"] == 100
    own = common_params(instance="emea")["identity_change_threshold"]
    mine = sync_cycle_dag("mine", schedule=None, mode="full", params={"identity_change_threshold": own}, doc="m")
    assert "aadsync_emea__" in mine.params.get_param("identity_change_threshold").description  # given, kept


def test_the_entra_export_paces_to_the_write_budget_variables(dagbag):
    """Graph's 3,000 writes per 150 s unless aadsync_write_budget / aadsync_write_window_seconds say otherwise."""
    from airflow_provider_aadsync.dag_settings import WRITE_BUDGET

    assert "aadsync_write_budget" in WRITE_BUDGET["write_budget"] and "'3000'" in WRITE_BUDGET["write_budget"]
    assert "aadsync_write_window_seconds" in WRITE_BUDGET["write_window_seconds"]
    for dag_id in ("aadsync_cycle", "aadsync_full"):
        task = dagbag.dags[dag_id].get_task("export_entra")
        assert (task.write_budget, task.write_window_seconds) == tuple(WRITE_BUDGET.values())


# ------------------------------------------------------------------------------------------ named sync instances
def test_the_shipped_file_builds_the_dags_of_each_named_instance_with_its_own_store_and_tenant(tmp_path):
    """``aadsync_instances`` lists named instances: each gets ``aadsync_<name>_cycle`` / ``aadsync_<name>_full``,
    whose tasks carry the instance's fixed name, read its own Variables first (store, tenant and connectors file
    only its own) and share the Graph writer pool unless the instance names one of its own."""
    code = (
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r})\n"
        "out = {'errors': list(bag.import_errors.values()), 'dags': sorted(bag.dags)}\n"
        "for dag_id in ('aadsync_full', 'aadsync_emea_full', 'aadsync_site_2_cycle'):\n"
        "    export = bag.dags[dag_id].get_task('export_entra')\n"
        "    out[dag_id] = {k: getattr(export, k) for k in ('pool', 'retries', 'instance', 'store_conn_id',\n"
        "        'store_url', 'entra_conn_id', 'write_budget', 'deletion_threshold')}\n"
        "    out[dag_id]['ad_conn_id'] = bag.dags[dag_id].get_task('import_ad').ad_conn_id\n"
        "    out[dag_id]['tags'] = sorted(bag.dags[dag_id].tags)\n"
        "    params = bag.dags[dag_id].params\n"
        "    out[dag_id]['params'] = {k: params.get_param(k).description\n"
        "        for k in ('deletion_threshold', 'confirm_mass_removal')}\n"
        "print(json.dumps(out))\n"
    )
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW_VAR_AADSYNC_INSTANCES": "emea, site_2",
        "AIRFLOW_VAR_AADSYNC_GRAPH_WRITER_POOL": "aadsync_graph_writers",
        "AIRFLOW_VAR_AADSYNC_SITE_2__GRAPH_WRITER_POOL": "site_2_writers",
        "AIRFLOW_VAR_AADSYNC_RETRIES": "4",
        "AIRFLOW_VAR_AADSYNC_EMEA__RETRIES": "1",
    }
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    found = json.loads(done.stdout.splitlines()[-1])
    assert found["errors"] == []
    assert found["dags"] == sorted(
        ["aadsync_cycle", "aadsync_full", "aadsync_emea_cycle", "aadsync_emea_full"]
        + ["aadsync_site_2_cycle", "aadsync_site_2_full"]
    )
    default, emea, site = found["aadsync_full"], found["aadsync_emea_full"], found["aadsync_site_2_cycle"]
    assert (default["pool"], emea["pool"], site["pool"]) == ("aadsync_graph_writers",) * 2 + ("site_2_writers",)
    assert (default["retries"], emea["retries"], site["retries"]) == (4, 1, 4)
    assert default["instance"] == "{{ var.value.get('aadsync_instance', 'default') }}"
    assert emea["instance"] == "emea" and site["instance"] == "site_2"
    # store and tenant: the instance's own Variables only, never the shared ones (two instances in one store or
    # tenant would overwrite each other); the tenant's connection defaults to aadsync_entra_<instance>
    assert emea["store_conn_id"] == "{{ var.value.get('aadsync_emea__store_conn_id', '') }}"
    assert emea["store_url"] == "{{ var.value.get('aadsync_emea__store_url', '') }}"
    assert emea["entra_conn_id"] == "{{ var.value.get('aadsync_emea__entra_conn_id', 'aadsync_entra_emea') }}"
    # the rest: the instance's own Variable, else the shared one, else the default
    assert emea["ad_conn_id"] == (
        "{{ var.value.get('aadsync_emea__ad_conn_id', var.value.get('aadsync_ad_conn_id', 'aadsync_ad')) }}"
    )
    assert emea["write_budget"] == (
        "{{ var.value.get('aadsync_emea__write_budget', var.value.get('aadsync_write_budget', '3000')) }}"
    )
    assert "var.value.get('aadsync_site_2__deletion_threshold', var.value.get(" in site["deletion_threshold"]
    assert emea["tags"] == ["aadsync", "aadsync:emea"] and default["tags"] == ["aadsync"]
    # the trigger form names the Variables each instance reads, in the order it reads them
    assert default["params"]["deletion_threshold"].endswith("Empty: the Variable aadsync_deletion_threshold, else 500.")
    assert site["params"]["deletion_threshold"].endswith(
        "Empty: the Variable aadsync_site_2__deletion_threshold, else aadsync_deletion_threshold, else 500."
    )
    assert (
        "more than the Variable aadsync_emea__import_deletion_threshold, else aadsync_import_deletion_threshold, "
        "else 500, or more than aadsync_emea__import_deletion_share, else aadsync_import_deletion_share, else 10 %"
        in emea["params"]["confirm_mass_removal"]
    )
    assert (
        "the Variable aadsync_import_deletion_threshold, else 500, or more than aadsync_import_deletion_share, "
        "else 10 %" in default["params"]["confirm_mass_removal"]
    )


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ("EMEA", "invalid sync instance name 'EMEA'"),
        ("ok, emea__x", "invalid sync instance name 'emea__x'"),
        ("2emea", "invalid sync instance name '2emea'"),
        ("a-b", "invalid sync instance name 'a-b'"),
        ("emea,site,emea", "aadsync_instances names emea more than once"),
    ],
)
def test_a_bad_or_repeated_instance_name_is_refused_naming_it(monkeypatch, names, message):
    from airflow_provider_aadsync.dag_settings import instances_from_variable

    monkeypatch.setenv("AIRFLOW_VAR_AADSYNC_INSTANCES", names)
    with pytest.raises(ValueError, match=message):
        instances_from_variable()


def test_a_named_instance_s_connectors_file_without_a_tenant_writes_to_its_own_tenant_only():
    from airflow_provider_aadsync.dag_factory import common_params, sync_cycle_dag
    from airflow_provider_aadsync.engine.connectors.config import parse_connectors_config

    scoped = parse_connectors_config("ad:\n  - name: ad\n    conn_id: aadsync_ad\n")
    named = parse_connectors_config(
        "ad:\n  - name: ad\n    conn_id: aadsync_ad\nentra:\n  name: entra\n  conn_id: tenant_b\n"
    )
    params = common_params(scoped)

    def entra_of(connectors, instance):
        dag = sync_cycle_dag("x", schedule=None, mode="full", params=params, doc="", connectors=connectors,
                             instance=instance)  # fmt: skip
        found = dag.get_task("export_entra").entra_conn_id, dag.get_task("import_entra").entra_conn_id
        assert dag.get_task("acquire_instance").entra_conn_id == found[1]  # its tenant is checked before any import
        return found

    own = "{{ var.value.get('aadsync_east__entra_conn_id', 'aadsync_entra_east') }}"
    assert entra_of(scoped, "east") == (own, own)
    assert entra_of(named, "east") == ("tenant_b", "tenant_b")
    assert entra_of(scoped, None) == ("aadsync_entra", "aadsync_entra")  # the default instance: as before
    with pytest.raises(ValueError, match="invalid sync instance name 'East'"):
        sync_cycle_dag("x", schedule=None, mode="full", params=params, doc="", instance="East")
