"""Bad input, generated with hypothesis: each case ends as a clear error or a per-object error, never a crash or hang.

* rule YAML: random documents, random text, and mutations of the shipped rule files → a RuleSet or RuleLoadError;
* expressions: token soups and mutations of the shipped expressions → compile or ExpressionSyntaxError; what
  compiles evaluates (per object and column-wise, with the same answers) or raises ExpressionEvaluationError;
* hostile attribute values (very long strings, control characters, NUL, unpaired surrogates, LDAP, DN and OData
  metacharacters) through every function, the shipped rules' scoping and flows, a recorded sync run, the store's
  attribute serialization and the Entra import's decoding, and into the LDAP and OData filters built from data.

Deterministic for CI: ``derandomize=True`` and no example database; ``--soak`` runs more examples. Each test has its
own timeout, so a hang fails the test instead of the suite.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ldap3.operation.search import parse_filter as parse_ldap_filter
from ldap3.utils.dn import parse_dn

from aadsync_devkit.graph_emulator.odata import parse_filter as parse_odata_filter
from airflow_provider_aadsync.engine.connectors.entra.graph import odata_quote
from airflow_provider_aadsync.engine.connectors.entra.reader import _user_page, graph_object
from airflow_provider_aadsync.engine.dn import _unescape, normalize_dn, wire_dn
from airflow_provider_aadsync.engine.expressions import (
    ExpressionEvaluationError,
    ExpressionSyntaxError,
    compile_expression,
)
from airflow_provider_aadsync.engine.expressions.functions import FUNCTIONS
from airflow_provider_aadsync.engine.rules import (
    DEFAULT_RULES_DIR,
    FlowType,
    RuleLoadError,
    RuleObjectError,
    frame_from_records,
    load_rules_text,
)
from airflow_provider_aadsync.engine.runs.cs_writer import ObjectPage, serialize_attrs
from airflow_provider_aadsync.engine.runs.import_run import ErrorSink
from airflow_provider_aadsync.engine.runs.source import ObjectDecodeError
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.hooks.active_directory import IMPORT_FILTER, ActiveDirectoryHook
from airflow_provider_aadsync.hooks.entra import EntraHook
from airflow_provider_aadsync.hooks.entra_settings import EntraConnectionSettings
from tests.support.world import ad_group, ad_user, import_full

SHIPPED_FILES = sorted(DEFAULT_RULES_DIR.glob("*.yaml"))
SHIPPED_RULES = load_sync_rules()
SHIPPED_EXPRESSIONS = sorted(
    {spec.expression for rule in SHIPPED_RULES for spec in rule.flow_specs if spec.type is FlowType.EXPRESSION}
)
PARAMETERS = {"MemberLimit": 250_000, "WritebackLimit": 50_000, "WritebackOU": "OU=W,DC=x", "WritebackNaming": "a"}


def examples(soak: bool, short: int, long: int | None = None) -> settings:
    """Deterministic settings: ``short`` examples, ``long`` (default 10×) with --soak."""
    return settings(
        max_examples=(long or short * 10) if soak else short,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# ------------------------------------------------------------------------------------------------ strategies
METACHARACTERS = "*()\\\x00,+\"<>;=#'%&/?:[]{}|$@ \t\r\n"
hostile_text = st.one_of(
    st.text(max_size=40),  # any Unicode but surrogates
    st.text(alphabet=METACHARACTERS + "aé", max_size=40),
    st.text(alphabet=st.characters(codec=None, categories=["Cc", "Cf", "Zs", "Co"]), max_size=20),
    st.builds(lambda c, n: c * n, st.sampled_from("x\x00é*\\"), st.integers(1_000, 200_000)),  # long
)
surrogate_text = st.builds(
    lambda a, s, b: a + s + b,
    st.text(max_size=5),
    st.sampled_from(["\ud800", "\udfff", "\udc80\ud800"]),
    st.text(max_size=5),
)
scalar = st.one_of(
    st.none(),
    hostile_text,
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.binary(max_size=40),
    st.sampled_from([10**5000, "9" * 5000, "&H" + "F" * 100, "1e999", "-0", "  42 ", "S-1-5-21-1", "True"]),
)
cell = st.one_of(scalar, st.lists(st.one_of(hostile_text, st.binary(max_size=8)), max_size=5))

GRAMMAR_TOKENS = [
    *sorted(spec.name for spec in FUNCTIONS.values()),
    *"( ) , ( ) , - & + * / = < > <= >= <> && || [a] [b] [m] [n] [member] $v $w %MemberLimit% %x%".split(),
    '"a"',
    '""',
    '"""',
    '"x',
    "1",
    "0",
    "2.5",
    "&HFF",
    "4000000000",
    "9" * 70,
    "True",
    "NULL",
    "CRLF",
    "AuthoritativeNull",
    "IgnoreThisFlow",
    "vbTextCompare",
    "Unicode",
    "[",
    "]",
    "%",
    "$",
    "\n",
    "\x00",
    "é",
]
token_soup = st.lists(st.sampled_from(GRAMMAR_TOKENS), max_size=30).map(" ".join)


