"""EntraHook: a Microsoft Graph client for Entra ID (msal client credentials + httpx), per national cloud.

Thin and reusable: it knows clouds, tokens, paging, retries and Graph's error bodies; what to read or write is the
engine's business. Production code talks to Graph's URLs; the Graph emulator is reached only through the
connection's authority/Graph URL overrides and CA bundle.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import errno
import graphlib
import json
import logging
import os
import ssl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import httpx
import msal
import msgspec
import requests
import requests.adapters
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

try:  # Airflow 3 task SDK
    from airflow.sdk import BaseHook
except ImportError:  # pragma: no cover - Airflow is a hard dependency, this only helps static tools
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef]

from airflow_provider_aadsync.engine.runs.source import BatchRequest, WatermarkRejectedError, WriteOutcomeUnknownError
from airflow_provider_aadsync.engine.secrets import scrub
from airflow_provider_aadsync.hooks._settings import describe_validation_error, keep_secret, keep_secrets

if TYPE_CHECKING:
    from airflow.sdk import Connection

log = logging.getLogger(__name__)

#: HTTP statuses worth another try: throttling and transient server trouble.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Cloud:
    """The endpoints of one national cloud."""

    name: str
    authority_host: str
    graph_url: str


CLOUDS: dict[str, Cloud] = {
    "global": Cloud("global", "https://login.microsoftonline.com", "https://graph.microsoft.com"),
    "china": Cloud("china", "https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),
    "usgov": Cloud("usgov", "https://login.microsoftonline.us", "https://graph.microsoft.us"),
    "usgov-dod": Cloud("usgov-dod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
}
#: Hosts for which msal's authority validation and instance discovery stay on.
MICROSOFT_AUTHORITY_HOSTS = frozenset(urlsplit(cloud.authority_host).hostname for cloud in CLOUDS.values())
RETIRED_CLOUDS = {
    "germany": "the Microsoft Cloud Deutschland (Germany) was retired in October 2021 and the V2 sync endpoint was "
    "never offered there; migrate the tenant to the global cloud and set cloud to 'global'",
}


class EntraError(Exception):
    """Base class: an Entra ID / Graph operation failed; the message names the cause, never a secret."""


class EntraAuthError(EntraError):
    """Raised when no token can be obtained (wrong secret, unknown tenant or app, unreachable authority)."""


class GraphError(EntraError):
    """Raised for a Graph error answer; carries Graph's status, error code and request id."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        request_id: str | None = None,
        method: str = "",
        url: str = "",
        retry_after: float | None = None,
    ):
        super().__init__(
            f"{method} {url} → {status} {code}: {message}" + (f" (request-id {request_id})" if request_id else "")
        )
        self.status = status
        self.code = code
        self.graph_message = message
        self.request_id = request_id
        self.retry_after = retry_after


class GraphHostError(EntraError):
    """Raised before sending a request to a URL outside the configured Graph host (a ``@odata.nextLink`` or a saved
    delta link on another host): the bearer token only ever goes to Graph."""


class GraphThrottledError(GraphError):
    """Raised when Graph asks to wait (``Retry-After``) longer than the connection's ``max_retry_wait``: the run
    stops and says so instead of holding a worker for that long; the next run picks up where it stopped."""


class GraphMalformedAnswerError(EntraError):
    """Raised when an answer is not Graph's JSON: cut off, an HTML page from a proxy or gateway, or a collection
    page without its ``value`` array or an item without its string ``id``."""

    def __init__(self, message: str, *, method: str = ""):
        super().__init__(message)
        self.method = method


class GraphUnreachableError(EntraError):
    """Raised when Graph gave no answer (refused, timed out, TLS failure, connection cut) after the retries."""


class DeltaLinkExpired(EntraError, WatermarkRejectedError):
    """Raised when Graph no longer accepts a saved delta link; the import falls back to a full one."""


#: Graph's error codes for delta state it no longer has (tokens expire after 7 days for directory objects).
DELTA_STATE_LOST_CODES = frozenset({"syncStateNotFound", "resyncRequired", "syncStateInvalid"})


#: What every PEM private key block's header contains (PKCS#8 "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY").
PEM_PRIVATE_KEY = "PRIVATE KEY-----"

#: Graph's limit of requests in one JSON batch.
BATCH_LIMIT = 20


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


