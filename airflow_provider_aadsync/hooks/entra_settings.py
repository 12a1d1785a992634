"""The ``aadsync_entra`` connection's validated settings, the national clouds and the errors of the Entra hook.

Apart from the hook (``entra``) so that reading a connection, and catching what the hook raises, needs no HTTP code:
operators, the CLI and tests import them from here.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from airflow_provider_aadsync.engine.connectors.entra.extensions import DEFAULT_ANCHOR_EXTENSION
from airflow_provider_aadsync.engine.runs.source import BatchStoppedError, WatermarkRejectedError
from airflow_provider_aadsync.hooks._settings import describe_validation_error, keep_secret, keep_secrets

if TYPE_CHECKING:
    from airflow.sdk import Connection


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
        self.method = method
        self.url = url
        self.request_id = request_id
        self.retry_after = retry_after


class GraphHostError(EntraError):
    """Raised before sending a request to a URL outside the configured Graph host (a ``@odata.nextLink`` or a saved
    delta link on another host): the bearer token only ever goes to Graph."""


class GraphThrottledError(GraphError, BatchStoppedError):
    """Raised when Graph asks to wait (``Retry-After``) longer than the connection's ``max_retry_wait``, or keeps
    throttling one request for longer than its ``max_throttle_wait``: the run stops and says so instead of holding a
    worker for that long; the next run picks up where it stopped. Out of a ``$batch`` it carries the final answers the
    batch had (``results``), which the export records before it stops."""


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


#: A URL's scheme, the only part of a refused URL an error names (RFC 3986's characters, kept short).
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}(?=://)")


def _scheme_of(url: str) -> str:
    """How a refused URL is named: by its scheme only, never the rest, which may hold a secret."""
    scheme = _SCHEME.match(url)
    return f"a URL with scheme {scheme.group()!r}" if scheme else "a value without a URL scheme"


def _keep_credentials(password: str | None, extra: dict[str, Any]) -> None:
    """Register the connection's credentials (the client secret, the PEM private key) as secrets before the settings
    are validated: field validators run before :meth:`EntraConnectionSettings._one_credential` registers them, and a
    message quoting a value that holds one (an authority_host with a ``?client_secret=`` pasted in) must find it
    already scrubbed."""
    keep_secrets([password, str(extra.get("private_key") or "")])


#: Settings read from the connection's own fields (login, password), never from its extra.
CONNECTION_FIELDS = frozenset({"client_id", "client_secret"})
#: What every PEM private key block's header contains (PKCS#8 "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY").
PEM_PRIVATE_KEY = "PRIVATE KEY-----"


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
    #: Tries per request against faults (5xx that are not throttling, dropped connections); throttling answers
    #: do not count (Graph's guidance: wait Retry-After and try again while it throttles).
    max_attempts: int = Field(default=6, ge=1, le=20)
    #: The longest Retry-After the hook waits out; a longer one stops the run with GraphThrottledError.
    max_retry_wait: float = Field(default=300.0, gt=0)
    #: The longest time one request (or one request of a $batch) may spend throttled, over all its waits; past it
    #: the run stops with GraphThrottledError. This, not max_attempts, ends a tenant that throttles for ever.
    max_throttle_wait: float = Field(default=900.0, gt=0)
    #: The directory extension of the sync app that holds each exported object's sourceAnchor
    #: (``extension_<appId without dashes>_<anchor_extension>``); groups are hard matched on it.
    anchor_extension: str = Field(default=DEFAULT_ANCHOR_EXTENSION, pattern=r"^[A-Za-z][A-Za-z0-9_]{0,119}$")

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
        """Only the scheme is named when refusing: the URL may hold a secret (a ``?client_secret=`` pasted in), and
        field validators run before :meth:`_one_credential` registers the secrets."""
        if isinstance(value, str) and value:
            if not value.startswith("https://"):
                raise ValueError(f"must be an https:// URL (msal and Graph require TLS), got {_scheme_of(value)}")
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
        repeated = sorted(CONNECTION_FIELDS & extra.keys())
        if repeated:
            keep_secret(str(extra.get("client_secret") or ""))
            raise EntraError(
                f"connection {connection.conn_id!r} is not usable: {', '.join(repeated)} in its extra: the client id "
                "goes in the connection's login and the client secret in its password, not in the extra"
            )
        _keep_credentials(connection.password, extra)  # before validation, whose messages may quote any field
        try:
            return cls(client_id=connection.login or "", client_secret=connection.password or None, **extra)
        except ValidationError as error:
            problems = describe_validation_error(error)
            raise EntraError(f"connection {connection.conn_id!r} is not usable: {problems}") from None
