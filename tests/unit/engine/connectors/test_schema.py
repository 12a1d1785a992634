"""One attribute list per connector: what is derived from it equals, item for item and in order, the literals the
product shipped before the lists existed (the $select text Graph receives, the LDAP attribute list, the decoder's
sets, sync's schemas), and the shipped rules only name attributes the lists know."""

from __future__ import annotations

import pandas as pd
import pytest

from airflow_provider_aadsync.engine.connectors.ad import schema as ad
from airflow_provider_aadsync.engine.connectors.converters import boolean, guid_bytes, integer, sid_bytes
from airflow_provider_aadsync.engine.connectors.entra import schema as entra
from airflow_provider_aadsync.engine.connectors.registry import (
    CONNECTORS,
    DEFAULT_SCHEMAS,
    connector_for,
    plan_counts,
    schema_for,
)
from airflow_provider_aadsync.engine.connectors.schema import Attribute, ConnectorSchema
from airflow_provider_aadsync.engine.expressions import AuthoritativeNull, IgnoreThisFlow
from airflow_provider_aadsync.engine.rules import DEFAULT_RULES_DIR
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.plans import plan_references, plan_row
from tests.support.stores import fresh_store


# ------------------------------------------------------------------------------------- today's literals, pinned
def test_ad_default_attribute_list_is_todays():
    assert ad.DEFAULT_AD_ATTRIBUTES == (
        "objectGUID", "objectSid", "objectClass", "sAMAccountName", "userPrincipalName", "cn", "name", "displayName",
        "givenName", "sn", "initials", "description", "department", "title", "company", "employeeID",
        "telephoneNumber", "mobile", "physicalDeliveryOfficeName", "streetAddress", "l", "st", "postalCode", "c",
        "co", "facsimileTelephoneNumber", "employeeType", "preferredLanguage", "otherMailbox",
        "msDS-cloudExtensionAttribute1", "msDS-preferredDataLocation",
        *(f"extensionAttribute{n}" for n in range(1, 16)), "mail", "mailNickname", "proxyAddresses",
        "userAccountControl", "isCriticalSystemObject",
        "msExchRecipientTypeDetails", "msExchMasterAccountSid", "mS-DS-ConsistencyGuid", "groupType",
        "adminDescription", "info", "member", "manager", "managedBy",
    )  # fmt: skip


def test_ad_decoder_sets_are_todays():
    assert ad.DEFAULT_REFERENCE_ATTRIBUTES == frozenset({"member", "manager", "managedBy"})
    assert ad.DEFAULT_BINARY_ATTRIBUTES == frozenset(
        {"thumbnailphoto", "usercertificate", "jpegphoto", "msexchmailboxguid", "msds-generationid"}
    )
    assert ad.GUID_ATTRIBUTES == frozenset({"objectguid", "ms-ds-consistencyguid"})
    assert ad.SID_ATTRIBUTES == frozenset({"objectsid", "securityidentifier", "sidhistory", "msexchmasteraccountsid"})


def test_ad_schema_is_todays():
    assert ad.SCHEMA == ConnectorSchema(
        reference_attributes=frozenset({"member", "manager", "managedby"}),
        typed={
            "objectguid": guid_bytes,
            "ms-ds-consistencyguid": guid_bytes,
            "objectsid": sid_bytes,
            "msexchmasteraccountsid": sid_bytes,
            "useraccountcontrol": integer,
            "grouptype": integer,
            "msexchrecipienttypedetails": integer,
            "iscriticalsystemobject": boolean,
        },
    )


def test_graph_select_text_is_todays():
    assert ",".join(entra.DEFAULT_USER_PROPERTIES) == (
        "id,userPrincipalName,displayName,givenName,surname,mail,mailNickname,otherMails,proxyAddresses,jobTitle,"
        "department,companyName,employeeId,accountEnabled,usageLocation,onPremisesImmutableId,onPremisesSyncEnabled,"
        "manager,businessPhones,employeeType,employeeHireDate,officeLocation,mobilePhone,faxNumber,streetAddress,city,state,"
        "postalCode,country,preferredLanguage,preferredDataLocation,onPremisesExtensionAttributes,"
        "extension_aadsyncSourceAnchor"
    )
    assert ",".join(entra.DEFAULT_GROUP_PROPERTIES) == (
        "id,displayName,description,mail,mailEnabled,mailNickname,securityEnabled,groupTypes,proxyAddresses,"
        "onPremisesSyncEnabled,members,extension_aadsyncSourceAnchor"
    )
    assert isinstance(entra.DEFAULT_USER_PROPERTIES, tuple) and isinstance(entra.DEFAULT_GROUP_PROPERTIES, tuple)


def test_graph_export_constants_and_schema_are_todays():
    assert entra.COLLECTION_PROPERTIES == frozenset(
        {"businessPhones", "otherMails", "groupTypes", "proxyAddresses", "imAddresses"}
    )
    assert entra.MEMBERS == "members"
    assert entra.RESOURCES == {"user": "users", "group": "groups", "contact": "contacts"}
    assert entra.SCHEMA == ConnectorSchema(
        reference_attributes=frozenset({"members", "manager"}),
        dn_templates={"user": "users/{anchor}", "group": "groups/{anchor}", "contact": "contacts/{anchor}"},
        limits=entra.SCHEMA.limits,
    )


