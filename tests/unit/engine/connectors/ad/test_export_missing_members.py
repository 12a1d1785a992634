"""A member modify naming one object that is gone from AD (deleted or never there since the last import) is refused
whole by the DC. Samba 4.17 answers (probed with tests/integration's DC through the hook):

* a member add naming a missing ``<GUID=...>`` among existing ones: ``noSuchObject`` (00000525 specified dn doesn't
  exist, extended_dn_store.c) for the whole modify;
* a member remove naming a missing one: ``invalidAttributeSyntax`` (0000200B ... contains at least one invalid value)
  for the whole modify.

An administrator expects what the Entra export does for a Graph member pack answered 404: the other members of the
chunk are written, only the missing member is an error (and a member removal of an object that no longer exists is
done: a deleted object is nobody's member)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from airflow_provider_aadsync.engine.connectors.ad.writer import ADExportSettings, ADWriteRefused, run_ad_export
from tests.support.fakes import FakeLdapWriter
from tests.support.plans import cs_references, cs_row, open_plan, plan_references, plan_row
from tests.support.stores import fresh_store

OU = "OU=Writeback,DC=corp,DC=example"


class SambaLikeWriter(FakeLdapWriter):
    """The fake directory, checking member targets as a DC does: a modify naming a missing object is refused whole."""

    def modify_references(
        self, guid: str, attribute: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> None:
        missing_add = [t for t in add if t not in self.entries]
        missing_remove = [t for t in remove if t not in self.entries]
        if guid in self.entries and (missing_add or missing_remove):
            self._write("modify_references", guid, (attribute, tuple(add), tuple(remove)))
            code = "noSuchObject" if missing_add else "invalidAttributeSyntax"
            raise ADWriteRefused(f"modify of <GUID={guid}> refused: {code}", code=code)
        super().modify_references(guid, attribute, add=add, remove=remove)


@pytest.fixture
def store(tmp_path):
    with fresh_store(tmp_path) as opened:
        yield opened


def group_with_users(store, ldap: SambaLikeWriter, users: int, members: Sequence[str] = ()) -> tuple[str, list[str]]:
    people = [ldap.add_entry(f"CN=User {n},{OU}", "user") for n in range(users)]
    group = ldap.add_entry(f"CN=Sales,{OU}")
    ldap.entries[group]["member"] = set(members)
    cs_row(store, "ad", group, f"CN=Sales,{OU}", attrs={"objectGUID": [group]}, members=members)
    plan_row(store, "ad", group, f"CN=Sales,{OU}", operation="update")  # announces member changes
    return group, people


def test_one_member_deleted_since_the_import_does_not_block_the_other_adds_of_its_chunk(store):
    ldap = SambaLikeWriter()
    group, people = group_with_users(store, ldap, 5)
    gone = people.pop(2)
    plan_references(store, "ad", group, "member", [*people, gone])
    del ldap.entries[gone]  # deleted in AD after the last import

    first = run_ad_export(store, ldap, settings=ADExportSettings(), lock_holder="t")

    assert ldap.entries[group]["member"] == set(people), "the four existing members were not written"
    assert cs_references(store, "ad", group) == set(people)
    errors = store.run_errors(first.run_id)
    assert len(errors) == 1 and gone in errors[0]["message"], errors  # the error names the missing member
    assert open_plan(store, "ad")[1] == 1  # only the missing member stays in the plan


def test_a_member_removal_of_an_object_deleted_since_the_import_is_done_not_an_error_forever(store):
    ldap = SambaLikeWriter()
    group, people = group_with_users(store, ldap, 3)
    gone = people[0]
    ldap.entries[group]["member"] = set(people)
    plan_references(store, "ad", group, "member", [people[0], people[1]], operation="remove")
    del ldap.entries[gone]  # deleted in AD after the last import (AD drops it from every group)
    ldap.entries[group]["member"].discard(gone)

    for _run in range(2):
        result = run_ad_export(store, ldap, settings=ADExportSettings(), lock_holder="t")
    assert result.result == "success", store.run_errors(result.run_id)
    assert ldap.entries[group]["member"] == {people[2]}
    assert open_plan(store, "ad")[1] == 0
