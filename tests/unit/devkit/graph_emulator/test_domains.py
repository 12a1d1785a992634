"""The tenant's domains as Graph's domain resource documents them, and the admin API that adds and verifies them."""

from __future__ import annotations

from aadsync_devkit.graph_emulator.state import EmulatorState

from .conftest import assert_graph_error, new_user


def test_get_domains_lists_the_initial_and_verified_domains(client, auth, tenant):
    response = client.get("/v1.0/domains", headers=auth)
    assert response.status_code == 200, response.text
    domains = {d["id"]: d for d in response.json()["value"]}
    assert list(domains) == ["contoso.onmicrosoft.com", "contoso.com"]
    initial = domains["contoso.onmicrosoft.com"]
    assert initial["isInitial"] and initial["isDefault"] and initial["isVerified"] and initial["isRoot"]
    assert initial["authenticationType"] == "Managed" and initial["supportedServices"]
    assert not domains["contoso.com"]["isInitial"] and not domains["contoso.com"]["isDefault"]
    one = client.get("/v1.0/domains/CONTOSO.COM", headers=auth).json()
    assert one["id"] == "contoso.com" and one["isVerified"] is True
    assert_graph_error(client.get("/v1.0/domains/fabrikam.com", headers=auth), 404, "Request_ResourceNotFound")
    selected = client.get("/v1.0/domains?$select=id,isVerified", headers=auth).json()["value"]
    assert selected[0] == {"id": "contoso.onmicrosoft.com", "isVerified": True}


def test_an_added_domain_carries_upns_only_once_verified(client, auth, tenant):
    admin = f"/_emulator/tenants/{tenant['id']}/domains"
    added = client.post(admin, json={"name": "Fabrikam.com", "isVerified": False})
    assert added.status_code == 201, added.text
    assert added.json()["id"] == "fabrikam.com" and added.json()["isVerified"] is False
    assert added.json()["supportedServices"] == [] and added.json()["isRoot"] is False
    body = new_user(1, userPrincipalName="user1@fabrikam.com")
    refused = client.post("/v1.0/users", headers=auth, json=body)
    assert_graph_error(refused, 400, "Request_BadRequest")
    assert "verified domain names" in refused.json()["error"]["message"]
    verified = client.patch(f"{admin}/fabrikam.com", json={"isVerified": True, "isDefault": True})
    assert verified.status_code == 200 and verified.json()["isVerified"] and verified.json()["isDefault"]
    assert client.post("/v1.0/users", headers=auth, json=body).status_code == 201
    defaults = [d["id"] for d in client.get("/v1.0/domains", headers=auth).json()["value"] if d["isDefault"]]
    assert defaults == ["fabrikam.com"]
    organization = client.get("/v1.0/organization", headers=auth).json()["value"][0]
    assert {d["name"]: d["isDefault"] for d in organization["verifiedDomains"]}["fabrikam.com"] is True


def test_domain_admin_errors(client, tenant):
    admin = f"/_emulator/tenants/{tenant['id']}/domains"
    assert client.post(admin, json={"name": "contoso.com"}).status_code == 409
    assert client.post(admin, json={"name": "not a domain"}).status_code == 400
    assert client.post(admin, json={"name": "x.onmicrosoft.com"}).status_code == 400
    assert client.post(admin, json={"name": "sub.contoso.com", "color": "blue"}).status_code == 400
    assert client.post(admin, json={"name": "new.example", "isVerified": False}).status_code == 201
    assert client.patch(f"{admin}/new.example", json={"isDefault": True}).status_code == 400  # not verified yet
    assert client.patch(f"{admin}/contoso.com", json={"isVerified": False}).status_code == 400
    assert client.patch(f"{admin}/contoso.onmicrosoft.com", json={"authenticationType": "Federated"}).status_code == 400
    assert client.delete(f"{admin}/contoso.onmicrosoft.com").status_code == 400
    assert client.delete(f"{admin}/new.example").status_code == 204
    assert client.patch(f"{admin}/new.example", json={"isVerified": True}).status_code == 404


def test_a_verified_subdomain_is_not_a_root_and_federation_shows(client, auth, tenant):
    admin = f"/_emulator/tenants/{tenant['id']}/domains"
    assert client.post(admin, json={"name": "eu.contoso.com", "authenticationType": "Federated"}).status_code == 201
    sub = client.get("/v1.0/domains/eu.contoso.com", headers=auth).json()
    assert sub["isVerified"] and not sub["isRoot"] and sub["authenticationType"] == "Federated"


def test_domains_survive_a_restart(tmp_path):
    state = EmulatorState(state_file=tmp_path / "state.sqlite")
    tenant = state.create_tenant({"name": "dom", "verifiedDomains": ["dom.example"]})
    tenant.add_domain({"name": "later.example", "isVerified": False})
    tenant.add_domain({"name": "fed.example", "authenticationType": "Federated", "isDefault": True})
    state.save()
    loaded = EmulatorState(state_file=tmp_path / "state.sqlite").tenants[tenant.id]
    assert loaded.domains() == tenant.domains()
    assert loaded.default_domain == "fed.example" and loaded.unverified_domains == ["later.example"]
