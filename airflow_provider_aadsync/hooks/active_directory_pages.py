"""The import's big reads: through python-ldap (OpenLDAP's C client library) when it is installed, else ldap3.

Why two clients: a full import reads every object of the directory once, and in ldap3 that read is bound by its
pure-Python BER decoding and attribute formatting: measured at 20,000 users, ldap3 spends about 6.4 CPU seconds
decoding what python-ldap hands over in 1.5 (libldap decodes in C, with Python's GIL released while it waits), and
the import waited for that decoding between pages. The DirSync delta read goes the same way, for memory too: a DC
may answer a DirSync search with every change in one response (Samba 4.17 ignores MaxBytes: 100,000 changed users came
back in one response), and ldap3 holds a whole response (raw and formatted) before it returns, 1.5 GiB for 100,000
users; python-ldap hands over entry by entry while the response arrives, so the read yields chunks of ``page_size``
entries in bounded memory whatever the DC does. Everything else (binding checks, the DirSync watermark, ranged
``member`` reads, writes) stays on ldap3, so only these two loops exist twice. Both clients yield the same thing:
pages of (extended DN, attribute name → raw values), values as the bytes the DC sent.

python-ldap gets the same TLS rules as the hook's ldap3 connection: certificate and host name verified
(``OPT_X_TLS_DEMAND``) against the connection's CA (a file, or PEM text) or the system's trust store, TLS 1.2 at
least; StartTLS before the bind when configured; plain LDAP only where the hook already allowed it.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import ssl
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import ldap3
from ldap3.protocol.microsoft import extended_dn_control
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.ber import encoder as ber_encoder
from pyasn1.type import namedtype, univ

from airflow_provider_aadsync.hooks.active_directory_settings import (
    ActiveDirectoryConfigurationError,
    ActiveDirectoryConnectionError,
    ActiveDirectoryError,
    ADConnectionSettings,
    DirSyncCookieRejected,
    missing_partition_error,
    referral_error,
    short_text,
)

try:  # optional: airflow-provider-aadsync[ldap]; it needs OpenLDAP's headers and a C compiler to build
    import ldap as python_ldap
    from ldap.controls import LDAPControl, RequestControl, ResponseControl, SimplePagedResultsControl
except ImportError:  # pragma: no cover - exercised where python-ldap is absent
    python_ldap = None

    class RequestControl:  # type: ignore[no-redef]  # stand-ins, so DirSyncControl below can still be defined
        pass

    class ResponseControl:  # type: ignore[no-redef]
        pass


log = logging.getLogger(__name__)

RawEntry = tuple[str, dict[str, list[bytes]]]

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
#: LDAP_SERVER_EXTENDED_DN_OID with its value in string form (BER SEQUENCE { INTEGER 1 }): ``<GUID=...>;<SID=...>;``
#: as text, what ldap3's ``extended_dn_control(hex_format=False)`` sends.
EXTENDED_DN_OID = "1.2.840.113556.1.4.529"
EXTENDED_DN_STRING_FORM = bytes.fromhex("3003020101")
DIRSYNC_OID = "1.2.840.113556.1.4.841"
#: LDAP_SERVER_SHOW_DELETED_OID (no value): tombstones too, so a delta sees deletions.
SHOW_DELETED_OID = "1.2.840.113556.1.4.417"
#: The DirSync request's MaxBytes: the most bytes the DC is asked to put in one search response ([MS-ADTS]
#: 3.1.1.3.4.1.3 LDAP_SERVER_DIRSYNC_OID; [MS-DRSR] 5.115.1.5: "the maximum number of bytes expected in the reply").
#: Bounded so that Windows AD splits a big delta into several searches (MoreResults, a cookie each); Samba 4.17
#: ignores it and answers in one response, which the python-ldap read streams anyway.
DIRSYNC_MAX_BYTES = 10 * 1024 * 1024
#: DirSync flags, what both clients send: LDAP_DIRSYNC_INCREMENTAL_VALUES (0x80000000: member changes as
#: ``member;range=1-1`` added and ``member;range=0-0`` removed values) | LDAP_DIRSYNC_ANCESTORS_FIRST_ORDER (0x800);
#: not OBJECT_SECURITY, not PUBLIC_DATA_ONLY. Sent as the 32-bit signed INTEGER a C client's ``int`` encodes to
#: (``02 04 80 00 08 00``): [MS-ADTS] 3.1.1.3.4.1.3 gives Flags as a 32-bit field, and Windows AD expects that form
#: (ldap3 issue #642), not the 5-byte positive INTEGER ldap3's own ``dir_sync_control`` encodes (see
#: :func:`dirsync_request_control`).
DIRSYNC_FLAGS = (0x80000000 | 0x800) - 2**32
#: TLS 1.2: Python's ssl module's default floor, which the ldap3 connection gets.
_TLS_1_2 = 0x303

CLIENTS = ("auto", "python-ldap", "ldap3")


def python_ldap_available() -> bool:
    return python_ldap is not None


def entry_attributes(attributes: Sequence[str]) -> list[str]:
    """What a full read asks for: the import's attributes and what every entry needs (its anchor and its class). A
    connector's own attribute list without objectClass made a full import fail on the object type, and the whole
    read of an object moved into the scope skip it as untyped."""
    return list(dict.fromkeys([*attributes, "objectGUID", "objectClass"]))


def dirsync_attributes(attributes: Sequence[str]) -> list[str]:
    """What a DirSync search asks for, through either client: what a full read asks for and whether the entry is a
    tombstone."""
    return list(dict.fromkeys([*entry_attributes(attributes), "isDeleted"]))


def full_read_client(settings: ADConnectionSettings) -> str:
    """The client of the full paged read: the connection's ``full_read_client`` extra, ``auto`` taking python-ldap
    when it is installed."""
    wanted = settings.full_read_client
    if wanted == "auto":
        return "python-ldap" if python_ldap_available() else "ldap3"
    if wanted == "python-ldap" and not python_ldap_available():
        raise ActiveDirectoryConfigurationError(
            "the connection extra full_read_client is python-ldap, but python-ldap is not installed: install "
            "airflow-provider-aadsync[ldap] (it builds against OpenLDAP's libldap: Debian packages libldap-dev, "
            "libsasl2-dev and a C compiler), or set full_read_client to auto or ldap3"
        )
    return wanted


def check_full_read(settings: ADConnectionSettings) -> str:
    """The full read's client, and with python-ldap a bind through it (the Test button: libldap's TLS stack may refuse
    what Python's ssl module accepted).

    :raise ActiveDirectoryError: python-ldap cannot bind."""
    client = full_read_client(settings)
    if client == "python-ldap":
        _quietly(open_python_ldap(settings).unbind_s)
    return client


def ldap3_pages(
    conn: ldap3.Connection, base: str, search_filter: str, attributes: Sequence[str], page_size: int
) -> Iterator[list[RawEntry]]:
    """The paged read through the hook's ldap3 connection."""
    cookie: bytes | None = None
    while True:
        conn.search(
            base,
            search_filter,
            ldap3.SUBTREE,
            attributes=list(attributes),
            paged_size=page_size,
            paged_cookie=cookie,
            controls=[extended_dn_control(criticality=False, hex_format=False)],
        )
        # Read the paging cookie before the caller's ranged follow-up reads replace the connection's last result.
        cookie = conn.result.get("controls", {}).get(PAGED_RESULTS_OID, {}).get("value", {}).get("cookie")
        yield [
            (entry["dn"], dict(entry["raw_attributes"])) for entry in conn.response if entry["type"] == "searchResEntry"
        ]
        if not cookie:
            return


