"""EntraHook over answers that are not Graph's: unreadable JSON, pages without ``value``, items without ``id``,
``$batch`` answers with broken or missing items, a refused token and a Retry-After longer than ``max_retry_wait``.
Each is a clear error (or a per-request result), never a KeyError or TypeError."""

from __future__ import annotations

import httpx
import pytest

from airflow_provider_aadsync.engine.runs.source import BatchRequest, WriteOutcomeUnknownError
from airflow_provider_aadsync.hooks.entra import EntraHook
from airflow_provider_aadsync.hooks.entra_settings import (
    EntraConnectionSettings,
    GraphMalformedAnswerError,
    GraphThrottledError,
)

from .test_entra import SECRET, use


@pytest.fixture
def hook(monkeypatch) -> EntraHook:
    settings = EntraConnectionSettings(tenant_id="t", client_id="c", client_secret=SECRET, max_attempts=2)
    hook = EntraHook(settings=settings)
    monkeypatch.setattr(hook, "get_token", lambda: "token")
    monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", lambda _seconds: None)
    return hook


@pytest.mark.parametrize(
    ("content", "kind"),
    [(b'{"value": [{"id": "a"', "application/json"), (b"<html><body>Service Unavailable</body></html>", "text/html")],
)
def test_an_answer_that_is_not_json_is_a_clear_error(hook, content, kind):
    use(hook, lambda request: httpx.Response(200, content=content, headers={"content-type": kind}))
    with pytest.raises(
        GraphMalformedAnswerError, match=f"GET https://graph.test/v1.0/users → 200: the answer is not JSON \\({kind}"
    ):
        hook.request("GET", "/users")


@pytest.mark.parametrize(
    ("page", "problem"),
    [({"@odata.nextLink": None}, "no 'value' array"), ({"value": {"id": "a"}}, "no 'value' array"),
     ({"value": [{"displayName": "x"}]}, "an item without a string 'id'"), ({"value": [{"id": 7}]}, "string 'id'"),
     ({"value": ["a"]}, "string 'id'")],
)  # fmt: skip
def test_a_collection_page_without_value_or_ids_is_a_clear_error(hook, page, problem):
    use(hook, lambda request: httpx.Response(200, json=page))
    with pytest.raises(GraphMalformedAnswerError, match=problem):
        list(hook.paginate("/users"))


def test_batch_items_that_are_broken_or_missing_are_answered_as_missing(hook):
    def handler(request):
        return httpx.Response(200, json={"responses": [{"id": "1", "status": "HTTP 201"}, "junk", {"status": 204},
                                                       {"id": "2", "status": 204}]})  # fmt: skip

    use(hook, handler)
    results = hook.batch([BatchRequest(str(n), "DELETE", f"/users/{n}") for n in (1, 2, 3)])
    assert {key: result.status for key, result in results.items()} == {"1": 502, "2": 204, "3": 502}
    assert results["1"].body["error"]["code"] == "missingResponse"


def test_a_batch_answer_without_responses_is_an_unknown_outcome_for_writes(hook):
    use(hook, lambda request: httpx.Response(200, json={"value": []}))
    with pytest.raises(GraphMalformedAnswerError, match="no 'responses' array"):
        hook.batch([BatchRequest("1", "DELETE", "/users/1")])
    with pytest.raises(WriteOutcomeUnknownError) as unknown:
        hook.batch([BatchRequest("1", "DELETE", "/users/1")], resend_if_unknown=False)
    assert unknown.value.unknown == ["1"]


def test_a_refused_token_is_renewed_once(hook):
    answers = iter([httpx.Response(401, json={"error": {"code": "InvalidAuthenticationToken", "message": "expired"}}),
                    httpx.Response(200, json={"ok": True})])  # fmt: skip
    use(hook, lambda request: next(answers))
    assert hook.request("POST", "/users", json={}) == {"ok": True}
    refused = httpx.Response(401, json={"error": {"code": "InvalidAuthenticationToken", "message": "revoked"}})
    use(hook, lambda request: refused)
    with pytest.raises(Exception, match="401 InvalidAuthenticationToken: revoked"):
        hook.request("GET", "/users")
    assert hook.counters["requests"] == 4


def test_a_retry_after_above_max_retry_wait_stops_at_once(monkeypatch):
    settings = EntraConnectionSettings(tenant_id="t", client_id="c", client_secret=SECRET, max_retry_wait=60)
    hook = EntraHook(settings=settings)
    monkeypatch.setattr(hook, "get_token", lambda: "token")
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(429, headers={"Retry-After": "3600"}, json={"error": {"code": "TooManyRequests"}})

    use(hook, handler)
    with pytest.raises(GraphThrottledError, match=r"wait 3600 s \(Retry-After\), more than max_retry_wait \(60 s\)"):
        hook.request("GET", "/users")
    assert len(calls) == 1
    inner = {"responses": [{"id": "1", "status": 429, "headers": {"Retry-After": "3600"}}]}
    use(hook, lambda request: httpx.Response(200, json=inner))
    with pytest.raises(GraphThrottledError, match="before 1 requests of a \\$batch"):
        hook.batch([BatchRequest("1", "DELETE", "/users/1")])


def test_a_gateway_error_page_is_named_not_quoted(hook):
    page = b"<html><body><h1>502 Bad Gateway</h1>" + b"x" * 500 + b"</body></html>"
    use(hook, lambda request: httpx.Response(502, content=page, headers={"content-type": "text/html"}))
    with pytest.raises(Exception, match=r"502 Bad Gateway: no Graph error body \(text/html\)") as error:
        hook.request("GET", "/users")
    assert "<html>" not in str(error.value)
    plain = httpx.Response(503, content=b"upstream busy", headers={"content-type": "text/plain"})
    use(hook, lambda request: plain)
    with pytest.raises(Exception, match="503 Service Unavailable: upstream busy"):
        hook.request("GET", "/users")
