from __future__ import annotations

import json

import pytest
from airflow.sdk import Connection

from airflow_provider_aadsync.hooks.active_directory import (
    ActiveDirectoryError,
    ActiveDirectoryHook,
    ADConnectionSettings,
)

SECRET = "S3cret-Bind-Passw0rd"


def connection(**extra) -> Connection:
    return Connection(
        conn_id="aadsync_ad",
        conn_type="aadsync_ad",
        host="dc1.corp.example.com",
        login="CN=svc,DC=corp,DC=example,DC=com",
        password=SECRET,
        extra=json.dumps({"base_dn": "DC=corp,DC=example,DC=com", **extra}),
    )


class TestADConnectionSettings:
    def test_defaults_are_ldaps_with_validation(self):
        settings = ADConnectionSettings.from_connection(connection())
        assert settings.tls == "ldaps" and settings.effective_port == 636
        assert settings.url == "ldaps://dc1.corp.example.com:636"
        assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())

    def test_form_text_becomes_lists(self):
        settings = ADConnectionSettings.from_connection(connection(attributes="cn, mail ,", tls="STARTTLS"))
        assert settings.attributes == ["cn", "mail"]
        assert settings.tls == "starttls" and settings.effective_port == 389

    def test_bad_values_name_the_connection_and_field(self):
        with pytest.raises(ActiveDirectoryError, match=r"'aadsync_ad' is not usable: tls: Input should be"):
            ADConnectionSettings.from_connection(connection(tls="ssl"))
        with pytest.raises(ActiveDirectoryError, match="page_size"):
            ADConnectionSettings.from_connection(connection(page_size=0))

    def test_missing_base_dn(self):
        conn = connection()
        conn.extra = "{}"
        with pytest.raises(ActiveDirectoryError, match="base_dn: Field required"):
            ADConnectionSettings.from_connection(conn)


class TestActiveDirectoryHook:
    def test_identity_follows_airflow_conventions(self):
        assert ActiveDirectoryHook.conn_name_attr == "ad_conn_id"
        assert ActiveDirectoryHook.default_conn_name == "aadsync_ad"
        assert ActiveDirectoryHook.conn_type == "aadsync_ad"
        assert ActiveDirectoryHook().ad_conn_id == "aadsync_ad"

    def test_ui_field_behaviour_relabels_login(self):
        behaviour = ActiveDirectoryHook.get_ui_field_behaviour()
        assert behaviour["relabeling"]["login"] == "Bind DN"
        assert "extra" in behaviour["hidden_fields"]

    def test_reads_connection_from_environment(self, monkeypatch):
        conn = connection(tls="starttls")
        monkeypatch.setenv("AIRFLOW_CONN_AADSYNC_AD", conn.as_json())
        settings = ActiveDirectoryHook().settings
        assert settings.host == "dc1.corp.example.com" and settings.tls == "starttls"
        assert settings.password.get_secret_value() == SECRET

    def test_test_connection_never_raises(self):
        hook = ActiveDirectoryHook(
            settings=ADConnectionSettings(
                host="127.0.0.1", port=1, bind_dn="CN=x", password=SECRET, base_dn="DC=x", connect_timeout=2
            )
        )
        ok, message = hook.test_connection()
        assert not ok and "could not reach ldaps://127.0.0.1:1" in message and SECRET not in message