def test_graph_limits_name_each_refused_attribute():
    """Graph's documented lengths and formats (the emulator's validation.py enforces the same ones)."""
    assert (
        entra.SCHEMA.invalid_values({"jobTitle": ["x" * 128], "employeeId": ["E" * 16], "usageLocation": ["DE"]}) == []
    )
    problems = entra.SCHEMA.invalid_values(
        {
            "jobTitle": ["x" * 129],
            "employeeId": ["E" * 17],
            "usageLocation": ["de"],
            "preferredLanguage": ["English"],
            "businessPhones": ["+1 555 0100", "+1 555 0101"],
            "otherMails": ["jos\u00e9@example.test"],
            "employeeHireDate": ["2021-03-01"],
            "mailNickname": ["two words"],
            "department": [],
        }
    )
    named = [problem.split(":")[0] for problem in problems]
    assert named == [
        "jobTitle", "employeeId", "usageLocation", "preferredLanguage", "businessPhones", "otherMails",
        "employeeHireDate", "mailNickname",
    ]  # fmt: skip
    assert "longer than 128" in problems[0] and "at most 1" in problems[4]
    assert (
        entra.SCHEMA.invalid_values({"employeeHireDate": ["2021-03-01T08:00:00Z"], "preferredLanguage": ["en-US"]})
        == []
    )


@pytest.mark.parametrize(
    ("given", "staged"),
    [
        ("20240115080000.0Z", "2024-01-15T08:00:00Z"),  # Microsoft's documented yyyyMMddHHmmss.fZ
        ("20240115080000Z", "2024-01-15T08:00:00Z"),
        ("20240115080000.5Z", "2024-01-15T08:00:00.5Z"),
        ("2024-01-15T08:00:00Z", "2024-01-15T08:00:00Z"),  # ISO 8601 in UTC as it is
        ("2024-01-15T08:00:00+02:00", "2024-01-15T06:00:00Z"),  # in UTC, as Graph returns it
        ("2024-01-15T23:30:00.250-05:00", "2024-01-16T04:30:00.25Z"),
        ("2024-01-15T08:00Z", "2024-01-15T08:00:00Z"),
    ],
)
def test_settle_converts_generalized_time_for_employee_hire_date(given, staged):
    values: dict[str, list[object]] = {"employeeHireDate": [given], "jobTitle": ["Engineer"]}
    assert entra.SCHEMA.settle(values) == []
    assert values == {"employeeHireDate": [staged], "jobTitle": ["Engineer"]}


@pytest.mark.parametrize(
    "given",
    ["next monday", "2021-03-01", "20241301080000.0Z", "20240115080000.0", "2024-02-30T08:00:00Z", "x" * 300],
)
def test_settle_leaves_out_only_a_refused_hire_date_naming_the_formats(given):
    values: dict[str, list[object]] = {"employeeHireDate": [given], "jobTitle": ["x" * 129]}
    (dropped,) = entra.SCHEMA.settle(values)
    assert dropped.startswith("employeeHireDate: value ") and "yyyyMMddHHmmss.fZ" in dropped and "ISO 8601" in dropped
    assert values == {"jobTitle": ["x" * 129]}  # another attribute's refusal is still the object's (invalid_values)
    assert entra.SCHEMA.invalid_values(values) == ["jobTitle: value of 129 characters is longer than 128"]


def test_possibly_invalid_flags_every_refusable_row_and_passes_clean_text():
    """The column-wise prefilter of the outbound limit check: no row the exact check refuses is left out."""
    cells = {
        "clean": ("x" * 128, "E" * 16, "DE", None),
        "too long": ("x" * 129, None, None, None),
        "bad pattern": (None, None, "de", None),
        "two values": (["a", "b"], None, None, None),
        "a number": (None, 12, None, None),
        "no values": (None, pd.NA, float("nan"), AuthoritativeNull),
        "ignored": (IgnoreThisFlow, None, None, "anything"),
    }
    frame = pd.DataFrame.from_dict(
        cells, orient="index", columns=["jobTitle", "employeeId", "usageLocation", "noLimit"]
    )
    flagged = entra.SCHEMA.possibly_invalid(frame)
    assert flagged == {"too long", "bad pattern", "two values", "a number"}
    for label, row in frame.iterrows():  # what the exact check refuses is always flagged
        values = {
            name: [value] if isinstance(value, str) else value
            for name, value in row.items()
            if isinstance(value, str | list)
        }
        if entra.SCHEMA.invalid_values(values):
            assert label in flagged


@pytest.mark.parametrize("catalog", [ad.AD_ATTRIBUTES, entra.GRAPH_ATTRIBUTES], ids=["ad", "entra"])
def test_each_attribute_is_listed_once(catalog: tuple[Attribute, ...]):
    names = [attribute.name.lower() for attribute in catalog]
    assert len(names) == len(set(names))
    assert all(attribute.object_types for attribute in catalog)