#: Pages the python-ldap full read holds ahead of its caller: with one page ready and one being read, the DC already
#: serves the next page while the caller still decodes and stores the previous one.
READ_AHEAD_PAGES = 2
_END = object()


def python_ldap_pages(
    settings: ADConnectionSettings, base: str, search_filter: str, attributes: Sequence[str]
) -> Iterator[list[RawEntry]]:
    """The paged read through python-ldap on a connection of its own, closed when the read ends.

    A reader thread takes the pages off the wire and asks for the next page as soon as a page's cookie arrives,
    holding at most :data:`READ_AHEAD_PAGES` pages for the caller. Paged results let a client ask for page k + 1
    only once page k's cookie came back; read in the caller's thread, the DC stood idle while the caller decoded
    and stored a page and then let libldap parse the next one. libldap waits and parses with Python's GIL released
    (and SQLite writes without it), so the reading, the DC's work and the caller's overlap on two cores. An error of
    the read reaches the caller at the page where it happened; a caller that stops early stops the reader."""
    conn = open_python_ldap(settings)
    ready: queue.Queue[Any] = queue.Queue(maxsize=READ_AHEAD_PAGES)
    stopping = threading.Event()
    reader = threading.Thread(
        target=_read_pages,
        args=(conn, settings, base, search_filter, list(attributes), ready, stopping),
        name="python-ldap paged read",
        daemon=True,
    )
    reader.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stopping.set()
        reader.join()


