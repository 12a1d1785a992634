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
