"""Sync rule features on hand-built rules: joins, precedence, sentinels, apply-once, merge, sticky joins, references,
rule changes, the error limit and preview."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.rules import load_rules_text
from airflow_provider_aadsync.engine.runs.source import SourceObject
from airflow_provider_aadsync.engine.store import Store, mv_object, run_error
from airflow_provider_aadsync.engine.sync import PreviewError, preview, run_sync
from tests.support.world import export_for, import_delta, import_full, links, metaverse, mv_by, mv_members

RULES = """
rules:
  - name: In from HR
    direction: inbound
    connector: hr
    source_object_type: employee
    target_object_type: person
    link_type: Provision
    precedence: 10
    scoping:
      - - {attribute: status, operator: EQUAL, value: active}
      - - {attribute: status, operator: EQUAL, value: sticky}
    join:
      - - {source: employeeId, target: employeeId}
    flows:
      - {type: Direct, source: employeeId, target: employeeId}
      - {type: Direct, source: title, target: title}
      - {type: Expression, target: department, expression: 'IIF(IsPresent([dept]), UCase([dept]), AuthoritativeNull)'}
      - {type: Expression, target: office, expression: 'IIF(IsPresent([office]), [office], IgnoreThisFlow)'}
      - {type: Direct, source: mailAliases, target: proxyAddresses, merge: MergeCaseInsensitive}
      - {type: Direct, source: hireCode, target: hireCode, apply_once: true}
      - {type: Expression, target: badge, expression: 'IIF([badge] = "bad", Error("badge revoked"), [badge])'}
  - name: In from Directory
    direction: inbound
    connector: dir
    source_object_type: account
    target_object_type: person
    link_type: Join
    precedence: 20
    join:
      - - {source: mail, target: mail, case_sensitive: false}
      - - {source: empNo, target: employeeId}
    flows:
      - {type: Direct, source: title, target: title}
      - {type: Direct, source: department, target: department}
      - {type: Direct, source: office, target: office}
      - {type: Direct, source: mail, target: mail}
      - {type: Direct, source: addresses, target: proxyAddresses, merge: MergeCaseInsensitive}