@st.composite
def mutated(draw: st.DrawFn, sources: list[str], pieces: list[str]) -> str:
    """One of ``sources`` with a few random edits: a slice deleted or repeated, a piece inserted, a character put."""
    text = draw(st.sampled_from(sources))
    for _ in range(draw(st.integers(1, 4))):
        if not text:
            break
        start = draw(st.integers(0, len(text) - 1))
        end = draw(st.integers(start, min(len(text), start + 40)))
        edit = draw(st.sampled_from(["delete", "repeat", "insert", "replace"]))
        if edit == "delete":
            text = text[:start] + text[end:]
        elif edit == "repeat":
            text = text[:end] + text[start:end] * draw(st.integers(1, 50)) + text[end:]
        elif edit == "insert":
            text = text[:start] + draw(st.sampled_from(pieces)) + text[start:]
        else:
            text = text[:start] + draw(st.characters(codec="utf-8")) + text[start + 1 :]
    return text


CONTEXT = {"a": "x", "b": "y", "m": ["p", "q"], "n": 3, "member": ["CN=a,DC=x"]}


def check_expression(text: str, context: dict[str, Any]) -> None:
    """Compile, then evaluate per object and column-wise: only the language's own errors may come out, and the
    column form agrees with the per-object form on every row it answers."""
    try:
        compiled = compile_expression(text, parameters=PARAMETERS)
    except ExpressionSyntaxError as error:
        assert error.line >= 1 and error.column >= 1
        return
    try:
        expected: Any = compiled.evaluate(context)
    except ExpressionEvaluationError:
        expected = ExpressionEvaluationError
    result = compiled.evaluate_column({name: [value] for name, value in context.items()}, size=1)
    if result is not None and not result.per_row[0]:
        assert expected is not ExpressionEvaluationError, "the column form answered a row the per-object form fails"
        assert _same(result.values.iloc[0], expected)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # NaN
    return type(a) is type(b) and a == b


# ------------------------------------------------------------------------------------------------ rule YAML
yaml_data = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.sampled_from(["Provision", "inbound"])),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(["rules", "name", "direction", "connector", "flows", "scoping", "join", "type", "x"]),
            children,
            max_size=5,
        ),
    ),
    max_leaves=30,
)


@pytest.mark.timeout(60)
def test_random_rule_documents_load_or_fail_clearly(soak):
    @examples(soak, 150)
    @given(st.one_of(yaml_data.map(lambda d: yaml.safe_dump(d)), st.text(max_size=200)))
    def check(text: str) -> None:
        try:
            load_rules_text(text, name="random.yaml", parameters=PARAMETERS)
        except RuleLoadError as error:
            assert error.issues and all(issue.file == "random.yaml" for issue in error.issues if issue.file)

    check()


YAML_PIECES = ["&a ", "*a", "[", "]", "{", "}", ": ", "- ", "\t", '"', "'", "!!python/object ", "<<: *a", "\n  ", "%"]


