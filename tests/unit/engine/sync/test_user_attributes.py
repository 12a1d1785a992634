"""Issue 17's user attributes through the shipped rules: each AD attribute reaches its Graph property, and a value
Graph would refuse (its documented lengths and formats) is a per-object error naming the attribute, nothing staged."""

from __future__ import annotations

import sqlalchemy as sa

from airflow_provider_aadsync.engine.rules import DEFAULT_RULES_DIR
from airflow_provider_aadsync.engine.store import run_error
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.world import (
    ad_user,
    cloud_twin,
    export_for,
    exports,
    import_delta,
    import_full,
    links,
    mv_by,
)

#: employeeHireDate is opt-in (AD has none; Microsoft maps none by default): the shipped rules and the optional file.
HIRE_DATE = DEFAULT_RULES_DIR.parent / "optional" / "employee-hire-date.yaml"


def with_hire_date():
    return load_sync_rules([DEFAULT_RULES_DIR, HIRE_DATE])


FULL = {
    "company": "Contoso Ltd",
    "employeeID": "E0000001",
    "employeeType": "Contractor",
    "msDS-cloudExtensionAttribute1": "2021-03-01T08:00:00Z",
    "physicalDeliveryOfficeName": "Building 4, Room 2.17",
    "telephoneNumber": "+1 555 0100",
    "mobile": "+1 555 0199",
    "facsimileTelephoneNumber": "+1 555 0150",
    "streetAddress": "Königsallee 1",
    "l": "Düsseldorf",
    "st": "NRW",
    "postalCode": "40212",
    "co": "Germany",
    "c": "de",
    "preferredLanguage": "de-DE",
    "otherMailbox": ["ada.private@example.test", "ada@example.org"],
    "msDS-preferredDataLocation": "EUR",
    "title": "Engineer",
    "department": "R&D",
    "extensionAttribute1": "Cost centre 42",
    "extensionAttribute15": "Ünïcode ✓",
}
EXPECTED = {
    "companyName": ["Contoso Ltd"],
    "employeeId": ["E0000001"],
    "employeeType": ["Contractor"],
    "employeeHireDate": ["2021-03-01T08:00:00Z"],
    "officeLocation": ["Building 4, Room 2.17"],
    "businessPhones": ["+1 555 0100"],
    "mobilePhone": ["+1 555 0199"],
    "faxNumber": ["+1 555 0150"],
    "streetAddress": ["Königsallee 1"],
    "city": ["Düsseldorf"],
    "state": ["NRW"],
    "postalCode": ["40212"],
    "country": ["Germany"],
    "usageLocation": ["DE"],
    "preferredLanguage": ["de-DE"],
    "otherMails": ["ada.private@example.test", "ada@example.org"],
    "preferredDataLocation": ["EUR"],
    "jobTitle": ["Engineer"],
    "department": ["R&D"],
    "mailNickname": ["user1"],
    "onPremisesExtensionAttributes.extensionAttribute1": ["Cost centre 42"],
    "onPremisesExtensionAttributes.extensionAttribute15": ["Ünïcode ✓"],
}


def test_every_user_attribute_reaches_its_graph_property(store):
    import_full(store, "ad", [ad_user(1, **FULL), ad_user(2, "two words")])
    result = run_sync(store, with_hire_date(), connector="ad", mode="full")
    assert result.result == "success", result
    changes = export_for(store, mv_by(store, "accountName", "user1")[0])["changes"]
    assert {name: changes.get(name) for name in EXPECTED} == EXPECTED
    # mailNickname falls back to sAMAccountName without the spaces Graph refuses
    assert export_for(store, mv_by(store, "accountName", "two words")[0])["changes"]["mailNickname"] == ["twowords"]


def test_a_value_graph_refuses_is_a_per_object_error_naming_the_attribute(store):
    import_full(
        store,
        "ad",
        [
            ad_user(1, **FULL),
            ad_user(2, title="t" * 129, c="Germany"),  # jobTitle over 128; usageLocation not a two-letter code
            ad_user(3, employeeID="E" * 17),
            ad_user(4, title="t" * 128, employeeID="E" * 16, postalCode="9" * 40),  # at the limits: fine
        ],
    )
    result = run_sync(store, load_sync_rules(), connector="ad", mode="full")
    assert result.result == "completed-sync-errors"
    with store.engine.connect() as connection:
        errors = connection.execute(sa.select(run_error).where(run_error.c.run_id == result.run_id)).all()
    messages = sorted(error.message for error in errors)
    assert {error.code for error in errors} == {"invalid-attribute-value"}
    assert len(messages) == 2
    assert "employeeId: value of 17 characters is longer than 16" in messages[0]
    assert "jobTitle: value of 129 characters is longer than 128" in messages[1]
    assert "usageLocation: value 'GERMANY' is not a two-letter ISO 3166 country code" in messages[1]
    provisioned = {mv_id for (_connector, _anchor), (mv_id, _type) in links(store, "entra").items()}
    assert mv_by(store, "accountName", "user2")[0] not in provisioned  # nothing staged for a refused object
    assert mv_by(store, "accountName", "user3")[0] not in provisioned
    assert export_for(store, mv_by(store, "accountName", "user4")[0])["changes"]["jobTitle"] == ["t" * 128]
    assert export_for(store, mv_by(store, "accountName", "user1")[0])["operation"] == "add"