"""


def employee(n: int, **attrs) -> SourceObject:
    values = {"employeeId": [f"E{n}"], "status": ["active"]}
    values.update({k: (v if isinstance(v, list) else [v]) for k, v in attrs.items() if v is not None})
    for k in [k for k, v in attrs.items() if v is None]:
        values.pop(k, None)
    return SourceObject(anchor=f"hr-{n}", dn=f"employee/{n}", object_type="employee", attrs=values)


def account(n: int, **attrs) -> SourceObject:
    values = {k: (v if isinstance(v, list) else [v]) for k, v in attrs.items()}
    return SourceObject(anchor=f"dir-{n}", dn=f"account/{n}", object_type="account", attrs=values)


@pytest.fixture
def rules():
    return load_rules_text(RULES, name="features.yaml")


def person(store, n: int) -> tuple[int, dict]:
    return mv_by(store, "employeeId", f"E{n}")


def test_join_groups_in_order_and_precedence_across_connectors(store, rules):
    import_full(store, "hr", [employee(1, title="Engineer", mail="x"), employee(2, title="Analyst")])
    run_sync(store, rules, connector="hr", mode="full")
    # first join group: mail (case-insensitive) matches nothing (hr flows no mail); second: empNo = employeeId
    import_full(store, "dir", [account(1, empNo="E1", title="Ignored", office="B12", mail="A@X")])
    result = run_sync(store, rules, connector="dir", mode="full")
    assert result.counters["joins"] == 1
    mv_id, attrs = person(store, 1)
    assert links(store, "dir")[("dir", "dir-1")] == (mv_id, "join")
    assert attrs["title"] == ["Engineer"]  # HR (10) beats the directory (20)
    assert attrs["office"] == ["B12"]  # HR's IgnoreThisFlow lets the directory contribute
    assert attrs["mail"] == ["A@X"]
    # the directory account joins by mail (group 1, case-insensitive) once mail is in the metaverse
    import_full(store, "dir", [account(1, empNo="E1", office="B12", mail="A@X"), account(2, mail="a@x")])
    result = run_sync(store, rules, connector="dir", mode="full")
    assert result.result == "completed-sync-errors"  # dir-2 matches a person dir-1 is joined to
    with store.engine.connect() as connection:
        codes = connection.execute(sa.select(run_error.c.code).where(run_error.c.run_id == result.run_id)).scalars()
        assert list(codes) == ["join-conflict"]


def test_ambiguous_join_is_a_per_object_error(store, rules):
    import_full(store, "hr", [employee(1, mail="same"), employee(2, mail="same")])
    run_sync(store, rules, connector="hr", mode="full")
    with store.transaction() as connection:  # give both persons the same mail, as a second source would
        for mv_id, _ in metaverse(store).items():
            connection.execute(sa.update(mv_object).where(mv_object.c.id == mv_id).values(attrs='{"mail":["Same"]}'))
        from airflow_provider_aadsync.engine.store import mv_join_key

        connection.execute(
            sa.insert(mv_join_key),
            [{"mv_id": m, "attribute": "mail", "value": "Same", "value_folded": "same"} for m in metaverse(store)],
        )
    import_full(store, "dir", [account(9, mail="SAME")])
    result = run_sync(store, rules, connector="dir", mode="full")
    with store.engine.connect() as connection:
        errors = connection.execute(sa.select(run_error).where(run_error.c.run_id == result.run_id)).all()
    assert [e.code for e in errors] == ["ambiguous-join"] and "2 metaverse objects" in errors[0].message
    assert ("dir", "dir-9") not in links(store)


def test_authoritative_null_beats_lower_precedence_and_null_lets_it_through(store, rules):
    import_full(store, "hr", [employee(1, dept="rd")])
    run_sync(store, rules, connector="hr", mode="full")
    import_full(store, "dir", [account(1, empNo="E1", department="Marketing")])
    run_sync(store, rules, connector="dir", mode="full")
    assert person(store, 1)[1]["department"] == ["RD"]
    import_delta(store, "hr", [employee(1, dept=[])])  # cleared in HR → AuthoritativeNull
    run_sync(store, rules, connector="hr", mode="delta")
    assert "department" not in person(store, 1)[1]  # the directory's Marketing may not show through
    # title: HR's Direct flow of an absent value is NULL, no contribution: the directory's value shows
    import_delta(store, "dir", [account(1, empNo="E1", department="Marketing", title="Director")])
    run_sync(store, rules, connector="dir", mode="delta")
    assert person(store, 1)[1]["title"] == ["Director"]
    import_delta(store, "hr", [employee(1, title="VP")])
    run_sync(store, rules, connector="hr", mode="delta")
    assert person(store, 1)[1]["title"] == ["VP"]


def test_apply_once_keeps_the_first_value(store, rules):
    import_full(store, "hr", [employee(1, hireCode="H-1")])
    run_sync(store, rules, connector="hr", mode="full")
    import_delta(store, "hr", [employee(1, hireCode="H-2")])
    run_sync(store, rules, connector="hr", mode="delta")
    assert person(store, 1)[1]["hireCode"] == ["H-1"]


def test_merge_case_insensitive_unites_values_of_both_connectors(store, rules):
    import_full(store, "hr", [employee(1, mailAliases=["SMTP:a@x", "smtp:b@x"])])
    run_sync(store, rules, connector="hr", mode="full")
    import_full(store, "dir", [account(1, empNo="E1", addresses=["smtp:B@X", "smtp:c@x"])])
    run_sync(store, rules, connector="dir", mode="full")
    assert person(store, 1)[1]["proxyAddresses"] == ["SMTP:a@x", "smtp:b@x", "smtp:c@x"]


def test_expression_error_is_per_object_and_the_rest_goes_on(store, rules):
    import_full(store, "hr", [employee(1, badge="bad"), employee(2, badge="ok")])
    result = run_sync(store, rules, connector="hr", mode="full")
    assert result.result == "completed-sync-errors" and result.counters["errors"] == 1
    with store.engine.connect() as connection:
        error = connection.execute(sa.select(run_error).where(run_error.c.run_id == result.run_id)).one()
    assert error.anchor == "hr-1" and "badge revoked" in error.message
    assert person(store, 2)[1]["badge"] == ["ok"]


def test_out_of_scope_disconnects_and_deletes_the_person_but_sticky_joins_stay(store, rules):
    sticky = RULES.replace("link_type: Join\n    precedence: 20", "link_type: StickyJoin\n    precedence: 20")
    sticky_rules = load_rules_text(sticky + _DIR_SCOPE, name="sticky.yaml")
    import_full(store, "hr", [employee(1), employee(2)])
    run_sync(store, sticky_rules, connector="hr", mode="full")
    import_full(store, "dir", [account(1, empNo="E1", kind="staff"), account(2, empNo="E2", kind="staff")])
    run_sync(store, sticky_rules, connector="dir", mode="full")
    mv2 = person(store, 2)[0]
    import_delta(store, "dir", [account(2, empNo="E2", kind="contractor")])  # out of the StickyJoin rule's scope
    run_sync(store, sticky_rules, connector="dir", mode="delta")
    assert links(store, "dir")[("dir", "dir-2")] == (mv2, "sticky-join")
    import_delta(store, "hr", [employee(1, status="left")])  # out of the projecting rule's scope
    result = run_sync(store, sticky_rules, connector="hr", mode="delta")
    assert result.counters["disconnections"] == 1 and result.counters["metaverse_deletes"] == 1
    assert not [m for m, a in metaverse(store).items() if a.get("employeeId") == ["E1"]]
    assert ("dir", "dir-1") not in links(store)  # the joined account lost its metaverse object


_DIR_SCOPE = """    scoping:
      - - {attribute: kind, operator: EQUAL, value: staff}