@pytest.mark.timeout(60)
def test_mutated_shipped_rule_files_load_or_fail_with_a_position(soak):
    texts = [path.read_text() for path in SHIPPED_FILES]

    @examples(soak, 60)
    @given(mutated(texts, YAML_PIECES))
    def check(text: str) -> None:
        try:
            load_rules_text(text, name="mutated.yaml", parameters=PARAMETERS)
        except RuleLoadError as error:
            assert all(issue.file == "mutated.yaml" for issue in error.issues)

    check()


# ------------------------------------------------------------------------------------------------ expressions
@pytest.mark.timeout(60)
def test_expression_token_soups_compile_or_fail_with_a_position(soak):
    @examples(soak, 300)
    @given(token_soup, st.dictionaries(st.sampled_from(["a", "b", "m", "n", "member"]), cell, max_size=5))
    def check(text: str, context: dict[str, Any]) -> None:
        check_expression(text, {**CONTEXT, **context})

    check()


FUNCTION_NAMES = sorted(spec.name for spec in FUNCTIONS.values() if spec.kind != "binder")
LEAVES = ["[a]", "[b]", "[m]", "[n]", "[member]", '"x"', '""', "1", "0", "-1", "2.5", "&HFF", "4000000000", "NULL",
          "True", "CRLF", "vbTextCompare", "CaseInsensitive", "UTF8", '"CN=a,OU=b"', '"S-1-5-21-1"']  # fmt: skip
OPERATORS = ["&", "+", "-", "*", "/", "=", "<>", "<", "<=", ">", ">=", "&&", "||"]
shaped_expression = st.recursive(
    st.sampled_from(LEAVES),
    lambda inner: st.one_of(
        st.builds(
            lambda name, args: f"{name}({', '.join(args)})",
            st.sampled_from(FUNCTION_NAMES),
            st.lists(inner, min_size=1, max_size=4),
        ),  # fmt: skip
        st.builds(lambda a, op, b: f"{a} {op} {b}", inner, st.sampled_from(OPERATORS), inner),
        st.builds(lambda a: f"({a})", inner),
        st.builds(lambda a: f"-{a}", inner),
        st.builds(lambda a, b: f"Select($v, {a}, {b.replace('[a]', '$v')})", inner, inner),
        st.builds(lambda a, b: f"With($w, {a}, {b.replace('[b]', '$w')})", inner, inner),
    ),
    max_leaves=12,
)


@pytest.mark.timeout(60)
def test_expressions_of_the_grammars_shape(soak):
    """Expressions built as the grammar builds them (calls of any function with any arguments, operators, nesting),
    so that most compile and their evaluation, not only their syntax, meets the hostile values."""

    @examples(soak, 300)
    @given(shaped_expression, st.dictionaries(st.sampled_from(["a", "b", "m", "n", "member"]), cell, max_size=5))
    def check(text: str, context: dict[str, Any]) -> None:
        check_expression(text, {**CONTEXT, **context})

    check()


@pytest.mark.timeout(60)
def test_mutated_shipped_expressions(soak):
    pieces = ["(", ")", ",", "&", '"', "[", "]", "$x", "9" * 70, 'PadLeft([a], 4000000000, "0")', "-" * 70]

    @examples(soak, 150)
    @given(mutated(SHIPPED_EXPRESSIONS, pieces), st.dictionaries(st.sampled_from(["a", "displayName"]), cell))
    def check(text: str, context: dict[str, Any]) -> None:
        check_expression(text, {**CONTEXT, **context})

    check()


@pytest.mark.timeout(90)
def test_every_function_with_hostile_arguments(soak):
    calls = []
    for spec in sorted(FUNCTIONS.values(), key=lambda spec: spec.name):
        if spec.kind == "binder":
            calls.append(f"{spec.name}($v, [a], {spec.name}($w, [b], $v & $w))")
            continue
        count = min(spec.max_args if spec.max_args is not None else 4, max(spec.min_args, 3))
        calls.append(f"{spec.name}({', '.join(['[a]', '[b]', '[c]', '[d]'][:count])})")

    @examples(soak, 600, 3000)
    @given(st.sampled_from(calls), cell, cell, cell, st.one_of(st.none(), st.integers(-5, 5), hostile_text))
    def check(call: str, a: Any, b: Any, c: Any, d: Any) -> None:
        check_expression(call, {"a": a, "b": b, "c": c, "d": d})

    check()