def _read_pages(
    conn: Any,
    settings: ADConnectionSettings,
    base: str,
    search_filter: str,
    requested: list[str],
    ready: queue.Queue[Any],
    stopping: threading.Event,
) -> None:
    """The reader thread of :func:`python_ldap_pages`: pages, then ``_END``, or the error, onto ``ready``."""
    paging = SimplePagedResultsControl(criticality=False, size=settings.page_size, cookie=b"")
    controls = [paging, LDAPControl(EXTENDED_DN_OID, False, EXTENDED_DN_STRING_FORM)]

    def ask() -> int:
        return conn.search_ext(base, python_ldap.SCOPE_SUBTREE, search_filter, requested, serverctrls=controls)

    def hand_on(item: Any) -> bool:
        """Put ``item`` for the caller; False once the caller has stopped reading."""
        while not stopping.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    pending: int | None = None
    try:
        pending = ask()
        while True:
            _, data, _, answered = conn.result3(pending, all=1, timeout=settings.receive_timeout)
            pending = None
            cookie = next((c.cookie for c in answered if c.controlType == PAGED_RESULTS_OID), b"")
            if cookie and not stopping.is_set():
                paging.cookie = cookie
                pending = ask()
            # References (dn None) are left out, as the ldap3 read keeps only searchResEntry.
            if not hand_on([(dn, attrs) for dn, attrs in data if dn is not None]) or not cookie:
                break
        hand_on(_END)
    except python_ldap.LDAPError as error:
        hand_on(_failure(error, f"the paged read of {base!r}", settings, base))
    except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, which raises it
        hand_on(error)
    finally:
        if pending is not None:
            _quietly(conn.abandon, pending)
        _quietly(conn.unbind_s)


class _DirSyncRequestValue(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("Flags", univ.Integer()),
        namedtype.NamedType("MaxBytes", univ.Integer()),
        namedtype.NamedType("Cookie", univ.OctetString()),
    )


class _DirSyncResponseValue(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("MoreResults", univ.Integer()),
        namedtype.NamedType("unused", univ.Integer()),
        namedtype.NamedType("CookieServer", univ.OctetString()),
    )


class DirSyncControl(RequestControl, ResponseControl):  # type: ignore[misc,valid-type]
    """The DirSync control as python-ldap's own control classes do it (pyasn1 BER): the request carries the flags,
    MaxBytes and the cookie; the response (same OID, on the search's final result) MoreResults and the new cookie."""

    controlType = DIRSYNC_OID

    def __init__(self, criticality: bool = True, cookie: bytes = b"", max_bytes: int = DIRSYNC_MAX_BYTES):
        self.criticality = criticality
        self.cookie = cookie
        self.max_bytes = max_bytes
        self.more_results = False

    def encodeControlValue(self) -> bytes:  # noqa: N802 - python-ldap's name
        return dirsync_request_value(self.cookie, self.max_bytes)

    def decodeControlValue(self, encodedControlValue: bytes) -> None:  # noqa: N802,N803 - python-ldap's names
        decoded, _ = ber_decoder.decode(encodedControlValue, asn1Spec=_DirSyncResponseValue())
        self.more_results = bool(int(decoded.getComponentByName("MoreResults")))
        self.cookie = bytes(decoded.getComponentByName("CookieServer"))


def dirsync_request_value(cookie: bytes | None, max_bytes: int = DIRSYNC_MAX_BYTES) -> bytes:
    """The DirSync request control's value (BER SEQUENCE { Flags, MaxBytes, Cookie }), the one encoder of both
    clients: Flags is :data:`DIRSYNC_FLAGS`, a 32-bit signed INTEGER."""
    value = _DirSyncRequestValue()
    value.setComponentByName("Flags", DIRSYNC_FLAGS)
    value.setComponentByName("MaxBytes", max_bytes)
    value.setComponentByName("Cookie", univ.OctetString(cookie or b""))
    return ber_encoder.encode(value)


def dirsync_request_control(cookie: bytes | None) -> tuple[str, bool, bytes]:
    """The DirSync request control for the ldap3 reads, as ldap3 takes a raw control: (OID, criticality, value).

    ldap3's ``dir_sync_control(incremental_values=True)`` encodes Flags 0x80000800 as a positive INTEGER in 5 bytes
    (``02 05 00 80 00 08 00``); Windows AD reads Flags as a 32-bit value and expects ``02 04 80 00 08 00`` (ldap3
    issue #642, closed unfixed). Samba accepts both, so only a Windows DC would see the difference. Critical: a DC
    that does not know DirSync must refuse the search, not answer it as a plain one."""
    return DIRSYNC_OID, True, dirsync_request_value(cookie)


