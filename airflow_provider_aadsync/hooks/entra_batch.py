"""The Entra hook's JSON batches (``$batch``): what a set of requests must be, how it is cut into calls Graph takes,
what one call carries, and how its answer becomes final results and requests to send again.

Graph takes a batch only fully parallel or fully sequential, and at most 20 requests in one: a request goes into a
call once its dependencies (``dependsOn``) have answered, so no call holds a ``dependsOn``. Sending, waiting and the
loop over the calls are the hook's (:meth:`EntraHook.batch <airflow_provider_aadsync.hooks.entra.EntraHook.batch>`).
"""

from __future__ import annotations

import graphlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from airflow_provider_aadsync.engine.runs.source import (
    OUTCOME_UNKNOWN_CODE,
    UNANSWERED_CODE,
    BatchRequest,
    ObjectDecodeError,
)
from airflow_provider_aadsync.hooks.entra_settings import GraphError, GraphMalformedAnswerError
from airflow_provider_aadsync.hooks.entra_transport import (
    RETRYABLE_STATUSES,
    RetryBudget,
    outcome_unknown,
    parse_retry_after,
    throttling,
)

__all__ = [
    "BATCH_LIMIT",
    "OBJECT_REFUSALS",
    "BatchResult",
    "batch_body",
    "check_requests",
    "holds_create",
    "next_chunk",
    "objects_read",
    "read_answer",
    "read_requests",
    "unreadable_object",
]

#: Graph's limit of requests in one JSON batch.
BATCH_LIMIT = 20

#: Graph's answers that refuse one object's read for good (a property it cannot select for it, an object the app may
#: not read), as opposed to the tenant being unreachable, throttling or failing (which fail the run, to be retried).
OBJECT_REFUSALS = (400, 403)


@dataclass(frozen=True)
class BatchResult:
    """The final answer to one batched request."""

    id: str
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def check_requests(requests: Sequence[BatchRequest]) -> None:
    """A ``ValueError`` for requests a batch cannot run: ids not unique, a ``dependsOn`` naming a request not in it,
    or ``dependsOn`` forming a cycle."""
    known = {request.id for request in requests}
    if len(known) != len(requests):
        raise ValueError("batch request ids must be unique")
    unknown = {dep for request in requests for dep in request.depends_on} - known
    if unknown:
        raise ValueError(f"dependsOn names requests that are not in the batch: {sorted(unknown)}")
    try:
        graphlib.TopologicalSorter({request.id: request.depends_on for request in requests}).prepare()
    except graphlib.CycleError as error:
        raise ValueError(f"dependsOn forms a cycle: {' → '.join(error.args[1])}") from None


def next_chunk(
    pending: list[BatchRequest], results: dict[str, BatchResult]
) -> tuple[list[BatchRequest], list[BatchRequest]]:
    """Up to 20 requests whose dependencies have answered, and the rest; 424 (in ``results``) for those whose
    dependencies failed."""
    chunk: list[BatchRequest] = []
    waiting: list[BatchRequest] = []
    for request in pending:
        failed = [dep for dep in request.depends_on if dep in results and not results[dep].ok]
        if failed:
            body = {"error": {"code": "FailedDependency", "message": f"dependency {failed[0]} failed"}}
            results[request.id] = BatchResult(request.id, 424, body, {})
        elif len(chunk) < BATCH_LIMIT and all(dep in results for dep in request.depends_on):
            chunk.append(request)
        else:
            waiting.append(request)
    return chunk, waiting


def batch_body(chunk: Sequence[BatchRequest]) -> dict[str, Any]:
    """The JSON body of one ``POST /$batch`` call of ``chunk``."""
    items = []
    for request in chunk:
        item: dict[str, Any] = {"id": request.id, "method": request.method, "url": request.url}
        if request.body is not None:
            item.update(body=request.body, headers={"Content-Type": "application/json"})
        items.append(item)
    return {"requests": items}


def holds_create(chunk: Sequence[BatchRequest]) -> bool:
    """Whether a call holds a request that is not idempotent (a POST: sent twice, it may create twice)."""
    return any(request.method == "POST" for request in chunk)