def test_the_shipped_rules_alone_flow_no_hire_date(store):
    """Microsoft maps no AD attribute to employeeHireDate by default: the admin identifies one (the optional file)."""
    import_full(store, "ad", [ad_user(1, **FULL)])
    assert run_sync(store, load_sync_rules(), connector="ad", mode="full").result == "success"
    person = mv_by(store, "accountName", "user1")[1]
    assert "employeeHireDate" not in person
    assert "employeeHireDate" not in export_for(store, mv_by(store, "accountName", "user1")[0])["changes"]


def test_a_hire_date_in_generalized_time_or_iso_8601_reaches_graph_as_a_date_time_offset(store):
    """Microsoft's format for the AD string attribute, "yyyyMMddHHmmss.fZ", becomes the DateTimeOffset Graph takes;
    ISO 8601 is taken, in UTC as Graph returns it."""
    import_full(
        store,
        "ad",
        [
            ad_user(1, **{"msDS-cloudExtensionAttribute1": "20240115080000.0Z"}),
            ad_user(2, **{"msDS-cloudExtensionAttribute1": "2024-01-15T08:00:00+02:00"}),
            ad_user(3, **{"msDS-cloudExtensionAttribute1": "20240229053000Z"}),
        ],
    )
    result = run_sync(store, with_hire_date(), connector="ad", mode="full")
    assert result.result == "success", result
    hire_dates = {
        name: export_for(store, mv_by(store, "accountName", name)[0])["changes"]["employeeHireDate"]
        for name in ("user1", "user2", "user3")
    }
    assert hire_dates == {
        "user1": ["2024-01-15T08:00:00Z"],
        "user2": ["2024-01-15T06:00:00Z"],  # in UTC, as Graph returns it: no update at every delta
        "user3": ["2024-02-29T05:30:00Z"],
    }


def _errors(store, run_id: int) -> list:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(run_error).where(run_error.c.run_id == run_id)).all()


def test_a_hire_date_of_another_shape_costs_only_that_attribute(store):
    """A value that is neither generalized time nor ISO 8601 (or no real date) is left out of the write with an error
    naming the user, the attribute and the formats expected; the user is still created with its other values."""
    import_full(
        store,
        "ad",
        [
            ad_user(1, department="Sales", **{"msDS-cloudExtensionAttribute1": "next monday"}),
            ad_user(2, **{"msDS-cloudExtensionAttribute1": "20241345080000.0Z"}),  # month 13
        ],
    )
    result = run_sync(store, with_hire_date(), connector="ad", mode="full")
    assert result.result == "completed-sync-errors"
    errors = sorted(_errors(store, result.run_id), key=lambda e: e.message)
    assert [e.code for e in errors] == ["attribute-value-left-out"] * 2
    assert "'User 1'" in errors[0].message
    assert "employeeHireDate: value 'next monday' is not a date-time" in errors[0].message
    assert "yyyyMMddHHmmss.fZ" in errors[0].message and "ISO 8601" in errors[0].message
    assert "'User 2'" in errors[1].message and "'20241345080000.0Z'" in errors[1].message
    created = export_for(store, mv_by(store, "accountName", "user1")[0])
    assert created["operation"] == "add" and "employeeHireDate" not in created["changes"]
    assert created["changes"]["department"] == ["Sales"] and created["changes"]["displayName"] == ["User 1"]
    assert export_for(store, mv_by(store, "accountName", "user2")[0])["operation"] == "add"


def test_an_exported_user_whose_hire_date_turns_bad_still_gets_its_other_changes(store):
    """The cloud twin holds the converted date: no update while AD keeps it. Then AD's value turns bad in the same
    change that disables the account: the disable and the new department are staged, the hire date is not."""
    rules = with_hire_date()
    import_full(store, "ad", [ad_user(1, **{"msDS-cloudExtensionAttribute1": "20240115080000.0Z"})])
    import_full(store, "entra", [cloud_twin(1, employeeHireDate="2024-01-15T08:00:00Z")])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    assert run_sync(store, rules, connector="entra", mode="full").result == "success"
    assert exports(store) == {}  # generalized time and Graph's value are the same date: nothing to write

    bad = ad_user(1, disabled=True, department="Sales", **{"msDS-cloudExtensionAttribute1": "15/01/2024"})
    import_delta(store, "ad", [bad])
    result = run_sync(store, rules, connector="ad", mode="delta")
    (error,) = _errors(store, result.run_id)
    assert error.code == "attribute-value-left-out" and "employeeHireDate" in error.message
    update = export_for(store, mv_by(store, "accountName", "user1")[0])
    assert update["operation"] == "update"
    assert update["changes"] == {"accountEnabled": [False], "department": ["Sales"]}
