"""Loading rule files: the happy path, every load error (worded with file, rule, path), fingerprints."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from airflow_provider_aadsync.engine.rules import (
    Direction,
    FlowType,
    LinkType,
    MergeType,
    RuleLoadError,
    RuleSetError,
    load_default_rules,
    load_rules,
    load_rules_text,
)
from airflow_provider_aadsync.engine.rules import loader as loader_module
from tests.support.rules import rule_dict

GOOD = textwrap.dedent(
    """\
    rules:
      - name: In from AD - User Join
        description: joins and projects users
        direction: inbound
        connector: ad
        source_object_type: user
        target_object_type: person
        link_type: Provision
        precedence: 100
        scoping:
          - - {attribute: isCriticalSystemObject, operator: NOTEQUAL, value: "True"}
            - {attribute: sAMAccountName, operator: ISNOTNULL}
        join:
          - - {source: objectGUID, target: sourceAnchorBinary, case_sensitive: false}
        flows:
          - {type: Direct, source: givenName, target: givenName}
          - {type: Constant, value: "User", target: objectKind, apply_once: true}
          - {type: Constant, value: [a, b], target: multi, merge: MergeCaseInsensitive}
      - name: Out to Entra - User
        direction: outbound
        connector: entra
        source_object_type: person
        target_object_type: user
        link_type: Provision
        precedence: 100
        enabled: false
    """
)


def yaml_text(rules: list[dict]) -> str:
    return yaml.safe_dump({"rules": rules}, sort_keys=False)


def load_error(path: Path | str, **kwargs) -> RuleLoadError:
    with pytest.raises(RuleLoadError) as info:
        load_rules([path], **kwargs)
    return info.value


class TestLoadRules:
    def test_loads_a_file(self, write_rules):
        ruleset = load_rules([write_rules("rules.yaml", text=GOOD)])
        assert [rule.name for rule in ruleset.rules] == ["In from AD - User Join", "Out to Entra - User"]
        join = ruleset.get("in from ad - user join")
        assert join is not None
        assert join.direction is Direction.INBOUND
        assert join.link_type is LinkType.PROVISION
        assert join.rule.description == "joins and projects users"
        assert join.join_groups == ((("objectGUID", "sourceAnchorBinary", False, False),),)
        assert join.join_groups[0][0].case_sensitive is False
        assert [(s.target, s.type, s.source, s.apply_once, s.merge) for s in join.flow_specs] == [
            ("givenName", FlowType.DIRECT, "givenName", False, MergeType.UPDATE),
            ("objectKind", FlowType.CONSTANT, None, True, MergeType.UPDATE),
            ("multi", FlowType.CONSTANT, None, False, MergeType.MERGE_CASE_INSENSITIVE),
        ]
        assert join.attributes == {"isCriticalSystemObject", "sAMAccountName", "objectGUID", "givenName"}
        assert not join.needs_member_of
        assert ruleset.connectors == {"ad", "entra"}

    def test_enabled_rules_by_direction(self, write_rules):
        ruleset = load_rules([write_rules("rules.yaml", text=GOOD)])
        assert [r.name for r in ruleset.inbound("AD")] == ["In from AD - User Join"]
        assert ruleset.inbound("ad", "group") == ()
        assert ruleset.outbound() == ()  # the only outbound rule is disabled
        assert len(ruleset) == 2

    def test_rules_are_ordered_by_precedence(self, write_rules):
        path = write_rules(
            "rules.yaml",
            [rule_dict(name="late", precedence=300), rule_dict(name="early", precedence=5)],
        )
        assert [rule.name for rule in load_rules([path])] == ["early", "late"]

    def test_directory_of_files_and_yml(self, write_rules, tmp_path):
        write_rules("dir/b.yml", [rule_dict(name="b", precedence=2)])
        write_rules("dir/a.yaml", [rule_dict(name="a", precedence=1)])
        write_rules("dir/notes.txt", text="not rules")
        assert {rule.name for rule in load_rules([tmp_path / "dir"])} == {"a", "b"}

    def test_enum_values_in_any_case(self, write_rules):
        path = write_rules(
            "rules.yaml",
            [
                rule_dict(
                    direction="Inbound",
                    link_type="stickyjoin",
                    scoping=[[{"attribute": "a", "operator": "isNotNull"}]],
                    flows=[{"type": "direct", "source": "a", "target": "b", "merge": "merge"}],
                )
            ],
        )
        rule = load_rules([path]).rules[0]
        assert rule.link_type is LinkType.STICKY_JOIN
        assert rule.flow_specs[0].merge is MergeType.MERGE

    def test_inbound_join_rule_without_join_groups_loads(self, write_rules):
        # The product's own pattern: "In from AD - User Common" is a Join rule with no join conditions; it
        # contributes flows to objects another rule joined (see the report for why this is not an error).
        path = write_rules(
            "rules.yaml", [rule_dict(link_type="Join"), rule_dict(name="s", precedence=1, link_type="StickyJoin")]
        )
        assert len(load_rules([path])) == 2

    @pytest.mark.parametrize(
        ("text", "position"),
        [("", ""), ("# only a comment\n", ""), ("rules:\n", ":1:7: rules"), ("rules: []\n", ":1:8: rules")],
        ids=["empty", "comment-only", "rules-null", "rules-empty-list"],
    )
    def test_empty_file_and_empty_rules_are_refused(self, write_rules, text, position):
        # An empty rule set would let a sync disconnect every object and empty the metaverse (issue 13).
        path = write_rules("empty.yaml", text=text)
        error = load_error(path)
        assert len(error.issues) == 1
        assert str(error.issues[0]).startswith(f"{path}{position}")
        assert "disconnect every object" in str(error)

    def test_an_empty_file_among_good_ones_is_refused_too(self, tmp_path, write_rules):
        write_rules("rules/a.yaml", [rule_dict()])
        empty = write_rules("rules/b.yaml", text="")
        error = load_error(tmp_path / "rules")
        assert [issue.file for issue in error.issues] == [str(empty)]

    def test_empty_folder_is_refused(self, tmp_path):
        (tmp_path / "rules").mkdir()
        (tmp_path / "rules" / "README.txt").write_text("not a rule file")
        error = load_error(tmp_path / "rules")
        assert error.issues[0].file == str(tmp_path / "rules")
        assert "holds no *.yaml or *.yml rule file" in str(error)

    def test_no_paths_at_all_is_a_rule_set_error(self):
        with pytest.raises(RuleSetError, match="no sync rule was loaded"):
            load_rules([])

    def test_default_rules_missing_or_empty_is_refused(self, tmp_path, monkeypatch):
        monkeypatch.setattr(loader_module, "DEFAULT_RULES_DIR", tmp_path / "absent")
        assert "no such rule file or directory" in str(pytest.raises(RuleLoadError, load_default_rules).value)
        (tmp_path / "default").mkdir()
        monkeypatch.setattr(loader_module, "DEFAULT_RULES_DIR", tmp_path / "default")
        assert "holds no *.yaml" in str(pytest.raises(RuleLoadError, load_default_rules, {"x": 1}).value)

    def test_rule_set_remembers_where_it_came_from(self, tmp_path, write_rules):
        write_rules("rules/a.yaml", [rule_dict()])
        assert load_rules([tmp_path / "rules"]).sources == (str(tmp_path / "rules"),)
        assert load_rules_text(yaml_text([rule_dict()]), name="x.yaml").sources == ("x.yaml",)


class TestLoadErrors:
    def test_yaml_syntax_error_gives_file_line_and_column(self, write_rules):
        path = write_rules("broken.yaml", text="rules:\n  - name: x\n    flows: [a, b\n")
        error = load_error(path)
        (issue,) = error.issues
        assert issue.file == str(path)
        assert issue.line is not None and issue.column is not None
        assert "YAML syntax error" in str(error)
        assert f"broken.yaml:{issue.line}:{issue.column}" in str(error)

    def test_unknown_key(self, write_rules):
        path = write_rules("rules.yaml", [rule_dict(flows=[{"type": "Direct", "sourec": "a", "target": "b"}])])
        error = load_error(path)
        text = str(error)
        assert "rules.yaml:" in text and "rule 'r1'" in text
        assert "flows[0].sourec: unknown key" in text
        assert "flows[0].source: a Direct flow needs 'source'" not in text  # structure errors stop the rule

    def test_unknown_top_level_key(self, write_rules):
        error = load_error(write_rules("rules.yaml", text="rules: []\nrulez: []\n"))
        assert "rulez: unknown key" in str(error)

    def test_wrong_enum_value_lists_allowed_ones(self, write_rules):
        path = write_rules(
            "rules.yaml",
            [rule_dict(link_type="Projection", scoping=[[{"attribute": "a", "operator": "LIKE", "value": "x"}]])],
        )
        text = str(load_error(path))
        assert "link_type: Input should be 'Join', 'StickyJoin' or 'Provision'" in text
        assert "scoping[0][0].operator: Input should be 'EQUAL', 'NOTEQUAL'" in text
        assert "'ISNOTMEMBEROF'" in text

    def test_missing_name_is_named_by_index(self, write_rules):
        rule = rule_dict()
        del rule["name"]
        path = write_rules("rules.yaml", [rule_dict(name="ok"), rule])
        (issue,) = load_error(path).issues
        assert issue.rule == "rules[1]"
        assert issue.path == "name"
        assert "rules.yaml:" in str(issue) and "rules[1]: name: required key missing" in str(issue)

    def test_all_errors_of_a_file_are_collected(self, write_rules):
        bad_precedence = rule_dict(name="a", precedence=-1)
        bad_flow = rule_dict(name="b", precedence=2, flows=[{"type": "Constant", "target": "x"}])
        bad_direction = rule_dict(name="c", precedence=3, direction="sideways")
        error = load_error(write_rules("rules.yaml", [bad_precedence, bad_flow, bad_direction]))
        assert [(issue.rule, issue.path) for issue in error.issues] == [
            ("a", "precedence"),
            ("b", "flows[0].value"),
            ("c", "direction"),
        ]
        assert str(error).startswith("3 errors in sync rules:")

    def test_issue_carries_the_yaml_position_of_the_field(self, write_rules):
        path = write_rules(
            "rules.yaml", text=GOOD.replace("precedence: 100\n    scoping", "precedence: x\n    scoping")
        )
        (issue,) = load_error(path).issues
        assert issue.path == "precedence"
        assert issue.line == GOOD.splitlines().index("    precedence: 100") + 1
        assert issue.column == len("    precedence: ") + 1

    def test_duplicate_rule_names_across_files(self, write_rules, tmp_path):
        write_rules("d/one.yaml", [rule_dict(name="Same", precedence=1)])
        write_rules("d/two.yaml", [rule_dict(name="same", precedence=2)])
        error = load_error(tmp_path / "d")
        (issue,) = error.issues
        assert issue.file is not None and issue.file.endswith("two.yaml")
        assert "rule 'same': name: duplicate rule name (also defined in" in str(error)
        assert "one.yaml" in str(error)

    def test_precedence_clash_across_two_files(self, write_rules, tmp_path):
        write_rules("d/one.yaml", [rule_dict(name="first", precedence=50)])
        write_rules("d/two.yaml", [rule_dict(name="second", precedence=50, direction="outbound")])
        error = load_error(tmp_path / "d")
        assert {(issue.rule, issue.path) for issue in error.issues} == {
            ("first", "precedence"),
            ("second", "precedence"),
        }
        text = str(error)
        assert "one.yaml" in text and "two.yaml" in text
        assert "precedence 50 on connector 'ad' is used by more than one enabled rule" in text

    def test_precedence_may_repeat_on_other_connectors_and_disabled_rules(self, write_rules):
        path = write_rules(
            "rules.yaml",
            [
                rule_dict(name="a", precedence=50),
                rule_dict(name="b", precedence=50, connector="entra"),
                rule_dict(name="c", precedence=50, enabled=False),
            ],
        )
        assert len(load_rules([path])) == 3

    def test_two_flows_to_one_target(self, write_rules):
        flows = [
            {"type": "Direct", "source": "a", "target": "mail"},
            {"type": "Constant", "value": "x", "target": "Mail"},
        ]
        (issue,) = load_error(write_rules("rules.yaml", [rule_dict(flows=flows)])).issues
        assert (issue.rule, issue.path) == ("r1", "flows[1].target")
        assert "flows[0] already flows to 'Mail'" in issue.message

    @pytest.mark.parametrize(
        ("flow", "path", "message"),
        [
            ({"type": "Direct", "target": "t"}, "flows[0].source", "a Direct flow needs 'source'"),
            ({"type": "Constant", "target": "t"}, "flows[0].value", "a Constant flow needs 'value'"),
            ({"type": "Constant", "target": "t", "value": None}, "flows[0].value", "a Constant flow needs 'value'"),
            ({"type": "Expression", "target": "t"}, "flows[0].expression", "an Expression flow needs"),
            ({"type": "Direct", "source": "s", "value": 1, "target": "t"}, "flows[0].value", "takes no 'value'"),
            ({"type": "Constant", "value": {"a": 1}, "target": "t"}, "flows[0].value", "a Constant value is"),
            ({"type": "Copy", "source": "s", "target": "t"}, "flows[0].type", "'Direct', 'Constant' or 'Expression'"),
            ({"type": "Direct", "source": "s", "target": "t", "merge": "Add"}, "flows[0].merge", "'Update', 'Merge'"),
        ],
    )
    def test_flow_field_errors(self, write_rules, flow, path, message):
        (issue,) = load_error(write_rules("rules.yaml", [rule_dict(flows=[flow])])).issues
        assert issue.path == path
        assert message in issue.message
        assert f"rules.yaml:{issue.line}:{issue.column}: rule 'r1': {path}: " in str(issue)

    @pytest.mark.parametrize(
        ("clause", "path", "message"),
        [
            ({"attribute": "a", "operator": "ISNULL", "value": "x"}, "scoping[0][0].value", "ISNULL takes no value"),
            ({"attribute": "a", "operator": "EQUAL"}, "scoping[0][0].value", "EQUAL needs a value"),
            ({"operator": "EQUAL", "value": "x"}, "scoping[0][0].attribute", "EQUAL needs an attribute"),
            ({"attribute": "a", "operator": "ISBITSET", "value": "&HXY"}, "scoping[0][0].value", "bit mask"),
        ],
    )
    def test_scoping_clause_errors(self, write_rules, clause, path, message):
        (issue,) = load_error(write_rules("rules.yaml", [rule_dict(scoping=[[clause]])])).issues
        assert (issue.rule, issue.path) == ("r1", path)
        assert message in issue.message

    def test_empty_scoping_group(self, write_rules):
        (issue,) = load_error(write_rules("rules.yaml", [rule_dict(scoping=[[]])])).issues
        assert issue.path == "scoping[0]"

    def test_duplicate_yaml_key(self, write_rules):
        text = GOOD.replace("precedence: 100\n    scoping", "precedence: 100\n    precedence: 7\n    scoping")
        (issue,) = load_error(write_rules("rules.yaml", text=text)).issues
        assert "'precedence' is written twice" in issue.message
        assert issue.line is not None

    def test_missing_path(self, tmp_path):
        error = load_error(tmp_path / "nope.yaml")
        assert "nope.yaml: no such rule file or directory" in str(error)

    def test_rule_that_is_not_a_mapping(self, write_rules):
        (issue,) = load_error(write_rules("rules.yaml", text="rules:\n  - just text\n")).issues
        assert issue.rule == "rules[0]"
        assert issue.line == 2

    def test_load_rules_text_names_the_source(self):
        with pytest.raises(RuleLoadError, match=r"inline\.yaml:\d+:\d+: rule 'r1': precedence"):
            load_rules_text("rules:\n" + _yaml_rule(precedence="high"), name="inline.yaml")


def _yaml_rule(**overrides) -> str:
    import yaml

    return textwrap.indent(yaml.safe_dump([rule_dict(**overrides)], sort_keys=False), "  ")


class TestFingerprint:
    def test_stable_under_reordering_of_files_and_keys(self, write_rules, tmp_path):
        a = rule_dict(name="a", precedence=1, flows=[{"type": "Direct", "source": "x", "target": "y"}])
        b = rule_dict(name="b", precedence=2)
        write_rules("one/1.yaml", [a])
        write_rules("one/2.yaml", [b])
        reordered_a = dict(reversed(list(a.items())))
        write_rules("two/x.yaml", [b, reordered_a])
        first = load_rules([tmp_path / "one"]).fingerprint
        assert first == load_rules([tmp_path / "two"]).fingerprint
        assert first == load_rules([tmp_path / "one" / "2.yaml", tmp_path / "one" / "1.yaml"]).fingerprint
        assert len(first) == 64

    def test_defaults_written_out_do_not_change_it(self, write_rules):
        plain = load_rules([write_rules("a.yaml", [rule_dict()])]).fingerprint
        explicit = load_rules([write_rules("b.yaml", [rule_dict(enabled=True, scoping=[], join=[])])]).fingerprint
        assert plain == explicit

    @pytest.mark.parametrize(
        "change",
        [
            {"precedence": 101},
            {"enabled": False},
            {"description": "now documented"},
            {"scoping": [[{"attribute": "a", "operator": "ISNULL"}]]},
            {"flows": [{"type": "Constant", "value": "x", "target": "y"}]},
            {"join": [[{"source": "a", "target": "b"}]]},
            {"name": "r1 renamed"},
        ],
    )
    def test_changed_by_any_content_change(self, write_rules, change):
        base = load_rules([write_rules("a.yaml", [rule_dict()])]).fingerprint
        assert load_rules([write_rules("b.yaml", [rule_dict(**change)])]).fingerprint != base

    def test_changed_by_parameters(self, write_rules):
        path = write_rules("a.yaml", [rule_dict()])
        assert load_rules([path]).fingerprint != load_rules([path], parameters={"Domain": "corp"}).fingerprint
        assert (
            load_rules([path], parameters={"a": 1, "b": 2}).fingerprint
            == load_rules([path], parameters={"b": 2, "a": 1}).fingerprint
        )


class TestHostileYaml:
    """Issue 13: a few hundred bytes must not hang the loader, and deep or huge files give errors with positions."""

    @staticmethod
    def alias_bomb(levels: int = 9, fan_out: int = 9) -> str:
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        for level in range(1, levels + 1):
            lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * fan_out) + "]")
        return "\n".join(lines) + f"\nrules: [{{name: x, name: y}}]\nz: *a{levels}\n"

    @pytest.mark.timeout(10)
    def test_alias_bomb_is_refused_quickly(self, write_rules):
        text = self.alias_bomb()
        assert len(text) < 600  # expands to 9**10 (3.5 billion) scalars
        error = load_error(write_rules("bomb.yaml", text=text))
        (issue,) = error.issues
        assert issue.message == "YAML refused: expands to more than 200,000 nodes (through its aliases)"
        assert issue.file.endswith("bomb.yaml") and issue.line is not None and issue.column is not None

    @pytest.mark.timeout(10)
    def test_shared_aliases_below_the_limit_are_walked_once(self, write_rules):
        # 9**5 = 59,049 nodes once expanded: allowed; the duplicate-key walk must still visit each node once.
        text = self.alias_bomb(levels=4)
        error = load_error(write_rules("shared.yaml", text=text))
        assert [issue.message for issue in error.issues if "written twice" in issue.message] == [
            "key 'name' is written twice"
        ]

    @pytest.mark.timeout(10)
    def test_recursive_alias_is_refused(self, write_rules):
        error = load_error(write_rules("loop.yaml", text="rules: &r [*r]\n"))
        assert str(error.issues[0]).endswith("loop.yaml:1:8: YAML refused: an alias refers to a node that contains it")

    @pytest.mark.timeout(10)
    @pytest.mark.parametrize(
        "text",
        ["rules: " + "[" * 5000 + "]" * 5000, "rules:\n" + "".join("  " * i + "-\n" for i in range(300))],
        ids=["flow", "block"],
    )
    def test_deep_nesting_is_refused_with_a_position(self, write_rules, text):
        error = load_error(write_rules("deep.yaml", text=text))
        (issue,) = error.issues
        assert issue.message == "YAML refused: nested deeper than 64 levels" and issue.line is not None

    def test_deep_nesting_through_aliases_is_refused(self, write_rules):
        deep = "[" * 40 + "x" + "]" * 40
        text = f"a: &a {deep}\nrules: {'[' * 30}*a{']' * 30}\n"
        error = load_error(write_rules("deep.yaml", text=text))
        assert error.issues[0].message == "YAML refused: nested deeper than 64 levels (through its aliases)"

    def test_a_file_too_large_is_refused_unread(self, write_rules):
        path = write_rules("big.yaml", text="# " + "x" * loader_module.MAX_RULE_FILE_BYTES + "\n")
        assert str(load_error(path).issues[0]) == f"{path}: the file is larger than 1,048,576 bytes"
        with pytest.raises(RuleLoadError, match="larger than 1,048,576 bytes"):
            load_rules_text("#" * (loader_module.MAX_RULE_FILE_BYTES + 1))


class TestMergeTypes:
    def test_update_and_merge_on_one_attribute_fail_at_load(self, write_rules):
        path = write_rules(
            "rules.yaml",
            [
                rule_dict(
                    name="hr", precedence=1, flows=[{"type": "Direct", "source": "a", "target": "proxyAddresses"}]
                ),
                rule_dict(
                    name="dir",
                    precedence=2,
                    connector="dir",
                    flows=[{"type": "Direct", "source": "b", "target": "proxyAddresses", "merge": "Merge"}],
                ),
            ],
        )
        (issue,) = load_error(path).issues
        assert (issue.rule, issue.path) == ("hr", "flows[0].merge")
        assert issue.file is not None and issue.file.endswith("rules.yaml") and issue.line is not None
        assert "updated here (merge: Update) but merged by rule 'dir'" in issue.message
        assert "rules.yaml:" in str(load_error(path))

    def test_merge_kinds_together_and_other_object_types_load(self, write_rules):
        path = write_rules(
            "rules.yaml",
            [
                rule_dict(
                    name="a", precedence=1, flows=[{"type": "Direct", "source": "x", "target": "t", "merge": "Merge"}]
                ),
                rule_dict(
                    name="b",
                    precedence=2,
                    connector="dir",
                    flows=[{"type": "Direct", "source": "y", "target": "t", "merge": "MergeCaseInsensitive"}],
                ),
                rule_dict(
                    name="c",
                    precedence=3,
                    target_object_type="group",
                    flows=[{"type": "Direct", "source": "z", "target": "t"}],
                ),
                rule_dict(
                    name="d", precedence=4, enabled=False, flows=[{"type": "Direct", "source": "z", "target": "t"}]
                ),
            ],
        )
        assert len(load_rules([path])) == 4

    def test_default_rules_do_not_mix(self):
        from airflow_provider_aadsync.engine.sync.settings import rule_parameters

        assert len(load_default_rules(rule_parameters(writeback_enabled=True, writeback_ou="OU=W,DC=x"))) > 0


def test_rejoin_on_names_a_target_of_an_outbound_provision_rule():
    outbound = {
        "direction": "outbound",
        "link_type": "Provision",
        "connector": "ad",
        "source_object_type": "cloudGroup",
        "target_object_type": "group",
        "flows": [{"type": "Direct", "source": "a", "target": "adminDescription"}],
    }
    (rule,) = load_rules_text(yaml_text([rule_dict(**outbound, rejoin_on="admindescription")])).rules
    assert rule.rule.rejoin_on == "admindescription"
    with pytest.raises(RuleLoadError, match="'mail' is not a target of this rule's flows"):
        load_rules_text(yaml_text([rule_dict(**outbound, rejoin_on="mail")]))
    with pytest.raises(RuleLoadError, match="rejoin_on is for outbound Provision rules"):
        load_rules_text(yaml_text([rule_dict(**{**outbound, "link_type": "Join"}, rejoin_on="adminDescription")]))