"""


def test_members_imported_after_their_group_resolve_in_a_later_pass(store):
    rules = load_rules_text(GROUP_RULES, name="groups.yaml")
    group = SourceObject(
        anchor="g1", dn="CN=G", object_type="group", attrs={"name": ["G"]}, references={"member": [("u1", "CN=U1")]}
    )
    import_full(store, "ad", [group])
    result = run_sync(store, rules, connector="ad", mode="full")
    assert result.counters["references_pending"] == 1
    group_id = mv_by(store, "name", "G")[0]
    assert mv_members(store, group_id) == set()
    import_delta(store, "ad", [SourceObject(anchor="u1", dn="CN=U1", object_type="user", attrs={"name": ["U1"]})])
    result = run_sync(store, rules, connector="ad", mode="delta")
    assert result.counters["objects_evaluated"] == 1  # only the new user; its group is re-resolved by reference
    assert mv_members(store, group_id) == {mv_by(store, "name", "U1")[0]}


GROUP_RULES = """
rules:
  - {name: users, direction: inbound, connector: ad, source_object_type: user, target_object_type: person,
     link_type: Provision, precedence: 1, flows: [{type: Direct, source: name, target: name}]}
  - {name: groups, direction: inbound, connector: ad, source_object_type: group, target_object_type: group,
     link_type: Provision, precedence: 2,
     flows: [{type: Direct, source: name, target: name}, {type: Direct, source: member, target: member}]}
"""


def test_changed_rules_turn_a_delta_sync_into_a_full_one(store, rules):
    import_full(store, "hr", [employee(1)])
    first = run_sync(store, rules, connector="hr", mode="delta")
    assert first.mode == "full" and first.fallback_reason == "no full sync has run yet"
    assert run_sync(store, rules, connector="hr", mode="delta").mode == "delta"
    changed = load_rules_text(RULES.replace("precedence: 10", "precedence: 11"), name="features.yaml")
    again = run_sync(store, changed, connector="hr", mode="delta")
    assert again.mode == "full" and "rules changed" in again.fallback_reason


def test_error_limit_stops_the_run_and_applies_nothing(store, rules):
    import_full(store, "hr", [employee(n, badge="bad") for n in range(5)])
    result = run_sync(store, rules, connector="hr", mode="full", error_limit=3)
    assert result.result == "stopped-error-limit"
    assert metaverse(store) == {}
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(run_error)).scalar() == 3


def test_preview_reports_decisions_and_writes_nothing(store, rules):
    import_full(store, "hr", [employee(1, title="Engineer", office="B1")])
    trace = preview(store, rules, connector="hr", anchor="hr-1")
    assert trace["inbound_rules_in_scope"] == ["In from HR"]
    assert trace["decision"].startswith("projected by rule 'In from HR'")
    flows = {flow["target"]: flow["value"] for flow in trace["inbound_flows"]}
    assert flows["title"] == ["Engineer"] and flows["office"] == ["B1"]
    assert trace["winners"]["title"] == "hr|In from HR"
    assert metaverse(store) == {} and links(store) == {}
    same = preview(store, rules, connector="hr", dn="EMPLOYEE/1")
    assert same["anchor"] == "hr-1"
    with pytest.raises(PreviewError, match="no object 'nope'"):
        preview(store, rules, connector="hr", anchor="nope")


def test_preview_shows_null_as_null_and_sentinels_by_name(store, rules):
    """A NULL flow contributes nothing and reads NULL; AuthoritativeNull and IgnoreThisFlow keep their names."""
    from airflow_provider_aadsync.engine.report import render_preview

    import_full(store, "hr", [employee(1, title=None)])
    trace = preview(store, rules, connector="hr", anchor="hr-1")
    flows = {flow["target"]: flow["value"] for flow in trace["inbound_flows"]}
    assert flows["title"] is None
    assert flows["department"] == "AuthoritativeNull"
    assert flows["office"] == "IgnoreThisFlow"
    text = render_preview(trace)
    assert "→ title = NULL" in text
    assert "→ department = AuthoritativeNull" in text
    assert "→ office = IgnoreThisFlow" in text


SECOND_JOIN = """
  - name: In from Directory - by badge
    direction: inbound
    connector: dir
    source_object_type: account
    target_object_type: person
    link_type: Join
    precedence: 21
    scoping:
      - - {attribute: badge, operator: ISNOTNULL}
    join:
      - - {source: badge, target: badge}
