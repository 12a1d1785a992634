"""The Entra connection's Test button against the Graph emulator over TLS: an app registration granted fewer
application permissions than the sync needs is named, permission by permission, from its real token."""

from __future__ import annotations

import httpx
import pytest

from airflow_provider_aadsync.engine.connectors.entra.extensions import register_extensions
from airflow_provider_aadsync.hooks.entra_settings import GraphError
from tests.support.servers import GRAPH_CLIENT_ID, entra_hook_for, trust


def grant(graph_server, graph_tenant, roles: list[str]) -> None:
    response = httpx.patch(
        f"{graph_server.base_url}/_emulator/tenants/{graph_tenant['id']}/apps/{GRAPH_CLIENT_ID}",
        json={"roles": roles},
        verify=trust(graph_server),
    )
    assert response.status_code == 204, response.text


def test_a_reduced_app_registration_is_named_permission_by_permission(graph_server, graph_tenant):
    grant(graph_server, graph_tenant, ["User.Read.All", "Group.ReadWrite.All", "Organization.Read.All"])
    hook = entra_hook_for(graph_server, graph_tenant)
    ok, message = hook.test_connection()
    assert not ok
    assert message.startswith("Missing Microsoft Graph application permissions")
    for missing in ("User.ReadWrite.All", "Domain.Read.All", "RoleManagement.Read.Directory"):
        assert f"{missing} (or" in message
    assert "GroupMember.ReadWrite.All (or" not in message  # Group.ReadWrite.All stands in for it
    assert "Note, optional permissions not granted" in message and "Application.ReadWrite.OwnedBy" in message
    # and Graph itself refuses what the Test button warned about
    with pytest.raises(GraphError) as caught:
        hook.request("POST", "/users", json={"displayName": "x"})
    assert caught.value.status == 403 and caught.value.code == "Authorization_RequestDenied"


def test_the_required_set_passes_with_a_note_and_the_full_set_without(graph_server, graph_tenant):
    required = ["User.ReadWrite.All", "Group.ReadWrite.All", "GroupMember.ReadWrite.All", "Organization.Read.All",
                "Domain.Read.All", "RoleManagement.Read.Directory"]  # fmt: skip
    grant(graph_server, graph_tenant, required)
    ok, message = entra_hook_for(graph_server, graph_tenant).test_connection()
    assert ok, message
    assert f"({graph_tenant['id']})" in message and "Application.ReadWrite.OwnedBy" in message

    grant(graph_server, graph_tenant, [*required, "Application.ReadWrite.OwnedBy"])
    hook = entra_hook_for(graph_server, graph_tenant)
    ok, message = hook.test_connection()  # a new token
    assert ok and "Every required Microsoft Graph application permission is granted. " in message, message
    # with the permission granted, the test says whether the anchor's directory extension is registered (and writes
    # nothing); once the setup step registered it (the app owns its registration here), it says so
    anchor = f"extension_{hook.application_id.replace('-', '')}_aadsyncSourceAnchor"
    assert f"{anchor} is not registered" in message and "aadsync register-extensions" in message
    register_extensions(hook, hook.application_id, {"aadsyncSourceAnchor": {"User", "Group"}})
    ok, message = hook.test_connection()
    assert ok and message.endswith(f"Directory extension {anchor} is registered."), message


def test_an_import_without_the_role_permission_stops_and_names_it(graph_server, graph_tenant):
    """Who holds a directory role is read by every Entra import (admins are never matched): an app that may not read
    it gets Graph's 403 with the permission to grant, never an import that cannot tell administrators apart."""
    grant(graph_server, graph_tenant, ["User.ReadWrite.All", "Group.ReadWrite.All", "Organization.Read.All"])
    hook = entra_hook_for(graph_server, graph_tenant)
    with pytest.raises(GraphError) as caught:
        hook.directory_role_holders()
    assert caught.value.status == 403 and "RoleManagement.Read.Directory" in str(caught.value)
    # Directory.ReadWrite.All reads the active roles, not PIM's eligibilities: still stopped, and told why
    grant(graph_server, graph_tenant, ["Directory.ReadWrite.All"])
    with pytest.raises(GraphError) as caught:
        entra_hook_for(graph_server, graph_tenant).directory_role_holders()
    assert "roleEligibilityScheduleInstances" in caught.value.url and "eligible in PIM" in str(caught.value)
    grant(graph_server, graph_tenant, ["User.ReadWrite.All", "Group.ReadWrite.All", "RoleManagement.Read.Directory"])
    assert entra_hook_for(graph_server, graph_tenant).directory_role_holders() == {}
