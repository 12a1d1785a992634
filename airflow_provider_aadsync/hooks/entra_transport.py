"""How the Entra hook talks HTTP: which failures are retried and how long to wait (Graph's ``Retry-After``), and
the requests session msal uses with a pinned CA bundle."""

from __future__ import annotations

import datetime as dt
import email.utils
import ssl

import httpx
import requests
import requests.adapters
from tenacity import RetryCallState, wait_random_exponential

from airflow_provider_aadsync.hooks.entra_settings import GraphError, GraphMalformedAnswerError, GraphThrottledError

#: HTTP statuses worth another try: throttling and transient server trouble.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class PinnedCASession(requests.Session):
    """A requests session for msal whose CA bundle wins over REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE.

    requests lets those environment variables replace a session's ``verify``; with a private CA (an on-premises
    proxy, the Graph emulator) that would silently trust the wrong bundle and fail, or worse, the reverse.
    """

    def __init__(self, ca_bundle: str, timeout: float):
        super().__init__()
        self.verify = ca_bundle
        self.timeout = timeout
        # as msal's own session does: one retry on connection errors
        self.mount("https://", requests.adapters.HTTPAdapter(max_retries=1))

    def request(self, method, url, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        settings["verify"] = self.verify
        return settings


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds (what Graph sends) or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0.0)


def retry_wait(state: RetryCallState) -> float:
    """Honour Graph's Retry-After exactly; otherwise back off exponentially with jitter."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, GraphError) and error.retry_after is not None:
        return error.retry_after
    return wait_random_exponential(multiplier=0.5, max=30)(state)


def retryable(error: BaseException) -> bool:
    if isinstance(error, GraphThrottledError):
        return False
    if isinstance(error, GraphMalformedAnswerError):  # a cut-off read may read whole next time; a write is not resent
        return error.method == "GET"
    if isinstance(error, GraphError):
        return error.status in RETRYABLE_STATUSES
    return isinstance(error, httpx.TransportError) and not certificate_rejected(error)


def certificate_rejected(error: BaseException) -> bool:
    """Whether TLS refused the server's certificate (httpx → httpcore → ssl): the next attempt would fail alike."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


#: Transport errors raised before the request reached Graph: sending again cannot do anything twice.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def retryable_when_sent_once(error: BaseException) -> bool:
    """For writes that are not idempotent: a dropped connection after sending is not retried blindly."""
    if isinstance(error, httpx.TransportError):
        return isinstance(error, NOT_SENT) and retryable(error)
    return retryable(error)