"""


def test_several_join_rules_in_scope_is_a_per_object_error(store):
    """Only one rule with join criteria may be in scope for an object (the product throws an error otherwise)."""
    rules = load_rules_text(RULES + SECOND_JOIN, name="features.yaml")
    import_full(store, "hr", [employee(1, badge="B1"), employee(2)])
    run_sync(store, rules, connector="hr", mode="full")
    # dir-1 is in scope of both join rules; dir-2 (no badge) of one: it joins as before.
    import_full(store, "dir", [account(1, empNo="E1", badge="B1"), account(2, empNo="E2")])
    result = run_sync(store, rules, connector="dir", mode="full")
    assert result.result == "completed-sync-errors" and result.counters["joins"] == 1
    with store.engine.connect() as connection:
        errors = connection.execute(sa.select(run_error).where(run_error.c.run_id == result.run_id)).all()
    assert [(e.anchor, e.code) for e in errors] == [("dir-1", "several-join-rules")]
    assert "'In from Directory', 'In from Directory - by badge'" in errors[0].message
    assert ("dir", "dir-1") not in links(store) and links(store)[("dir", "dir-2")][1] == "join"


TWO_OUTBOUND_RULES = """
  - name: Out to Directory - defaults
    direction: outbound
    connector: dir
    source_object_type: person
    target_object_type: account
    link_type: Join
    precedence: 40
    flows:
      - {type: Constant, target: title, value: Staff}
      - {type: Constant, target: office, value: HQ}
      - {type: Constant, target: department, value: General}
      - {type: Constant, target: empNo, value: none}
  - name: Out to Directory
    direction: outbound
    connector: dir
    source_object_type: person
    target_object_type: account
    link_type: Provision
    precedence: 30
    flows:
      - {type: Direct, source: title, target: title}
      - {type: Expression, target: office, expression: 'IIF(IsPresent([office]), [office], IgnoreThisFlow)'}
      - type: Expression
        target: department
        expression: 'IIF(IsPresent([department]), [department], AuthoritativeNull)'
      - {type: Direct, source: employeeId, target: empNo}
