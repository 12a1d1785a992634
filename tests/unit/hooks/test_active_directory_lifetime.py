"""The forest's deletion window as the hook reads it from the configuration naming context."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from ldap3.core import exceptions as ldap_errors

from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook
from airflow_provider_aadsync.hooks.active_directory_settings import ADConnectionSettings

CONFIGURATION = "CN=Configuration,DC=corp,DC=example,DC=com"
SERVICE = f"CN=Directory Service,CN=Windows NT,CN=Services,{CONFIGURATION}"
PARTITIONS = f"CN=Partitions,{CONFIGURATION}"
RECYCLE_BIN = f"CN=Recycle Bin Feature,CN=Optional Features,{SERVICE}"


class ConfigurationConnection:
    """An ldap3 connection over a configuration naming context held as {dn: raw attributes}; a DN it lacks is
    noSuchObject, as the DC answers."""

    bound, closed = True, False

    def __init__(self, objects: dict[str, dict[str, list[bytes]]]):
        self.objects = objects
        self.response: list[dict[str, Any]] = []
        self.read: list[tuple[str, list[str]]] = []

    def search(self, base: str, search_filter: str, scope: Any, attributes: list[str]) -> bool:
        self.read.append((base, attributes))
        if base not in self.objects:
            raise ldap_errors.LDAPOperationResult(result=32, description="noSuchObject")
        wanted = {name.lower() for name in attributes}
        raw = {name: values for name, values in self.objects[base].items() if name.lower() in wanted}
        self.response = [{"type": "searchResEntry", "dn": base, "raw_attributes": raw}]
        return True


def window(objects: dict[str, dict[str, list[bytes]]]) -> tuple[dt.timedelta, ConfigurationConnection]:
    hook = ActiveDirectoryHook(
        settings=ADConnectionSettings(host="dc1", bind_dn="CN=svc", password="x", base_dn="DC=corp,DC=example,DC=com")
    )
    hook._conn = conn = ConfigurationConnection(objects)  # type: ignore[assignment]
    hook.__dict__["root_dse"] = {"configurationNamingContext": [CONFIGURATION]}
    return hook.deletion_window(), conn


@pytest.mark.parametrize(
    ("service", "features", "days"),
    [
        ({}, [], 60),  # a forest whose tombstoneLifetime is unset: [MS-ADTS] 3.1.1.1.15's default
        ({"tombstoneLifetime": [b"180"]}, [], 180),  # what Windows Server 2003 SP1 and later set on a new forest
        ({"tombstoneLifetime": [b"180"], "msDS-DeletedObjectLifetime": [b"30"]}, [], 180),
        ({"tombstoneLifetime": [b"180"], "msDS-DeletedObjectLifetime": [b"30"]}, [RECYCLE_BIN.encode()], 30),
        ({"tombstoneLifetime": [b"180"]}, [RECYCLE_BIN.encode()], 180),
        ({"tombstoneLifetime": [b"not a number"]}, [], 60),
    ],
)
def test_the_window_is_read_from_the_directory_service_object(service, features, days):
    found, conn = window({SERVICE: service, PARTITIONS: {"msDS-EnabledFeature": features} if features else {}})
    assert found == dt.timedelta(days=days)
    assert [base for base, _ in conn.read] == [SERVICE, PARTITIONS]


def test_an_unreadable_configuration_counts_as_unset(caplog):
    found, _ = window({})
    assert found == dt.timedelta(days=60)
    assert "its lifetimes count as unset" in caplog.text