class EntraConnectionSettings(BaseModel):
    """Validated settings of an ``aadsync_entra`` connection (client secret kept as a SecretStr)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    #: Certificate credential instead of a secret: the private key as PEM text (``private_key``: a name Airflow's
    #: ``redact()`` masks in the UI, the REST API and logs) or a PEM file (``certificate_path``), and its SHA-1
    #: thumbprint. PEM text and a path are separate fields so a key is never taken for a path and quoted by an OS
    #: error.
    private_key: SecretStr | None = None
    certificate_path: str | None = None
    thumbprint: str | None = None
    cloud: Literal["global", "china", "usgov", "usgov-dod"] = "global"
    authority_host: str | None = None
    graph_url: str | None = None
    ca_bundle: str | None = None
    timeout: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=6, ge=1, le=20)
    #: The longest Retry-After the hook waits out; a longer one stops the run with GraphThrottledError.
    max_retry_wait: float = Field(default=300.0, gt=0)

    @field_validator("cloud", mode="before")
    @classmethod
    def _known_cloud(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            if value in RETIRED_CLOUDS:
                raise ValueError(f"cloud {value!r} is refused: {RETIRED_CLOUDS[value]}")
        return value

    @field_validator("authority_host", "graph_url", mode="before")
    @classmethod
    def _https_url(cls, value: Any) -> Any:
        if isinstance(value, str) and value:
            if not value.startswith("https://"):
                raise ValueError(f"must be an https:// URL (msal and Graph require TLS), got {value!r}")
            return value.rstrip("/")
        return value or None

    @model_validator(mode="before")
    @classmethod
    def _no_ambiguous_certificate(cls, values: Any) -> Any:
        """The old ``certificate`` extra held PEM text or a path, guessed by a header: refused, never guessed."""
        if isinstance(values, dict) and values.get("certificate") not in (None, ""):
            raise ValueError(
                "the 'certificate' extra is no longer read (it mixed a private key and a file path): put the PEM "
                "private key in the 'private_key' extra (masked by Airflow) or the path of a PEM key file in "
                "'certificate_path', then remove 'certificate'"
            )
        return values

    @model_validator(mode="after")
    def _one_credential(self) -> EntraConnectionSettings:
        secret = self.client_secret.get_secret_value() if self.client_secret else ""
        key = self.private_key.get_secret_value() if self.private_key else ""
        keep_secrets([secret, key])
        certificate = bool(key) or bool(self.certificate_path)
        if key and self.certificate_path:
            raise ValueError("give the private key either as PEM text (private_key) or as a file (certificate_path)")
        if bool(secret) == certificate:
            raise ValueError(
                "give either a client secret (password) or a certificate (private_key or certificate_path, with its "
                "thumbprint), not both"
            )
        if certificate and not self.thumbprint:
            raise ValueError("a thumbprint is required with a certificate")
        if key and PEM_PRIVATE_KEY not in key:
            raise ValueError(
                "private_key must be the PEM text of the key (a '-----BEGIN ... PRIVATE KEY-----' block); "
                "for a key file, set certificate_path instead"
            )
        if secret and any(secret in (url or "") for url in (self.authority_host, self.graph_url)):
            raise ValueError("the client secret must not appear in a URL")
        return self

    def client_credential(self) -> str | dict[str, str]:
        """What msal takes: the secret, or the certificate's private key and thumbprint.

        :raise EntraError: the ``certificate_path`` file cannot be read or holds no PEM private key; the message
            names the field and the OS error's name, never the path's text or the file's content.
        """
        if self.client_secret and self.client_secret.get_secret_value():
            return self.client_secret.get_secret_value()
        assert self.thumbprint is not None
        key = self.private_key.get_secret_value() if self.private_key else self.read_key_file()
        return {"private_key": key, "thumbprint": self.thumbprint.replace(":", "")}

    def read_key_file(self) -> str:
        """The PEM text of the ``certificate_path`` file, registered as a secret before anything else sees it."""
        assert self.certificate_path is not None
        try:
            key = Path(self.certificate_path).read_text(encoding="utf-8")
        except OSError as error:
            reason = errno.errorcode.get(error.errno or 0, type(error).__name__)
            raise EntraError(
                f"the certificate_path file could not be read: {reason} ({os.strerror(error.errno)})"
                if error.errno
                else f"the certificate_path file could not be read: {reason}"
            ) from None
        except (UnicodeDecodeError, ValueError):
            raise EntraError("the certificate_path file is not a PEM text file") from None
        keep_secret(key)
        if PEM_PRIVATE_KEY not in key:
            raise EntraError("the certificate_path file holds no PEM private key ('-----BEGIN ... PRIVATE KEY-----')")
        return key

    @property
    def endpoints(self) -> Cloud:
        cloud = CLOUDS[self.cloud]
        return Cloud(self.cloud, self.authority_host or cloud.authority_host, self.graph_url or cloud.graph_url)

    @property
    def authority(self) -> str:
        return f"{self.endpoints.authority_host}/{self.tenant_id}"

    @property
    def scope(self) -> str:
        """Tokens are always asked for the cloud's own Graph resource, also when Graph's URL is overridden."""
        return f"{CLOUDS[self.cloud].graph_url}/.default"

    @classmethod
    def from_connection(cls, connection: Connection) -> EntraConnectionSettings:
        extra = {key: value for key, value in connection.extra_dejson.items() if value not in (None, "")}
        try:
            return cls(client_id=connection.login or "", client_secret=connection.password or None, **extra)
        except ValidationError as error:
            problems = describe_validation_error(error)
            raise EntraError(f"connection {connection.conn_id!r} is not usable: {problems}") from None


class _PinnedCASession(requests.Session):
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


def _retry_after(state: RetryCallState) -> float:
    """Honour Graph's Retry-After exactly; otherwise back off exponentially with jitter."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, GraphError) and error.retry_after is not None:
        return error.retry_after
    return wait_random_exponential(multiplier=0.5, max=30)(state)


