from __future__ import annotations

import json

import pytest
from airflow.sdk import Connection

from airflow_provider_aadsync.engine import write_guard
from airflow_provider_aadsync.engine.store import StoreLockLostError
from airflow_provider_aadsync.hooks import active_directory as hook_module
from airflow_provider_aadsync.hooks import active_directory_pages as pages
from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook
from airflow_provider_aadsync.hooks.active_directory_settings import (
    ActiveDirectoryConfigurationError,
    ActiveDirectoryConnectionError,
    ActiveDirectoryError,
    ADConnectionSettings,
    RangedReadError,
)
from airflow_provider_aadsync.operators.base import CONFIGURATION_ERRORS

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


def plain_settings(**extra) -> ADConnectionSettings:
    return ADConnectionSettings(
        host="127.0.0.1",
        port=1,
        bind_dn="CN=x",
        password=SECRET,
        base_dn="DC=x",
        tls="none",
        connect_timeout=2,
        **extra,
    )


class TestPlainLdapBind:
    def test_refused_without_the_explicit_extra(self):
        hook = ActiveDirectoryHook(settings=plain_settings())
        with pytest.raises(ActiveDirectoryConnectionError, match="send the password in clear") as caught:
            hook.get_conn()
        assert "allow_plain_ldap_bind: true" in str(caught.value) and SECRET not in str(caught.value)
        assert isinstance(caught.value, ActiveDirectoryConfigurationError)  # not retried by Airflow
        assert ActiveDirectoryConfigurationError in CONFIGURATION_ERRORS
        ok, message = hook.test_connection()
        assert not ok and "allow_plain_ldap_bind" in message

    def test_allowed_by_the_extra_then_tries_to_connect(self, caplog):
        settings = ADConnectionSettings.from_connection(
            connection(tls="none", allow_plain_ldap_bind="true")
        ).model_copy(update={"host": "127.0.0.1", "port": 1, "connect_timeout": 2})
        assert settings.allow_plain_ldap_bind is True
        with pytest.raises(ActiveDirectoryConnectionError, match="could not reach ldap://127.0.0.1:1"):
            ActiveDirectoryHook(settings=settings).get_conn()
        assert "password travels in clear" in caplog.text and SECRET not in caplog.text


class TestRangedMembers:
    def hook(self, answers):
        hook = ActiveDirectoryHook(settings=plain_settings())
        hook._read_range = lambda dn, name, low: answers.pop(0)
        return hook

    def test_a_missing_range_attribute_is_an_error_naming_the_group(self):
        group = "<GUID=0f0e>;<SID=S-1-5>;CN=Big Group,OU=Groups,DC=x"
        first = [b"m%d" % n for n in range(1500)]
        hook = self.hook([("member;range=1500-2999", [b"x"] * 1500), (None, [])])
        with pytest.raises(RangedReadError, match=r"'member' of CN=Big Group,OU=Groups,DC=x .* after 3,000 values"):
            hook._complete_ranges(group, {"member;range=0-1499": first})

    def test_ranges_until_star_are_merged(self):
        hook = self.hook([("member;range=2-3", [b"c", b"d"]), ("member;range=4-*", [b"e"])])
        raw = hook._complete_ranges("CN=g,DC=x", {"member;range=0-1": [b"a", b"b"], "cn": [b"g"]})
        assert raw == {"cn": [b"g"], "member": [b"a", b"b", b"c", b"d", b"e"]}

    def test_objects_read_by_guid_get_their_ranges_completed(self, monkeypatch):
        """read_entries (a delta's objects read whole: moved into scope, or sent with a window of their members)
        reads every range, as a full import does."""
        group = "<GUID=0f>;CN=g,DC=x"

        class Connection:
            response: list = []

            def search(self, base, search_filter, **options):
                self.asked = options["attributes"]
                raw = {"cn": [b"g"], "member;range=0-1": [b"a", b"b"]}
                self.response = [{"type": "searchResEntry", "dn": group, "raw_attributes": raw}]

        conn = Connection()
        hook = self.hook([("member;range=2-3", [b"c", b"d"]), ("member;range=4-*", [b"e"])])
        monkeypatch.setattr(hook, "get_conn", lambda: conn)
        found = hook.read_entries(["0000000f-0000-0000-0000-000000000000"], ["cn", "member"], "DC=x")
        assert found == [(group, {"cn": [b"g"], "member": [b"a", b"b", b"c", b"d", b"e"]})]
        assert conn.asked == ["cn", f"member;range=0-{hook_module.RANGE_WINDOW - 1}", "objectGUID", "objectClass"]


