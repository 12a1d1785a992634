"""A connection whose extra repeats one of its own fields (client_id / client_secret of an Entra connection,
host / port / password of an AD one, as Azure connections of other providers put them) must be refused with the
hooks' own error naming the field, never a bare TypeError ("got multiple values for keyword argument"), which is
retried and does not say what to fix."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.hooks.active_directory_settings import ActiveDirectoryError, ADConnectionSettings
from airflow_provider_aadsync.hooks.entra_settings import EntraConnectionSettings, EntraError

SECRET = "S3cr3t-Value-extra"


class _Connection:
    conn_id = "aadsync_entra"
    host = None
    port = None

    def __init__(self, login, password, extra):
        self.login, self.password, self.extra_dejson = login, password, extra


@pytest.mark.parametrize(
    ("login", "password", "extra", "field"),
    [
        ("app", "", {"tenant_id": "t", "client_secret": SECRET}, "client_secret"),
        ("app", SECRET, {"tenant_id": "t", "client_id": "app"}, "client_id"),
    ],
)
def test_entra_field_repeated_in_extra(login, password, extra, field):
    with pytest.raises(EntraError, match=field) as raised:
        EntraConnectionSettings.from_connection(_Connection(login, password, extra))
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize("field", ["port", "password", "host", "bind_dn"])
def test_ad_field_repeated_in_extra(field):
    extra = {"base_dn": "DC=corp,DC=test", field: SECRET if field == "password" else "636"}
    with pytest.raises(ActiveDirectoryError, match=field) as raised:
        ADConnectionSettings.from_fields(
            name="'aadsync_ad'", host="dc1", port=None, login="CN=svc,DC=corp,DC=test", password=SECRET, extra=extra
        )
    assert SECRET not in str(raised.value)
