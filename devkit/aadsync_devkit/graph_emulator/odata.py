"""OData query options as Graph applies them to directory collections: ``$select``, ``$filter``, ``$top``,
``$skiptoken``, ``$count``; and the ``@odata.context`` / ``@odata.nextLink`` annotations of a page.

The ``$filter`` subset: ``eq``, ``ne``, ``in``, ``startswith``, ``endswith``, ``not``, ``and``, ``or``, parentheses,
and ``coll/any(x:x eq 'v')`` / ``coll/any(x:startswith(x,'v'))`` on collections. String matching is case-insensitive,
as in the directory. ``ne``, ``not`` and ``endswith`` are advanced queries: they need ``ConsistencyLevel: eventual``
and ``$count=true``, otherwise 400 as Graph answers.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aadsync_devkit.graph_emulator import exceptions as err

DEFAULT_PAGE = 100
MAX_PAGE = 999
Predicate = Callable[[Mapping[str, Any]], bool]

FILTERABLE = {
    "user": {
        "id",
        "userPrincipalName",
        "displayName",
        "mailNickname",
        "onPremisesImmutableId",
        "mail",
        "givenName",
        "surname",
        "accountEnabled",
        "userType",
        "employeeId",
        "department",
        "jobTitle",
        "onPremisesSyncEnabled",
        "onPremisesSamAccountName",
        "proxyAddresses",
        "otherMails",
        "employeeType",
        "employeeHireDate",
        "faxNumber",
        "companyName",
        "city",
        "country",
        "state",
        "postalCode",
        "officeLocation",
        "mobilePhone",
        "usageLocation",
        "preferredLanguage",
        "streetAddress",
    },
    "group": {
        "id",
        "displayName",
        "mailNickname",
        "mail",
        "mailEnabled",
        "securityEnabled",
        "onPremisesSyncEnabled",
        "onPremisesSamAccountName",
        "groupTypes",
        "proxyAddresses",
    },
    "orgContact": {"id", "displayName", "mail", "mailNickname", "givenName", "surname", "proxyAddresses"},
    "application": {"id", "appId", "displayName"},
    "extensionProperty": {"name"},
    "domain": set(),
}
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<punct>[(),:/])|(?P<word>[A-Za-z0-9_.\-@+]+))",
)


@dataclass
class Query:
    select: list[str] | None
    predicate: Predicate | None
    top: int
    after: int
    count: bool


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match:
            raise err.ODataBadRequest(f"Invalid filter clause: syntax error at position {pos} in '{text}'.")
        kind = match.lastgroup or "word"
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _FilterParser:
    def __init__(self, text: str, kind: str, advanced: bool, extra: Iterable[str] = ()) -> None:
        self.extra = set(extra)
        self.text = text
        self.toks = _tokens(text)
        self.pos = 0
        self.kind = kind
        self.advanced = advanced

    # --- token helpers
    def peek(self) -> str | None:
        return self.toks[self.pos][1] if self.pos < len(self.toks) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.toks):
            self.fail()
        tok = self.toks[self.pos]
        if expected is not None and tok[1].lower() != expected:
            self.fail()
        self.pos += 1
        return tok

    def fail(self) -> None:
        raise err.ODataBadRequest(f"Invalid filter clause: syntax error in '{self.text}'.")

    def need_advanced(self, operator: str) -> None:
        if not self.advanced:
            raise err.UnsupportedQuery(f"Filter operator '{operator}' is not supported.")

    # --- grammar
    def parse(self) -> Predicate:
        pred = self.expr()
        if self.pos != len(self.toks):
            self.fail()
        return pred

    def expr(self) -> Predicate:
        left = self.conj()
        while (self.peek() or "").lower() == "or":
            self.take()
            right = self.conj()
            left = (lambda a, b: lambda o: a(o) or b(o))(left, right)
        return left

    def conj(self) -> Predicate:
        left = self.unary()
        while (self.peek() or "").lower() == "and":
            self.take()
            right = self.unary()
            left = (lambda a, b: lambda o: a(o) and b(o))(left, right)
        return left

    def unary(self) -> Predicate:
        if (self.peek() or "").lower() == "not":
            self.take()
            self.need_advanced("Not")
            inner = self.unary()
            return lambda o: not inner(o)
        if self.peek() == "(":
            self.take("(")
            inner = self.expr()
            self.take(")")
            return inner
        return self.term()

    def prop(self, name: str) -> str:
        allowed = FILTERABLE[self.kind] | self.extra
        match = next((p for p in allowed if p.lower() == name.lower()), None)
        if match is None:
            resource = self.kind[0].upper() + self.kind[1:]
            raise err.UnsupportedQuery(
                f"Unsupported or invalid query filter clause specified for property '{name}' of resource '{resource}'."
            )
        return match

    def literal(self) -> Any:
        kind, value = self.take()
        if kind == "str":
            return value[1:-1].replace("''", "'")
        if kind != "word":
            self.fail()
        low = value.lower()
        if low == "null":
            return None
        if low in ("true", "false"):
            return low == "true"
        return value  # numbers and bare GUIDs compare as text

    def term(self) -> Predicate:
        kind, word = self.take()
        if kind != "word":
            self.fail()
        low = word.lower()
        if low in ("startswith", "endswith") and self.peek() == "(":
            if low == "endswith":
                self.need_advanced("EndsWith")
            self.take("(")
            name = self.prop(self.take()[1])
            self.take(",")
            value = self.literal()
            self.take(")")
            return _string_function(name, low, value)
        name = self.prop(word)
        if self.peek() == "/":
            return self.any_lambda(name)
        op = self.take()[1].lower()
        if op == "eq":
            value = self.literal()
            return lambda o: _equal(o.get(name), value)
        if op == "ne":
            self.need_advanced("NotEqualsMatch")
            value = self.literal()
            return lambda o: not _equal(o.get(name), value)
        if op == "in":
            self.take("(")
            values = [self.literal()]
            while self.peek() == ",":
                self.take(",")
                values.append(self.literal())
            self.take(")")
            return lambda o: any(_equal(o.get(name), v) for v in values)
        self.fail()
        raise AssertionError  # unreachable

    def any_lambda(self, name: str) -> Predicate:
        self.take("/")
        self.take("any")
        self.take("(")
        var = self.take()[1]
        self.take(":")
        kind, word = self.take()
        if word.lower() in ("startswith", "endswith"):
            self.take("(")
            if self.take()[1] != var:
                self.fail()
            self.take(",")
            value = self.literal()
            self.take(")")
            self.take(")")
            func = word.lower()
            return lambda o: any(_string_match(v, func, value) for v in o.get(name) or [])
        if word != var:
            self.fail()
        self.take("eq")
        value = self.literal()
        self.take(")")
        return lambda o: any(_equal(v, value) for v in o.get(name) or [])


def _equal(actual: Any, value: Any) -> bool:
    if isinstance(actual, str) and isinstance(value, str):
        return actual.lower() == value.lower()
    if isinstance(actual, list):
        return any(_equal(a, value) for a in actual)
    return actual == value


def _string_match(actual: Any, func: str, value: Any) -> bool:
    if not isinstance(actual, str) or not isinstance(value, str):
        return False
    a, v = actual.lower(), value.lower()
    return a.startswith(v) if func == "startswith" else a.endswith(v)


def _string_function(name: str, func: str, value: Any) -> Predicate:
    return lambda o: _string_match(o.get(name), func, value)


def parse_filter(text: str, kind: str, *, advanced: bool, extra: Iterable[str] = ()) -> Predicate:
    """A predicate for *text*; *extra* names more filterable properties (the directory extensions of *kind*)."""
    return _FilterParser(text, kind, advanced, extra).parse()


def encode_skiptoken(seq: int) -> str:
    raw = json.dumps({"v": 1, "after": seq}).encode()
    return "RFNwdAIA" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_skiptoken(token: str) -> int:
    try:
        if not token.startswith("RFNwdAIA"):
            raise ValueError(token)
        body = token[len("RFNwdAIA") :]
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return int(data["after"])
    except (ValueError, KeyError, TypeError) as exc:
        raise err.BadRequest(
            "The specified page token value has expired and can no longer be included in your request."
        ) from exc


def parse_query(
    params: Mapping[str, str],
    headers: Mapping[str, str],
    kind: str,
    *,
    properties: Mapping[str, str],
    allow_filter: bool = True,
    extensions: Iterable[str] = (),
) -> Query:
    """Validate and parse the query options of a collection request; *extensions* are the directory extension
    properties *kind* carries: selectable and filterable (``eq``, and ``ne`` as an advanced query) as in Graph."""
    properties = {**properties, **dict.fromkeys(extensions, "rw")}
    eventual = headers.get("consistencylevel", "").lower() == "eventual"
    count = params.get("$count", "").lower() == "true"
    if count and not eventual:
        raise err.CountNotSupported()
    for name in params:
        if name.startswith("$") and name not in ("$select", "$filter", "$top", "$skiptoken", "$count"):
            raise err.ODataBadRequest(f"Query option '{name}' is not supported by the emulator yet.")
    select = None
    if params.get("$select"):
        select = []
        for raw in params["$select"].split(","):
            name = raw.strip()
            match = next((p for p in properties if p.lower() == name.lower()), None)
            if match is None:
                raise err.ODataBadRequest(
                    "Parsing OData Select and Expand failed: Could not find a property named "
                    f"'{name}' on type 'microsoft.graph.{kind}'."
                )
            select.append(match)
    predicate = None
    if params.get("$filter"):
        if not allow_filter:
            raise err.UnsupportedQuery("The filter is not supported on this collection.")
        predicate = parse_filter(params["$filter"], kind, advanced=eventual and count, extra=extensions)
    raw_top = params.get("$top")
    top = DEFAULT_PAGE
    if raw_top is not None:
        try:
            top = int(raw_top)
        except ValueError:
            raise err.InvalidPageSize(raw_top) from None
        if not 1 <= top <= MAX_PAGE:
            raise err.InvalidPageSize(raw_top)
    after = decode_skiptoken(params["$skiptoken"]) if params.get("$skiptoken") else 0
    return Query(select=select, predicate=predicate, top=top, after=after, count=count)


def shape(kind: str, props: Mapping[str, Any], select: list[str] | None, default: tuple[str, ...]) -> dict[str, Any]:
    """An object's JSON: the selected properties plus ``id``, or the type's default set; never a password."""
    names = [*select, "id"] if select else list(default)
    out: dict[str, Any] = {}
    for name in names:
        if name.startswith("extension_") and props.get(name) is None:
            continue  # a directory extension without a value is left out, not rendered as null
        if name not in out:
            out[name] = None if name == "passwordProfile" else props.get(name)
    return out


def context_url(base: str, entity_set: str, select: list[str] | None, *, entity: bool = False) -> str:
    suffix = f"({','.join(select)})" if select else ""
    return f"{base}/v1.0/$metadata#{entity_set}{suffix}" + ("/$entity" if entity else "")


def next_link(base: str, path: str, params: Mapping[str, str], seq: int) -> str:
    """The absolute URL of the next page: the same query with a new ``$skiptoken`` (``$`` kept literal)."""
    parts = [
        f"{quote(k, safe='$')}={quote(v, safe=chr(39) + '$(),:@')}" for k, v in params.items() if k != "$skiptoken"
    ]
    parts.append(f"$skiptoken={encode_skiptoken(seq)}")
    return f"{base}{path}?{'&'.join(parts)}"


def page(
    rows: list[dict[str, Any]],
    query: Query,
    *,
    base: str,
    path: str,
    params: Mapping[str, str],
    context: str,
    render: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """One page of *rows* (already filtered, each with its ``_seq`` cursor) as Graph's collection body."""
    body: dict[str, Any] = {"@odata.context": context}
    if query.count:
        body["@odata.count"] = len(rows)
    remaining = [r for r in rows if r["_seq"] > query.after]
    chunk = remaining[: query.top]
    if len(remaining) > query.top:
        body["@odata.nextLink"] = next_link(base, path, params, chunk[-1]["_seq"])
    body["value"] = [render(r) for r in chunk]
    return body
