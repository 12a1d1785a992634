from __future__ import annotations

import email.utils
import json
import time

import httpx
import pytest
from airflow.sdk import Connection

from airflow_provider_aadsync.engine import secrets
from airflow_provider_aadsync.engine.connectors.entra.graph import is_unanswered
from airflow_provider_aadsync.engine.runs.source import OUTCOME_UNKNOWN_CODE, BatchRequest, WriteOutcomeUnknownError
from airflow_provider_aadsync.hooks.entra import EntraHook
from airflow_provider_aadsync.hooks.entra_settings import (
    EntraConnectionSettings,
    EntraError,
    GraphError,
    GraphThrottledError,
    GraphUnreachableError,
)
from airflow_provider_aadsync.hooks.entra_transport import parse_retry_after

SECRET = "Cl1ent-Secret-Value~xyz"


def connection(**extra) -> Connection:
    return Connection(
        conn_id="aadsync_entra",
        conn_type="aadsync_entra",
        login="11111111-2222-3333-4444-555555555555",
        password=SECRET,
        extra=json.dumps({"tenant_id": "contoso.onmicrosoft.com", **extra}),
    )


class TestEntraConnectionSettings:
    @pytest.mark.parametrize(
        ("cloud", "authority", "graph"),
        [
            ("global", "https://login.microsoftonline.com", "https://graph.microsoft.com"),
            ("china", "https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),
            ("usgov", "https://login.microsoftonline.us", "https://graph.microsoft.us"),
            ("usgov-dod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
        ],
    )
    def test_clouds(self, cloud, authority, graph):
        settings = EntraConnectionSettings.from_connection(connection(cloud=cloud))
        assert settings.authority == f"{authority}/contoso.onmicrosoft.com"
        assert settings.endpoints.graph_url == graph
        assert settings.scope == f"{graph}/.default"

    def test_germany_is_refused_with_the_reason(self):
        with pytest.raises(EntraError, match=r"cloud 'germany' is refused: .*retired.*V2 sync endpoint was never"):
            EntraConnectionSettings.from_connection(connection(cloud="Germany"))

    def test_overrides_reach_the_emulator_but_scope_stays_graphs(self):
        settings = EntraConnectionSettings.from_connection(
            connection(authority_host="https://127.0.0.1:8443/", graph_url="https://127.0.0.1:8443")
        )
        assert settings.authority == "https://127.0.0.1:8443/contoso.onmicrosoft.com"
        assert settings.endpoints.graph_url == "https://127.0.0.1:8443"
        assert settings.scope == "https://graph.microsoft.com/.default"

    def test_plain_http_override_is_refused(self):
        with pytest.raises(EntraError, match="graph_url: must be an https:// URL"):
            EntraConnectionSettings.from_connection(connection(graph_url="http://127.0.0.1:8080"))

    def test_the_throttling_budget_is_read_from_the_extras_and_must_be_positive(self):
        assert EntraConnectionSettings.from_connection(connection()).max_throttle_wait == 900
        assert EntraConnectionSettings.from_connection(connection(max_throttle_wait="60")).max_throttle_wait == 60
        with pytest.raises(EntraError, match="max_throttle_wait: Input should be greater than 0"):
            EntraConnectionSettings.from_connection(connection(max_throttle_wait=0))

    def test_secret_never_in_repr_or_errors(self):
        settings = EntraConnectionSettings.from_connection(connection())
        assert SECRET not in repr(settings)
        with pytest.raises(EntraError) as caught:
            EntraConnectionSettings.from_connection(connection(cloud="mars"))
        assert SECRET not in str(caught.value)


class TestSecretInARefusedUrl:
    """A client secret pasted into an http:// authority_host or graph_url: the URL check runs before the settings
    register the secret, so its error named the URL, secret and all, in test_connection()'s message and the CLI."""

    LEAKY_SECRET = "Q~8xv3Secr3tValue_ABCdef"

    @pytest.fixture(autouse=True)
    def clean_registry(self):
        secrets.forget_secrets()
        yield
        secrets.forget_secrets()

    def leaky_extra(self, field: str) -> dict[str, str]:
        return {field: f"http://login.internal/?client_secret={self.LEAKY_SECRET}"}

    @pytest.mark.parametrize("field", ["authority_host", "graph_url"])
    def test_the_refusal_names_the_scheme_not_the_url(self, field):
        conn = connection(**self.leaky_extra(field))
        conn.password = self.LEAKY_SECRET
        with pytest.raises(EntraError) as caught:
            EntraConnectionSettings.from_connection(conn)
        message = str(caught.value)
        assert f"{field}: must be an https:// URL (msal and Graph require TLS), got a URL with scheme 'http'" in message
        assert self.LEAKY_SECRET not in message and "login.internal" not in message
        # registered before validation: whatever quotes it later (a traceback, a library's message) is scrubbed
        assert secrets.scrub(f"refused {self.LEAKY_SECRET}") == "refused ***"

    @pytest.mark.parametrize("field", ["authority_host", "graph_url"])
    def test_test_connection_does_not_show_the_secret(self, monkeypatch, field):
        monkeypatch.setenv(
            "AIRFLOW_CONN_LEAKY_ENTRA",
            json.dumps(
                {
                    "conn_type": "aadsync_entra",
                    "login": "11111111-2222-3333-4444-555555555555",
                    "password": self.LEAKY_SECRET,
                    "extra": {"tenant_id": "contoso.onmicrosoft.com", **self.leaky_extra(field)},
                }
            ),
        )
        ok, message = EntraHook("leaky_entra").test_connection()
        assert ok is False
        assert f"{field}: must be an https:// URL" in message and "got a URL with scheme 'http'" in message
        assert self.LEAKY_SECRET not in message


@pytest.fixture
def hook(monkeypatch):
    """A hook with a fixed token and 3 attempts per request; give it answers with :func:`use`."""
    hook = EntraHook(
        settings=EntraConnectionSettings(
            tenant_id="t", client_id="c", client_secret=SECRET, max_attempts=3, graph_url="https://graph.test"
        )
    )
    monkeypatch.setattr(hook, "get_token", lambda: "token")
    return hook


def use(hook: EntraHook, handler) -> None:
    """Answer the hook's Graph requests with *handler* (httpx's transport seam, no network)."""
    hook.__dict__["_http"] = httpx.Client(base_url="https://graph.test/v1.0", transport=httpx.MockTransport(handler))


class TestEntraHookRequests:
    """Retry and error translation over httpx's transport seam (the emulator tests cover real HTTP)."""

    def test_retry_after_is_honoured_then_success(self, hook, monkeypatch):
        slept = []
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", slept.append)
        answers = iter(
            [
                httpx.Response(
                    429, headers={"Retry-After": "2"}, json={"error": {"code": "TooManyRequests", "message": "x"}}
                ),
                httpx.Response(200, json={"value": [1]}),
            ]
        )
        use(hook, lambda request: next(answers))
        assert hook.request("GET", "/users") == {"value": [1]}
        assert slept == [2.0]
        assert hook.counters["throttled"] == 1 and hook.counters["retry_wait_seconds"] == 2.0

    def test_graph_error_is_translated_and_not_retried(self, hook):
        calls = []

        def handler(request):
            calls.append(request)
            return httpx.Response(
                400,
                json={"error": {"code": "Request_BadRequest", "message": "bad", "innerError": {"request-id": "rid-1"}}},
            )

        use(hook, handler)
        with pytest.raises(GraphError) as caught:
            hook.request("POST", "/users", json={})
        assert (caught.value.status, caught.value.code, caught.value.request_id) == (400, "Request_BadRequest", "rid-1")
        assert len(calls) == 1

    def test_paging_follows_next_link_verbatim(self, hook):
        seen = []

        def handler(request):
            seen.append(str(request.url))
            if "skiptoken" in str(request.url):
                return httpx.Response(200, json={"value": [{"id": "2"}]})
            return httpx.Response(
                200, json={"value": [{"id": "1"}], "@odata.nextLink": "https://graph.test/v1.0/users?$skiptoken=abc"}
            )

        use(hook, handler)
        pages = [page["value"] for page in hook.paginate("/users", params={"$top": 1})]
        assert pages == [[{"id": "1"}], [{"id": "2"}]]
        assert seen[1] == "https://graph.test/v1.0/users?$skiptoken=abc"

    def test_transient_errors_back_off_with_jitter_then_give_up_with_graphs_answer(self, hook, monkeypatch):
        slept = []
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", slept.append)
        calls = []

        def handler(request):
            calls.append(request)
            return httpx.Response(503, json={"error": {"code": "serviceNotAvailable", "message": "busy"}})

        use(hook, handler)
        with pytest.raises(GraphError) as caught:
            hook.request("GET", "/users")
        assert caught.value.status == 503 and caught.value.code == "serviceNotAvailable"
        assert len(calls) == 3  # max_attempts
        # no Retry-After: random exponential waits (multiplier 0.5, at most 30 s), one before each new attempt
        assert len(slept) == 2 and all(0 <= wait <= 30 for wait in slept)
        assert hook.counters["retries"] == 2

    def test_unreachable_graph_names_the_host_after_the_retries(self, hook, monkeypatch):
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", lambda _seconds: None)
        calls = []

        def handler(request):
            calls.append(request)
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

        use(hook, handler)
        with pytest.raises(GraphUnreachableError, match=r"GET /users: no answer from Graph at https://graph.test: "):
            hook.request("GET", "/users?$skiptoken=abc")
        assert len(calls) == 3
        with pytest.raises(GraphUnreachableError) as caught:
            hook.request("GET", "/users?$skiptoken=abc")
        assert "skiptoken" not in str(caught.value) and "Connection refused" in str(caught.value)
        assert hook.test_connection()[0] is False

    def test_one_msal_app_and_one_http_client_serve_every_request(self):
        hook = EntraHook(settings=EntraConnectionSettings(tenant_id="t", client_id="c", client_secret=SECRET))
        calls = []

        class FakeApp:
            def acquire_token_for_client(self, scopes):
                calls.append(scopes)
                return {"access_token": "token-1"}

        hook.__dict__["_msal_app"] = FakeApp()  # what the cached property would hold
        assert hook.get_conn() is hook.get_conn()
        use(hook, lambda request: httpx.Response(200, json={"value": []}))
        hook.request("GET", "/users")
        hook.request("GET", "/groups")
        # one app asked per request: msal answers from its token cache while the token is valid
        assert len(calls) == 2 and hook._http is hook.get_conn()


class TestThrottlingBudget:
    """Throttling is waited out without using up ``max_attempts`` (3 here); ``max_throttle_wait`` bounds it. The
    emulator tests (tests/integration/test_entra_hook_emulator.py) do the same over real HTTP."""

    @staticmethod
    def throttled(status: int = 429, retry_after: str | None = "2") -> httpx.Response:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return httpx.Response(status, headers=headers, json={"error": {"code": "TooManyRequests", "message": "x"}})

    def test_throttling_does_not_use_up_the_attempts(self, hook, monkeypatch):
        slept = []
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", slept.append)
        # five 429s (one without Retry-After: a backoff), two 503s that say when to come back, then the answer
        throttled = [*[self.throttled()] * 4, self.throttled(retry_after=None), *[self.throttled(503)] * 2]
        answers = iter([*throttled, httpx.Response(200, json={"value": [1]})])
        use(hook, lambda request: next(answers))
        assert hook.request("GET", "/users") == {"value": [1]}
        assert len(slept) == 7 and slept[:4] == [2.0] * 4 and 0 <= slept[4] <= 30 and slept[5:] == [2.0, 2.0]
        assert hook.counters["retries"] == 7 and hook.counters["throttled"] == 5  # 429s, as before
        assert hook.counters["retry_wait_seconds"] == pytest.approx(sum(slept))

    def test_throttling_past_max_throttle_wait_stops_naming_it(self, hook, monkeypatch):
        hook.__dict__["settings"] = hook.settings.model_copy(update={"max_throttle_wait": 7})
        slept = []
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", slept.append)
        use(hook, lambda request: self.throttled())
        with pytest.raises(
            GraphThrottledError,
            match=r"GET https://graph.test/v1.0/users → 429 TooManyRequests: x; Graph has throttled this request 4 "
            r"times in 6 s and asks to wait 2 s more, past max_throttle_wait \(7 s\)",
        ):
            hook.request("GET", "/users")
        assert slept == [2.0, 2.0, 2.0]

    def test_faults_among_throttling_still_stop_at_max_attempts(self, hook, monkeypatch):
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", lambda _seconds: None)
        fault = httpx.Response(503, json={"error": {"code": "serviceNotAvailable", "message": "busy"}})
        come_back_now = self.throttled(503, retry_after="0")  # asks for no wait: a fault, not throttling
        answers = iter([fault, self.throttled(), come_back_now, self.throttled(), self.throttled(), fault])
        use(hook, lambda request: next(answers))
        with pytest.raises(GraphError, match="503 serviceNotAvailable: busy"):
            hook.request("GET", "/users")
        assert hook.counters["requests"] == 6  # three faults: max_attempts

    def test_batch_requests_are_throttled_past_max_attempts_and_faults_stop_at_it(self, hook, monkeypatch):
        waits = []
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", waits.append)
        calls = []

        def handler(request):
            calls.append(request)
            if len(calls) <= 5:  # "t" throttled five times; "f" fails (no Retry-After: a fault) three times
                items = [{"id": "t", "status": 429, "headers": {"Retry-After": "1"}}, {"id": "f", "status": 500}]
                return httpx.Response(200, json={"responses": items[: 2 if len(calls) <= 3 else 1]})
            return httpx.Response(200, json={"responses": [{"id": "t", "status": 200, "body": {"ok": True}}]})

        use(hook, handler)
        results = hook.batch([BatchRequest("t", "GET", "/users"), BatchRequest("f", "GET", "/groups")])
        assert results["t"].ok and results["t"].body == {"ok": True}
        assert results["f"].status == 500 and len(calls) == 6
        assert waits == [1.0] * 5 and hook.counters["throttled"] == 5

    def test_a_batch_request_throttled_past_max_throttle_wait_stops_the_batch(self, hook, monkeypatch):
        hook.__dict__["settings"] = hook.settings.model_copy(update={"max_throttle_wait": 25})
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", lambda _seconds: None)
        body = {"error": {"code": "TooManyRequests", "message": "slow down"}}
        item = {"id": "1", "status": 429, "headers": {"Retry-After": "10"}, "body": body}
        use(hook, lambda request: httpx.Response(200, json={"responses": [item]}))
        with pytest.raises(
            GraphThrottledError,
            match=r"PATCH /users/u1 → 429 TooManyRequests: slow down; Graph has throttled this request 3 times in "
            r"20 s and asks to wait 10 s more, past max_throttle_wait \(25 s\)",
        ):
            hook.batch([BatchRequest("1", "PATCH", "/users/u1?$select=id", {"department": "x"})])
        assert hook.counters["retry_wait_seconds"] == 20

    @pytest.mark.parametrize("retry_after", ["0", None, "soon"])
    def test_throttling_that_names_no_wait_backs_off_from_a_floor_never_at_once(self, hook, monkeypatch, retry_after):
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra_transport.random.uniform", lambda low, high: high)
        slept = []
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", slept.append)
        answers = iter([*[self.throttled(retry_after=retry_after)] * 7, httpx.Response(200, json={"value": [1]})])
        use(hook, lambda request: next(answers))
        assert hook.request("GET", "/users") == {"value": [1]}
        # 1 s doubling per throttling of the request, up to half again at random (the top here), at most 30 s
        assert slept == [1.5, 3.0, 6.0, 12.0, 24.0, 30.0, 30.0]

    def test_throttling_that_names_no_wait_is_resent_a_bounded_number_of_times(self, hook, monkeypatch):
        hook.__dict__["settings"] = hook.settings.model_copy(update={"max_throttle_wait": 120})
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra_transport.random.uniform", lambda low, high: low)
        slept = []
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", slept.append)
        calls = []

        def handler(request):
            calls.append(request)
            assert len(calls) <= 50, "Retry-After: 0 resent at once, again and again"
            return self.throttled(retry_after="0")

        use(hook, handler)
        with pytest.raises(GraphThrottledError, match=r"past max_throttle_wait \(120 s\)"):
            hook.request("GET", "/users")
        # the shortest waits (no jitter): 1 + 2 + 4 + 8 + 16 + 30 + 30 = 91 s, the next 30 s would pass 120 s
        assert slept == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0] and len(calls) == 8

    def test_a_503_that_asks_for_no_wait_is_a_fault_backed_off_too(self, hook, monkeypatch):
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra_transport.random.uniform", lambda low, high: high)
        slept = []
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", slept.append)
        use(hook, lambda request: self.throttled(503, retry_after="0"))
        with pytest.raises(GraphError, match="503 TooManyRequests"):
            hook.request("GET", "/users")
        assert slept == [0.5, 1.0]  # max_attempts 3: the faults' backoff, not 0

    def test_batch_items_throttled_with_no_wait_back_off_within_max_retry_wait(self, hook, monkeypatch):
        hook.__dict__["settings"] = hook.settings.model_copy(update={"max_retry_wait": 5})
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra_transport.random.uniform", lambda low, high: high)
        waits = []
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", waits.append)
        throttled = {"id": "1", "status": 429, "headers": {"Retry-After": "0"}, "body": {}}
        answers = iter([*[{"responses": [throttled]}] * 4, {"responses": [{"id": "1", "status": 204}]}])
        use(hook, lambda request: httpx.Response(200, json=next(answers)))
        results = hook.batch([BatchRequest("1", "PATCH", "/users/u1", {"department": "x"})])
        # a backoff never stops the batch for max_retry_wait: it picks no more than it
        assert results["1"].status == 204 and waits == [1.5, 3.0, 5.0, 5.0]


class TestRetryAfter:
    def test_seconds_and_http_dates(self):
        assert parse_retry_after("7") == 7.0
        assert parse_retry_after(" 2.5 ") == 2.5
        assert parse_retry_after("-3") == 0.0
        in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
        assert 55 <= parse_retry_after(in_a_minute) <= 60
        assert parse_retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0
        assert parse_retry_after(None) is None and parse_retry_after("soon") is None


class TestBatch:
    def test_depends_on_cycles_are_refused_before_anything_is_sent(self, hook):
        use(hook, lambda request: pytest.fail("nothing may be sent"))
        cycle = [
            BatchRequest("a", "GET", "/users", depends_on=("b",)),
            BatchRequest("b", "GET", "/users", depends_on=("a",)),
        ]
        with pytest.raises(ValueError, match="dependsOn forms a cycle"):
            hook.batch(cycle)
        with pytest.raises(ValueError, match="dependsOn forms a cycle"):
            hook.batch([BatchRequest("a", "GET", "/users", depends_on=("a",))])

    def test_a_batch_stopped_by_throttling_carries_the_answers_it_had(self, hook):
        """Graph asks to wait longer than max_retry_wait for one request: the batch stops, and the answers it already
        had go with the error, for the export to record before the run stops."""
        answer = {
            "responses": [
                {"id": "a", "status": 201, "body": {"id": "u1"}},
                {"id": "b", "status": 429, "headers": {"Retry-After": "86400"}, "body": {}},
            ]
        }
        use(hook, lambda request: httpx.Response(200, json=answer))
        with pytest.raises(GraphThrottledError, match="max_retry_wait") as raised:
            hook.batch([BatchRequest("a", "POST", "/users", {}), BatchRequest("b", "POST", "/users", {})])
        assert set(raised.value.results) == {"a"} and raised.value.results["a"].body == {"id": "u1"}

    def test_inner_retry_after_as_an_http_date_is_honoured(self, hook, monkeypatch):
        waits = []
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", waits.append)
        when = email.utils.formatdate(time.time() + 20, usegmt=True)
        answers = iter(
            [
                {"responses": [{"id": "1", "status": 429, "headers": {"Retry-After": when}, "body": {}}]},
                {"responses": [{"id": "1", "status": 200, "body": {"ok": True}}]},
            ]
        )
        use(hook, lambda request: httpx.Response(200, json=next(answers)))
        results = hook.batch([BatchRequest("1", "GET", "/users")])
        assert results["1"].ok and results["1"].body == {"ok": True}
        assert len(waits) == 1 and 15 <= waits[0] <= 20

    def test_every_send_of_a_write_is_counted_as_graph_charges_it(self, hook, monkeypatch):
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", lambda _seconds: None)
        gateway_gave_up = {"status": 504, "body": {"error": {"code": "UnknownError", "message": "gateway timeout"}}}
        answers = iter(
            [
                {"responses": [{"id": "r", "status": 200, "body": {}}, {"id": "w", **gateway_gave_up}]},
                {"responses": [{"id": "w", "status": 204}]},
            ]
        )
        use(hook, lambda request: httpx.Response(200, json=next(answers)))
        results = hook.batch([BatchRequest("r", "GET", "/users"), BatchRequest("w", "PATCH", "/users/u1", {"x": 1})])
        assert results["w"].status == 204 and hook.counters["requests"] == 2
        assert hook.counters["writes_sent"] == 2  # the PATCH twice, the GET not at all
        use(hook, lambda request: httpx.Response(204))
        hook.request("DELETE", "/groups/g1/members/u1/$ref")
        hook.request("GET", "/users")
        assert hook.counters["writes_sent"] == 3


class TestReadById:
    """``get_objects``: objects read whole by id through ``$batch`` (a delta reads again what it could not apply)."""

    @staticmethod
    def graph(answers: dict[str, tuple[int, dict]], calls: list[list[str]]):
        """A Graph whose ``$batch`` answers each ``GET /users/{id}`` from ``answers`` by id (404 when absent)."""

        def handler(request: httpx.Request) -> httpx.Response:
            assert request.url.path == "/v1.0/$batch"
            items = json.loads(request.content)["requests"]
            calls.append([item["url"] for item in items])
            responses = []
            for item in items:
                object_id = item["url"].split("?", 1)[0].rsplit("/", 1)[1]
                status, body = answers.get(object_id, (404, {"error": {"code": "Request_ResourceNotFound"}}))
                responses.append({"id": item["id"], "status": status, "body": body})
            return httpx.Response(200, json={"responses": responses})

        return handler

    def test_twenty_reads_a_call_with_the_query_of_a_single_read(self, hook):
        calls: list[list[str]] = []
        answers = {f"u{n}": (200, {"id": f"u{n}", "displayName": f"User {n}"}) for n in range(25)}
        use(hook, self.graph(answers, calls))
        found, refused = hook.get_objects("users", [f"u{n}" for n in range(25)], ["id", "displayName"], ["manager"])
        assert found == {f"u{n}": answers[f"u{n}"][1] for n in range(25)} and refused == []
        assert [len(urls) for urls in calls] == [20, 5] and hook.counters["batch_requests"] == 2
        assert calls[0][0] == "/users/u0?$select=id,displayName&$expand=manager"

    def test_a_gone_object_is_none_and_a_refused_read_is_its_own_error(self, hook):
        forbidden = {"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges"}}
        answers = {
            "u1": (200, {"id": "u1"}),
            "hidden": (403, forbidden),
            "odd": (400, {"error": {"code": "BadRequest"}}),
        }
        use(hook, self.graph(answers, []))
        found, refused = hook.get_objects("users", ["u1", "gone", "hidden", "odd"], ["id"])
        assert found == {"u1": {"id": "u1"}, "gone": None}
        assert [(error.anchor, error.code) for error in refused] == [
            ("hidden", "unreadable-object"),
            ("odd", "unreadable-object"),
        ]
        assert "403 Authorization_RequestDenied: Insufficient privileges" in str(refused[0])

    def test_a_read_failing_past_its_retries_stops_the_run_as_a_single_read_does(self, hook, monkeypatch):
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", lambda _seconds: None)
        calls: list[list[str]] = []
        use(hook, self.graph({"u1": (200, {"id": "u1"}), "sick": (500, {"error": {"code": "UnknownError"}})}, calls))
        with pytest.raises(GraphError) as raised:
            hook.get_objects("users", ["u1", "sick"], ["id"])
        assert raised.value.status == 500 and len(calls) == 3  # sent again until the hook's 3 attempts were spent
        assert calls[1:] == [["/users/sick?$select=id"]] * 2


