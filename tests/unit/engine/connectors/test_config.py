"""The connectors configuration file: the default without a file, a two-forest file with OU filters, the OU scope
semantics, and errors that name the file, the key and the line of every problem."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.connectors.config import (
    ConnectorsConfigError,
    default_connectors_config,
    load_connectors_config,
    parse_connectors_config,
)

TWO_FORESTS = """\
ad:
  - name: ad
    conn_id: aadsync_ad
    partitions:
      - dn: DC=corp,DC=example,DC=test
        include_ous:
          - OU=Staff,DC=corp,DC=example,DC=test
          - "OU=Service Desk,DC=corp,DC=example,DC=test"
        exclude_ous:
          - OU=Leavers,OU=Staff,DC=corp,DC=example,DC=test
      - dn: DC=emea,DC=corp,DC=example,DC=test
  - name: ad_fabrikam
    conn_id: aadsync_ad_fabrikam
entra:
  conn_id: tenant_prod
"""


def problems(text: str) -> list[tuple[str, int | None, str]]:
    with pytest.raises(ConnectorsConfigError) as caught:
        parse_connectors_config(text, name="connectors.yaml")
    assert all(issue.file == "connectors.yaml" for issue in caught.value.issues)
    return [(issue.key, issue.line, issue.message) for issue in caught.value.issues]


def test_without_a_file_the_single_local_connector_as_today():
    for path in (None, "", "  "):
        config = load_connectors_config(path)
        assert config == default_connectors_config()
    assert [(c.name, c.conn_id, c.partitions) for c in config.ad] == [("ad", "aadsync_ad", None)]
    assert (config.entra.name, config.entra.conn_id) == ("entra", "aadsync_entra")
    assert config.ad[0].partition_dns("DC=corp,DC=example,DC=test") == ["DC=corp,DC=example,DC=test"]


def test_two_forests_with_partitions_and_ou_filters(tmp_path):
    path = tmp_path / "connectors.yaml"
    path.write_text(TWO_FORESTS)
    config = load_connectors_config(path)
    assert [(c.name, c.conn_id) for c in config.ad] == [("ad", "aadsync_ad"), ("ad_fabrikam", "aadsync_ad_fabrikam")]
    corp = config.ad_connector("ad")
    assert corp.partition_dns("ignored") == ["DC=corp,DC=example,DC=test", "DC=emea,DC=corp,DC=example,DC=test"]
    assert config.ad_connector("ad_fabrikam").partition_dns("DC=fabrikam,DC=test") == ["DC=fabrikam,DC=test"]
    assert (config.entra.name, config.entra.conn_id) == ("entra", "tenant_prod")
    with pytest.raises(KeyError, match="configured: ad, ad_fabrikam"):
        config.ad_connector("nope")


def test_ou_scope_children_follow_their_parent_unless_excluded():
    partition = parse_connectors_config(TWO_FORESTS).ad[0].partitions[0]
    inside = [
        "CN=Ada,OU=Staff,DC=corp,DC=example,DC=test",
        "CN=Ada,OU=Engineering,OU=Staff,DC=corp,DC=example,DC=test",  # a child OU follows its parent
        "cn=Bob,ou=service desk,dc=CORP,dc=example,dc=test",  # DNs compare as DNs: case, spacing
        "OU=Staff,DC=corp,DC=example,DC=test",
    ]
    outside = [
        "CN=Eve,OU=Leavers,OU=Staff,DC=corp,DC=example,DC=test",  # excluded, with its subtree
        "CN=Old,OU=2024,OU=Leavers,OU=Staff,DC=corp,DC=example,DC=test",
        "CN=Admin,CN=Users,DC=corp,DC=example,DC=test",  # in the partition, in no included OU
        "CN=Zed,OU=Staff,DC=fabrikam,DC=example,DC=test",  # another partition
    ]
    assert all(partition.contains(dn) for dn in inside)
    assert not any(partition.contains(dn) for dn in outside)
    whole = parse_connectors_config(TWO_FORESTS).ad[0].partitions[1]
    assert whole.contains("CN=Anyone,OU=Deep,OU=Deeper,DC=emea,DC=corp,DC=example,DC=test")


def test_every_problem_names_the_key_and_its_line():
    text = """\
ad:
  - name: ad
    conn_id: aadsync_ad
    colour: blue
  - name: 9lives
    conn_id: aadsync_ad_two
    partitions:
      - dn: DC=corp,DC=example,DC=test
        exclude_ous:
          - OU=Gone,DC=elsewhere,DC=test
