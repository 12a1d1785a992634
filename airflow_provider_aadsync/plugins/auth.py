"""Authentication and authorization of the sync manager, as Airflow's own API does it.

The user comes from Airflow's ``get_user`` dependency: the ``Authorization: Bearer`` JWT that ``POST /auth/token``
issues, else the UI's ``_token`` cookie (what a browser signed in to the Airflow UI sends, also inside the UI's
iframe). The auth manager then decides: the sync manager is the custom view ``AADSync`` (method ``GET``), so an
auth manager with per-resource permissions (FAB, Keycloak) grants it like any other view. No token: 401; a bad
token or a user without the permission: 403. Nothing under ``/aadsync`` is served without this check.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

#: The auth manager's resource name for the sync manager (custom view).
RESOURCE_NAME = "AADSync"

_bearer = HTTPBearer(auto_error=False, description="A JWT from Airflow's POST /auth/token")


async def airflow_user(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Any:
    """The signed-in Airflow user, resolved by Airflow's own ``get_user`` (bearer token first, then the cookie)."""
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request, None, bearer)


async def require_access(user: Annotated[Any, Depends(airflow_user)]) -> Any:
    """Refuse (403) a user whom the auth manager does not allow to read the AADSync view."""
    from airflow.api_fastapi.app import get_auth_manager

    if not get_auth_manager().is_authorized_custom_view(method="GET", resource_name=RESOURCE_NAME, user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"Forbidden: no read access to the {RESOURCE_NAME} view")
    return user
