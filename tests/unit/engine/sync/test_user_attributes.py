"""Issue 17's user attributes through the shipped rules: each AD attribute reaches its Graph property, and a value
Graph would refuse (its documented lengths and formats) is a per-object error naming the attribute, nothing staged."""

from __future__ import annotations

import sqlalchemy as sa

from airflow_provider_aadsync.engine.store import run_error
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.world import ad_user, export_for, import_full, links, mv_by

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
    result = run_sync(store, load_sync_rules(), connector="ad", mode="full")
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
