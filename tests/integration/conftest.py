"""Shared fixtures for integration tests: a real Samba AD DC (from the fixture cache) and hooks pointed at it.

Only one DC can listen on 127.0.0.1:389/636, so each module starts its own and stops it when the module ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from airflow_provider_aadsync.devenv.fixtures import cached_seeded_dc
from airflow_provider_aadsync.devenv.samba import SambaDC
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook, ADConnectionSettings


def settings_for(dc: SambaDC, **overrides) -> ADConnectionSettings:
    """The DC's connection fields with some replaced (port and password are fields, the rest live in extra)."""
    info = dc.connection_info()
    fields = {name: overrides.pop(name) for name in ("port", "password") if name in overrides}
    return ADConnectionSettings.from_fields(
        name="of the test DC", **{**info, **fields, "extra": {**info["extra"], **overrides}}
    )


def hook_for(dc: SambaDC, **overrides) -> ActiveDirectoryHook:
    return ActiveDirectoryHook(settings=settings_for(dc, **overrides))


@pytest.fixture(scope="module")
def start_dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., SambaDC]]:
    """Start a DC seeded with the given parameters (cached); stopped when the module ends."""
    started: list[SambaDC] = []

    def start(*, users: int, groups: int, group_size: int = 0) -> SambaDC:
        home: Path = tmp_path_factory.mktemp("samba") / "home"
        dc = cached_seeded_dc(home, users=users, groups=groups, group_size=group_size)
        started.append(dc)
        return dc

    yield start
    for dc in started:
        dc.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}", instance="test") as opened:
        yield opened


# ----------------------------------------------------------------------------------------------- PostgreSQL
# Imported here rather than at the top so this section stays an append-only addition to the file.
import shutil  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402

from airflow_provider_aadsync.devenv.postgres import LocalPostgres, PostgresNotInstalledError  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """One throw-away PostgreSQL server for the whole session, stopped at the end.

    Its home is a ``tempfile.mkdtemp()`` directory, not ``tmp_path_factory``: as root the server runs as the
    ``postgres`` user, which cannot enter pytest's root-private temp tree. Skips if PostgreSQL is not installed.
    """
    home = Path(tempfile.mkdtemp(prefix="aadsync-pg-"))
    server = LocalPostgres(home)
    try:
        server.start()
    except PostgresNotInstalledError as error:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip(str(error))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def pg_store(postgres_server: LocalPostgres) -> Iterator[Store]:
    """A store in a fresh PostgreSQL database of its own, so tests never see each other's rows or locks."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with Store.open(postgres_server.create_database(name), instance="test") as opened:
        yield opened
    postgres_server.drop_database(name)