class TestWritesThatMayHaveBeenCarriedOut:
    """A gateway that gives up (504), a failure midway (500) or a bad gateway (502) may come after Graph carried the
    write out. An idempotent request is sent again; a create (POST) is not, when the caller reconciles
    (``resend_if_unknown=False``): a group sent twice is two groups, Graph keeps no key of a group unique."""

    @staticmethod
    def timeout(status: int = 504) -> dict:
        return {"status": status, "body": {"error": {"code": "UnknownError", "message": "gateway timeout"}}}

    def test_an_inner_create_answered_5xx_is_sent_once_and_its_outcome_unknown(self, hook, monkeypatch):
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", lambda _seconds: None)
        sent = []

        def handler(request):
            items = json.loads(request.content)["requests"]
            sent.extend((item["id"], item["method"]) for item in items)
            answers = {"create": self.timeout(), "create-500": self.timeout(500), "patch": self.timeout()}
            responses = [{"id": item["id"], **answers.get(item["id"], {"status": 204})} for item in items]
            if len(sent) > 4:  # the second call: the PATCH sent again succeeds
                responses = [{"id": item["id"], "status": 204} for item in items]
            return httpx.Response(200, json={"responses": responses})

        use(hook, handler)
        requests = [BatchRequest("create", "POST", "/groups", {"displayName": "g"}),
                    BatchRequest("create-500", "POST", "/groups", {"displayName": "h"}),
                    BatchRequest("patch", "PATCH", "/groups/1", {"description": "d"}),
                    BatchRequest("throttled-create", "POST", "/groups", {"displayName": "i"})]  # fmt: skip
        results = hook.batch(requests, resend_if_unknown=False)
        assert sent.count(("create", "POST")) == 1 and sent.count(("create-500", "POST")) == 1
        assert sent.count(("patch", "PATCH")) == 2 and results["patch"].ok
        assert results["create"].status == 504 and results["create"].body["error"]["code"] == OUTCOME_UNKNOWN_CODE
        assert (
            "answered 504 UnknownError: gateway timeout; it may have been carried out"
            in (results["create"].body["error"]["message"])
        )
        assert is_unanswered(results["create"]) and results["create-500"].status == 500
        # a caller that does not reconcile (resend_if_unknown=True) gets it sent up to max_attempts (3), as before
        sent.clear()
        hook.batch([BatchRequest("create", "POST", "/groups", {"displayName": "g"})])
        assert sent.count(("create", "POST")) == 3

    def test_a_create_answered_503_was_not_taken_and_is_sent_again(self, hook, monkeypatch):
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", lambda _seconds: None)
        answers = iter([{"status": 503, "body": {}}, {"status": 201, "body": {"id": "g1"}}])
        use(hook, lambda request: httpx.Response(200, json={"responses": [{"id": "1", **next(answers)}]}))
        results = hook.batch([BatchRequest("1", "POST", "/groups", {"displayName": "g"})], resend_if_unknown=False)
        assert results["1"].status == 201

    @pytest.mark.parametrize("status", [500, 502, 504])
    def test_a_call_holding_a_create_answered_5xx_is_an_unknown_outcome(self, hook, monkeypatch, status):
        monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", lambda _seconds: None)
        calls = []

        def handler(request):
            calls.append(request)
            return httpx.Response(status, json={"error": {"code": "UnknownError", "message": "upstream"}})

        use(hook, handler)
        create = BatchRequest("1", "POST", "/groups", {"displayName": "g"})
        with pytest.raises(WriteOutcomeUnknownError, match=f"{status} UnknownError: upstream") as unknown:
            hook.batch([create, BatchRequest("2", "PATCH", "/groups/2", {})], resend_if_unknown=False)
        assert unknown.value.unknown == ["1", "2"] and len(calls) == 1
        # a call of idempotent requests only is sent again (max_attempts: 3), then the last answer is the error
        calls.clear()
        with pytest.raises(GraphError, match=f"{status} UnknownError"):
            hook.batch([BatchRequest("2", "PATCH", "/groups/2", {})], resend_if_unknown=False)
        assert len(calls) == 3


