"""The Graph side of the Entra export: what the exporter needs from a Graph connection, Graph's limits, and how a
connector-space change becomes a Graph body and a Graph answer becomes an outcome (error codes, conflict targets).

Shared by the planning, the request phases and the reconciliation of an export (planning.py, phases.py,
reconcile.py, conflicts.py); nothing here touches the store.
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from airflow_provider_aadsync.engine.connectors.entra.extensions import ExtensionNames, is_extension
from airflow_provider_aadsync.engine.connectors.entra.schema import COLLECTION_PROPERTIES, NESTED_PROPERTIES
from airflow_provider_aadsync.engine.runs.source import OUTCOME_UNKNOWN_CODE, UNANSWERED_CODE, BatchRequest

#: Graph's limits: requests per ``$batch``, link changes per request.
BATCH_SIZE = 20
LINKS_PER_REQUEST = 20
#: ``$batch`` calls in a row without a readable answer after which an export stops instead of resending.
UNKNOWN_OUTCOME_LIMIT = 3
#: The per-object error of an object that holds our key but that we did not create: never adopted, never written.
NOT_ADOPTED = "not-adopted"
#: The writer's counter of the writes it has put on the wire, each send of each (a call or a ``$batch`` item sent
#: again after a dropped answer or a 504 counts twice: Graph charged both to the write budget).
WRITES_SENT = "writes_sent"


class GraphAnswer(Protocol):
    id: str
    status: int
    body: Any

    @property
    def ok(self) -> bool: ...


class GraphWriter(Protocol):
    """What the export needs from a Graph connection (the EntraHook in production). Its ``counters`` may hold
    :data:`WRITES_SENT`; without it the export charges each call's writes once to the write budget."""

    counters: dict[str, float]

    def batch(self, requests: Sequence[BatchRequest], *, resend_if_unknown: bool = True) -> Mapping[str, GraphAnswer]:
        """Results by request id; with ``resend_if_unknown=False`` raises WriteOutcomeUnknownError on a drop."""
        ...

    def request(self, method: str, url: str, **kwargs: Any) -> Any: ...

    def directory_object_url(self, object_id: str) -> str: ...


def user_url(writer: GraphWriter, object_id: str) -> str:
    """The ``@odata.id`` of a user as Graph's "Assign manager" documents it (``{graph}/v1.0/users/{id}``), on the
    writer's Graph base (the national cloud's host, or the emulator's): its directory-object URL with the users
    segment."""
    base, _sep, _rest = writer.directory_object_url(object_id).rpartition("/directoryObjects/")
    return f"{base}/users/{object_id}"


def graph_body(changes: Mapping[str, list[Any]], names: ExtensionNames | None = None) -> dict[str, Any]:
    """Connector-space values as a Graph JSON body: collections as lists, other properties as one value or null;
    ``extension_<name>`` as the sync app's ``extension_<appId>_<name>`` (``names``)."""
    body: dict[str, Any] = {}
    for name, values in changes.items():
        if names is not None and is_extension(name):
            if names.is_registered(name):  # an unregistered one is counted by the export (phases.py)
                body[names.to_graph(name)] = values[0] if values else None
            continue
        parent, _dot, member = name.partition(".")
        if member and parent in NESTED_PROPERTIES:
            # A member of an object property (onPremisesExtensionAttributes): Graph patches the members it names.
            body.setdefault(parent, {})[member] = values[0] if values else None
        elif name in COLLECTION_PROPERTIES:
            body[name] = list(values)
        else:
            body[name] = values[0] if values else None
    return body


def initial_password() -> str:
    """A random initial password meeting Entra ID's complexity rules; never logged or stored."""
    alphabet = string.ascii_letters + string.digits
    core = "".join(secrets.choice(alphabet) for _ in range(20))
    return f"{core}!{secrets.choice(string.ascii_uppercase)}{secrets.choice(string.digits)}a"


def parse_time(value: Any) -> dt.datetime | None:
    """A Graph timestamp (``2026-12-04T10:31:05Z``) as an aware datetime, or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def odata_quote(value: str) -> str:
    return str(value).replace("'", "''")


def is_placeholder(upn: str) -> bool:
    """``prefix+1234@...`` (the product's form) or ``prefix_1234@...`` (its Graph-valid fallback)."""
    local = upn.rpartition("@")[0]
    return len(local) > 5 and local[-5] in "+_" and local[-4:].isdigit()


def is_unanswered(answer: GraphAnswer) -> bool:
    """Whether the writer had no answer for the request (its ``$batch`` answer left it out), or one after which it
    may or may not have been carried out."""
    return answer.status >= 500 and error_body(answer).get("code") in (UNANSWERED_CODE, OUTCOME_UNKNOWN_CODE)


def error_body(answer: GraphAnswer) -> dict[str, Any]:
    body = answer.body if isinstance(answer.body, dict) else {}
    return body.get("error") or {}


def error_message(answer: GraphAnswer) -> str:
    return str(error_body(answer).get("message", ""))


def invalid_target(answer: GraphAnswer) -> str | None:
    if answer.status != 400:
        return None
    for detail in error_body(answer).get("details") or []:
        if detail.get("code") == "InvalidValue":
            return detail.get("target")
    return None


def conflict_target(answer: GraphAnswer) -> str | None:
    if answer.status != 400:
        return None
    for detail in error_body(answer).get("details") or []:
        if detail.get("code") == "ObjectConflict":
            return detail.get("target")
    return None


def graph_error(answer: GraphAnswer) -> tuple[str, str]:
    error = error_body(answer)
    details = error.get("details") or []
    code = (details[0].get("code") if details else None) or error.get("code") or f"http-{answer.status}"
    request_id = (error.get("innerError") or {}).get("request-id")
    message = f"Graph {answer.status} {error.get('code', '')}: {error.get('message', '')}".strip()
    return code, message + (f" (request-id {request_id})" if request_id else "")