class TestFullReadClient:
    """The full import's paged read goes through python-ldap when installed (active_directory_pages), else ldap3."""

    def test_auto_takes_python_ldap_when_installed_else_ldap3(self, monkeypatch):
        assert pages.python_ldap_available()  # the project's setup installs it: the fast path is the tested one
        assert pages.full_read_client(plain_settings()) == "python-ldap"
        assert pages.full_read_client(plain_settings(full_read_client="ldap3")) == "ldap3"
        monkeypatch.setattr(pages, "python_ldap", None)
        assert pages.full_read_client(plain_settings()) == "ldap3"
        with pytest.raises(ActiveDirectoryConfigurationError, match=r"full_read_client is python-ldap.*\[ldap\]"):
            pages.full_read_client(plain_settings(full_read_client="python-ldap"))

    def test_an_unknown_client_names_the_field(self):
        with pytest.raises(ActiveDirectoryError, match="full_read_client"):
            ADConnectionSettings.from_connection(connection(full_read_client="bonsai"))

    @pytest.mark.parametrize("client", ["python-ldap", "ldap3"])
    def test_either_client_s_pages_get_their_ranges_completed(self, monkeypatch, client):
        page = [("<GUID=0f>;CN=g,DC=x", {"cn": [b"g"], "member;range=0-1": [b"a", b"b"]})]
        used = []

        def fake(name):
            def read(*args):
                used.append(name)
                yield [(dn, dict(raw)) for dn, raw in page]

            return read

        monkeypatch.setattr(hook_module, "python_ldap_pages", fake("python-ldap"))
        monkeypatch.setattr(hook_module, "ldap3_pages", fake("ldap3"))
        hook = ActiveDirectoryHook(settings=plain_settings(full_read_client=client))
        monkeypatch.setattr(hook, "get_conn", lambda: None)
        hook._read_range = lambda dn, name, low: ("member;range=2-*", [b"c"])
        assert list(hook.full_import_pages(["cn", "member"], base="DC=x")) == [
            [("<GUID=0f>;CN=g,DC=x", {"cn": [b"g"], "member": [b"a", b"b", b"c"]})]
        ]
        assert used == [client]

    @pytest.mark.parametrize("client", ["python-ldap", "ldap3"])
    def test_a_full_read_asks_for_the_anchor_and_the_class_whatever_the_attribute_list(self, monkeypatch, client):
        """A connection's own attribute list without objectClass made a full import fail on the object type (and the
        read of an object moved into the scope skip it as untyped): every read asks for what each entry needs."""
        requested: list[list[str]] = []

        def read(_settings_or_conn, _base, _filter, attributes, *rest):
            requested.append(list(attributes))
            yield []

        monkeypatch.setattr(hook_module, "python_ldap_pages", read)
        monkeypatch.setattr(hook_module, "ldap3_pages", read)
        hook = ActiveDirectoryHook(settings=plain_settings(full_read_client=client))
        monkeypatch.setattr(hook, "get_conn", lambda: None)
        list(hook.full_import_pages(["displayName", "member"], base="DC=x"))
        (asked,) = requested
        assert {"objectGUID", "objectClass", "displayName"} <= set(asked) and "member;range=0-1499" in asked
        assert pages.entry_attributes(["displayName", "objectClass"]) == ["displayName", "objectClass", "objectGUID"]

    def test_python_ldap_failures_become_hook_errors_without_the_password(self):
        settings = plain_settings().model_copy(update={"tls": "ldaps"})
        with pytest.raises(ActiveDirectoryConnectionError, match="could not reach ldaps://127.0.0.1:1") as caught:
            next(pages.python_ldap_pages(settings, "DC=x", "(objectClass=*)", ["cn"]))
        assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("ca_cert", "label"),
    [
        (None, "system trust store"),
        ("/etc/ssl/corp-ca.pem", "/etc/ssl/corp-ca.pem"),
        ("-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n", "the CA certificate given as PEM text"),
    ],
)
def test_a_certificate_error_names_the_ca_by_its_file_never_by_its_pem_text(ca_cert, label):
    assert plain_settings(ca_cert=ca_cert).ca_label == label