class TestCredentials:
    PEM = (
        "-----BEGIN PRIVATE KEY-----\n"
        "MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAqPfgaTEWEP3S9w0t\n"
        "-----END PRIVATE KEY-----\n"
    )

    def certificate_connection(self, **extra) -> Connection:
        conn = connection(thumbprint="AB:CD:EF", **extra)
        conn.password = None
        return conn

    def test_key_file_instead_of_secret(self, tmp_path):
        key = tmp_path / "app.key"
        key.write_text(self.PEM)
        settings = EntraConnectionSettings.from_connection(self.certificate_connection(certificate_path=str(key)))
        assert settings.client_credential() == {"private_key": self.PEM, "thumbprint": "ABCDEF"}
        assert "PRIVATE KEY" not in repr(settings)

    def test_pem_text_in_private_key(self):
        settings = EntraConnectionSettings.from_connection(self.certificate_connection(private_key=self.PEM))
        assert settings.client_credential() == {"private_key": self.PEM, "thumbprint": "ABCDEF"}
        assert "MIIB" not in repr(settings)

    def test_exactly_one_credential(self):
        with pytest.raises(EntraError, match="either a client secret .* or a certificate"):
            EntraConnectionSettings.from_connection(connection(private_key=self.PEM, thumbprint="ab"))
        conn = connection()
        conn.password = None
        with pytest.raises(EntraError, match="either a client secret"):
            EntraConnectionSettings.from_connection(conn)
        with pytest.raises(EntraError, match="either as PEM text .* or as a file"):
            EntraConnectionSettings.from_connection(
                self.certificate_connection(private_key=self.PEM, certificate_path="/k.pem")
            )

    def test_the_old_certificate_extra_is_refused_without_echoing_it(self):
        """It held a key or a path, guessed by a header: a key without the header was read as a path, and the OS
        error quoted the key whole. Now neither is guessed."""
        body = "MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAqPfgaTEWEP3S9w0t"
        for value in (self.PEM, body, "/etc/aadsync/app.pem"):
            with pytest.raises(EntraError) as caught:
                EntraConnectionSettings.from_connection(self.certificate_connection(certificate=value))
            message = str(caught.value)
            assert "'certificate' extra is no longer read" in message and "private_key" in message
            assert "certificate_path" in message and body not in message and "/etc/aadsync" not in message

    def test_private_key_without_a_pem_block_is_refused_without_echoing_it(self):
        body = "MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAqPfgaTEWEP3S9w0t"
        with pytest.raises(EntraError) as caught:
            EntraConnectionSettings.from_connection(self.certificate_connection(private_key=body))
        assert "private_key must be the PEM text" in str(caught.value) and body not in str(caught.value)

    @pytest.mark.parametrize(
        ("path", "reason"),
        [
            ("missing.pem", "ENOENT"),
            # a key pasted into the path field: the OS refuses the long name and must not get to quote it
            ("MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAqPfgaTEWEP3S9w0t" * 8, "ENAMETOOLONG"),
            (".", "EISDIR"),
        ],
    )
    def test_unreadable_certificate_path_names_the_errno_only(self, tmp_path, monkeypatch, path, reason):
        monkeypatch.chdir(tmp_path)
        settings = EntraConnectionSettings.from_connection(self.certificate_connection(certificate_path=path))
        with pytest.raises(EntraError) as caught:
            settings.client_credential()
        message = str(caught.value)
        assert message.startswith(f"the certificate_path file could not be read: {reason}")
        assert path not in message and caught.value.__cause__ is None and caught.value.__suppress_context__

    def test_certificate_path_without_a_key(self, tmp_path):
        other = tmp_path / "cert.pem"
        other.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
        settings = EntraConnectionSettings.from_connection(self.certificate_connection(certificate_path=str(other)))
        with pytest.raises(EntraError, match="holds no PEM private key"):
            settings.client_credential()
        binary = tmp_path / "key.der"
        binary.write_bytes(b"\x30\x82\xff\xfe")
        settings = EntraConnectionSettings.from_connection(self.certificate_connection(certificate_path=str(binary)))
        with pytest.raises(EntraError, match="not a PEM text file"):
            settings.client_credential()

    def test_airflow_redacts_the_private_key_in_the_rest_api(self):
        """The REST API's connection model runs Airflow's redact() on the extra: private_key is a sensitive name."""
        from airflow.api_fastapi.core_api.datamodels.connections import ConnectionResponse

        extra = {"tenant_id": "t", "private_key": self.PEM, "certificate_path": "/k.pem", "thumbprint": "ab"}
        response = ConnectionResponse.model_validate(
            {
                "connection_id": "aadsync_entra",
                "conn_type": "aadsync_entra",
                "extra": json.dumps(extra),
                "password": SECRET,
                **dict.fromkeys(("description", "host", "login", "schema", "port", "team_name")),
            }
        )
        shown = json.loads(response.extra)
        assert shown["private_key"] == "***" and shown["certificate_path"] == "/k.pem"
        assert response.password == "***"

    def test_connection_form_marks_the_private_key_as_a_password(self):
        from airflow_provider_aadsync.get_provider_info import get_provider_info

        (entra,) = [t for t in get_provider_info()["connection-types"] if t["connection-type"] == "aadsync_entra"]
        fields = entra["conn-fields"]
        assert fields["private_key"]["schema"]["format"] == "password"
        assert "certificate_path" in fields and "certificate" not in fields


