"""Who holds a directory role, read from Graph's unified RBAC lists (hooks/entra_roles.py) through a fake pager: every
active assignment at any scope and every PIM eligibility, named from the role definitions (custom roles too), a role
held at a scope other than the tenant named with it, a role-assignable group's members inheriting its role, and a
tenant without PIM answering 400 AadPremiumLicenseRequired."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_aadsync.hooks.entra_roles import (
    ASSIGNMENTS_URL,
    DEFINITIONS_URL,
    ELIGIBILITIES_URL,
    NO_PIM_LICENSE,
    directory_role_holders,
)
from airflow_provider_aadsync.hooks.entra_settings import GraphError

GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"
USER_ADMIN = "fe930be7-5e62-47db-91af-98c3a49a38b1"
CUSTOM = "0c1d2e3f-0000-4000-8000-00000000c001"
UNIT = "/administrativeUnits/5b7d2c1e-0000-4000-8000-00000000a001"


def item(principal: str, role: str, scope: str = "/", kind: str = "user") -> dict[str, Any]:
    return {
        "principalId": principal,
        "roleDefinitionId": role,
        "directoryScopeId": scope,
        "principal": {"@odata.type": f"#microsoft.graph.{kind}", "id": principal},
    }


class FakeGraph:
    """Pages of the collections by URL; an answer that is a GraphError is raised instead."""

    def __init__(self, collections: dict[str, Any]) -> None:
        self.collections = collections
        self.calls: list[str] = []

    def paginate(self, url: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        self.calls.append(url)
        answer = self.collections.get(url, [])
        if isinstance(answer, GraphError):
            raise answer
        yield {"value": answer}


DEFINITIONS = [
    {"id": GLOBAL_ADMIN, "displayName": "Global Administrator"},
    {"id": USER_ADMIN, "displayName": "User Administrator"},
    {"id": CUSTOM, "displayName": "Password Helper"},
]


def test_assignments_at_any_scope_and_eligibilities_are_named_from_the_definitions():
    graph = FakeGraph(
        {
            DEFINITIONS_URL: DEFINITIONS,
            ASSIGNMENTS_URL: [
                item("u1", GLOBAL_ADMIN),
                item("u2", USER_ADMIN, UNIT),
                item("u3", CUSTOM),
                item("g1", USER_ADMIN, kind="group"),
                item("u4", "9f8e7d6c-0000-4000-8000-00000000dead"),  # a definition not listed: named by its id
            ],
            ELIGIBILITIES_URL: [item("u1", USER_ADMIN, UNIT), item("u5", GLOBAL_ADMIN)],
            "/groups/g1/members": [{"@odata.type": "#microsoft.graph.user", "id": "u6"}, {"id": ""}],
        }
    )
    scoped = f"User Administrator (scope {UNIT})"
    assert directory_role_holders(graph) == {
        "u1": ("user", ["Global Administrator", f"{scoped} (eligible)"]),
        "u2": ("user", [scoped]),
        "u3": ("user", ["Password Helper"]),
        "g1": ("group", ["User Administrator"]),
        "u6": ("user", ["User Administrator"]),
        "u4": ("user", ["9f8e7d6c-0000-4000-8000-00000000dead"]),
        "u5": ("user", ["Global Administrator (eligible)"]),
    }
    assert graph.calls == [DEFINITIONS_URL, ASSIGNMENTS_URL, "/groups/g1/members", ELIGIBILITIES_URL]


def test_a_tenant_without_pim_has_no_eligibility_and_a_403_names_the_permission():
    no_pim = GraphError(400, NO_PIM_LICENSE, "The tenant needs to have Microsoft Entra ID P2.")
    assigned = [item("u1", GLOBAL_ADMIN)]
    graph = FakeGraph({DEFINITIONS_URL: DEFINITIONS, ASSIGNMENTS_URL: assigned, ELIGIBILITIES_URL: no_pim})
    assert directory_role_holders(graph) == {"u1": ("user", ["Global Administrator"])}

    denied = GraphError(403, "Authorization_RequestDenied", "Insufficient privileges.", url=ASSIGNMENTS_URL)
    with pytest.raises(GraphError) as caught:
        directory_role_holders(FakeGraph({DEFINITIONS_URL: DEFINITIONS, ASSIGNMENTS_URL: denied}))
    assert caught.value.status == 403 and "RoleManagement.Read.Directory" in str(caught.value)
    other = GraphError(400, "BadRequest", "Something else.")
    with pytest.raises(GraphError, match="Something else"):
        directory_role_holders(FakeGraph({DEFINITIONS_URL: DEFINITIONS, ELIGIBILITIES_URL: other}))
