"""ActiveDirectoryHook: an LDAP client for Active Directory (and Samba AD) built on ldap3.

It reads the directory the way a sync engine needs: paged full reads, DirSync deltas with their cookie, and
ranged retrieval of large ``member`` attributes. It returns raw entries (extended DN, attribute bytes); the engine
decodes them. TLS with certificate validation is the default; plain LDAP is an explicit, logged opt-in.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import ssl
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.protocol.microsoft import extended_dn_control, show_deleted_control

from airflow_provider_aadsync.engine import write_guard
from airflow_provider_aadsync.engine.dn import DnError, split_rdn, wire_dn
from airflow_provider_aadsync.hooks.active_directory_checks import check_base_dn, check_connection
from airflow_provider_aadsync.hooks.active_directory_lifetime import read_deletion_window
from airflow_provider_aadsync.hooks.active_directory_pages import (
    DIRSYNC_OID,
    dirsync_attributes,
    dirsync_request_control,
    entry_attributes,
    full_read_client,
    ldap3_pages,
    python_ldap_dirsync_pages,
    python_ldap_pages,
    requested_only,
)
from airflow_provider_aadsync.hooks.active_directory_referrals import ReferralRefusingConnection
from airflow_provider_aadsync.hooks.active_directory_settings import (
    ActiveDirectoryConfigurationError,
    ActiveDirectoryConnectionError,
    ActiveDirectoryError,
    ActiveDirectoryWriteError,
    ADConnectionSettings,
    DirSyncCookieRejected,
    RangedReadError,
    missing_partition_error,
    short_text,
)
from airflow_provider_aadsync.hooks.active_directory_values import (
    filter_value,
    guid_dn,
    guid_filter,
    reference_operations,
    value_guid,
)

try:  # Airflow 3 task SDK; the hook is also usable without a running Airflow for the CLI.
    from airflow.sdk import BaseHook
except ImportError:  # pragma: no cover - Airflow is a hard dependency, this only helps static tools
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef]

log = logging.getLogger(__name__)

RawEntry = tuple[str, dict[str, list[bytes]]]

#: LDAP_SERVER_PERMISSIVE_MODIFY_OID: adding a value already present or removing one that is absent succeeds.
PERMISSIVE_MODIFY_OID = "1.2.840.113556.1.4.1413"

#: Objects the import reads. Tombstones keep objectClass (not objectCategory), so DirSync filters on it alone.
IMPORT_FILTER = (
    "(|(objectClass=user)(objectClass=group)(objectClass=contact)(objectClass=organizationalUnit)"
    "(objectClass=foreignSecurityPrincipal))"
)
#: Matches nothing: a DirSync with it returns no entries, only a cookie for "now".
_EMPTY_FILTER = "(&(objectClass=group)(objectClass=organizationalUnit))"
_RANGED_ATTRIBUTES = ("member",)
#: Values asked for per ranged read. AD caps a read at MaxValRange (1,500) whatever is asked; Samba returns every
#: value for ``range=0-*`` but honours explicit windows, so asking for explicit windows makes both range.
RANGE_WINDOW = 1500
#: objectGUIDs per search of :meth:`ActiveDirectoryHook.read_entries` (an OR of them: a filter of about 6 KB).
GUID_READ_CHUNK = 100
_EXTENDED_PREFIX = re.compile(r"^(?:<[^>]*>;)+")


class ActiveDirectoryHook(BaseHook):
    """Interact with Active Directory over LDAP.

    :param ad_conn_id: the ``aadsync_ad`` connection to use (default ``aadsync_ad``).
    :param settings: ready settings instead of a connection (the CLI and tests use this).
    """

    conn_name_attr = "ad_conn_id"
    default_conn_name = "aadsync_ad"
    conn_type = "aadsync_ad"
    hook_name = "Active Directory (AADSync)"

    def __init__(self, ad_conn_id: str = default_conn_name, *, settings: ADConnectionSettings | None = None):
        super().__init__()
        self.ad_conn_id = ad_conn_id
        self._settings = settings
        self._conn: ldap3.Connection | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return custom field behaviour (the provider info carries the same for the API server)."""
        from airflow_provider_aadsync.get_provider_info import get_provider_info

        for conn_type in get_provider_info()["connection-types"]:
            if conn_type["connection-type"] == cls.conn_type:
                behaviour = conn_type["ui-field-behaviour"]
                return {
                    "hidden_fields": behaviour["hidden-fields"],
                    "relabeling": behaviour["relabeling"],
                    "placeholders": behaviour["placeholders"],
                }
        return {}

    # ------------------------------------------------------------------------------------------- connection
    @cached_property
    def settings(self) -> ADConnectionSettings:
        if self._settings is not None:
            return self._settings
        return ADConnectionSettings.from_connection(self.get_connection(self.ad_conn_id))

    def _tls(self) -> ldap3.Tls | None:
        settings = self.settings
        if settings.tls == "none":
            return None
        ca_file = ca_data = None
        if settings.ca_cert_is_pem:
            ca_data = settings.ca_cert
        elif settings.ca_cert:
            if not Path(settings.ca_cert).is_file():
                raise ActiveDirectoryConnectionError(f"CA certificate file {settings.ca_cert!r} does not exist")
            ca_file = settings.ca_cert
        return ldap3.Tls(
            validate=ssl.CERT_REQUIRED,
            version=ssl.PROTOCOL_TLS_CLIENT,
            ca_certs_file=ca_file,
            ca_certs_data=ca_data,
        )

    def get_conn(self) -> ldap3.Connection:
        """Return a bound connection, opened once per hook."""
        if self._conn is not None and self._conn.bound and not self._conn.closed:
            return self._conn
        settings = self.settings
        if settings.tls == "none":
            if not settings.allow_plain_ldap_bind:
                raise ActiveDirectoryConfigurationError(
                    f"refusing to bind to {settings.url} as {settings.bind_dn}: with tls=none the simple bind would "
                    "send the password in clear. Set tls to ldaps or starttls, or, on an isolated test network "
                    "only, set the connection extra allow_plain_ldap_bind: true"
                )
            log.warning(
                "connection %s binds over plain LDAP without TLS (tls=none, allow_plain_ldap_bind): the password "
                "travels in clear",
                settings.url,
            )
        server = ldap3.Server(
            settings.host,
            port=settings.effective_port,
            use_ssl=settings.tls == "ldaps",
            tls=self._tls(),
            get_info=ldap3.NONE,
            connect_timeout=settings.connect_timeout,
        )
        conn = ReferralRefusingConnection(
            server,
            url=settings.url,
            auto_referrals=False,  # never bind to a referred server with this password (active_directory_referrals)
            user=settings.bind_dn,
            password=settings.password.get_secret_value(),
            auto_bind=ldap3.AUTO_BIND_NONE,
            raise_exceptions=True,
            auto_range=False,
            return_empty_attributes=False,
            receive_timeout=settings.receive_timeout,
            read_only=False,
        )
        where = f"{settings.url} as {settings.bind_dn}"
        try:
            conn.open()
            if settings.tls == "starttls":
                conn.start_tls()
            conn.bind()
        except ldap_errors.LDAPInvalidCredentialsResult:
            raise ActiveDirectoryConnectionError(
                f"bind to {where} was refused: invalid credentials (check the connection's login and password)"
            ) from None
        except ldap_errors.LDAPStrongerAuthRequiredResult:
            raise ActiveDirectoryConnectionError(
                f"bind to {where} was refused: the server requires a TLS-protected bind; set tls to ldaps or starttls"
            ) from None
        except (
            ldap_errors.LDAPSocketOpenError,
            ldap_errors.LDAPStartTLSError,
            ldap_errors.LDAPSocketReceiveError,
            ldap_errors.LDAPSessionTerminatedByServerError,
        ) as error:
            text = str(error)
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
                raise ActiveDirectoryConnectionError(
                    f"TLS certificate of {settings.url} could not be verified against the configured CA "
                    f"({settings.ca_label}): {short_text(text)}"
                ) from None
            raise ActiveDirectoryConnectionError(f"could not reach {settings.url}: {short_text(text)}") from None
        except ldap_errors.LDAPException as error:
            raise ActiveDirectoryConnectionError(f"bind to {where} failed: {short_text(str(error))}") from None
        try:
            check_base_dn(conn, settings, self.search_base)
        except BaseException:
            conn.unbind()
            raise
        self._conn = conn
        return conn

    @cached_property
    def search_base(self) -> str:
        """The base DN as sent to the DC: as configured, minus insignificant spaces (ldap3 refuses them)."""
        try:
            return wire_dn(self.settings.base_dn)
        except DnError as error:
            raise ActiveDirectoryConfigurationError(f"the connection extra base_dn is not usable: {error}") from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.unbind()
            self._conn = None

    def test_connection(self) -> tuple[bool, str]:
        """Bind, check the base DN and that DirSync is allowed (active_directory_checks); never raises."""
        return check_connection(self)

    @cached_property
    def root_dse(self) -> dict[str, list[str]]:
        conn = self.get_conn()
        conn.search(
            "",
            "(objectClass=*)",
            ldap3.BASE,
            attributes=[
                "defaultNamingContext",
                "configurationNamingContext",
                "dnsHostName",
                "highestCommittedUSN",
                "supportedControl",
            ],
        )
        raw = conn.response[0]["raw_attributes"]
        return {name: [value.decode() for value in values] for name, values in raw.items()}

    def naming_context(self) -> str:
        return self.root_dse["defaultNamingContext"][0]

    def server_name(self) -> str:
        return (self.root_dse.get("dnsHostName") or [self.settings.host])[0]

    def deletion_window(self) -> dt.timedelta:
        """How long a DirSync cookie still sees every deletion: the forest's tombstone lifetime (and deleted-object
        lifetime with the Recycle Bin), read from the configuration naming context (active_directory_lifetime)."""
        configuration = self.root_dse["configurationNamingContext"][0]
        return read_deletion_window(self.get_conn(), configuration, self.settings.url)

    # ---------------------------------------------------------------------------------------------- reading
    def find_objects(self, attribute: str, value: str, attributes: Sequence[str] = ("objectGUID",)) -> list[RawEntry]:
        """Find objects whose ``attribute`` equals ``value``; the value is escaped, never spliced raw."""
        conn = self.get_conn()
        search_filter = f"(&{IMPORT_FILTER}({attribute}={filter_value(value)}))"
        conn.search(
            self.search_base,
            search_filter,
            ldap3.SUBTREE,
            attributes=list(attributes),
            controls=[extended_dn_control(criticality=False, hex_format=False)],
        )
        return [
            (entry["dn"], dict(entry["raw_attributes"])) for entry in conn.response if entry["type"] == "searchResEntry"
        ]

    def group_members(self, group_dn: str) -> list[str]:
        """A pilot group's direct ``member`` values (extended DNs), every range read; a missing group is an error,
        never "no members" (which would take every object out of scope)."""
        guid = self.object_guid(wire_dn(group_dn))
        if guid is None:
            raise ActiveDirectoryConfigurationError(f"the pilot group {group_dn!r} does not exist")
        return [value.decode() for value in self.read_values(guid, "member")]

    def full_import_pages(self, attributes: Sequence[str], base: str | None = None) -> Iterator[list[RawEntry]]:
        """Yield the directory under the base DN (or ``base``) page by page, big attributes read by ranges.

        The pages come through python-ldap or ldap3 (active_directory_pages, the connection's ``full_read_client``);
        the bound, checked ldap3 connection reads the further ranges of big ``member`` attributes either way."""
        conn = self.get_conn()
        search_base = wire_dn(base) if base else self.search_base
        window = f"range=0-{RANGE_WINDOW - 1}"
        requested = [
            f"{name};{window}" if name.lower() in _RANGED_ATTRIBUTES else name for name in entry_attributes(attributes)
        ]
        client = full_read_client(self.settings)
        log.info("full read of %s through %s", search_base, client)
        if client == "python-ldap":
            pages = python_ldap_pages(self.settings, search_base, IMPORT_FILTER, requested)
        else:
            pages = ldap3_pages(conn, search_base, IMPORT_FILTER, requested, self.settings.page_size)
        for page in pages:
            yield [(dn, self._complete_ranges(dn, raw)) for dn, raw in page]

    def _complete_ranges(self, extended_dn: str, raw: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
        """Merge ``member;range=a-b`` chunks into one ``member`` list, reading further ranges until ``*``."""
        for attribute in [name for name in raw if ";" in name]:  # only options (range=) need work
            name, _, option = attribute.partition(";")
            if not option.lower().startswith("range="):
                continue
            values = list(raw.pop(attribute))
            high = option.split("-", 1)[1]
            while high != "*":
                next_low = int(high) + 1
                chunk_name, chunk = self._read_range(extended_dn, name, next_low)
                if chunk_name is None:
                    # No ranged attribute in the answer: AD names the last range "...-*". Taking the values read so
                    # far as complete would truncate the group (and the sync would remove the rest).
                    raise RangedReadError(
                        f"ranged read of {name!r} of {_EXTENDED_PREFIX.sub('', extended_dn)} from {self.settings.url} "
                        f"returned no '{name};range=...' attribute after {len(values):,} values (asked from value "
                        f"{next_low:,}); the values cannot be known complete, so the import stops rather than "
                        "truncate the group"
                    )
                values.extend(chunk)
                high = chunk_name.split("-", 1)[1]
            raw[name] = values
        return raw

    def _read_range(self, extended_dn: str, name: str, low: int) -> tuple[str | None, list[bytes]]:
        conn = self.get_conn()
        conn.search(
            _EXTENDED_PREFIX.sub("", extended_dn),
            "(objectClass=*)",
            ldap3.BASE,
            attributes=[f"{name};range={low}-{low + RANGE_WINDOW - 1}"],
            controls=[extended_dn_control(criticality=False, hex_format=False)],
        )
        raw = conn.response[0]["raw_attributes"] if conn.response else {}
        for attribute, values in raw.items():
            if attribute.lower().startswith(f"{name.lower()};range="):
                return attribute, list(values)
        return None, []

    # ------------------------------------------------------------------------------------------------ DirSync
    def _dirsync_base(self, base: str | None) -> str:
        return wire_dn(base) if base else self.naming_context()

    def _dirsync_search(
        self, search_filter: str, requested: Sequence[str], cookie: bytes | None, base: str | None = None
    ) -> tuple[list[RawEntry], bytes, bool]:
        """One DirSync search through ldap3: (entries, the new cookie, whether the DC has more)."""
        conn = self.get_conn()
        try:
            conn.search(
                self._dirsync_base(base),
                search_filter,
                ldap3.SUBTREE,
                attributes=list(requested),
                controls=[
                    dirsync_request_control(cookie),  # Flags as Windows AD reads them, not as dir_sync_control
                    extended_dn_control(criticality=False, hex_format=False),
                    show_deleted_control(criticality=False),
                ],
            )
        except ldap_errors.LDAPNoSuchObjectResult:  # no such partition, whatever the cookie
            raise missing_partition_error(self.settings.url, self._dirsync_base(base)) from None
        except ldap_errors.LDAPOperationResult as error:  # a referral is not one: the connection raised its own error
            if cookie:
                raise DirSyncCookieRejected(
                    f"{self.settings.url} answered {error.description or error.result}: {short_text(str(error))}"
                ) from None
            raise
        control = conn.result.get("controls", {}).get(DIRSYNC_OID)
        if control is None:
            raise ActiveDirectoryError(f"{self.settings.url} did not return a DirSync control; is it an AD DC?")
        wanted = {name.lower() for name in requested}
        entries = [
            (entry["dn"], requested_only(entry["raw_attributes"], wanted))
            for entry in conn.response
            if entry["type"] == "searchResEntry"
        ]
        return entries, control["value"]["cookie"], bool(control["value"]["more_results"])

    def dirsync_watermark(self, base: str | None = None) -> bytes:
        """A DirSync cookie for "now" (of partition ``base``), read with a filter matching nothing.

        Searched again with each cookie while the DC says MoreResults: Windows AD walks the partition in steps bounded
        by MaxBytes ([MS-ADTS] 3.1.1.3.4.1.3), and a cookie taken before its last step stands for a point in the
        past, so the next delta would read again, as changes, everything after it. Samba answers in one step."""
        requested, cookie = dirsync_attributes(["objectGUID"]), None
        while True:
            _, cookie, more = self._dirsync_search(_EMPTY_FILTER, requested, cookie, base)
            if not more:
                return cookie

    def dirsync_pages(
        self, attributes: Sequence[str], cookie: bytes, base: str | None = None
    ) -> Iterator[tuple[list[RawEntry], bytes | None]]:
        """Yield (changed entries, cookie after them) until the DC says there is nothing more.

        The cookie is None on a chunk that ends inside a search: only the search's last chunk has one (see
        active_directory_pages.python_ldap_dirsync_pages, used when the connection's ``full_read_client`` is
        python-ldap; ldap3 yields one whole search at a time, so each of its pages carries its cookie)."""
        requested = dirsync_attributes(attributes)
        client = full_read_client(self.settings)
        search_base = self._dirsync_base(base)
        log.info("DirSync read of %s through %s", search_base, client)
        if client == "python-ldap":
            yield from python_ldap_dirsync_pages(self.settings, search_base, IMPORT_FILTER, requested, cookie)
            return
        while True:
            entries, cookie, more = self._dirsync_search(IMPORT_FILTER, requested, cookie, base)
            yield entries, cookie
            if not more:
                return

    # ------------------------------------------------------------------------------------------------ writing
    # Objects that exist are addressed as <GUID=...>: AD and Samba accept it for every operation, so a write reaches
    # the object even after someone renamed or moved it. Member values are <GUID=...> too: no DN lookups.
    def add_object(self, dn: str, object_class: str, attributes: dict[str, list[Any]]) -> str:
        """Create ``dn`` with ``attributes``; return its objectGUID (text form)."""
        values = {name: list(vals) for name, vals in attributes.items() if vals}
        self._write("add", dn, lambda conn: conn.add(dn, object_class, values))
        guid = self.object_guid(dn)
        if guid is None:
            raise ActiveDirectoryWriteError(f"{dn} was added but cannot be read back", code="noSuchObject", dn=dn)
        return guid

    def modify_object(self, guid: str, replace: dict[str, list[Any]]) -> None:
        """Replace the values of attributes (an empty list clears the attribute)."""
        changes = {name: [(ldap3.MODIFY_REPLACE, list(values))] for name, values in replace.items()}
        target = guid_dn(guid)
        self._write("modify", target, lambda conn: conn.modify(target, changes, controls=_PERMISSIVE))

    def modify_references(
        self, guid: str, attribute: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> None:
        """Add and remove reference values (target objectGUIDs) of one attribute in one modify operation.

        Idempotent: the permissive-modify control asks the DC to accept a value already present or already absent.
        Samba 4.17 ignores that control for linked attributes such as ``member`` (entryAlreadyExists /
        unwillingToPerform), so on those refusals the current values are read once and only the difference is sent.
        """
        operations = reference_operations(add, remove)
        if not operations:
            return
        target = guid_dn(guid)
        try:
            self._write(
                "modify", target, lambda conn: conn.modify(target, {attribute: operations}, controls=_PERMISSIVE)
            )
        except ActiveDirectoryWriteError as error:
            if error.code not in ("entryAlreadyExists", "unwillingToPerform", "noSuchAttribute"):
                raise
            present = {value_guid(value) for value in self.read_values(guid, attribute)}
            self.counters["ldap_reconcile_reads"] += 1
            operations = reference_operations(
                [t for t in add if t.lower() not in present], [t for t in remove if t.lower() in present]
            )
            if operations:
                self._write("modify", target, lambda conn: conn.modify(target, {attribute: operations}))

    def move_object(self, guid: str, new_dn: str) -> None:
        """Rename and/or move the object to ``new_dn`` (one modify DN operation)."""
        rdn, superior = split_rdn(new_dn)  # honours escaped commas, and a value ending in "\\\\" or "\\ "
        target = guid_dn(guid)
        self._write(
            "modify DN", target, lambda conn: conn.modify_dn(target, rdn, delete_old_dn=True, new_superior=superior)
        )

    def delete_object(self, guid: str) -> None:
        target = guid_dn(guid)
        self._write("delete", target, lambda conn: conn.delete(target))

    def object_guid(self, dn: str) -> str | None:
        """The objectGUID of the object at ``dn``, or None when there is none."""
        entry = self._read_base(dn, ["objectGUID"])
        raw = (entry or {}).get("objectGUID")
        return str(uuid.UUID(bytes_le=raw[0])) if raw else None

    def object_mark(self, dn: str, attribute: str = "adminDescription") -> tuple[str, str | None] | None:
        """The objectGUID of the object at ``dn`` and its ownership mark (the group writeback stamps
        ``adminDescription``), or None when there is no object there: the AD export adopts only what carries its
        mark."""
        entry = self._read_base(dn, ["objectGUID", attribute])
        raw = (entry or {}).get("objectGUID")
        if not raw:
            return None
        mark = next(iter((entry or {}).get(attribute) or []), None)
        return str(uuid.UUID(bytes_le=raw[0])), mark.decode("utf-8", "replace") if mark is not None else None

    def object_dn(self, guid: str) -> str | None:
        """The current DN of the object with this objectGUID, or None when there is none."""
        conn = self.get_conn()
        try:
            conn.search(guid_dn(guid), "(objectClass=*)", ldap3.BASE, attributes=["objectGUID"])
        except ldap_errors.LDAPNoSuchObjectResult:
            return None
        entries = [entry for entry in conn.response if entry["type"] == "searchResEntry"]
        return entries[0]["dn"] if entries else None

    def read_values(self, guid: str, attribute: str) -> list[bytes]:
        """All values of ``attribute`` of an object, ranged reads included (the import's code path); none when the
        object is gone."""
        found = self.read_entries([guid], [attribute], guid_dn(guid), search_filter="(objectClass=*)", ranged=True)
        return found[0][1].get(attribute, []) if found else []

    def read_entries(
        self, guids: Sequence[str], attributes: Sequence[str], base: str | None = None, **search: Any
    ) -> list[RawEntry]:
        """The objects of ``guids`` as a full import reads them (extended DN, big attributes every range read), in one
        search per ``GUID_READ_CHUNK``; gone ones and computers (``objectClass=user`` matches them, the import drops
        them) left out. A DirSync delta reports an object moved into the scope with its moved attributes only."""
        conn = self.get_conn()
        window, every = f";range=0-{RANGE_WINDOW - 1}", search.get("ranged", False)
        ranged = [
            name + window if every or name.lower() in _RANGED_ATTRIBUTES else name
            for name in entry_attributes(attributes)
        ]
        control, found = extended_dn_control(criticality=False, hex_format=False), []
        for start in range(0, len(guids), GUID_READ_CHUNK):
            wanted = "".join(guid_filter(guid) for guid in guids[start : start + GUID_READ_CHUNK])
            kinds = search.get("search_filter", f"(&{IMPORT_FILTER}(!(objectClass=computer)))")
            try:
                conn.search(base or self.search_base, f"(&{kinds}(|{wanted}))", attributes=ranged, controls=[control])
            except ldap_errors.LDAPNoSuchObjectResult:  # a base of <GUID=...> that is gone
                continue
            entries = [entry for entry in conn.response if entry["type"] == "searchResEntry"]
            found += [
                (entry["dn"], self._complete_ranges(entry["dn"], dict(entry["raw_attributes"]))) for entry in entries
            ]
        return found

    def _read_base(self, dn: str, attributes: Sequence[str]) -> dict[str, list[bytes]] | None:
        conn = self.get_conn()
        try:
            conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=list(attributes))
        except ldap_errors.LDAPNoSuchObjectResult:
            return None
        entries = [entry for entry in conn.response if entry["type"] == "searchResEntry"]
        return dict(entries[0]["raw_attributes"]) if entries else None

    def _write(self, what: str, dn: str, call) -> None:
        """Run one write; a refusal becomes an ActiveDirectoryWriteError naming the LDAP result."""
        conn = self.get_conn()
        write_guard.check()  # an exporter's lock, asked before each write (engine/write_guard.py)
        self.counters["ldap_writes"] += 1
        try:
            call(conn)
        except ldap_errors.LDAPOperationResult as error:
            code = error.description or str(error.result)
            message = f"{what} of {dn} refused by {self.settings.url}: {code} {short_text(error.message or '')}".strip()
            raise ActiveDirectoryWriteError(message, code=code, dn=dn) from None

    @cached_property
    def counters(self) -> Counter[str]:
        """LDAP writes sent through this hook (the export reports them)."""
        return Counter()


_PERMISSIVE = [(PERMISSIVE_MODIFY_OID, False, None)]