def _retryable(error: BaseException) -> bool:
    if isinstance(error, GraphThrottledError):
        return False
    if isinstance(error, GraphMalformedAnswerError):  # a cut-off read may read whole next time; a write is not resent
        return error.method == "GET"
    if isinstance(error, GraphError):
        return error.status in RETRYABLE_STATUSES
    return isinstance(error, httpx.TransportError) and not _certificate_rejected(error)


def _certificate_rejected(error: BaseException) -> bool:
    """Whether TLS refused the server's certificate (httpx → httpcore → ssl): the next attempt would fail alike."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


#: Transport errors raised before the request reached Graph: sending again cannot do anything twice.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _retryable_when_sent_once(error: BaseException) -> bool:
    """For writes that are not idempotent: a dropped connection after sending is not retried blindly."""
    if isinstance(error, httpx.TransportError):
        return isinstance(error, _NOT_SENT) and _retryable(error)
    return _retryable(error)


class EntraHook(BaseHook):
    """Interact with Entra ID through Microsoft Graph.

    :param entra_conn_id: the ``aadsync_entra`` connection to use (default ``aadsync_entra``).
    :param settings: ready settings instead of a connection (the CLI and tests use this).
    """

    conn_name_attr = "entra_conn_id"
    default_conn_name = "aadsync_entra"
    conn_type = "aadsync_entra"
    hook_name = "Entra ID (AADSync)"

    def __init__(self, entra_conn_id: str = default_conn_name, *, settings: EntraConnectionSettings | None = None):
        super().__init__()
        self.entra_conn_id = entra_conn_id
        self._settings = settings
        self.counters: dict[str, float] = {"requests": 0, "retries": 0, "throttled": 0, "retry_wait_seconds": 0.0}

    @cached_property
    def settings(self) -> EntraConnectionSettings:
        if self._settings is not None:
            return self._settings
        return EntraConnectionSettings.from_connection(self.get_connection(self.entra_conn_id))

    @cached_property
    def _msal_app(self) -> msal.ConfidentialClientApplication:
        """Created lazily and once: msal makes a network call when the app is constructed."""
        settings = self.settings
        authority_host = urlsplit(settings.endpoints.authority_host).hostname
        microsoft = authority_host in MICROSOFT_AUTHORITY_HOSTS
        if not microsoft:
            log.warning(
                "authority host %s is not a Microsoft sign-in host: msal's authority validation and instance "
                "discovery are off for it; use it only for a host you trust (the Graph emulator, a test authority)",
                authority_host,
            )
        credential = settings.client_credential()  # its own clear error (an unreadable key file), never wrapped
        try:
            return msal.ConfidentialClientApplication(
                settings.client_id,
                client_credential=credential,
                authority=settings.authority,
                validate_authority=microsoft,
                instance_discovery=microsoft,
                http_client=_PinnedCASession(settings.ca_bundle, settings.timeout) if settings.ca_bundle else None,
                timeout=settings.timeout,
            )
        except ValueError as error:  # msal raises ValueError when tenant discovery fails
            raise EntraAuthError(f"authority {settings.authority} is not usable: {error}") from None
        except Exception as error:
            raise EntraAuthError(f"could not reach the authority {settings.authority}: {error}") from None

    def _drop_cached_tokens(self) -> None:
        """Forget msal's cached access tokens (Graph refused one), so the next get_token asks for a new one."""
        if "_msal_app" in self.__dict__:
            cache = self._msal_app.token_cache
            for entry in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(entry)

    def get_token(self) -> str:
        """An access token for Graph, from msal's cache while valid."""
        result = self._msal_app.acquire_token_for_client(scopes=[self.settings.scope])
        if "access_token" not in result:
            description = (result.get("error_description") or "").splitlines()[0]
            raise EntraAuthError(
                f"no token for client {self.settings.client_id} in tenant {self.settings.tenant_id}: "
                f"{result.get('error')}: {description}"
            )
        token = result["access_token"]
        if token != self.__dict__.get("_kept_token"):  # a new token (msal's cache hands back the same one)
            keep_secret(token)
            self._kept_token = token
        return token

    @cached_property
    def _http(self) -> httpx.Client:
        settings = self.settings
        return httpx.Client(
            base_url=f"{settings.endpoints.graph_url}/v1.0",
            verify=ssl.create_default_context(cafile=settings.ca_bundle) if settings.ca_bundle else True,
            timeout=settings.timeout,
            headers={"Accept": "application/json"},
        )

    def get_conn(self) -> httpx.Client:
        return self._http

    def close(self) -> None:
        if "_http" in self.__dict__:
            self._http.close()
            del self.__dict__["_http"]

    def test_connection(self) -> tuple[bool, str]:
        """Get a token and read /organization; never raises."""
        try:
            organization = self.request("GET", "/organization")["value"][0]
            return True, f"Connected to tenant {organization.get('displayName')} ({organization.get('id')})"
        except Exception as error:
            return False, scrub(str(error))  # shown in the UI: no known secret in it

    # ------------------------------------------------------------------------------------------------ requests
    def request(self, method: str, url: str, *, resend_if_unknown: bool = True, **kwargs: Any) -> Any:
        """Send one Graph request with retries on throttling and transient errors; return the JSON body or None.

        ``resend_if_unknown=False``: a connection lost after the request was sent raises instead of sending it again.

        :raise GraphHostError: ``url`` is absolute and not on the configured Graph host (nothing is sent).
        """
        self._check_host(url)
        retrying = Retrying(
            retry=retry_if_exception(_retryable if resend_if_unknown else _retryable_when_sent_once),
            wait=_retry_after,
            stop=stop_after_attempt(self.settings.max_attempts),
            reraise=True,
            before_sleep=self._count_retry,
        )
        try:
            return retrying(self._send, method, url, **kwargs)
        except httpx.TransportError as error:
            graph = self.settings.endpoints.graph_url
            raise GraphUnreachableError(
                f"{method} {url.split('?', 1)[0]}: no answer from Graph at {graph}: {type(error).__name__}: {error}"
            ) from error

    def _check_host(self, url: str) -> None:
        """Absolute URLs (next and delta links) must point at the configured Graph scheme, host and port."""
        if "://" not in url[:12]:
            return
        graph = urlsplit(self.settings.endpoints.graph_url)
        target = urlsplit(url)
        try:
            port = target.port or 443
        except ValueError:
            port = -1
        if (target.scheme, target.hostname, port) != (graph.scheme, graph.hostname, graph.port or 443):
            shown = f"{target.scheme}://{target.hostname}" + (f":{port}" if port not in (443, -1) else "")
            raise GraphHostError(
                f"refusing to send a request to {shown}: a next/delta link from Graph or "
                f"the store points outside the configured Graph host {graph.netloc}, and the access token only goes "
                "there; check the connection's graph_url, or run a full import to replace a stored delta link"
            )

    def _count_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        self.counters["retries"] += 1
        if isinstance(error, GraphError) and error.status == 429:
            self.counters["throttled"] += 1
        wait = state.next_action.sleep if state.next_action else 0.0
        self.counters["retry_wait_seconds"] += wait
        url = str(state.args[1]).split("?", 1)[0] if len(state.args) > 1 else ""  # tokens stay out of the log
        log.info("retrying %s in %.1f s after %s", url, wait, error)

    def _send(self, method: str, url: str, **kwargs: Any) -> Any:
        extra_headers = kwargs.pop("headers", {})
        for renewed in (False, True):
            if renewed:
                self._drop_cached_tokens()
            headers = {"Authorization": f"Bearer {self.get_token()}", **extra_headers}
            self.counters["requests"] += 1
            response = self._http.request(method, url, headers=headers, **kwargs)
            # 401: Graph refused the token (expired early, revoked): the request was not carried out, so it is sent
            # once more with a new token; a second 401 is an error.
            if response.status_code != 401 or renewed:
                break
            log.info("Graph refused the access token (401); getting a new one")
        if response.status_code >= 400:
            raise self._error(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            # msgspec (an Airflow dependency) decodes to the same dicts and lists as json, about twice as fast.
            return msgspec.json.decode(response.content)
        except msgspec.DecodeError as error:
            try:
                # msgspec refuses an escaped unpaired surrogate ("\ud800") that json accepts; the import then
                # reports the object holding it as a per-object error instead of failing the whole page.
                return json.loads(response.content)
            except ValueError:
                pass
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise GraphMalformedAnswerError(
                f"{method} {response.request.url.copy_with(query=None)} → {response.status_code}: the answer is not "
                f"JSON ({kind}, {len(response.content)} bytes: {error})",
                method=method,
            ) from None

    def _error(self, response: httpx.Response) -> GraphError:
        try:
            body = response.json().get("error", {})
        except (ValueError, AttributeError):
            body = {}
        if not isinstance(body, dict):
            body = {}
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        text = "" if "html" in response.headers.get("content-type", "") else response.text[:300]  # no HTML pages
        found = dict(
            request_id=(body.get("innerError") or {}).get("request-id") or response.headers.get("request-id"),
            method=response.request.method,
            url=str(response.request.url.copy_with(query=None)),
            retry_after=retry_after,
        )
        code = str(body.get("code") or response.reason_phrase)
        message = str(body.get("message") or text or f"no Graph error body ({response.headers.get('content-type')})")
        limit = self.settings.max_retry_wait
        if response.status_code in RETRYABLE_STATUSES and retry_after is not None and retry_after > limit:
            message += (
                f"; Graph asked to wait {retry_after:.0f} s (Retry-After), more than max_retry_wait ({limit:g} s): "
                "stopped instead of holding the worker, run again later"
            )
            return GraphThrottledError(response.status_code, code, message, **found)
        return GraphError(response.status_code, code, message, **found)

    def batch(self, requests: Sequence[BatchRequest], *, resend_if_unknown: bool = True) -> dict[str, BatchResult]:
        """Run requests through ``$batch``, 20 per call, keeping ``dependsOn`` order; return the result per id.

        A request goes out once its dependencies have answered: Graph takes a batch only fully parallel or fully
        sequential, so every call this sends is parallel (no ``dependsOn`` inside it). Only throttled or transiently
        failed inner requests (429, 5xx) are sent again, after the longest ``Retry-After`` they carry; a request
        whose dependency finally failed gets 424 without being sent.
        With ``resend_if_unknown=False`` a call whose connection dropped after sending raises
        :class:`WriteOutcomeUnknownError` (with the results known so far) instead of being sent again.
        """
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
        results: dict[str, BatchResult] = {}
        attempts: dict[str, int] = {}
        pending = list(requests)
        while pending:
            chunk, waiting = self._next_chunk(pending, results)
            pending = waiting
            if not chunk:
                continue
            try:
                retry_after = self._send_chunk(chunk, results, attempts, resend_if_unknown=resend_if_unknown)
            except (GraphUnreachableError, GraphMalformedAnswerError) as error:
                if resend_if_unknown:
                    raise
                unknown = [request.id for request in chunk]
                raise WriteOutcomeUnknownError(
                    f"no readable answer to a $batch of {len(chunk)} requests that was sent: {error}",
                    results=dict(results),
                    unknown=unknown,
                ) from error
            again = [request for request in chunk if request.id not in results]
            if again and retry_after > self.settings.max_retry_wait:
                raise GraphThrottledError(
                    429, "TooManyRequests",
                    f"Graph asked to wait {retry_after:.0f} s (Retry-After) before {len(again)} requests of a $batch, "
                    f"more than max_retry_wait ({self.settings.max_retry_wait:g} s): stopped instead of holding the "
                    "worker, run again later",
                    method="POST", url="/$batch", retry_after=retry_after,
                )  # fmt: skip
            if again:
                self.counters["retries"] += len(again)
                self.counters["retry_wait_seconds"] += retry_after
                time.sleep(retry_after)
                pending = again + pending
        return results

    def _next_chunk(
        self, pending: list[BatchRequest], results: dict[str, BatchResult]
    ) -> tuple[list[BatchRequest], list[BatchRequest]]:
        """Up to 20 requests whose dependencies have answered; 424 for those whose dependencies failed."""
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

    def _send_chunk(
        self,
        chunk: list[BatchRequest],
        results: dict[str, BatchResult],
        attempts: dict[str, int],
        *,
        resend_if_unknown: bool = True,
    ) -> float:
        """Send one ``$batch``; store final results; return how long to wait before re-sending the rest."""
        items = []
        for request in chunk:
            item: dict[str, Any] = {"id": request.id, "method": request.method, "url": request.url}
            if request.body is not None:
                item.update(body=request.body, headers={"Content-Type": "application/json"})
            items.append(item)
        answer = self.request("POST", "/$batch", json={"requests": items}, resend_if_unknown=resend_if_unknown)
        self.counters["batch_requests"] = self.counters.get("batch_requests", 0) + 1
        self.counters["batch_items"] = self.counters.get("batch_items", 0) + len(items)
        wait = 0.0
        transient: set[str] = set()
        responses = answer.get("responses") if isinstance(answer, dict) else None
        if not isinstance(responses, list):
            raise GraphMalformedAnswerError("POST /$batch: the answer has no 'responses' array", method="POST")
        sent = {request.id for request in chunk}
        for item in responses:
            try:
                request_id, status = item["id"], int(item["status"])
            except (KeyError, TypeError, ValueError):
                continue  # an unreadable item: its request is answered as missing below
            if request_id not in sent or request_id in results:
                continue
            headers = {key.lower(): value for key, value in (item.get("headers") or {}).items()}
            attempts[request_id] = attempts.get(request_id, 0) + 1
            if status in RETRYABLE_STATUSES and attempts[request_id] < self.settings.max_attempts:
                transient.add(request_id)
                if status == 429:
                    self.counters["throttled"] += 1
                retry_after = parse_retry_after(headers.get("retry-after"))
                backoff = min(2.0 ** attempts[request_id], 30.0)
                wait = max(wait, retry_after if retry_after is not None else backoff)
                continue
            results[request_id] = BatchResult(request_id, status, item.get("body"), headers)
        for request in chunk:  # a request the answer left out is not retried forever
            if request.id not in results and request.id not in transient:
                body = {"error": {"code": "missingResponse", "message": "the $batch answer had no item for it"}}
                results[request.id] = BatchResult(request.id, 502, body, {})
        return wait

    def server_name(self) -> str:
        return urlsplit(self.settings.endpoints.graph_url).netloc

    def directory_object_url(self, object_id: str) -> str:
        """The URL ``members@odata.bind`` and ``$ref`` bodies name an object by."""
        return f"{self.settings.endpoints.graph_url}/v1.0/directoryObjects/{object_id}"

    def delta_pages(self, resource: str, select: Sequence[str], delta_link: str | None) -> Iterator[dict[str, Any]]:
        """Yield the pages of ``/{resource}/delta`` from the start, or from a saved ``delta_link``.

        :raise DeltaLinkExpired: Graph no longer knows the delta state (``syncStateNotFound``, 410 Gone).
        """
        try:
            if delta_link:
                yield from self.paginate(delta_link)
            else:
                yield from self.paginate(f"/{resource}/delta", params={"$select": ",".join(select)})
        except GraphError as error:
            if error.status == 410 or error.code in DELTA_STATE_LOST_CODES:
                raise DeltaLinkExpired(str(error)) from error
            raise

    def paginate(self, url: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Yield each page's JSON, following ``@odata.nextLink`` verbatim (it already carries the query)."""
        page = _collection_page(self.request("GET", url, params=params, **kwargs), url)
        while True:
            yield page
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return
            if not isinstance(next_link, str):
                where = url.split("?", 1)[0]
                raise GraphMalformedAnswerError(f"GET {where}: @odata.nextLink is not a URL", method="GET")
            page = _collection_page(self.request("GET", next_link, **kwargs), url)


def _collection_page(page: Any, url: str) -> dict[str, Any]:
    """A collection page as Graph sends it: a ``value`` array of objects, each with a string ``id``."""
    where = f"GET {url.split('?', 1)[0]}"
    if not isinstance(page, dict) or not isinstance(page.get("value"), list):
        raise GraphMalformedAnswerError(f"{where}: the page has no 'value' array", method="GET")
    for item in page["value"]:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            shown = sorted(item)[:8] if isinstance(item, dict) else type(item).__name__
            raise GraphMalformedAnswerError(f"{where}: an item without a string 'id' ({shown})", method="GET")
    return page