# ----------------------------------------------------------------------------------------------- the registry
def test_registry_gives_each_connector_its_schema_and_cost_unit():
    assert set(CONNECTORS) == {"ad", "entra"}
    assert connector_for("ad").schema is ad.SCHEMA and connector_for("entra").schema is entra.SCHEMA
    assert (connector_for("ad").cost_counter, connector_for("ad").cost_label) == ("ldap_writes_minimum", "LDAP writes")
    assert connector_for("entra").cost_counter == "batch_calls_minimum"
    assert connector_for("hr") is None
    assert connector_for("ad_fabrikam") is CONNECTORS["ad"]  # a second forest, by kind (connectors/kinds.py)
    assert DEFAULT_SCHEMAS == {"ad": ad.SCHEMA, "entra": entra.SCHEMA}


def test_schema_for_unknown_and_overridden_names():
    assert schema_for("ad") is ad.SCHEMA
    assert schema_for("ad-fabrikam") is ad.SCHEMA
    assert schema_for("hr") == ConnectorSchema(reference_attributes=frozenset())
    mine = ConnectorSchema(reference_attributes=frozenset({"boss"}))
    assert schema_for("hr", {"hr": mine}) is mine


def test_plan_counts_by_connector(tmp_path):
    with fresh_store(tmp_path) as store:
        for connector in ("ad", "entra", "hr"):
            plan_row(store, connector, "g", "g", operation="add")
            # each connector's member attribute: AD's member, Graph's members (the Entra export writes only those)
            plan_references(store, connector, "g", "members" if connector == "entra" else "member", ["a", "b"])
        assert plan_counts(store, "ad")["ldap_writes_minimum"] == 2  # the add, one modify with both members
        assert plan_counts(store, "entra")["batch_calls_minimum"] == 2  # objects first, then member links
        assert plan_counts(store, "hr") == {"planned_group_adds": 1, "planned_member_adds": 2, "planned_deletes": 0}


# ---------------------------------------------------------------------------------- the shipped rules vs lists
#: Outbound flow targets that are checks, not attributes: they yield an error or IgnoreThisFlow, never a value.
CHECK_TARGETS = {"memberLimitCheck", "writebackLimitCheck"}


def _known(catalog: tuple[Attribute, ...], object_type: str, *, imported: bool = False) -> set[str]:
    return {a.name.lower() for a in catalog if object_type in a.object_types and (a.imported or not imported)}


def test_shipped_rules_name_only_attributes_the_lists_know():
    """The shipped rules' reads and writes against the lists. A rule file of an admin's own is checked when it loads
    (rules/loader.py, connectors' ``target_problem``: tests/unit/engine/rules/test_target_check.py)."""
    assert len(list(DEFAULT_RULES_DIR.glob("*.yaml"))) == 5
    rules = load_sync_rules(writeback_enabled=True, writeback_ou="OU=Writeback,DC=corp,DC=example")
    unknown: list[str] = []
    catalogs = {"ad": ad.AD_ATTRIBUTES, "entra": entra.GRAPH_ATTRIBUTES}
    checked = 0
    for rule in rules:
        catalog = catalogs[rule.connector]
        if rule.direction == "inbound":  # what the rule reads must be imported by default for its object type
            known = _known(catalog, rule.source_object_type, imported=True)
            names = set(rule.attributes) - ({"memberOf"} if rule.needs_member_of else set()) - entra.BESIDE_DELTA
        else:  # what the rule writes must be an attribute of its target type (dn is the object's name, not one)
            known = _known(catalog, rule.target_object_type) | {"dn"}
            names = set(rule.targets) - CHECK_TARGETS
        checked += len(names)
        unknown += [f"{rule.name}: {name}" for name in sorted(names) if name.lower() not in known]
    assert checked > 60 and unknown == []


def test_extension_attributes_are_nested_for_graph_and_flattened_from_it():
    from airflow_provider_aadsync.engine.connectors.entra.graph import graph_body
    from airflow_provider_aadsync.engine.connectors.entra.reader import graph_attrs

    changes = {
        "onPremisesExtensionAttributes.extensionAttribute1": ["Cost centre 42"],
        "onPremisesExtensionAttributes.extensionAttribute15": [],
        "city": ["Kraków"],
    }
    assert graph_body(changes) == {
        "onPremisesExtensionAttributes": {"extensionAttribute1": "Cost centre 42", "extensionAttribute15": None},
        "city": "Kraków",
    }
    item = {
        "id": "1",
        "onPremisesExtensionAttributes": {"extensionAttribute1": "Cost centre 42", "extensionAttribute2": None},
    }
    assert graph_attrs(item) == {
        "id": ["1"],
        "onPremisesExtensionAttributes.extensionAttribute1": ["Cost centre 42"],
        "onPremisesExtensionAttributes.extensionAttribute2": [],
    }
    assert entra.SCHEMA.invalid_values({"onPremisesExtensionAttributes.extensionAttribute3": ["x" * 1025]})