class TestGraphHostPinning:
    def test_a_next_link_on_another_host_is_refused_and_the_token_never_sent(self, hook):
        seen = []

        def handler(request):
            seen.append((request.url.host, request.headers.get("Authorization")))
            page = {"value": [{"id": "1"}], "@odata.nextLink": "https://evil.example/v1.0/users?x=1"}
            return httpx.Response(200, json=page)

        use(hook, handler)
        pages = hook.paginate("/users")
        assert next(pages)["value"] == [{"id": "1"}]
        with pytest.raises(EntraError, match=r"refusing to send a request to https://evil.example: .*graph.test"):
            next(pages)
        assert seen == [("graph.test", "Bearer token")]

    @pytest.mark.parametrize(
        "link",
        [
            "http://graph.test/v1.0/users/delta?$deltatoken=x",  # TLS dropped
            "https://graph.test:8443/v1.0/users/delta?$deltatoken=x",  # another port
            "https://user:pw@graph.test.evil.example/v1.0/users/delta",
        ],
    )
    def test_a_stored_delta_link_elsewhere_is_refused(self, hook, link):
        use(hook, lambda request: pytest.fail("nothing may be sent"))
        with pytest.raises(EntraError, match="refusing to send") as caught:
            list(hook.delta_pages("users", ["id"], link))
        assert "pw" not in str(caught.value) and "deltatoken" not in str(caught.value)

    def test_links_on_the_graph_host_are_followed(self, hook):
        use(hook, lambda request: httpx.Response(200, json={"value": []}))
        assert hook.request("GET", "https://graph.test/v1.0/users?$skiptoken=a") == {"value": []}
        assert hook.request("GET", "https://graph.test:443/v1.0/users") == {"value": []}

    def test_a_non_microsoft_authority_is_warned_about(self, caplog, monkeypatch):
        hook = EntraHook(
            settings=EntraConnectionSettings(
                tenant_id="t", client_id="c", client_secret=SECRET, authority_host="https://login.example.org"
            )
        )
        made = {}
        monkeypatch.setattr(
            "airflow_provider_aadsync.hooks.entra.msal.ConfidentialClientApplication",
            lambda *args, **kwargs: made.update(kwargs) or object(),
        )
        with caplog.at_level("WARNING", logger="airflow_provider_aadsync.hooks.entra"):
            hook._msal_app  # noqa: B018 - the cached property builds the app
        assert made["validate_authority"] is False
        assert "authority host login.example.org is not a Microsoft sign-in host" in caplog.text
        assert SECRET not in caplog.text