def requested_only(raw: dict[str, list[bytes]], wanted: set[str]) -> dict[str, list[bytes]]:
    """A DirSync entry's attributes that were asked for (lower-case names in ``wanted``): DirSync adds some of its own
    (parentGUID, instanceType, name). Incremental values keep their ``;range=`` name; a cleared attribute arrives
    without values."""
    return {name: values or [] for name, values in raw.items() if name.split(";", 1)[0].lower() in wanted}


def python_ldap_dirsync_pages(
    settings: ADConnectionSettings, base: str, search_filter: str, attributes: Sequence[str], cookie: bytes
) -> Iterator[tuple[list[RawEntry], bytes | None]]:
    """The DirSync delta read through python-ldap on a connection of its own, closed when the read ends.

    Entries are taken off the wire one at a time (``result3(all=0)``) and yielded in chunks of ``page_size`` while
    the response still arrives, so memory stays bounded by a chunk whatever the DC puts in one response. A chunk has
    no cookie of its own (``None``): only the last chunk of a search carries the cookie of the search's final result,
    so a reader that keeps the last cookie it got, and commits it with the rows, re-reads from the old cookie after a
    crash anywhere inside a search. A further search follows while the DC says there are more results.

    :raise DirSyncCookieRejected: the DC refused the cookie."""
    conn = open_python_ldap(settings)
    requested = list(attributes)
    wanted = {name.lower() for name in requested}
    chunk_size = settings.page_size
    pending: int | None = None
    try:
        while True:
            sent_cookie = cookie
            controls = [
                DirSyncControl(criticality=True, cookie=cookie),
                LDAPControl(EXTENDED_DN_OID, False, EXTENDED_DN_STRING_FORM),
                LDAPControl(SHOW_DELETED_OID, False, None),
            ]
            pending = conn.search_ext(base, python_ldap.SCOPE_SUBTREE, search_filter, requested, serverctrls=controls)
            chunk: list[RawEntry] = []
            while True:
                kind, data, _, answered = conn.result3(
                    pending, all=0, timeout=settings.receive_timeout, resp_ctrl_classes=_RESPONSE_CONTROLS
                )
                if kind == python_ldap.RES_SEARCH_RESULT:
                    break
                if kind != python_ldap.RES_SEARCH_ENTRY:  # references: left out, as the ldap3 read does
                    continue
                chunk.extend((dn, requested_only(raw, wanted)) for dn, raw in data)
                if len(chunk) >= chunk_size:
                    yield chunk, None
                    chunk = []
            pending = None
            response = next((c for c in answered if c.controlType == DIRSYNC_OID), None)
            if not isinstance(response, DirSyncControl):
                raise ActiveDirectoryError(f"{settings.url} did not return a DirSync control; is it an AD DC?")
            cookie = response.cookie
            yield chunk, cookie
            if not response.more_results:
                return
    except python_ldap.LDAPError as error:
        # A referral says the DC holds no such partition, whatever the cookie: taken for a rejected cookie, it would
        # turn the run into a full import that fails on the same referral.
        not_the_cookie = (
            python_ldap.SERVER_DOWN | python_ldap.CONNECT_ERROR | python_ldap.TIMEOUT | python_ldap.REFERRAL
        )
        if isinstance(error, python_ldap.NO_SUCH_OBJECT):  # no such partition, whatever the cookie
            raise missing_partition_error(settings.url, base) from None
        if sent_cookie and not isinstance(error, not_the_cookie):
            raise DirSyncCookieRejected(f"{settings.url} answered {_error_text(error)}") from None
        raise _failure(error, f"the DirSync read of {base!r}", settings, base) from None
    finally:
        if pending is not None:
            _quietly(conn.abandon, pending)
        _quietly(conn.unbind_s)


_RESPONSE_CONTROLS = {DIRSYNC_OID: DirSyncControl}


def open_python_ldap(settings: ADConnectionSettings) -> Any:
    """A bound python-ldap connection with the hook's TLS rules."""
    conn = python_ldap.initialize(settings.url)
    conn.set_option(python_ldap.OPT_PROTOCOL_VERSION, 3)
    conn.set_option(python_ldap.OPT_REFERRALS, 0)
    conn.set_option(python_ldap.OPT_NETWORK_TIMEOUT, settings.connect_timeout)
    try:
        if settings.tls != "none":
            _configure_tls(conn, settings)
        if settings.tls == "starttls":
            conn.start_tls_s()
        conn.simple_bind_s(settings.bind_dn, settings.password.get_secret_value())
    except python_ldap.LDAPError as error:
        _quietly(conn.unbind_s)
        raise _failure(error, f"bind as {settings.bind_dn}", settings) from None
    return conn