class TestDirSyncControl:
    """The python-ldap DirSync read's control (active_directory_pages.DirSyncControl) encodes what ldap3 sends."""

    def test_request_value_has_the_ldap3_flags_a_bounded_max_bytes_and_the_cookie(self):
        from ldap3.protocol.microsoft import DirSyncControlRequestValue
        from pyasn1.codec.ber import decoder

        encoded = pages.DirSyncControl(cookie=b"cookie\x00").encodeControlValue()
        value, rest = decoder.decode(encoded, asn1Spec=DirSyncControlRequestValue())
        assert rest == b""
        # incremental values | ancestors first, as a 32-bit field (a C int's encoding: 4 bytes, sign bit set)
        assert int(value["Flags"]) & 0xFFFFFFFF == 0x80000800 and encoded[2:7] == b"\x02\x04\x80\x00\x08"
        assert int(value["MaxBytes"]) == pages.DIRSYNC_MAX_BYTES == 10 * 1024 * 1024
        assert bytes(value["Cookie"]) == b"cookie\x00"

    def test_response_value_gives_the_cookie_and_whether_more_follows(self):
        from ldap3.protocol.microsoft import DirSyncControlResponseValue
        from pyasn1.codec.ber import encoder

        for more in (0, 1):
            value = DirSyncControlResponseValue()
            value["MoreResults"], value["unused"], value["CookieServer"] = more, 0, b"next"
            control = pages.DirSyncControl()
            control.decodeControlValue(encoder.encode(value))
            assert (control.more_results, control.cookie) == (bool(more), b"next")

    def test_only_requested_attributes_are_kept_with_their_range_options(self):
        raw = {"member;range=1-1": [b"a"], "Member;range=0-0": [b"b"], "parentGUID": [b"p"], "title": []}
        assert pages.requested_only(raw, {"member", "title"}) == {
            "member;range=1-1": [b"a"],
            "Member;range=0-0": [b"b"],
            "title": [],
        }


class TestWriteGuard:
    """Each LDAP write first runs the write guard an export's fenced writer installs (engine/write_guard.py): a
    member change that takes two writes, or any write after a wait, asks for the lock again right before it leaves."""

    class _Connection:
        def __init__(self) -> None:
            self.modified: list[str] = []

        def modify(self, dn: str, changes: dict, controls=None) -> bool:
            self.modified.append(dn)
            return True

    def test_a_refusing_guard_stops_the_write_before_it_leaves(self, monkeypatch):
        hook = ActiveDirectoryHook(settings=plain_settings())
        connection = self._Connection()
        monkeypatch.setattr(hook, "get_conn", lambda: connection)

        def lock_lost() -> None:
            raise StoreLockLostError("taken over")

        with write_guard.guarding(lock_lost), pytest.raises(StoreLockLostError):
            hook.modify_object("0f0e", {"displayName": ["Sales"]})
        assert connection.modified == [] and hook.counters["ldap_writes"] == 0
        hook.modify_object("0f0e", {"displayName": ["Sales"]})  # outside an export's fenced call: nothing to check
        assert connection.modified == ["<GUID=0f0e>"]
