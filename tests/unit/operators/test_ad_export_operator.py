"""ADExportOperator: templated fields and the settings it builds from task parameters; group writeback opt-in."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_provider_aadsync.hooks.active_directory_settings import ActiveDirectoryConfigurationError
from airflow_provider_aadsync.operators.ad_export import ADExportOperator
from airflow_provider_aadsync.operators.sync import SyncOperator
from airflow_provider_aadsync.operators.templated import load_rules_templated
from airflow_provider_aadsync.steps import check_holding_ou


def ad_export_settings(**rendered):
    """The settings the operator builds from what Airflow rendered for its parameters."""
    return ADExportOperator(task_id="export_ad", **rendered).export_settings()


def test_template_fields():
    operator = ADExportOperator(task_id="export_ad")
    for name in operator.template_fields:
        getattr(operator, name)
    assert {"ad_conn_id", "staging", "deletion_threshold", "member_chunk", "store_url"} <= set(operator.template_fields)


def test_ad_export_settings_when_parameters_are_templated_strings():
    settings = ad_export_settings(staging="True", deletion_threshold="", member_chunk="2500")
    assert settings.staging and settings.deletion_threshold == 500 and settings.member_chunk == 2500
    assert settings.deprovision == "delete"


def test_ad_export_settings_when_move_has_no_holding_ou():
    with pytest.raises(ValueError, match="needs a holding_ou"):
        ad_export_settings(deprovision="move")
    moved = ad_export_settings(deprovision="move", holding_ou="OU=Disabled,DC=corp,DC=example,DC=test")
    assert moved.holding_ou == "OU=Disabled,DC=corp,DC=example,DC=test"


def test_holding_ou_inside_the_base_dn_is_refused_in_any_spelling():
    base = "DC=corp,DC=example,DC=test"
    inside = ad_export_settings(deprovision="move", holding_ou="ou=Holding, dc=CORP,dc=example,dc=test")
    with pytest.raises(ActiveDirectoryConfigurationError, match="lies inside the AD connection's base DN"):
        check_holding_ou(inside, base)
    check_holding_ou(ad_export_settings(deprovision="move", holding_ou="OU=Holding,DC=corp,DC=test"), base)
    check_holding_ou(ad_export_settings(), base)  # delete: no holding OU to check
    with pytest.raises(ActiveDirectoryConfigurationError, match="holding_ou is not usable: 'nonsense' is not a valid"):
        check_holding_ou(ad_export_settings(deprovision="move", holding_ou="nonsense"), base)


def test_guard_thresholds_are_templated_on_both_exports():
    from airflow_provider_aadsync.operators.entra_export import EntraExportOperator

    guards = {
        "disable_threshold",
        "member_removal_threshold",
        "member_removal_group_percent",
        "identity_change_threshold",
        "attribute_clear_threshold",
    }
    assert guards <= set(ADExportOperator(task_id="export_ad").template_fields)
    assert guards <= set(EntraExportOperator(task_id="export_entra").template_fields)
    settings = ad_export_settings(
        disable_threshold="", member_removal_threshold="1200", member_removal_group_percent="None"
    )
    assert (settings.disable_threshold, settings.member_removal_threshold) == (500, 1200)
    assert settings.member_removal_group_percent == 50
    assert ad_export_settings(identity_change_threshold="7").identity_change_threshold == 7
    assert ad_export_settings(attribute_clear_threshold="8").attribute_clear_threshold == 8
    with pytest.raises(ValueError, match="less than or equal to 100"):
        ad_export_settings(member_removal_group_percent="101")


def test_both_exports_take_the_mass_change_confirmation_templated():
    """Rendered empty or "None": nothing confirmed; a value in any order: its fixed form; a malformed one fails the
    task without retries, before AD or the store is opened."""
    from airflow_provider_aadsync.operators.entra_export import EntraExportOperator

    operators = [
        ADExportOperator(task_id="export_ad", writeback_enabled="true", writeback_ou="OU=Groups,DC=corp,DC=test"),
        EntraExportOperator(task_id="export_entra"),
    ]
    for operator in operators:
        assert "confirm_mass_change" in operator.template_fields
        for unset in (None, "", "None"):
            operator.confirm_mass_change = unset
            assert operator.export_settings().confirm_mass_change is None
        operator.confirm_mass_change = " member_removals=1204, deletes=812 "
        assert operator.export_settings().confirm_mass_change == "deletes=812,member_removals=1204"
        operator.confirm_mass_change = "812"
        with pytest.raises(AirflowFailException, match="refused configuration, not retried: confirm_mass_change '812'"):
            operator.execute({})


# ------------------------------------------------------------------------------------------ writeback is opt-in
def test_writeback_off_by_default_the_ad_export_is_skipped_and_writes_nothing(tmp_path):
    """Off (the default, or a Variable rendered "false"/empty) with ConsistencyGuid writeback off, the task says so
    and never opens AD or the store."""
    for rendered in (False, "false", "", "None"):
        operator = ADExportOperator(
            task_id="export_ad", writeback_enabled=rendered, ad_conn_id="no_such_connection",
            consistency_guid_writeback="false",  # on unless it renders false (its Variable's default: true)
            store_url=f"sqlite:///{tmp_path / 'missing' / 'store.sqlite'}",
        )  # fmt: skip
        with pytest.raises(AirflowSkipException, match="writeback are off: the AD export writes nothing"):
            operator.execute({})
    assert not (tmp_path / "missing").exists()
    assert ADExportOperator(task_id="export_ad").writeback_enabled is False
    assert "writeback_enabled" in ADExportOperator.template_fields


@pytest.mark.parametrize("rendered_ou", ["", "None"])
def test_sync_with_writeback_on_and_no_ou_fails_without_retries_naming_the_variable(tmp_path, rendered_ou):
    operator = SyncOperator(
        task_id="sync_entra", connector="entra", mode="full", writeback_enabled="true", writeback_ou=rendered_ou,
        store_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
    )  # fmt: skip
    context = {"dag": type("Dag", (), {"dag_id": "aadsync_full"})(), "run_id": "manual__1", "ti": None}
    with pytest.raises(AirflowFailException, match="refused configuration, not retried: .*aadsync_writeback_ou"):
        operator.execute(context)


def test_sync_operator_loads_writeback_rules_only_when_the_rendered_flag_is_true():
    off = load_rules_templated(
        None, "v2", writeback_enabled="false", writeback_ou="OU=Writeback,DC=corp,DC=example,DC=test"
    )
    on = load_rules_templated(
        None, "v2", writeback_enabled="True", writeback_ou="OU=Writeback,DC=corp,DC=example,DC=test"
    )
    assert "Out to AD - Group Writeback" in on and "Out to AD - Group Writeback" not in off