def _configure_tls(conn: Any, settings: ADConnectionSettings) -> None:
    conn.set_option(python_ldap.OPT_X_TLS_REQUIRE_CERT, python_ldap.OPT_X_TLS_DEMAND)
    conn.set_option(python_ldap.OPT_X_TLS_PROTOCOL_MIN, _TLS_1_2)
    pem_file = None
    try:
        if settings.ca_cert_is_pem:
            # libldap takes CA certificates from files only: the PEM text goes to a private temporary file that
            # lives until the TLS context is made (a CA certificate is public, nothing secret is written).
            with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as pem:
                pem.write(settings.ca_cert)
            pem_file = pem.name
            conn.set_option(python_ldap.OPT_X_TLS_CACERTFILE, pem_file)
        elif settings.ca_cert:
            if not os.path.isfile(settings.ca_cert):
                raise ActiveDirectoryConnectionError(f"CA certificate file {settings.ca_cert!r} does not exist")
            conn.set_option(python_ldap.OPT_X_TLS_CACERTFILE, settings.ca_cert)
        else:  # the trust store Python's ssl module (and so the ldap3 connection) uses
            paths = ssl.get_default_verify_paths()
            if paths.cafile and os.path.isfile(paths.cafile):
                conn.set_option(python_ldap.OPT_X_TLS_CACERTFILE, paths.cafile)
            elif paths.capath and os.path.isdir(paths.capath):
                conn.set_option(python_ldap.OPT_X_TLS_CACERTDIR, paths.capath)
        conn.set_option(python_ldap.OPT_X_TLS_NEWCTX, 0)  # last: the options above take effect here
    finally:
        if pem_file:
            os.unlink(pem_file)


def _failure(error: Exception, what: str, settings: ADConnectionSettings, base: str = "") -> ActiveDirectoryError:
    """A python-ldap error as the hook's errors; its text is libldap's description and diagnostic, never a secret. A
    referral (``OPT_REFERRALS`` 0: libldap does not follow it) is the error the ldap3 connection gives for one."""
    if isinstance(error, python_ldap.REFERRAL):
        return referral_error(settings.url, base, referral_urls(error))
    text = _error_text(error)
    if isinstance(error, python_ldap.INVALID_CREDENTIALS):
        return ActiveDirectoryConnectionError(
            f"{what} on {settings.url} was refused: invalid credentials (check the connection's login and password)"
        )
    if isinstance(error, python_ldap.SERVER_DOWN | python_ldap.CONNECT_ERROR | python_ldap.TIMEOUT):
        if "certificate" in text.lower():
            return ActiveDirectoryConnectionError(
                f"TLS certificate of {settings.url} could not be verified against the configured CA "
                f"({settings.ca_label}): {text}"
            )
        if settings.tls != "none":  # libldap reports a refused certificate as an unreachable server
            return ActiveDirectoryConnectionError(
                f"{what}: could not reach {settings.url}, or its TLS certificate was not accepted against the "
                f"configured CA ({settings.ca_label}); libldap does not say which: {text}"
            )
        return ActiveDirectoryConnectionError(f"{what}: could not reach {settings.url}: {text}")
    return ActiveDirectoryError(f"{what} on {settings.url} failed: {text}")


def referral_urls(error: Exception) -> list[str]:
    """The URLs of a python-ldap REFERRAL: python-ldap puts them in the error's ``info`` (``Referral:\nldap://...``)."""
    return re.findall(r"ldaps?://\S+", str(_details(error).get("info") or ""))


def _error_text(error: Exception) -> str:
    """libldap's description and diagnostic of a python-ldap error, shortened."""
    details = _details(error)
    text = "; ".join(str(details[key]) for key in ("desc", "info") if details.get(key))
    return short_text(text or type(error).__name__)


def _details(error: Exception) -> dict[str, Any]:
    """The dict python-ldap puts in an error's first argument (``desc``, ``info``, ...); empty when there is none."""
    return error.args[0] if error.args and isinstance(error.args[0], dict) else {}


def _quietly(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except Exception as error:  # closing a connection that is already broken: nothing left to do
        log.debug("closing a python-ldap connection: %s", error)