"""


def test_outbound_rules_in_scope_together_give_each_target_the_first_value_by_precedence(store):
    """Two outbound rules in scope of a person: per target the rule with the lower precedence number decides; its NULL
    and IgnoreThisFlow leave the target to the next rule, its AuthoritativeNull decides "no value" (the product's
    precedence for export flows)."""
    rules = load_rules_text(RULES + TWO_OUTBOUND_RULES, name="features.yaml")
    import_full(store, "hr", [employee(1, title="Engineer", office="B12", dept="rd"), employee(2)])
    run_sync(store, rules, connector="hr", mode="full")
    first, second = export_for(store, person(store, 1)[0], "dir"), export_for(store, person(store, 2)[0], "dir")
    assert first["operation"] == second["operation"] == "add"
    assert first["changes"] == {"title": ["Engineer"], "office": ["B12"], "department": ["RD"], "empNo": ["E1"]}
    # title: NULL, office: IgnoreThisFlow → the defaults; department: AuthoritativeNull → none (not "General")
    assert second["changes"] == {"title": ["Staff"], "office": ["HQ"], "empNo": ["E2"]}


def join_keys(store) -> dict[str, set[tuple[int, str]]]:
    """The stored join keys, by attribute: (metaverse id, value) pairs."""
    from airflow_provider_aadsync.engine.store import mv_join_key

    found: dict[str, set[tuple[int, str]]] = {}
    with store.engine.connect() as connection:
        for mv_id, attribute, value in connection.execute(
            sa.select(mv_join_key.c.mv_id, mv_join_key.c.attribute, mv_join_key.c.value)
        ):
            found.setdefault(attribute, set()).add((mv_id, value))
    return found


#: SECOND_JOIN for every account: the directory's first rule is scoped to accounts with an empNo.
BY_BADGE_ONLY = SECOND_JOIN.replace("    scoping:\n      - - {attribute: badge, operator: ISNOTNULL}\n", "")
EMPNO_SCOPED = RULES.replace(
    "  - name: In from Directory\n",
    "  - name: In from Directory\n    scoping:\n      - - {attribute: empNo, operator: ISNOTNULL}\n",
    1,
)


def test_a_join_rule_added_on_another_attribute_finds_the_objects_unchanged_since(store, rules):
    """Join keys are written with an object's values: a join rule added later on another attribute (badge) must still
    find the persons whose values did not change since, or their accounts would stay unjoined (or be projected a second
    time). The first pass with the new rules fills the new target's keys from every metaverse object."""
    import_full(store, "hr", [employee(1, badge="B1"), employee(2, badge="B2"), employee(3)])
    run_sync(store, rules, connector="hr", mode="full")
    assert "badge" not in join_keys(store)  # no rule joins on it yet
    added = load_rules_text(EMPNO_SCOPED + BY_BADGE_ONLY, name="features.yaml")
    import_full(store, "dir", [account(1, badge="B1"), account(2, badge="b2")])
    result = run_sync(store, added, connector="dir", mode="full")
    assert result.counters["joins"] == 1  # badge is case-sensitive: b2 is not B2
    assert links(store, "dir") == {("dir", "dir-1"): (person(store, 1)[0], "join")}
    assert join_keys(store)["badge"] == {(person(store, 1)[0], "B1"), (person(store, 2)[0], "B2")}
    # back to the rules without it: the keys no rule looks up go, and come back whole when a rule does again
    run_sync(store, rules, connector="hr", mode="full")
    assert "badge" not in join_keys(store)
    run_sync(store, added, connector="hr", mode="full")
    assert join_keys(store)["badge"] == {(person(store, 1)[0], "B1"), (person(store, 2)[0], "B2")}


def test_a_store_of_schema_version_11_fills_every_join_target_anew(tmp_path, rules):
    """Step 12: a store whose keys were kept before the targets were recorded may lack the keys of objects unchanged
    since a join rule was added; its next pass fills every target's keys from the metaverse."""
    from airflow_provider_aadsync.engine.store import mv_join_key, mv_join_key_target, schema_version

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with Store.open(url, instance="test") as opened:
        import_full(opened, "hr", [employee(1), employee(2)])
        run_sync(opened, rules, connector="hr", mode="full")
        import_full(opened, "dir", [account(1, empNo="E1", mail="One@X")])  # the directory flows person 1's mail
        run_sync(opened, rules, connector="dir", mode="full")
        first, second = person(opened, 1)[0], person(opened, 2)[0]
        complete = join_keys(opened)
        assert complete == {"employeeid": {(first, "E1"), (second, "E2")}, "mail": {(first, "One@X")}}
        with opened.engine.begin() as connection:  # a version 11 store, two of whose keys were never written
            connection.execute(sa.delete(mv_join_key).where(mv_join_key.c.value.in_(["E2", "One@X"])))
            connection.exec_driver_sql("DROP TABLE mv_join_key_target")
            connection.execute(sa.delete(schema_version).where(schema_version.c.version >= 12))
    with Store.open(url, instance="test") as opened:
        with opened.engine.connect() as connection:
            assert connection.execute(sa.select(mv_join_key_target)).all() == []  # step 12: nothing recorded yet
        import_full(opened, "dir", [account(1, empNo="E1", mail="One@X"), account(2, empNo="E2")])
        result = run_sync(opened, rules, connector="dir", mode="full")
        assert result.counters["joins"] == 1
        assert links(opened, "dir") == {("dir", "dir-1"): (first, "join"), ("dir", "dir-2"): (second, "join")}
        assert join_keys(opened) == complete


def test_a_case_sensitive_join_matches_the_exact_value_only(store, rules):
    """Join keys are looked up through the folded-value index alone (tables.mv_join_key); a case-sensitive pair
    (empNo → employeeId) still joins only the value written the same way."""
    import_full(store, "hr", [employee(1), employee(2)])
    run_sync(store, rules, connector="hr", mode="full")
    import_full(store, "dir", [account(1, empNo="E1"), account(2, empNo="e2")])
    result = run_sync(store, rules, connector="dir", mode="full")
    assert result.counters["joins"] == 1
    assert links(store, "dir") == {("dir", "dir-1"): (person(store, 1)[0], "join")}