# ------------------------------------------------------------------------------------------------ rules on data
def hostile_user(n: int, values: dict[str, Any]) -> dict[str, list[Any]]:
    record = ad_user(n).attrs
    for name, value in values.items():
        record[name] = value if isinstance(value, list) else [value]
    return record


AD_ATTRIBUTES = ["displayName", "givenName", "sn", "mail", "proxyAddresses", "userPrincipalName", "sAMAccountName",
                 "cn", "userAccountControl", "isCriticalSystemObject", "msExchRecipientTypeDetails", "objectGUID",
                 "mS-DS-ConsistencyGuid", "member", "groupType", "department"]  # fmt: skip


@pytest.mark.timeout(90)
def test_shipped_scoping_and_flows_on_hostile_values(soak):
    inbound = [rule for rule in SHIPPED_RULES if rule.connector == "ad"]

    @examples(soak, 40)
    @given(st.lists(st.dictionaries(st.sampled_from(AD_ATTRIBUTES), cell, max_size=6), min_size=1, max_size=8))
    def check(objects: list[dict[str, Any]]) -> None:
        records = [hostile_user(n, values) for n, values in enumerate(objects)]
        for rule in inbound:
            frame = frame_from_records(records, rule.attributes)
            scoped = frame[rule.in_scope(frame)]
            result = rule.evaluate_flows(scoped)
            assert all(isinstance(error, RuleObjectError) for error in result.errors.values())
            assert len(result.values) + len(result.errors) == len(scoped)

    check()


@pytest.mark.timeout(120)
def test_sync_run_with_hostile_values_records_errors_and_finishes(soak, tmp_path_factory):
    @examples(soak, 8, 40)
    @given(st.lists(st.dictionaries(st.sampled_from(AD_ATTRIBUTES), cell, max_size=5), min_size=1, max_size=6))
    def check(objects: list[dict[str, Any]]) -> None:
        path = tmp_path_factory.mktemp("hostile") / "store.sqlite"
        with Store.open(f"sqlite:///{path}", instance="t") as store:
            users = [ad_user(n) for n in range(len(objects))]
            for user, values in zip(users, objects, strict=True):
                for name, value in values.items():
                    user.attrs[name] = [v for v in (value if isinstance(value, list) else [value]) if v is not None]
                    user.attrs[name] = [v if isinstance(v, bytes | str) else _as_text(v) for v in user.attrs[name]]
            import_full(store, "ad", [*users, ad_group(900, "Staff", members=[0])])
            result = run_sync(store, SHIPPED_RULES, connector="ad", mode="full")
            assert result.result in ("success", "completed-sync-errors"), result
            assert len(store.run_errors(result.run_id)) == result.counters["errors"]

    check()


def _as_text(value: Any) -> str:
    """How an import would hand a non-string value over (sources give strings; a huge integer has no str())."""
    if isinstance(value, int) and value.bit_length() > 10_000:
        return "9" * 5000
    return str(value)


# ------------------------------------------------------------------------------------------------ the store
@pytest.mark.timeout(60)
def test_entra_decoding_turns_unstorable_values_into_object_errors(soak, tmp_path):
    text = st.one_of(hostile_text, surrogate_text)
    ids = st.one_of(st.uuids().map(str), surrogate_text, st.sampled_from(["", "a\x00b", "x" * 300]), st.integers())
    items = st.fixed_dictionaries(
        {"id": ids}, optional={"displayName": text, "mail": text, "proxyAddresses": st.lists(text, max_size=3)}
    )
    store = Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}", instance="t")
    run_id = store.start_run("full-import", "entra")

    @examples(soak, 200)
    @given(st.lists(items, min_size=1, max_size=5))
    def check(page_items: list[dict[str, Any]]) -> None:
        errors, page = ErrorSink(limit=1_000_000), ObjectPage()
        _user_page([dict(item) for item in page_items], errors, page)
        for item in page_items:
            try:
                graph_object("groups", dict(item), partial=True)
            except ObjectDecodeError as error:
                errors.add(error)
        assert len(page.anchors) + len(errors) >= len(page_items)
        for serialized in page.attrs:
            serialized.encode("utf-8")  # what the store writes
        store.record_errors(run_id, errors.errors)  # the per-object errors themselves are storable

    try:
        check()
        stored = store.run_errors(run_id)
        assert stored and all(isinstance(row["message"], str) and len(row["message"]) <= 4_000 for row in stored)
    finally:
        store.close()


