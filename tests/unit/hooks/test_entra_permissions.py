"""The Graph application permissions check: reading a token's roles claim and the Test button's message."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from airflow_provider_aadsync.hooks.entra import EntraHook
from airflow_provider_aadsync.hooks.entra_permissions import (
    OPTIONAL_PERMISSIONS,
    REQUIRED_PERMISSIONS,
    UnreadableTokenError,
    check_permissions,
    token_roles,
)
from airflow_provider_aadsync.hooks.entra_settings import EntraConnectionSettings

ALL = [p.name for p in (*REQUIRED_PERMISSIONS, *OPTIONAL_PERMISSIONS)]


def jwt(claims: object, *, header: object = None) -> str:
    """An unsigned JWT-shaped token (the check never verifies signatures: Graph does)."""

    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header or {'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


class TestTokenRoles:
    def test_roles_of_an_app_token(self):
        token = jwt({"aud": "https://graph.microsoft.com", "roles": ["User.ReadWrite.All", "Group.ReadWrite.All"]})
        assert token_roles(token) == {"User.ReadWrite.All", "Group.ReadWrite.All"}

    def test_no_roles_claim_is_no_permission(self):
        assert token_roles(jwt({"aud": "https://graph.microsoft.com", "idtyp": "app"})) == frozenset()

    def test_base64url_characters_and_any_padding_are_read(self):
        # a payload whose base64 has '-' and '_' and needs padding
        token = jwt({"roles": ["Domain.Read.All"], "name": "??>>~~~"})
        assert "-" in token.split(".")[1] or "_" in token.split(".")[1]
        assert token_roles(token) == {"Domain.Read.All"}

    @pytest.mark.parametrize(
        ("token", "reason"),
        [
            ("opaque-token-value", "not a JWT"),
            ("a.b", "not a JWT"),
            ("eyJhbGciOiJub25lIn0.!!!.sig", "not base64url JSON"),
            (jwt(["roles"]), "not a JSON object"),
            (jwt({"roles": "User.ReadWrite.All"}), "not a list"),
        ],
    )
    def test_an_unreadable_token_says_why_without_quoting_it(self, token, reason):
        with pytest.raises(UnreadableTokenError, match=reason) as caught:
            token_roles(token)
        assert token not in str(caught.value)


class TestCheck:
    def test_the_full_set_passes_without_notes(self):
        check = check_permissions(ALL)
        assert check.ok and not check.missing_optional
        assert check.message() == "Every required Microsoft Graph application permission is granted."

    def test_higher_privileged_permissions_stand_in(self):
        check = check_permissions(["Directory.ReadWrite.All", "RoleManagement.ReadWrite.Directory"])
        assert check.ok and not check.missing_optional
        # Directory.ReadWrite.All does not list PIM's role eligibilities (List roleEligibilityScheduleInstances)
        assert [p.name for p in check_permissions(["Directory.ReadWrite.All"]).missing] == [
            "RoleManagement.Read.Directory"
        ]
        # Group.ReadWrite.All covers member writes as Graph's reference lists it
        assert "GroupMember.ReadWrite.All" not in {p.name for p in check_permissions(["Group.ReadWrite.All"]).missing}

    def test_every_missing_permission_is_named_with_why_and_its_alternatives(self):
        check = check_permissions(["User.ReadWrite.All", "Organization.Read.All"])
        assert not check.ok
        missing = [
            "Group.ReadWrite.All",
            "GroupMember.ReadWrite.All",
            "RoleManagement.Read.Directory",
            "Domain.Read.All",
        ]
        assert [p.name for p in check.missing] == missing
        message = check.message()
        assert message.startswith("Missing Microsoft Graph application permissions")
        assert "admin consent" in message
        for name in (*missing, "GET /domains", "GET /roleManagement/directory/roleAssignments"):
            assert name in message
        assert "User.ReadWrite.All (or" not in message and "Organization.Read.All (or" not in message
        assert "Note, optional permissions not granted" in message and "Application.ReadWrite.OwnedBy" in message

    def test_only_an_optional_permission_missing_passes_with_a_note(self):
        check = check_permissions([p.name for p in REQUIRED_PERMISSIONS])
        assert check.ok and [p.name for p in check.missing_optional] == ["Application.ReadWrite.OwnedBy"]
        assert "directory extensions" in check.message()


@pytest.fixture
def hook(monkeypatch):
    hook = EntraHook(
        settings=EntraConnectionSettings(
            tenant_id="t", client_id="c", client_secret="s3cr3t-value", graph_url="https://graph.test"
        )
    )
    requests = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"value": [{"id": "tenant-id", "displayName": "Contoso"}]})

    hook.__dict__["_http"] = httpx.Client(base_url="https://graph.test/v1.0", transport=httpx.MockTransport(handler))
    hook.requests = requests
    return hook


class TestTestConnection:
    def test_missing_permissions_fail_the_test_before_any_graph_call(self, hook, monkeypatch):
        monkeypatch.setattr(hook, "get_token", lambda: jwt({"roles": ["User.ReadWrite.All"]}))
        ok, message = hook.test_connection()
        assert not ok
        assert "Group.ReadWrite.All" in message and "Organization.Read.All" in message
        assert hook.requests == []

    def test_a_full_grant_connects_and_notes_a_missing_optional_one(self, hook, monkeypatch):
        monkeypatch.setattr(hook, "get_token", lambda: jwt({"roles": [p.name for p in REQUIRED_PERMISSIONS]}))
        ok, message = hook.test_connection()
        assert ok
        assert message.startswith("Connected to tenant Contoso (tenant-id). Every required")
        assert "Application.ReadWrite.OwnedBy" in message
        assert [r.url.path for r in hook.requests] == ["/v1.0/organization"]

    def test_an_opaque_token_is_reported_as_unreadable_not_as_missing_permissions(self, hook, monkeypatch):
        monkeypatch.setattr(hook, "get_token", lambda: "opaque")
        ok, message = hook.test_connection()
        assert ok and "could not be read from the token" in message and "Missing" not in message
