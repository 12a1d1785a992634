"""The EntraHook against the Graph emulator over TLS: msal tokens, Graph reads and writes, errors, paging."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization

from airflow_provider_aadsync.hooks.entra import BatchRequest, EntraHook
from airflow_provider_aadsync.hooks.entra_settings import (
    EntraAuthError,
    EntraConnectionSettings,
    GraphError,
    GraphThrottledError,
    GraphUnreachableError,
)
from tests.support.servers import (
    GRAPH_CLIENT_ID,
    GRAPH_SECRET,
    entra_connection,
    entra_hook_for,
    self_signed_certificate,
    trust,
)


@pytest.fixture(autouse=True)
def machine_wide_ca_bundle(monkeypatch):
    """This machine points REQUESTS_CA_BUNDLE at the system bundle; the hook must still trust its own CA."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")


def test_connection_from_airflow_environment(graph_server, graph_tenant, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AADSYNC_ENTRA", entra_connection(graph_server, graph_tenant).as_json())
    ok, message = EntraHook().test_connection()
    assert ok, message
    assert graph_tenant["id"] in message


def test_wrong_secret_is_a_clear_auth_error_without_the_secret(graph_server, graph_tenant):
    hook = entra_hook_for(graph_server, graph_tenant, secret="not-the-secret")
    with pytest.raises(EntraAuthError, match="invalid_client: AADSTS7000215") as caught:
        hook.get_token()
    assert "not-the-secret" not in str(caught.value)
    ok, message = hook.test_connection()
    assert not ok and "invalid_client" in message


def test_writes_reads_errors_and_paging(graph_server, graph_tenant):
    hook = entra_hook_for(graph_server, graph_tenant)
    domain = graph_tenant["initialDomain"]
    for number in range(250):
        hook.request(
            "POST",
            "/users",
            json={
                "accountEnabled": True,
                "displayName": f"User {number}",
                "mailNickname": f"user{number}",
                "userPrincipalName": f"user{number}@{domain}",
                "passwordProfile": {"password": "Xy!12345678abc"},
            },
        )
    pages = list(hook.paginate("/users", params={"$select": "id,userPrincipalName", "$top": "100"}))
    assert [len(page["value"]) for page in pages] == [100, 100, 50]
    assert len({user["id"] for page in pages for user in page["value"]}) == 250
    with pytest.raises(GraphError) as caught:
        hook.request(
            "POST",
            "/users",
            json={
                "accountEnabled": True,
                "displayName": "Dup",
                "mailNickname": "dup",
                "userPrincipalName": f"user1@{domain}",
                "passwordProfile": {"password": "Xy!12345678abc"},
            },
        )
    assert caught.value.status == 400 and caught.value.code == "Request_BadRequest"
    assert "userPrincipalName already exists" in caught.value.graph_message and caught.value.request_id
    with pytest.raises(GraphError) as missing:
        hook.request("GET", "/users/00000000-0000-0000-0000-000000000000")
    assert (missing.value.status, missing.value.code) == (404, "Request_ResourceNotFound")
    assert hook.counters["requests"] >= 254


def test_certificate_credential(graph_server, graph_tenant, tmp_path):
    """The hook signs in with the app's certificate (private key file + thumbprint) instead of a secret."""
    private, cert = self_signed_certificate("aadsync-hook")
    key_file = tmp_path / "app.key"
    key_file.write_text(private)
    registered = httpx.post(
        f"{graph_server.base_url}/_emulator/tenants/{graph_tenant['id']}/apps/{GRAPH_CLIENT_ID}/certificates",
        json={"certificate": cert.public_bytes(serialization.Encoding.PEM).decode()},
        verify=trust(graph_server),
    )
    assert registered.status_code == 201, registered.text
    connection = entra_connection(graph_server, graph_tenant)
    connection.password = None
    extra = {
        **connection.extra_dejson,
        "certificate_path": str(key_file),
        "thumbprint": cert.fingerprint(hashes.SHA1()).hex(),
    }  # noqa: S303 - Entra's thumbprint
    connection.extra = json.dumps(extra)
    hook = EntraHook(settings=EntraConnectionSettings.from_connection(connection))
    ok, message = hook.test_connection()
    assert ok, message


def test_unreachable_graph_is_a_clear_error(graph_server, graph_tenant, unused_tcp_port):
    connection = entra_connection(graph_server, graph_tenant)
    extra = {**connection.extra_dejson, "authority_host": f"https://127.0.0.1:{unused_tcp_port}"}
    connection.extra = json.dumps(extra)
    hook = EntraHook(settings=EntraConnectionSettings.from_connection(connection))
    ok, message = hook.test_connection()
    assert not ok and f"127.0.0.1:{unused_tcp_port}" in message


def test_unreachable_graph_url_names_the_host(graph_server, graph_tenant, unused_tcp_port):
    """The authority answers (a token is issued) but nothing listens at the Graph URL."""
    connection = entra_connection(graph_server, graph_tenant)
    connection.extra = json.dumps({**connection.extra_dejson, "graph_url": f"https://127.0.0.1:{unused_tcp_port}"})
    settings = EntraConnectionSettings.from_connection(connection).model_copy(update={"max_attempts": 2})
    hook = EntraHook(settings=settings)
    with pytest.raises(GraphUnreachableError, match=rf"no answer from Graph at https://127.0.0.1:{unused_tcp_port}: "):
        hook.request("GET", "/organization")
    ok, message = hook.test_connection()
    assert not ok and f"127.0.0.1:{unused_tcp_port}" in message


def test_tls_verification_stays_on_without_the_emulators_ca(graph_server, graph_tenant):
    """No ca_bundle: the emulator's private CA is not trusted, by msal nor by the Graph client."""
    connection = entra_connection(graph_server, graph_tenant)
    connection.extra = json.dumps({key: value for key, value in connection.extra_dejson.items() if key != "ca_bundle"})
    hook = EntraHook(settings=EntraConnectionSettings.from_connection(connection))
    ok, message = hook.test_connection()  # msal's token request fails first
    assert not ok and "CERTIFICATE_VERIFY_FAILED" in message
    # the Graph client on its own, with a valid token from a hook that trusts the CA
    hook.get_token = entra_hook_for(graph_server, graph_tenant).get_token
    with pytest.raises(GraphUnreachableError, match="CERTIFICATE_VERIFY_FAILED"):
        hook.request("GET", "/organization")
    assert hook.counters["retries"] == 0  # not a transient error: no retries


def test_token_comes_from_the_cache_until_it_is_about_to_expire(graph_server, graph_tenant, emulator_settings_for):
    def token_requests() -> int:
        counters = httpx.get(f"{graph_server.base_url}/_emulator/counters", verify=trust(graph_server)).json()
        return sum(count for route, count in counters["requests"].items() if route.endswith("/token"))

    hook = entra_hook_for(graph_server, graph_tenant)
    before = token_requests()
    for _ in range(5):
        hook.request("GET", "/organization")
    assert token_requests() - before == 1  # one token (an hour's) for five requests
    # Tokens that expire within minutes are not served from msal's cache: each request gets a fresh one,
    # so a long import never sends an expired token.
    emulator_settings_for(graph_server, tokenLifetimeSeconds=2)
    hook = entra_hook_for(graph_server, graph_tenant)
    before = token_requests()
    hook.request("GET", "/organization")
    time.sleep(2.5)  # the first token has expired
    assert hook.request("GET", "/organization")["value"]
    assert token_requests() - before == 2


def test_no_secret_or_token_in_logs(graph_server, graph_tenant, caplog, emulator_settings_for, quick_backoff):
    emulator_settings_for(graph_server, faultRatio5xx=0.5, faultRetryAfterSeconds=0, randomSeed=3)
    hook = entra_hook_for(graph_server, graph_tenant)
    with caplog.at_level("DEBUG"):
        pages = list(hook.paginate("/users", params={"$top": "5"}))
        token = hook.get_token()
    assert pages and hook.counters["retries"] >= 1
    assert GRAPH_SECRET not in caplog.text and token not in caplog.text


def new_user(request_id: str, number: int, domain: str) -> BatchRequest:
    return BatchRequest(request_id, "POST", "/users", {
        "accountEnabled": True, "displayName": f"Batch {number}", "mailNickname": f"batch{number}",
        "userPrincipalName": f"batch{number}@{domain}", "passwordProfile": {"password": "Xy!12345678abc"}})  # fmt: skip


def test_batch_splits_into_twenties_and_keeps_dependencies(graph_server, graph_tenant):
    hook = entra_hook_for(graph_server, graph_tenant)
    domain = graph_tenant["initialDomain"]
    requests = [new_user(f"u{n}", n, domain) for n in range(45)]
    requests.append(BatchRequest("read", "GET", f"/users/batch44@{domain}?$select=id,displayName", depends_on=("u44",)))
    requests.append(BatchRequest("bad", "POST", "/users", {"displayName": "no UPN"}))
    requests.append(BatchRequest("child", "GET", "/users?$top=1", depends_on=("bad",)))
    results = hook.batch(requests)
    assert all(results[f"u{n}"].status == 201 for n in range(45))
    assert results["read"].ok and results["read"].body["displayName"] == "Batch 44"
    assert results["bad"].status == 400 and results["bad"].body["error"]["code"] == "Request_BadRequest"
    assert results["child"].status == 424
    # 47 requests sent, 20 per call; "read" waits for the call after u44's (Graph takes no mixed batches, and
    # the emulator refuses them as Graph does); "child" is answered 424 without being sent
    assert hook.counters["batch_requests"] == 4 and hook.counters["batch_items"] == 47


def test_batch_under_write_throttling_loses_nothing(graph_server, graph_tenant, emulator_settings_for):
    emulator_settings_for(graph_server, throttlingEnabled=True, throttleAppWrites=15, throttleAppWriteWindowSeconds=1)
    hook = entra_hook_for(graph_server, graph_tenant)
    results = hook.batch([new_user(f"u{n}", n, graph_tenant["initialDomain"]) for n in range(60)])
    assert sorted({result.status for result in results.values()}) == [201]
    assert hook.counters["throttled"] >= 1 and hook.counters["retry_wait_seconds"] >= 1
    listed = [user for page in hook.paginate("/users", params={"$select": "id", "$top": "999"})
              for user in page["value"]]  # fmt: skip
    assert len(listed) == 60


# ------------------------------------------------------------------------------------------------ throttling
#: The emulator's identity-and-access throttling at one resource unit per second: one GET by id passes a second.
ONE_UNIT_PER_SECOND = {"throttlingEnabled": True, "throttleResourceUnits": 1, "throttleResourceWindowSeconds": 1}


def emulator_counters(graph_server) -> dict:
    return httpx.get(f"{graph_server.base_url}/_emulator/counters", verify=trust(graph_server)).json()


def graph_requests(graph_server, route: str) -> int:
    """How many requests the emulator has answered on ``route`` ("GET /v1.0/organization")."""
    return emulator_counters(graph_server)["requests"].get(route, 0)


def hook_with(graph_server, graph_tenant, **settings) -> EntraHook:
    """A hook with these settings, holding its token already (the weather the tests set is for Graph requests)."""
    hook = EntraHook(settings=entra_hook_for(graph_server, graph_tenant).settings.model_copy(update=settings))
    hook.get_token()
    return hook


def test_throttling_does_not_use_up_the_attempts_meant_for_faults(
    graph_server, graph_tenant, emulator_settings_for, quick_backoff
):
    """Graph's throttling guidance: wait Retry-After and try again while throttled. Five 429s in a row are waited
    out by a hook allowed two attempts; two dropped connections (faults) are not."""
    hook = hook_with(graph_server, graph_tenant, max_attempts=2)
    route = "GET /v1.0/organization"
    before = graph_requests(graph_server, route)
    emulator_settings_for(graph_server, faultNext429=5, faultRetryAfterSeconds=0)
    assert hook.request("GET", "/organization")["value"]
    assert graph_requests(graph_server, route) - before == 6
    assert (hook.counters["throttled"], hook.counters["retries"]) == (5, 5)

    emulator_settings_for(graph_server, faultDropRatio=1.0)
    before = graph_requests(graph_server, route)
    with pytest.raises(GraphUnreachableError, match="no answer from Graph"):
        hook.request("GET", "/organization")
    assert graph_requests(graph_server, route) - before == 2  # max_attempts


def test_batch_requests_throttled_more_often_than_max_attempts_still_succeed(
    graph_server, graph_tenant, emulator_settings_for
):
    """One resource unit per second (the emulator's identity-and-access throttling): of three GETs in a $batch one
    passes per call, so the third is throttled twice, with one attempt allowed against faults."""
    hook = hook_with(graph_server, graph_tenant, max_attempts=1)
    domain = graph_tenant["initialDomain"]
    made = hook.batch([new_user(f"u{n}", n, domain) for n in range(3)])
    ids = [made[f"u{n}"].body["id"] for n in range(3)]
    emulator_settings_for(graph_server, **ONE_UNIT_PER_SECOND)
    throttled = emulator_counters(graph_server)["429"]
    results = hook.batch([BatchRequest(f"r{n}", "GET", f"/users/{user}?$select=id") for n, user in enumerate(ids)])
    assert all(results[f"r{n}"].ok for n in range(3)) and [results[f"r{n}"].body["id"] for n in range(3)] == ids
    assert hook.counters["batch_requests"] >= 1 + 3  # the last GET went out in three calls: throttled twice
    assert hook.counters["throttled"] == emulator_counters(graph_server)["429"] - throttled >= 3
    assert hook.counters["retry_wait_seconds"] >= 2


def test_throttling_past_max_throttle_wait_stops_with_a_clear_error(graph_server, graph_tenant, emulator_settings_for):
    """A tenant that throttles for ever: the request stops once waiting would pass max_throttle_wait, saying so."""
    hook = hook_with(graph_server, graph_tenant, max_throttle_wait=1.5)
    domain = graph_tenant["initialDomain"]
    made = hook.batch([new_user(f"u{n}", n, domain) for n in range(3)])
    emulator_settings_for(graph_server, faultRatio429=1.0, faultRetryAfterSeconds=1)
    with pytest.raises(
        GraphThrottledError,
        match=r"GET https://127\.0\.0\.1:\d+/v1\.0/organization → 429 TooManyRequests: .*; Graph has throttled this "
        r"request 2 times in 1 s and asks to wait 1 s more, past max_throttle_wait \(1\.5 s\)",
    ):
        hook.request("GET", "/organization")
    assert hook.counters["throttled"] == 1 and hook.counters["retry_wait_seconds"] == 1

    # a $batch: one GET passes per second, and the one throttled twice stops the batch the same way
    emulator_settings_for(graph_server, faultRatio429=0, **ONE_UNIT_PER_SECOND)
    ids = [made[f"u{n}"].body["id"] for n in range(3)]
    with pytest.raises(
        GraphThrottledError, match=r"GET /users/[0-9a-f-]+ → 429 TooManyRequests: .*past max_throttle_wait \(1\.5 s\)"
    ):
        hook.batch([BatchRequest(f"r{n}", "GET", f"/users/{user}?$select=id") for n, user in enumerate(ids)])