def test_serialize_attrs_with_an_unpaired_surrogate_raises_a_unicode_error():
    # The contract the decoders rely on: the canonical JSON refuses it (it could not be stored as UTF-8).
    with pytest.raises(UnicodeEncodeError):
        serialize_attrs({"displayName": ["a\ud800"]})
    assert json.loads(serialize_attrs({"x": ["a\x00b\u2028"]})) == {"x": ["a\x00b\u2028"]}


def test_graph_answer_with_an_escaped_surrogate_is_decoded_and_the_object_refused():
    hook = EntraHook(
        settings=EntraConnectionSettings(
            tenant_id="t", client_id="c", client_secret="Cl1ent-Secret-Value~xyz", graph_url="https://graph.test"
        )
    )
    hook.__dict__["get_token"] = lambda: "token"
    body = b'{"value": [{"id": "11111111-1111-1111-1111-111111111111", "displayName": "bad \\ud800"}]}'
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    hook.__dict__["_http"] = httpx.Client(base_url="https://graph.test/v1.0", transport=transport)
    answer = hook.request("GET", "/users")
    errors, page = ErrorSink(), ObjectPage()
    _user_page(answer["value"], errors, page)
    assert page.anchors == [] and errors.errors[0]["code"] == "undecodable-value"
    assert "displayName" in errors.errors[0]["message"]


# ------------------------------------------------------------------------------------------------ filters
class _RecordingConnection:
    """Stands in for ldap3's connection: records the filter ``find_objects`` sends (no server needed)."""

    def __init__(self) -> None:
        self.filters: list[str] = []
        self.response: list[dict[str, Any]] = []

    def search(self, base: str, search_filter: str, *args: Any, **kwargs: Any) -> None:
        self.filters.append(search_filter)


def _ldap_unescape(value: bytes) -> bytes:
    return re.sub(rb"\\([0-9a-fA-F]{2})", lambda match: bytes([int(match.group(1), 16)]), value)


@pytest.mark.timeout(60)
def test_ldap_filters_from_data_are_escaped(soak):
    hook = ActiveDirectoryHook.__new__(ActiveDirectoryHook)
    connection = _RecordingConnection()
    hook.__dict__.update(get_conn=lambda: connection, search_base="DC=x")

    @examples(soak, 300)
    @given(st.one_of(hostile_text, st.text(alphabet="*()\\\x00", min_size=1, max_size=10)))
    def check(value: str) -> None:
        hook.find_objects("mail", value)
        tree = parse_ldap_filter(connection.filters[-1], None, False, True, None, False)
        (objects, equality) = tree.elements[0].elements  # (& (|objectClass...) (mail=value)): nothing injected
        classes = IMPORT_FILTER.count("(objectClass=")  # the object classes the import reads, and nothing more
        assert len(objects.elements) == classes and equality.assertion["attr"] == "mail"
        assert _ldap_unescape(equality.assertion["value"]) == value.encode("utf-8")

    check()


@pytest.mark.timeout(60)
def test_odata_filters_from_data_are_quoted(soak):
    @examples(soak, 300)
    @given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=30))
    def check(value: str) -> None:
        query = f"mailNickname eq '{odata_quote(value)}'"
        request = httpx.Request("GET", "https://graph.test/v1.0/groups", params={"$filter": query})
        assert parse_qs(urlsplit(str(request.url)).query)["$filter"] == [query]  # & % # + survive the URL
        predicate = parse_odata_filter(query, "group", advanced=False)
        assert predicate({"mailNickname": value}) and not predicate({"mailNickname": value + "x"})

    check()