def read_answer(
    answer: Any,
    chunk: Sequence[BatchRequest],
    results: dict[str, BatchResult],
    budgets: dict[str, RetryBudget],
    *,
    creates: bool,
    max_retry_wait: float,
    new_budget: Callable[[], RetryBudget],
    counters: dict[str, Any],
) -> float:
    """Store the final results of one call's ``answer`` in ``results``; return how long to wait before sending the
    rest of ``chunk`` again (its throttled or transiently failed items, each under its own budget in ``budgets``,
    made by ``new_budget``); count each throttled item in ``counters["throttled"]``.

    ``creates``: the call was sent once only (``resend_if_unknown=False`` with a create in it): an inner POST answered
    500, 502 or 504 gets the result :data:`OUTCOME_UNKNOWN_CODE` instead of being sent again. A request the answer
    leaves out gets 502 :data:`UNANSWERED_CODE`.

    :raise GraphMalformedAnswerError: the answer has no ``responses`` array.
    :raise GraphThrottledError: an inner request has been throttled for longer than ``max_throttle_wait``.
    """
    wait = 0.0
    transient: set[str] = set()
    responses = answer.get("responses") if isinstance(answer, dict) else None
    if not isinstance(responses, list):
        raise GraphMalformedAnswerError("POST /$batch: the answer has no 'responses' array", method="POST")
    sent = {request.id: request for request in chunk}
    for item in responses:
        try:
            request_id, status = item["id"], int(item["status"])
        except (KeyError, TypeError, ValueError):
            continue  # an unreadable item: its request is answered as missing below
        if request_id not in sent or request_id in results:
            continue
        headers = {key.lower(): value for key, value in (item.get("headers") or {}).items()}
        if status in RETRYABLE_STATUSES:
            retry_after = parse_retry_after(headers.get("retry-after"))
            if creates and sent[request_id].method == "POST" and not throttling(status, retry_after):
                error = _inner_error(sent[request_id], status, item.get("body"), retry_after)
                if outcome_unknown(error):
                    results[request_id] = _outcome_unknown(request_id, error, headers)
                    continue
            if retry_after is not None and retry_after > max_retry_wait:
                again: float | None = retry_after  # batch() stops on it with max_retry_wait's error
            else:
                error = _inner_error(sent[request_id], status, item.get("body"), retry_after)
                again = budgets.setdefault(request_id, new_budget()).next_wait(error)
            if again is not None:
                transient.add(request_id)
                if status == 429:
                    counters["throttled"] += 1
                wait = max(wait, again)
                continue
        results[request_id] = BatchResult(request_id, status, item.get("body"), headers)
    for request in chunk:  # a request the answer left out is not retried forever
        if request.id not in results and request.id not in transient:
            body = {"error": {"code": UNANSWERED_CODE, "message": "the $batch answer had no item for it"}}
            results[request.id] = BatchResult(request.id, 502, body, {})
    return wait


def _outcome_unknown(request_id: str, error: GraphError, headers: dict[str, str]) -> BatchResult:
    """The result of a POST answered 500/502/504: it may have created something, so it is not sent again here."""
    message = f"answered {error.status} {error.code}: {error.graph_message}; it may have been carried out"
    return BatchResult(request_id, error.status, {"error": {"code": OUTCOME_UNKNOWN_CODE, "message": message}}, headers)


def _inner_error(request: BatchRequest, status: int, body: Any, retry_after: float | None) -> GraphError:
    """The error a ``$batch`` item answered, as :class:`RetryBudget` weighs it (and names it if it stops the run)."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    inner = error.get("innerError") if isinstance(error.get("innerError"), dict) else {}
    return GraphError(
        status, str(error.get("code") or status), str(error.get("message") or "no Graph error body"),
        request_id=inner.get("request-id"), method=request.method, url=request.url.split("?", 1)[0],
        retry_after=retry_after,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------ reads by id
def unreadable_object(resource: str, object_id: str, error: GraphError) -> ObjectDecodeError:
    """The per-object error (code ``unreadable-object``) of a read Graph refused (:data:`OBJECT_REFUSALS`), naming the
    object by id and Graph's message."""
    return ObjectDecodeError(
        f"Graph refused to read {resource} {object_id}: {error.status} {error.code}: {error.graph_message}",
        dn=f"{resource}/{object_id}",
        anchor=object_id,
        code="unreadable-object",
    )


def read_requests(resource: str, object_ids: Sequence[str], params: Mapping[str, str]) -> list[BatchRequest]:
    """``GET /{resource}/{id}`` with the query ``params`` of each id, as ``$batch`` requests whose ids are the ids'
    positions (an object id is not a valid request id for every Graph client)."""
    query = urlencode(params, safe="$,")
    return [
        BatchRequest(str(position), "GET", f"/{resource}/{quote(object_id, safe='')}?{query}")
        for position, object_id in enumerate(object_ids)
    ]


def objects_read(
    resource: str,
    object_ids: Sequence[str],
    requests: Sequence[BatchRequest],
    results: Mapping[str, BatchResult],
) -> tuple[dict[str, dict[str, Any] | None], list[ObjectDecodeError]]:
    """The answers to :func:`read_requests` (``requests``, one per id of ``object_ids``): each object read (None when
    Graph has no such object, 404), and the per-object errors of the reads Graph refused (:data:`OBJECT_REFUSALS`).

    :raise GraphError: another failure, as a single read raises it once its retries are spent (the run stops, to be
        retried).
    :raise GraphMalformedAnswerError: an object answered that is not a JSON object."""
    found: dict[str, dict[str, Any] | None] = {}
    refused: list[ObjectDecodeError] = []
    for object_id, request in zip(object_ids, requests, strict=True):
        result = results[request.id]
        if result.ok:
            if not isinstance(result.body, dict):
                raise GraphMalformedAnswerError(f"GET /{resource}/{{id}} in a $batch: not a JSON object", method="GET")
            found[object_id] = result.body
        elif result.status == 404:
            found[object_id] = None
        else:
            error = _inner_error(request, result.status, result.body, None)
            if result.status not in OBJECT_REFUSALS:
                raise error
            refused.append(unreadable_object(resource, object_id, error))
    return found, refused
