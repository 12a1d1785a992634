"""A container's new DN carried down a connector space in the store (engine.runs.cs_subtree): which rows lie under
the old DN (RDN boundaries, escapes, case), what their DNs become, and what else a rename touches."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.runs.cs_subtree import rename_subtree, subtree_rows
from airflow_provider_aadsync.engine.runs.cs_writer import ConnectorSpaceWriter
from airflow_provider_aadsync.engine.runs.source import SourceObject
from airflow_provider_aadsync.engine.store import Store, cs_object, cs_reference, utcnow

OLD = "OU=Sales,DC=corp,DC=test"
NEW = "OU=Sales\\, EMEA,OU=Regions,DC=corp,DC=test"

#: anchor -> (stored DN, under OLD?)
OBJECTS = {
    "ou": (OLD, False),  # the container itself: its own row is the delta's to change
    "child": (f"CN=Ann,{OLD}", True),
    "deep": (f"CN=Ben,OU=Team,{OLD}", True),
    "case": ("CN=Cy,ou=SALES,dc=Corp,DC=test", True),  # the same DN in another case
    "sibling": ("CN=Di,OU=Sales2,DC=corp,DC=test", False),  # a name that starts the same: no RDN boundary
    "prefix": ("CN=Ed,OU=WestSales,DC=corp,DC=test", False),  # ends the same, but inside a value
    "escaped-comma": ("CN=Fay\\,OU=Sales,DC=corp,DC=test", False),  # one RDN "Fay,OU=Sales" under DC=corp
    "escaped-backslash": ("CN=Gil\\\\,OU=Sales,DC=corp,DC=test", True),  # "Gil\" then a real separator
    "hex-comma": ("CN=Hal\\2C Jr,OU=Sales,DC=corp,DC=test", True),
    "elsewhere": ("CN=Ivy,OU=Other,DC=corp,DC=test", False),
}


def _obj(anchor: str, dn: str, object_type: str = "user", **references) -> SourceObject:
    return SourceObject(anchor=anchor, dn=dn, object_type=object_type, attrs={"cn": [anchor]}, references=references)


@pytest.fixture
def space(tmp_path):
    """A connector space holding OBJECTS (imported, synced: no pending import), a group referencing two of them,
    a tombstone under OLD and an object sync plans to create under OLD; yields (store, writer of a new run)."""
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as store:
        with store.transaction() as connection:
            writer = ConnectorSpaceWriter(store, connection, "ad", store.start_run("import", "ad"))
            writer.begin_full()
            objects = [_obj(anchor, dn) for anchor, (dn, _) in OBJECTS.items()]
            objects.append(_obj("tomb", f"CN=Old,{OLD}"))
            group = _obj("group", "CN=G,OU=Other,DC=corp,DC=test", "group", member=[("deep", OBJECTS["deep"][0])])
            group.references["member"].append(("sibling", OBJECTS["sibling"][0]))
            writer.write_full_page([*objects, group])
            writer.finish_full()
            writer.delete(["tomb"], [None])
            connection.execute(sa.update(cs_object).values(pending_import=None))
            connection.execute(
                sa.insert(cs_object).values(
                    connector="ad", anchor="planned", dn=f"CN=Planned,{OLD}", object_type="group", attrs="{}",
                    attrs_hash="", refs_hash="0", is_deleted=False, updated_at=utcnow(),
                )
            )  # fmt: skip
        with store.transaction() as connection:
            yield store, ConnectorSpaceWriter(store, connection, "ad", store.start_run("import", "ad"))


def _dns(writer: ConnectorSpaceWriter) -> dict[str, tuple[str, str | None]]:
    query = sa.select(cs_object.c.anchor, cs_object.c.dn, cs_object.c.pending_import)
    return {anchor: (dn, pending) for anchor, dn, pending in writer.connection.execute(query)}


def test_the_rows_under_a_dn_are_found_on_rdn_boundaries_in_any_case(space):
    _, writer = space
    found = {row.anchor for row in subtree_rows(writer, OLD)}
    assert found == {anchor for anchor, (_, under) in OBJECTS.items() if under}
    assert {row.anchor for row in subtree_rows(writer, OLD.lower())} == found  # the base spelled another way too


def test_a_rename_gives_the_rows_under_the_old_dn_the_new_suffix_and_nothing_else(space):
    _, writer = space
    before = _dns(writer)
    assert rename_subtree(writer, OLD, NEW) == 5
    after = _dns(writer)
    assert after["child"] == (f"CN=Ann,{NEW}", "update")
    assert after["deep"] == (f"CN=Ben,OU=Team,{NEW}", "update")
    assert after["case"] == (f"CN=Cy,{NEW}", "update")  # the child's own RDN kept, the suffix replaced
    assert after["escaped-backslash"] == (f"CN=Gil\\\\,{NEW}", "update")
    assert after["hex-comma"] == (f"CN=Hal\\2C Jr,{NEW}", "update")
    unchanged = {"ou", "sibling", "prefix", "escaped-comma", "elsewhere", "group", "tomb", "planned"}
    assert {anchor: after[anchor] for anchor in unchanged} == {anchor: before[anchor] for anchor in unchanged}
    assert (writer.counters["renames"], writer.counters["updates"]) == (5, 5)
    targets = dict(writer.connection.execute(sa.select(cs_reference.c.target_anchor, cs_reference.c.target_dn)).all())
    assert targets == {"deep": f"CN=Ben,OU=Team,{NEW}", "sibling": OBJECTS["sibling"][0]}


def test_a_pending_add_stays_an_add_when_its_container_is_renamed(space):
    _, writer = space
    writer.connection.execute(sa.update(cs_object).where(cs_object.c.anchor == "child").values(pending_import="add"))
    rename_subtree(writer, OLD, NEW)
    assert _dns(writer)["child"] == (f"CN=Ann,{NEW}", "add")