@pytest.mark.timeout(60)
def test_escape_dn_component_round_trips_any_value(soak):
    # As the shipped group writeback rule builds its DN (a display name like "Sales=Team" once broke it).
    escape = compile_expression('EscapeDNComponent("CN=" & [v])')

    @examples(soak, 300)
    @given(st.one_of(st.text(min_size=1, max_size=30), st.text(alphabet=METACHARACTERS + "aé", min_size=1)))
    def check(value: str) -> None:
        dn = f"{escape.evaluate({'v': value})},OU=Groups,DC=x"
        assert normalize_dn(dn)[0] == (("cn", unicodedata.normalize("NFC", value).casefold()),)
        (first, *rest) = parse_dn(wire_dn(dn), escape=False, strip=False)  # as the AD export sends it
        assert _unescape(first[1]) == value and len(rest) == 2

    check()


def test_suite_file_is_in_the_reliability_folder():
    assert Path(__file__).parent.name == "reliability"


# ------------------------------------------------------------------------------------------- connection extras
SECRET_MARK = "Zq7-secret-"
#: What a generated extra key may be: the fields both connection types know, a few near misses, any text.
EXTRA_KEYS = st.one_of(
    st.sampled_from([
        "base_dn", "tls", "allow_plain_ldap_bind", "ca_cert", "page_size", "attributes", "binary_attributes",
        "connect_timeout", "receive_timeout", "tenant_id", "private_key", "certificate_path", "thumbprint", "cloud",
        "authority_host", "graph_url", "ca_bundle", "timeout", "max_attempts", "max_retry_wait", "max_throttle_wait",
        "certificate",
    ]),
    st.text(max_size=20),
)  # fmt: skip
EXTRA_VALUES = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True),
        hostile_text, st.sampled_from([
            "https://", "https://evil.example/", "http://127.0.0.1:1", "https://127.0.0.1:99999", "ldaps", "none",
            "germany", "usgov", "/no/such/file.pem", "-----BEGIN PRIVATE KEY-----\nnot a key\n", "DC=corp,DC=test",
        ]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)  # fmt: skip
generated_extras = st.dictionaries(EXTRA_KEYS, EXTRA_VALUES, max_size=8)


def generated_connection(conn_type: str, extra: dict[str, Any], secret: str, host: Any, port: Any, login: Any):
    from airflow.sdk import Connection

    return Connection(
        conn_id=f"generated_{conn_type}",
        conn_type=conn_type,
        host=host,
        port=port,
        login=login,
        password=secret,
        extra=extra if isinstance(extra, str) else json.dumps(extra, default=str),
    )


@pytest.mark.timeout(120)
def test_generated_connection_extras_give_settings_or_one_clear_error(soak):
    """Both connection types, with generated fields and extras (wrong types, unknown keys, hostile text, bad URLs,
    missing files, nested values): valid settings or the hook's own configuration error, which never quotes the
    password, client secret or private key it was given."""
    from airflow_provider_aadsync.hooks.active_directory_settings import ActiveDirectoryError, ADConnectionSettings
    from airflow_provider_aadsync.hooks.entra_settings import EntraConnectionSettings, EntraError

    @examples(soak, 150)
    @given(
        extra=st.one_of(generated_extras, st.text(max_size=40)),  # text: an extra that is not JSON at all
        secret_tail=st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=4, max_size=12),
        host=st.one_of(st.none(), hostile_text),
        port=st.one_of(st.none(), st.integers(min_value=-5, max_value=70_000)),
        login=st.one_of(st.none(), hostile_text),
        key_in_extra=st.booleans(),
    )
    def check(extra, secret_tail, host, port, login, key_in_extra) -> None:
        secret = SECRET_MARK + secret_tail
        if key_in_extra and isinstance(extra, dict):  # the secret also rides in the extra, as a private key does
            extra = {**extra, "private_key": f"-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n"}
        for conn_type, build, refused in (
            ("aadsync_ad", ADConnectionSettings.from_connection, ActiveDirectoryError),
            ("aadsync_entra", EntraConnectionSettings.from_connection, EntraError),
        ):
            connection = generated_connection(conn_type, extra, secret, host, port, login)
            try:
                build(connection)
            except refused as error:
                assert SECRET_MARK not in str(error), (conn_type, str(error))
                assert f"'generated_{conn_type}' is not usable: " in str(error), str(error)  # names the connection

    check()
