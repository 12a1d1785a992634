"""How the Entra hook talks HTTP: which failures are retried, how long to wait (Graph's ``Retry-After``) and for how
long (:class:`RetryBudget`), and the requests session msal uses with a pinned CA bundle."""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import ssl
import time

import httpx
import requests
import requests.adapters

from airflow_provider_aadsync.hooks.entra_settings import GraphError, GraphMalformedAnswerError, GraphThrottledError

#: HTTP statuses worth another try: throttling and transient server trouble.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Faults after which a write may have been carried out: the server failed midway (500), or a gateway gave up
#: waiting for it (502, 504). A create answered so is looked up, never sent again blindly (a group sent twice is two
#: groups: Graph keeps no key unique for groups). 503 is not among them: Graph answers it to a request it did not take
#: (unavailable, or throttling with a Retry-After), and 429 is never carried out.
OUTCOME_UNKNOWN_STATUSES = frozenset({500, 502, 504})


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


def throttling(status: int | None, retry_after: float | None) -> bool:
    """Whether an answer is Graph throttling rather than a fault: a 429, or a 503 whose ``Retry-After`` asks for a
    wait. A 503 without one, or with ``Retry-After: 0`` (come back at once), is a fault: it counts against
    ``max_attempts``, so a service that is down ends the run after a few tries instead of being hammered without a
    pause until the throttling budget runs out."""
    return status == 429 or (status == 503 and retry_after is not None and retry_after > 0)


#: The longest wait a backoff picks (Graph named none): a fault's, or throttling's without a ``Retry-After``.
BACKOFF_CAP_SECONDS = 30.0
#: The shortest wait after throttling that named no wait (no ``Retry-After``, ``Retry-After: 0``, or one that does not
#: parse): Graph's guidance is to avoid immediate retries, which accrue against the limits that throttled.
THROTTLE_FLOOR_SECONDS = 1.0
#: The longest wait picked at random after a request's first fault (Graph named no wait); it doubles per fault.
FAULT_BACKOFF_FIRST_SECONDS = 0.5


def backoff(failures: int, cap: float = BACKOFF_CAP_SECONDS) -> float:
    """The wait after a request's ``failures``-th fault when Graph named none: random, up to
    :data:`FAULT_BACKOFF_FIRST_SECONDS` doubling per failure, at most ``cap`` (full jitter: requests that failed
    together do not come back together)."""
    return random.uniform(0.0, min(cap, FAULT_BACKOFF_FIRST_SECONDS * 2.0 ** min(failures - 1, 32)))


def throttle_backoff(throttled: int, cap: float = BACKOFF_CAP_SECONDS) -> float:
    """The wait after a request's ``throttled``-th throttling when Graph named no wait: never less than
    :data:`THROTTLE_FLOOR_SECONDS`, doubling per throttling of the same request, up to half as much again at random
    (requests throttled together do not come back together), at most ``cap`` (a ``max_retry_wait`` below the floor
    wins). Graph's guidance: without a
    ``Retry-After``, back off exponentially, never resend at once."""
    return min(cap, THROTTLE_FLOOR_SECONDS * 2.0 ** min(throttled - 1, 32) * random.uniform(1.0, 1.5))


def writes_in(url: str, body: object) -> int:
    """The writes one send of a request other than GET carries: the items of a ``$batch`` that are not GETs, else
    one. Graph charges each to the app's and tenant's write budget every time it is sent."""
    if url.split("?", 1)[0].endswith("/$batch") and isinstance(body, dict):
        items = body.get("requests")
        return sum(1 for item in items if not isinstance(item, dict) or item.get("method") != "GET") if items else 0
    return 1


class RetryBudget:
    """Whether, and after how long, one request (or one request of a ``$batch``) is sent again.

    Faults (a 5xx that is not throttling, a dropped connection, a cut-off read) count against ``max_attempts``.
    Throttling does not: Graph's throttling guidance is to wait ``Retry-After`` and try again for as long as it
    throttles, and a busy tenant throttles one request many times in a row, so counting it would fail a long export
    on throttling alone. ``max_throttle_wait`` bounds it instead: the time the request has spent throttled (its
    waits, or the time since its first throttled answer when that is longer, so even ``Retry-After: 0`` ends), and
    a tenant that throttles for ever still stops the run, with an error saying how long it waited. Throttling that
    names no wait (no ``Retry-After``, or ``Retry-After: 0``) is backed off (:func:`throttle_backoff`), never resent at
    once, so the requests within that budget stay few. A backoff never picks more than ``max_wait`` (the connection's
    ``max_retry_wait``): only Graph's own ``Retry-After`` can ask for more, and stop the run on it.
    """

    def __init__(self, max_attempts: int, max_throttle_wait: float, max_wait: float = BACKOFF_CAP_SECONDS) -> None:
        self.max_attempts = max_attempts
        self.max_throttle_wait = max_throttle_wait
        self.cap = min(BACKOFF_CAP_SECONDS, max_wait)
        self.faults = 0
        self.throttled = 0
        self.waited = 0.0  # the throttling waits only
        self._first_throttled: float | None = None

    def next_wait(self, error: BaseException) -> float | None:
        """Seconds to wait before sending the request again after ``error`` (one worth retrying): Graph's
        ``Retry-After`` when it asked for a wait, else :func:`backoff` (a fault) or :func:`throttle_backoff`; None
        when faults have used up ``max_attempts``.

        :raise GraphThrottledError: waiting would make the request's throttling outlast ``max_throttle_wait``.
        """
        status = error.status if isinstance(error, GraphError) else None
        retry_after = error.retry_after if isinstance(error, GraphError) else None
        if not isinstance(error, GraphError) or not throttling(status, retry_after):
            self.faults += 1  # the backoff grows with the faults only: Graph's waits say nothing about them
            if self.faults >= self.max_attempts:
                return None
            return retry_after or backoff(self.faults, self.cap)  # Retry-After: 0 is no wait named
        self.throttled += 1
        wait = retry_after or throttle_backoff(self.throttled, self.cap)
        now = time.monotonic()
        if self._first_throttled is None:
            self._first_throttled = now
        spent = max(self.waited, now - self._first_throttled)
        if spent + wait > self.max_throttle_wait:
            message = (
                f"{error.graph_message}; Graph has throttled this request {self.throttled} times in {spent:.0f} s "
                f"and asks to wait {wait:.0f} s more, past max_throttle_wait ({self.max_throttle_wait:g} s): "
                "stopped instead of holding the worker, run again later (or raise max_throttle_wait)"
            )
            raise GraphThrottledError(
                error.status, error.code, message, request_id=error.request_id, method=error.method, url=error.url,
                retry_after=retry_after,
            ) from error  # fmt: skip
        self.waited += wait
        return wait


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
    """For writes that are not idempotent: a dropped connection after sending, or a fault after which the write may
    have been carried out (:data:`OUTCOME_UNKNOWN_STATUSES`), is not retried blindly."""
    if isinstance(error, httpx.TransportError):
        return isinstance(error, NOT_SENT) and retryable(error)
    return retryable(error) and not outcome_unknown(error)


def outcome_unknown(error: BaseException) -> bool:
    """Whether ``error`` is a Graph answer after which a write may or may not have been carried out."""
    return (
        isinstance(error, GraphError)
        and not isinstance(error, GraphThrottledError)
        and error.status in OUTCOME_UNKNOWN_STATUSES
    )
