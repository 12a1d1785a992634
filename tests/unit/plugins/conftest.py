"""Airflow's own token checks for the sync manager's tests: a metadata DB of the tests' own and the simple auth
manager that signs their tokens."""

from __future__ import annotations

import pytest

from tests.support.manager import token


@pytest.fixture(scope="module")
def airflow_db(tmp_path_factory):
    """A metadata DB of this test's own, holding the one table token checks read (revoked tokens): the tokens are
    checked exactly as the api-server checks them, without touching anyone's Airflow home."""
    from airflow import settings
    from airflow.models.revoked_token import RevokedToken

    saved = settings.SQL_ALCHEMY_CONN
    settings.dispose_orm(do_log=False)
    settings.SQL_ALCHEMY_CONN = f"sqlite:///{tmp_path_factory.mktemp('airflow') / 'airflow.db'}"
    settings.configure_orm()
    RevokedToken.__table__.create(settings.engine, checkfirst=True)
    yield
    settings.dispose_orm(do_log=False)
    settings.SQL_ALCHEMY_CONN = saved
    settings.configure_orm()


@pytest.fixture(scope="module")
def auth_manager(airflow_db):
    from airflow.api_fastapi.app import create_auth_manager

    return create_auth_manager()


@pytest.fixture(scope="module")
def headers(auth_manager) -> dict[str, str]:
    """A viewer's bearer token."""
    return {"Authorization": f"Bearer {token(auth_manager)}"}
