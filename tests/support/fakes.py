"""In-memory stand-ins for the servers behind the connectors' interfaces, for fast unit tests without a server.

Readers: :class:`FakeDirectory` (a ``DirectorySource``: raw LDAP entries, DirSync rounds) and :class:`FakeGraph`
(Graph delta pages). Writers: :class:`FakeGraphWriter` (the Entra exporter's ``GraphWriter``: a small tenant that
answers ``$batch`` requests as Graph does, plus canned answers, throttling, dropped and killed calls on demand) and
:class:`FakeLdapWriter` (the AD exporter's ``ADWriter``: an in-memory DN↔objectGUID directory, refusals on demand).
Every writer records what it was asked, so a test asserts the requests that went out as well as the store's rows.
The integration tests hold the real servers to the same behaviour (tests/integration).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_aadsync.engine.connectors.ad.writer import MARK_ATTRIBUTE, ADWriteRefused
from airflow_provider_aadsync.engine.dn import dn_is_under, same_dn
from airflow_provider_aadsync.engine.runs.source import (
    BatchRequest,
    BatchStoppedError,
    WatermarkRejectedError,
    WriteOutcomeUnknownError,
)

# ================================================================================================ AD: the reader
NC = "DC=corp,DC=test"
#: The attributes the AD import tests ask FakeDirectory for.
ATTRS = ["objectGUID", "objectClass", "displayName", "member"]


def guid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


class FakeDirectory:
    """Holds objects as raw entries; DirSync returns whatever the test queued."""

    def __init__(self, page_size: int = 2):
        self.objects: dict[uuid.UUID, tuple[str, dict[str, list[bytes]]]] = {}
        self.page_size = page_size
        self.delta_batches: list[list[tuple[str, dict[str, list[bytes]]]]] = []
        self.reject_cookie = False
        self.cookies_seen: list[bytes] = []
        #: The bases of the subtree reads asked for (an OU moved into the scope is read below).
        self.subtree_reads: list[str] = []

    def add_user(self, n: int, name: str) -> None:
        self.objects[guid(n)] = (
            self.ext(n, f"CN={name},{NC}"),
            {
                "objectGUID": [guid(n).bytes_le],
                "objectClass": [b"top", b"user"],
                "displayName": [name.encode()],
            },
        )

    def add_group(self, n: int, name: str, members: Sequence[int]) -> None:
        self.objects[guid(n)] = (
            self.ext(n, f"CN={name},{NC}"),
            {
                "objectGUID": [guid(n).bytes_le],
                "objectClass": [b"top", b"group"],
                "member": [self.ext(m, self.objects[guid(m)][0].split(";")[-1]).encode() for m in members],
            },
        )

    @staticmethod
    def ext(n: int, dn: str) -> str:
        return f"<GUID={guid(n)}>;{dn}"

    def naming_context(self) -> str:
        return NC

    def server_name(self) -> str:
        return "dc1.corp.test"

    def full_import_pages(self, attributes: Sequence[str], base: str | None = None) -> Iterator[list]:
        """The objects page by page; under ``base`` only (a subtree search) when given."""
        entries = list(self.objects.values())
        if base is not None:
            entries = [(dn, raw) for dn, raw in entries if dn_is_under(dn.split(";")[-1], base)]
            self.subtree_reads.append(base)
        for start in range(0, len(entries), self.page_size):
            yield entries[start : start + self.page_size]

    def dirsync_watermark(self) -> bytes:
        return b"cookie-0"

    def read_entries(
        self, guids: Sequence[str], attributes: Sequence[str], base: str | None = None
    ) -> list[tuple[str, dict[str, list[bytes]]]]:
        """The objects of ``guids``, computers left out (as the hook's search does); ``searches`` counts the calls."""
        self.searches = getattr(self, "searches", 0) + 1
        found = [self.objects[uuid.UUID(g)] for g in guids if uuid.UUID(g) in self.objects]
        return [(dn, raw) for dn, raw in found if b"computer" not in raw.get("objectClass", [])]

    def dirsync_pages(self, attributes: Sequence[str], cookie: bytes) -> Iterator:
        self.cookies_seen.append(cookie)
        if self.reject_cookie:
            raise WatermarkRejectedError("invalid cookie")
        batches, self.delta_batches = self.delta_batches, []
        for number, batch in enumerate(batches or [[]], start=1):
            yield batch, cookie + b"+%d" % number


# ============================================================================================= Entra: the reader
def oid(n: int) -> str:
    return str(uuid.UUID(int=n))


def user(n: int, **props: Any) -> dict[str, Any]:
    return {
        "id": oid(n),
        "userPrincipalName": f"user{n}@contoso.test",
        "displayName": f"User {n}",
        "accountEnabled": True,
        **props,
    }


def member(n: int, removed: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"@odata.type": "#microsoft.graph.user", "id": oid(n)}
    if removed:
        entry["@removed"] = {"reason": "deleted"}
    return entry


class FakeGraph:
    """Serves queued delta rounds: a round is a list of pages (lists of items); the last page gets a deltaLink."""

    def __init__(self):
        self.rounds: dict[str, list[list[list[dict[str, Any]]]]] = {"users": [], "groups": []}
        self.links_used: list[str | None] = []
        self.expired = False
        self.rounds_served = {"users": 0, "groups": 0}

    def server_name(self) -> str:
        return "graph.test"

    def delta_pages(self, resource: str, select: Sequence[str], delta_link: str | None) -> Iterator[dict[str, Any]]:
        self.links_used.append(delta_link)
        if delta_link and self.expired:
            raise WatermarkRejectedError("syncStateNotFound")
        pages = self.rounds[resource].pop(0) if self.rounds[resource] else [[]]
        for number, items in enumerate(pages, start=1):
            page: dict[str, Any] = {"@odata.context": "https://graph.test/v1.0/$metadata#users", "value": items}
            if number < len(pages):
                page["@odata.nextLink"] = f"https://graph.test/v1.0/{resource}/delta?$skiptoken=s{number}"
            else:
                self.rounds_served[resource] += 1
                served = self.rounds_served[resource]
                page["@odata.deltaLink"] = f"https://graph.test/v1.0/{resource}/delta?$deltatoken=d{served}"
            yield page


# ============================================================================================= Entra: the writer
GRAPH_ROOT = "https://graph.microsoft.com/v1.0"
INITIAL_DOMAIN = "contoso.onmicrosoft.com"
VERIFIED_DOMAINS = ("corp.example", INITIAL_DOMAIN)
#: Graph's documented characters of a UPN's local part (no "+": the product's placeholder form is refused).
_UPN_LOCAL = re.compile(r"^[A-Za-z0-9'.\-_!#^~]+$")
_RESOURCE_KINDS = {"users": "user", "groups": "group"}
#: Graph's answers to a create of a mail-enabled security group or distribution group (only Microsoft 365 groups
#: and security groups are created through Graph), and to a PATCH of mailEnabled (not among Update group's
#: properties: a group's mail-enablement is fixed when it is created).
MAIL_GROUP_CREATE = "Cannot Create a mail-enabled security groups and or distribution list."
#: Graph's answer to any write to an existing mail-enabled security group or distribution group (read-only through
#: Graph: a PATCH of any property, a member added or removed).
MAIL_GROUP_UPDATE = "Cannot Update a mail-enabled security groups and or distribution list."
MAIL_ENABLEMENT_UPDATE = (
    "The service does not currently support writes of mail-enabled groups. Please ensure that the mail-enablement "
    "property is unset and the security-enablement property is set."
)


def _read_only_group(group: Mapping[str, Any]) -> bool:
    """A mail-enabled security group or distribution group: mail-enabled, not a Microsoft 365 group."""
    return bool(group.get("mailEnabled")) and "Unified" not in (group.get("groupTypes") or [])


class ThrottledStop(BatchStoppedError):
    """What the hook raises when Graph throttles a request of a ``$batch`` past the connection's limits."""


class SimulatedKill(BaseException):
    """The task died in the middle of a call: not an Exception, so no handler of the export records anything."""


@dataclass
class FakeAnswer:
    """One request's final answer, shaped like the EntraHook's BatchResult."""

    id: str
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def graph_error(status: int, code: str, message: str, *, target: str | None = None, detail: str = "") -> FakeAnswer:
    """A Graph error body (the request id is filled in by the caller)."""
    error: dict[str, Any] = {"code": code, "message": message, "innerError": {"request-id": "fake-request"}}
    if target:
        error["details"] = [{"code": detail, "target": target}]
    return FakeAnswer("", status, {"error": error})


def object_conflict(name: str) -> FakeAnswer:
    """Graph's 400 for a value another object holds (UPN, proxyAddresses: duplicate attribute resiliency)."""
    message = f"Another object with the same value for property {name} already exists."
    return graph_error(400, "Request_BadRequest", message, target=name, detail="ObjectConflict")


def invalid_value(name: str, resource: str = "User") -> FakeAnswer:
    message = f"Invalid value specified for property '{name}' of resource '{resource}'."
    return graph_error(400, "Request_BadRequest", message, target=name, detail="InvalidValue")


def reference_exists() -> FakeAnswer:
    message = "One or more added object references already exist for the following modified properties: 'members'."
    return graph_error(400, "Request_BadRequest", message)


def not_found(what: str) -> FakeAnswer:
    return graph_error(404, "Request_ResourceNotFound", f"Resource '{what}' does not exist.")


def to(method: str, url: str = "") -> Callable[[BatchRequest], bool]:
    """Matches requests of ``method`` whose URL starts with ``url`` (``to("POST", "/users")``)."""
    return lambda request: request.method == method and request.url.startswith(url)


def graph_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Canned:
    match: Callable[[BatchRequest], bool]
    answer: FakeAnswer
    times: int


class FakeGraphWriter:
    """A small Graph tenant behind the ``GraphWriter`` protocol.

    ``batch`` behaves as the EntraHook's: it takes at most 20 requests (more is a test failure: the exporter must
    split), resends a request answered 429 after its ``Retry-After`` (counted in ``retry_wait_seconds``, not slept)
    until ``max_attempts``, and with ``resend_if_unknown=False`` raises WriteOutcomeUnknownError for a dropped call.
    Requests that nothing canned answers are carried out on the tenant: creates (UPN characters, verified domains,
    UPN and proxyAddresses uniqueness), updates, deletes, member binds (at most 20, all-or-nothing when one is a
    member already), member ``$ref`` adds and removes. ``calls`` keeps every ``$batch`` as it went out.
    """

    def __init__(self, *, max_attempts: int = 3):
        self.objects: dict[str, dict[str, Any]] = {}
        self.members: dict[str, set[str]] = {}
        #: user id -> manager id (Graph's single-valued ``manager`` navigation).
        self.managers: dict[str, str] = {}
        self.calls: list[list[BatchRequest]] = []
        self.reads: list[tuple[str, str, dict[str, Any]]] = []
        self.counters: dict[str, float] = {"batch_requests": 0, "throttled": 0, "retries": 0, "retry_wait_seconds": 0.0}
        self.max_attempts = max_attempts
        self.passwords_sent = 0
        #: The tenant's domains: verified ones carry UPNs; ``GET /domains`` lists these and the unverified ones.
        self.verified_domains = list(VERIFIED_DOMAINS)
        self.unverified_domains: list[str] = []
        self._canned: list[_Canned] = []
        self._faults: deque[tuple[str, bool]] = deque()

    # --------------------------------------------------------------------------------------------- seeding
    def add_user(self, upn: str, *, created: str = "2020-01-01T00:00:00Z", **props: Any) -> str:
        """A user that is already in the tenant (not created by the export)."""
        return self._store("user", {"userPrincipalName": upn, **props}, created)

    def add_group(self, display_name: str, *, created: str = "2020-01-01T00:00:00Z", **props: Any) -> str:
        return self._store("group", {"displayName": display_name, **props}, created)

    def _store(self, kind: str, props: Mapping[str, Any], created: str) -> str:
        object_id = str(uuid.uuid4())
        self.objects[object_id] = {
            "@kind": kind, "id": object_id, "createdDateTime": created,
            **{name: value for name, value in props.items() if value is not None},
        }  # fmt: skip
        if kind == "group":
            self.members[object_id] = set()
        return object_id

    # ------------------------------------------------------------------------------------------- scripting
    def answer(self, match: Callable[[BatchRequest], bool], answer: FakeAnswer, *, times: int = 1) -> None:
        """Answer the next ``times`` requests that ``match`` with ``answer`` instead of carrying them out."""
        self._canned.append(_Canned(match, answer, times))

    def throttle(self, match: Callable[[BatchRequest], bool], *, retry_after: int = 3, times: int = 1) -> None:
        """429 with ``Retry-After`` for the next ``times`` requests that ``match``."""
        answer = graph_error(429, "TooManyRequests", "Too many requests.")
        answer.headers = {"retry-after": str(retry_after)}
        self.answer(match, answer, times=times)

    def drop_next_call(self, *, carried_out: bool) -> None:
        """The next ``$batch`` loses its answer (the connection drops after sending); ``carried_out``: Graph did it."""
        self._faults.append(("drop", carried_out))

    def stop_throttled_in_next_call(self, *, answered: int) -> None:
        """The next ``$batch`` carries out and answers its first ``answered`` requests, then Graph throttles the rest
        past the connection's limits: ThrottledStop, with the answers it had."""
        self._faults.append(("throttled", answered))

    def kill_during_next_call(self, *, carried_out: bool) -> None:
        """The task dies while the next ``$batch`` is on the wire (SimulatedKill); ``carried_out``: Graph did it."""
        self._faults.append(("kill", carried_out))

    # -------------------------------------------------------------------------------------------- protocol
    def directory_object_url(self, object_id: str) -> str:
        return f"{GRAPH_ROOT}/directoryObjects/{object_id}"

    def batch(self, requests: Sequence[BatchRequest], *, resend_if_unknown: bool = True) -> dict[str, FakeAnswer]:
        assert 0 < len(requests) <= 20, f"a $batch of {len(requests)} requests (Graph takes 1 to 20)"
        assert len({request.id for request in requests}) == len(requests), "batch request ids must be unique"
        results: dict[str, FakeAnswer] = {}
        attempts: Counter[str] = Counter()
        pending = list(requests)
        while pending:
            self.calls.append(list(pending))
            self.counters["batch_requests"] += 1
            if self._faults and self._faults[0][0] == "throttled":
                _fault, answered = self._faults.popleft()
                for request in pending[:answered]:
                    results[request.id] = self._answer(request)
                error = ThrottledStop(f"Graph throttled {len(pending) - answered} requests of a $batch past the limits")
                error.results = dict(results)
                raise error
            if self._faults:
                fault, carried_out = self._faults.popleft()
                if carried_out:
                    for request in pending:
                        self._answer(request)
                if fault == "kill":
                    raise SimulatedKill(f"killed during a $batch of {len(pending)} requests")
                if not resend_if_unknown:
                    unknown = [request.id for request in pending]
                    raise WriteOutcomeUnknownError(
                        f"no readable answer to a $batch of {len(pending)} requests that was sent",
                        results=dict(results),
                        unknown=unknown,
                    )
                continue  # the hook sends the call again
            again, wait = [], 0.0
            for request in pending:
                answer = self._answer(request)
                attempts[request.id] += 1
                if answer.status == 429 and attempts[request.id] < self.max_attempts:
                    self.counters["throttled"] += 1
                    again.append(request)
                    wait = max(wait, float(answer.headers.get("retry-after", "1")))
                    continue
                results[request.id] = answer
            if again:
                self.counters["retries"] += len(again)
                self.counters["retry_wait_seconds"] += wait
            pending = again
        return results

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """Reads: ``/domains``, ``/organization`` (the initial domain), and ``/users`` or ``/groups`` with an
        ``X eq 'v'`` filter."""
        params = dict(kwargs.get("params") or {})
        self.reads.append((method, url, params))
        if method == "GET" and url == "/domains":
            names = [*self.verified_domains, *self.unverified_domains]
            return {
                "value": [
                    {"id": name, "isInitial": name == INITIAL_DOMAIN, "isVerified": name in self.verified_domains}
                    for name in names
                ]
            }
        if method == "GET" and url == "/organization":
            domains = [{"name": name, "isInitial": name == INITIAL_DOMAIN} for name in VERIFIED_DOMAINS]
            return {"value": [{"id": "fake-tenant", "verifiedDomains": domains}]}
        kind = _RESOURCE_KINDS.get(url.strip("/"))
        found = re.fullmatch(r"(\w+) eq '(.*)'", params.get("$filter", ""))
        if method != "GET" or kind is None or found is None:
            raise AssertionError(f"the fake Graph does not answer {method} {url} {params}")
        name, value = found.group(1), found.group(2).replace("''", "'")
        select = [s for s in params.get("$select", "").split(",") if s] or None
        items = [
            {k: v for k, v in props.items() if not k.startswith("@") and (select is None or k in select)}
            for props in self.objects.values()
            if props["@kind"] == kind and str(props.get(name, "")).casefold() == value.casefold()
        ]  # Graph compares strings without case
        return {"value": items}

    # -------------------------------------------------------------------------------------------- the tenant
    def users(self) -> dict[str, dict[str, Any]]:
        return {i: p for i, p in self.objects.items() if p["@kind"] == "user"}

    def groups(self) -> dict[str, dict[str, Any]]:
        return {i: p for i, p in self.objects.items() if p["@kind"] == "group"}

    def requests_sent(self) -> list[BatchRequest]:
        return [request for call in self.calls for request in call]

    def _answer(self, request: BatchRequest) -> FakeAnswer:
        for canned in self._canned:
            if canned.times > 0 and canned.match(request):
                canned.times -= 1
                answer = canned.answer
                return FakeAnswer(request.id, answer.status, answer.body, dict(answer.headers))
        answer = self._carry_out(request)
        answer.id = request.id
        return answer

    def _carry_out(self, request: BatchRequest) -> FakeAnswer:
        parts = request.url.strip("/").split("/")
        kind = _RESOURCE_KINDS.get(parts[0])
        body = request.body or {}
        if kind and len(parts) == 1 and request.method == "POST":
            return self._create(kind, body)
        if kind and len(parts) == 2 and parts[1] not in self.objects:
            return not_found(parts[1])
        if kind and len(parts) == 2 and request.method == "PATCH":
            return self._update(parts[1], body)
        if kind and len(parts) == 2 and request.method == "DELETE":
            if kind == "group" and _read_only_group(self.objects[parts[1]]):
                return graph_error(400, "Request_BadRequest", MAIL_GROUP_UPDATE)
            del self.objects[parts[1]]
            self.members.pop(parts[1], None)
            self.managers.pop(parts[1], None)
            self.managers = {user: boss for user, boss in self.managers.items() if boss != parts[1]}
            for held in self.members.values():
                held.discard(parts[1])
            return FakeAnswer("", 204)
        if parts[0] == "groups" and parts[2:3] == ["members"] and parts[1] in self.members:
            if _read_only_group(self.objects[parts[1]]):
                return graph_error(400, "Request_BadRequest", MAIL_GROUP_UPDATE)
            group = self.members[parts[1]]
            if request.method == "POST" and parts[3:] == ["$ref"]:
                target = str(body.get("@odata.id", "")).rsplit("/", 1)[-1]
                if target in group:
                    return reference_exists()
                if target not in self.objects:
                    return not_found(target)
                group.add(target)
                return FakeAnswer("", 204)
            if request.method == "DELETE" and len(parts) == 5 and parts[4] == "$ref":
                if parts[3] not in group:
                    return not_found(parts[3])
                group.discard(parts[3])
                return FakeAnswer("", 204)
        if parts[0] == "users" and parts[2:] == ["manager", "$ref"]:
            return self._manager(request.method, parts[1], body)
        return graph_error(400, "BadRequest", f"the fake Graph has no route for {request.method} {request.url}")

    def _manager(self, method: str, user: str, body: Mapping[str, Any]) -> FakeAnswer:
        """``PUT`` sets (replaces) the manager from a ``/users/{id}`` URL; ``DELETE`` removes it (404: none)."""
        if method == "PUT":
            url = str(body.get("@odata.id", ""))
            target = url.rsplit("/", 1)[-1]
            if "/users/" not in url or target not in self.objects:
                return not_found(target)
            self.managers[user] = target
            return FakeAnswer("", 204)
        if method == "DELETE":
            if self.managers.pop(user, None) is None:
                return not_found("manager")
            return FakeAnswer("", 204)
        return graph_error(405, "Request_BadRequest", f"{method} is not allowed on a manager reference")

    def _create(self, kind: str, body: Mapping[str, Any]) -> FakeAnswer:
        if kind == "user":
            if not (body.get("passwordProfile") or {}).get("password"):
                return invalid_value("passwordProfile")
            refused = self._check_user(body, exclude=None)
            if refused is not None:
                return refused
            self.passwords_sent += 1
        if kind == "group" and body.get("mailEnabled") and "Unified" not in (body.get("groupTypes") or []):
            return graph_error(400, "Request_BadRequest", MAIL_GROUP_CREATE)
        props = {name: value for name, value in body.items() if name != "passwordProfile"}
        object_id = self._store(kind, props, graph_time(dt.datetime.now(dt.UTC)))
        return FakeAnswer("", 201, {k: v for k, v in self.objects[object_id].items() if not k.startswith("@")})

    def _update(self, object_id: str, body: Mapping[str, Any]) -> FakeAnswer:
        target = self.objects[object_id]
        if target["@kind"] == "group" and _read_only_group(target):
            return graph_error(400, "Request_BadRequest", MAIL_GROUP_UPDATE)
        binds = body.get("members@odata.bind")
        if binds is not None:
            if len(binds) > 20:
                return graph_error(400, "Request_BadRequest", "A resource cannot contain more than 20 link changes.")
            ids = [url.rsplit("/", 1)[-1] for url in binds]
            if any(i in self.members[object_id] for i in ids):
                return reference_exists()
            missing = [i for i in ids if i not in self.objects]
            if missing:
                return not_found(missing[0])
            self.members[object_id].update(ids)
        changes = {name: value for name, value in body.items() if name != "members@odata.bind"}
        if target["@kind"] == "group" and "mailEnabled" in changes:
            return graph_error(400, "Request_BadRequest", MAIL_ENABLEMENT_UPDATE)
        if target["@kind"] == "user":
            refused = self._check_user(changes, exclude=object_id)
            if refused is not None:
                return refused
        for name, value in changes.items():
            if value is None or value == []:
                target.pop(name, None)
            else:
                target[name] = value
        return FakeAnswer("", 204)

    def _check_user(self, values: Mapping[str, Any], *, exclude: str | None) -> FakeAnswer | None:
        others = [p for i, p in self.users().items() if i != exclude]
        upn = values.get("userPrincipalName")
        if upn is not None:
            local, _, domain = str(upn).rpartition("@")
            if not _UPN_LOCAL.match(local) or domain.lower() not in self.verified_domains:
                return invalid_value("userPrincipalName")
            if any(str(p.get("userPrincipalName", "")).casefold() == str(upn).casefold() for p in others):
                return object_conflict("userPrincipalName")
        addresses = {str(values["mail"]).casefold()} if values.get("mail") else set()
        addresses |= {str(a).split(":", 1)[-1].casefold() for a in values.get("proxyAddresses") or []}
        held = {str(p["mail"]).casefold() for p in others if p.get("mail")}
        held |= {str(a).split(":", 1)[-1].casefold() for p in others for a in p.get("proxyAddresses") or []}
        if addresses & held:
            return object_conflict("proxyAddresses")
        return None


# ================================================================================================ AD: the writer
@dataclass
class _Refusal:
    method: str
    code: str
    match: str
    times: int


class FakeLdapWriter:
    """An in-memory directory behind the AD exporter's ``ADWriter`` protocol (objects by objectGUID and DN).

    Writes behave as the ActiveDirectoryHook's against a DC: an add at a DN that is taken is refused
    ``entryAlreadyExists``, a write to an objectGUID that is gone ``noSuchObject``; member changes are idempotent
    (the hook's permissive modify). ``refuse`` makes the next calls of one method fail with a given LDAP result.
    ``calls`` records every write as (method, target, detail); ``counters`` counts them as the hook does.
    """

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self.counters: Counter[str] = Counter()
        self._refusals: list[_Refusal] = []

    def add_entry(self, dn: str, object_class: str = "group", **attributes: Any) -> str:
        """An object that is already in the directory (not created by the export); returns its objectGUID."""
        object_guid = str(uuid.uuid4())
        self.entries[object_guid] = {"dn": dn, "objectClass": object_class, "member": set(), **attributes}
        return object_guid

    def refuse(self, method: str, code: str, *, match: str = "", times: int = 1) -> None:
        """The next ``times`` calls of ``method`` whose target contains ``match`` are refused with ``code``."""
        self._refusals.append(_Refusal(method, code, match, times))

    def entry_at(self, dn: str) -> tuple[str, dict[str, Any]] | None:
        for object_guid, entry in self.entries.items():
            if same_dn(entry["dn"], dn):
                return object_guid, entry
        return None

    # -------------------------------------------------------------------------------------------- protocol
    def add_object(self, dn: str, object_class: str, attributes: dict[str, list[Any]]) -> str:
        self._write("add_object", dn, dict(attributes))
        if self.entry_at(dn) is not None:
            raise ADWriteRefused(f"add of {dn} refused: entryAlreadyExists", code="entryAlreadyExists")
        object_guid = str(uuid.uuid4())
        values = {name: list(vals) for name, vals in attributes.items() if vals}
        self.entries[object_guid] = {"dn": dn, "objectClass": object_class, "member": set(), **values}
        return object_guid

    def modify_object(self, guid: str, replace: dict[str, list[Any]]) -> None:
        entry = self._entry("modify_object", guid, dict(replace))
        for name, values in replace.items():
            if values:
                entry[name] = list(values)
            else:
                entry.pop(name, None)

    def modify_references(
        self, guid: str, attribute: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> None:
        entry = self._entry("modify_references", guid, (attribute, tuple(add), tuple(remove)))
        values = entry.setdefault(attribute, set())
        values.update(target.lower() for target in add)
        values.difference_update(target.lower() for target in remove)

    def move_object(self, guid: str, new_dn: str) -> None:
        entry = self._entry("move_object", guid, new_dn)
        taken = self.entry_at(new_dn)
        if taken is not None and taken[0] != guid:
            raise ADWriteRefused(f"modify DN to {new_dn} refused: entryAlreadyExists", code="entryAlreadyExists")
        entry["dn"] = new_dn

    def delete_object(self, guid: str) -> None:
        self._entry("delete_object", guid, None)
        del self.entries[guid]

    def object_guid(self, dn: str) -> str | None:
        self.counters["ldap_reconcile_reads"] += 1
        found = self.entry_at(dn)
        return found[0] if found else None

    def object_mark(self, dn: str, attribute: str = MARK_ATTRIBUTE) -> tuple[str, str | None] | None:
        self.counters["ldap_reconcile_reads"] += 1
        found = self.entry_at(dn)
        if found is None:
            return None
        object_guid, entry = found
        return object_guid, next(iter(entry.get(attribute) or []), None)

    def object_dn(self, guid: str) -> str | None:
        entry = self.entries.get(guid)
        return entry["dn"] if entry else None

    # -------------------------------------------------------------------------------------------- internals
    def _write(self, method: str, target: str, detail: Any) -> None:
        self.calls.append((method, target, detail))
        self.counters["ldap_writes"] += 1
        for refusal in self._refusals:
            if refusal.times > 0 and refusal.method == method and refusal.match in target:
                refusal.times -= 1
                raise ADWriteRefused(f"{method} of {target} refused: {refusal.code}", code=refusal.code)

    def _entry(self, method: str, guid: str, detail: Any) -> dict[str, Any]:
        self._write(method, guid, detail)
        entry = self.entries.get(guid)
        if entry is None:
            raise ADWriteRefused(f"{method} of <GUID={guid}> refused: noSuchObject", code="noSuchObject")
        return entry
