"""The ``aadsync_ad`` connection's validated settings and the errors of the Active Directory hook.

Apart from the hook (``active_directory``) so that reading a connection, and catching what the hook raises, needs
no LDAP code: operators, the CLI and tests import them from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from airflow_provider_aadsync.engine.connectors.ad.writer import ADWriteRefused
from airflow_provider_aadsync.engine.runs.source import WatermarkRejectedError
from airflow_provider_aadsync.hooks._settings import describe_validation_error, keep_secret

if TYPE_CHECKING:
    from airflow.sdk import Connection


class ActiveDirectoryError(Exception):
    """Base class: an Active Directory operation failed; the message names the server and the cause."""


class ActiveDirectoryConnectionError(ActiveDirectoryError):
    """Raised when the DC cannot be reached, its certificate is not trusted, the bind is refused, the connection's
    settings are refused (a bind in clear), or its base DN does not exist or lies outside the naming context."""


class ActiveDirectoryConfigurationError(ActiveDirectoryConnectionError):
    """Raised when the connection's settings are refused whatever the DC's state: a bind in clear that is not
    allowed, a base DN outside the naming context or that does not exist. Not worth retrying: fix the connection."""


class ActiveDirectoryReferralError(ActiveDirectoryConfigurationError):
    """Raised when the DC answers with a referral: it holds no naming context at the search's base, which lies in
    another domain of the forest or in no domain the DC knows (a mistyped partition DN). Referrals are never followed:
    a client that follows one binds to the referred server with the same DN and password (ldap3 over plain LDAP for
    AD's ``ldap://`` referrals, or StartTLS without validating the certificate). Not worth retrying: fix the
    connectors file."""


def referral_error(url: str, base: str, referred: Sequence[str]) -> ActiveDirectoryReferralError:
    """The error of a referral ``url`` answered for a search of ``base``, naming where it referred to and what to do.

    What the project supports: an AD connector reads its partitions through its one connection, so a partition must be
    a naming context of the connection's DC; a domain whose partition lives on other DCs (a child domain, another
    tree of the forest) gets an AD connector of its own in the connectors file, with a connection to one of its DCs
    (README "Several forests: the connectors configuration")."""
    where = ", ".join(referred) if referred else "no URL"
    return ActiveDirectoryReferralError(
        f"{url} does not hold the partition {base!r}: it answered with a referral (to {where}), which is not followed "
        "(following it would send the bind password to the referred server). Either the DN is mistyped (check the "
        "partition's dn in the connectors file, or the connection extra base_dn), or the partition is another domain "
        "of the forest, whose naming context its own DCs hold: read that domain through an AD connector of its own in "
        "the connectors file (its conn_id a connection to one of that domain's DCs) and take the partition out of "
        "this connector's partitions"
    )


def missing_partition_error(url: str, base: str) -> ActiveDirectoryConfigurationError:
    """The error of a DirSync read of partition ``base`` that ``url`` answered with noSuchObject: the DC holds no such
    object (a mistyped partition DN, where Samba answers noSuchObject and Windows AD a referral). Taken for a
    rejected cookie, it would turn every delta into a full import failing on the same answer."""
    return ActiveDirectoryConfigurationError(
        f"{url} has no object {base!r} (noSuchObject), the partition a DirSync read starts at: check the partition's "
        "dn in the connectors file (or the connection extra base_dn); a partition is the DN of a naming context the "
        "connection's DC holds, such as its domain's DC=... root"
    )


class RangedReadError(ActiveDirectoryError):
    """Raised when a ranged read of a large attribute (``member``) does not say which range it returned: taking
    the values so far as complete would silently truncate a group."""


class DirSyncCookieRejected(ActiveDirectoryError, WatermarkRejectedError):
    """Raised when the DC refuses the saved DirSync cookie (expired, from another DC or corrupt)."""


class ActiveDirectoryWriteError(ActiveDirectoryError, ADWriteRefused):
    """Raised when the DC refuses a write; ``code`` is the LDAP result's name (``entryAlreadyExists``, ...)."""

    def __init__(self, message: str, *, code: str, dn: str):
        ADWriteRefused.__init__(self, message, code=code)
        self.dn = dn


