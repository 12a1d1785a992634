"""The connector-space writer's full-import column path."""

from __future__ import annotations

import json

import sqlalchemy as sa

from airflow_provider_aadsync.engine.runs.cs_writer import ConnectorSpaceWriter, ObjectPage
from airflow_provider_aadsync.engine.runs.source import SourceObject
from airflow_provider_aadsync.engine.store import Store, cs_object, cs_reference


def test_full_page_stores_rows_references_and_missing_target_dns_as_null(tmp_path):
    group = SourceObject(
        anchor="g1",
        dn="CN=G1",
        object_type="group",
        attrs={"cn": ["G1"], "description": []},
        references={"member": [("u1", None), ("u2", "CN=U2"), ("u2", "CN=U2")]},
    )
    user = SourceObject(anchor="u1", dn="CN=U1", object_type="user", attrs={"cn": ["U1"]})
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as store, store.transaction() as connection:
        writer = ConnectorSpaceWriter(store, connection, "ad", store.start_run("import", "ad"))
        writer.begin_full()
        writer.write_full_page([group, user])
        writer.finish_full()
        assert dict(writer.counters) == {"objects_read": 2, "adds": 2, "updates": 0, "renames": 0, "unchanged": 0,
                                         "reference_adds": 2}  # fmt: skip
        rows = dict(connection.execute(sa.select(cs_object.c.anchor, cs_object.c.attrs)).all())
        references = connection.execute(
            sa.select(cs_reference.c.target_anchor, cs_reference.c.target_dn).order_by(cs_reference.c.target_anchor)
        ).all()
    assert json.loads(rows["g1"]) == {"cn": ["G1"]}  # an attribute without values is stored as absent
    assert [tuple(row) for row in references] == [("u1", None), ("u2", "CN=U2")]


def test_object_page_reference_frame_keeps_positions_and_none():
    page = ObjectPage()
    page.add("a", "users/a", "user", "{}")
    page.add("g", "groups/g", "group", "{}", {"members": [("a", None), ("b", "CN=B")]})
    frame = page.reference_frame()
    assert frame.values.tolist() == [[1, "g", "members", "a", None], [1, "g", "members", "b", "CN=B"]]
    assert page.refs_hashes[0] == "0" * 32 and page.refs_hashes[1] != page.refs_hashes[0]


def test_an_object_a_later_page_repeats_is_counted_once(tmp_path):
    """Graph's delta query may return an object again in a later page of one round: the import reads one object.
    A repeat is compared with what the import wrote for it (the newer values win), and counted where it first came;
    an object counted unchanged whose repeat changed it is an update."""

    def user(anchor: str, title: str) -> SourceObject:
        return SourceObject(anchor=anchor, dn=f"users/{anchor}", object_type="user", attrs={"title": [title]})

    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as store:
        runs = [store.start_run("import", "entra") for _ in range(2)]
        with store.transaction() as connection:
            first = ConnectorSpaceWriter(store, connection, "entra", runs[0])
            first.begin_full()
            first.write_full_page([user("u1", "A"), user("u2", "A")])
            first.finish_full()
        with store.transaction() as connection:
            writer = ConnectorSpaceWriter(store, connection, "entra", runs[1])
            writer.begin_full()
            writer.write_full_page([user("u1", "A"), user("u2", "A"), user("u3", "A")])
            writer.write_full_page([user("u3", "B"), user("u2", "B"), user("u1", "A")])
            writer.finish_full()
            counters = {name: writer.counters[name] for name in ("objects_read", "adds", "updates", "unchanged")}
            titles = dict(connection.execute(sa.select(cs_object.c.anchor, cs_object.c.attrs)).all())
    assert counters == {"objects_read": 3, "adds": 1, "updates": 1, "unchanged": 1}
    assert {anchor: json.loads(attrs)["title"] for anchor, attrs in titles.items()} == {
        "u1": ["A"],
        "u2": ["B"],
        "u3": ["B"],
    }