entra:
  conn_id: ""
"""
    assert problems(text) == [
        ("ad[0].colour", 4, "unknown key"),
        ("ad[1].name", 5, "'9lives' is not a connector name (a letter, then letters, digits, _ or -; 64 at most)"),
        (
            "ad[1].partitions[0]",
            8,
            "OU 'OU=Gone,DC=elsewhere,DC=test' is not inside the partition 'DC=corp,DC=example,DC=test'",
        ),
        ("entra.conn_id", 12, "String should have at least 1 character"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("", 1, "the file is empty (want keys ad and entra)")),
        ("- a\n- b\n", ("", 1, "the file is a list, not a mapping (want keys ad and entra)")),
        ("entra: {}\n", ("ad", 1, "required key missing")),
        ("ad: []\n", ("ad", 1, "list at least one AD connector")),
        ("ad:\n  - name: ad\n", ("ad[0].conn_id", 2, "required key missing")),
        (
            "ad:\n  - name: ad\n    conn_id: c\n    partitions: []\n",
            (
                "ad[0].partitions",
                4,
                "an empty list reads nothing: leave partitions out to read the connection's base DN",
            ),
        ),
        (
            "ad:\n  - name: ad\n    conn_id: c\n    partitions:\n      - dn: not a dn\n",
            ("ad[0].partitions[0].dn", 5, "the partition is not a valid DN: 'not a dn' is not a valid DN: invalid DN"),
        ),
    ],
)
def test_shapes_that_are_refused(text, expected):
    found = problems(text)
    assert len(found) == 1, found
    key, line, message = found[0]
    assert (key, line) == expected[:2], found
    assert message.startswith(expected[2].split(": invalid DN")[0]), found


def test_ou_lists_that_are_mistakes():
    base = "ad:\n  - name: ad\n    conn_id: c\n    partitions:\n      - dn: DC=corp,DC=test\n"
    # an unquoted DN in a flow list is split at its commas by YAML: the message says so
    (key, line, message), *_ = problems(base + "        include_ous: [OU=Staff,DC=corp,DC=test]\n")
    assert (key, line) == ("ad[0].partitions[0]", 5) and "quote DNs in a [...] list" in message
    excluded_outside = (
        base + "        include_ous: ['OU=A,DC=corp,DC=test']\n        exclude_ous: ['OU=B,DC=corp,DC=test']\n"
    )
    assert "inside no included OU" in problems(excluded_outside)[0][2]
    both = base + "        include_ous: ['OU=A,DC=corp,DC=test']\n        exclude_ous: ['ou=a,dc=corp,dc=test']\n"
    assert "both included and excluded" in problems(both)[0][2]
    twice = base + "        include_ous: ['OU=A,DC=corp,DC=test', 'OU=a, DC=corp, DC=test']\n"
    assert "lists 'OU=a, DC=corp, DC=test' twice" in problems(twice)[0][2]


def test_connectors_that_clash():
    names = "ad:\n  - {name: ad, conn_id: one}\n  - {name: AD, conn_id: two}\n"
    assert problems(names) == [("", 1, "two connectors are named 'AD' (names ignore case)")]
    entra_name = "ad:\n  - {name: ad, conn_id: one}\nentra: {name: AD}\n"
    assert "two connectors are named 'AD'" in problems(entra_name)[0][2]
    not_ad = "ad:\n  - {name: fabrikam, conn_id: one}\n"
    assert "name AD connectors ad, ad_<name> or ad-<name>" in problems(not_ad)[0][2]
    shared = "ad:\n  - {name: ad_a, conn_id: one}\n  - {name: ad_b, conn_id: one}\n"
    assert "two AD connectors use the connection 'one'" in problems(shared)[0][2]
    twice = "ad:\n  - name: ad_a\n    conn_id: one\n    partitions:\n" + (
        "      - dn: DC=corp,DC=test\n      - dn: dc=CORP,dc=test"
    )
    assert "partitions lists 'dc=CORP,dc=test' twice" in problems(twice)[0][2]


def test_duplicate_keys_and_broken_yaml_name_their_line():
    assert problems("ad:\n  - name: ad\n    conn_id: a\n    conn_id: b\n") == [
        ("conn_id", 4, "key written twice (YAML keeps only the last)")
    ]
    ((key, line, message),) = problems("ad:\n  - name: [unclosed\n")
    assert key == "" and line == 3 and message


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConnectorsConfigError, match=r"nope\.yaml: the file: cannot be read: No such file"):
        load_connectors_config(tmp_path / "nope.yaml")