def short_text(text: str, limit: int = 300) -> str:
    """A server's message cut to ``limit`` characters for an error: DCs can answer with long diagnostics."""
    return text if len(text) <= limit else text[:limit] + "…"


class ADConnectionSettings(BaseModel):
    """Validated settings of an ``aadsync_ad`` connection (password kept as a SecretStr)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    bind_dn: str = Field(min_length=1)
    password: SecretStr
    base_dn: str = Field(min_length=1)
    tls: Literal["ldaps", "starttls", "none"] = "ldaps"
    #: With ``tls: none`` a simple bind sends the password in clear: refused unless this says it is accepted.
    allow_plain_ldap_bind: bool = False
    ca_cert: str | None = None
    page_size: int = Field(default=1000, ge=1, le=5000)
    attributes: list[str] | None = None
    binary_attributes: list[str] | None = None
    connect_timeout: int = Field(default=10, gt=0)
    receive_timeout: int = Field(default=600, gt=0)
    #: The client of the full import's paged read and of the DirSync delta read: python-ldap (C, about 4 times less
    #: CPU) when installed, else ldap3.
    full_read_client: Literal["auto", "python-ldap", "ldap3"] = "auto"

    @field_validator("attributes", "binary_attributes", mode="before")
    @classmethod
    def _split_text(cls, value: Any) -> Any:
        """The connection form stores lists as comma-separated text."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()] or None
        return value

    @field_validator("tls", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _keep_password_secret(self) -> ADConnectionSettings:
        keep_secret(self.password.get_secret_value())
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (636 if self.tls == "ldaps" else 389)

    @property
    def ca_cert_is_pem(self) -> bool:
        """``ca_cert`` holds the CA certificate's PEM text rather than a file's path."""
        return bool(self.ca_cert) and "-----BEGIN" in str(self.ca_cert)

    @property
    def ca_label(self) -> str:
        """The CA a certificate is checked against, for an error message: a file's path, never PEM text in full."""
        if not self.ca_cert:
            return "system trust store"
        return "the CA certificate given as PEM text" if self.ca_cert_is_pem else self.ca_cert

    @property
    def url(self) -> str:
        return f"{'ldaps' if self.tls == 'ldaps' else 'ldap'}://{self.host}:{self.effective_port}"

    @classmethod
    def from_connection(cls, connection: Connection) -> ADConnectionSettings:
        return cls.from_fields(
            name=repr(connection.conn_id),
            host=connection.host,
            port=connection.port,
            login=connection.login,
            password=connection.password,
            extra=connection.extra_dejson,
        )

    @classmethod
    def from_fields(
        cls,
        *,
        name: str,
        host: str | None,
        port: int | None,
        login: str | None,
        password: str | None,
        extra: dict[str, Any],
    ) -> ADConnectionSettings:
        """Build from an Airflow connection's fields; errors name the connection and the field, never the password."""
        fields = {key: value for key, value in extra.items() if value not in (None, "")}
        repeated = sorted({"host", "port", "bind_dn", "password"} & fields.keys())
        if repeated:
            keep_secret(str(fields.get("password") or ""))
            raise ActiveDirectoryError(
                f"connection {name} is not usable: {', '.join(repeated)} in its extra: the domain controller, port, "
                "bind DN and bind password go in the connection's host, port, login and password fields"
            )
        try:
            return cls(host=host or "", port=port, bind_dn=login or "", password=password or "", **fields)
        except ValidationError as error:
            problems = describe_validation_error(error)
            raise ActiveDirectoryError(f"connection {name} is not usable: {problems}") from None
