"""Several forests in the dev world: an account forest (CORP, 127.0.0.1) and a resource forest (FABRIKAM, 127.0.0.2).

Why: customers after a merger run an account forest and a resource forest whose Exchange holds *linked mailboxes*
(a disabled user carrying ``msExchMasterAccountSid`` = the ``objectSid`` of its owner in the account forest), and
people who exist in both forests with the same ``mail``. ``aadsync-dev up --forests 2`` starts a second Samba DC for
another realm on its own loopback address and seeds both so such pairs exist, plus a group of the resource forest
holding a member of the account forest (a foreign security principal).

Samba's schema has no Exchange attributes: :func:`ensure_exchange_schema` adds ``msExchRecipientTypeDetails``,
``msExchMasterAccountSid``, ``mailNickname`` and ``extensionAttribute1..15`` (as Exchange's schema extension does,
with the same names and syntaxes but dev-only OIDs) to the ``mailRecipient`` auxiliary class of users, groups and
contacts, over LDAP (``dsdb:schema update allowed`` is on in the dev DC's smb.conf; measured ~0.5 s). It also adds
``msDS-preferredDataLocation`` (Windows Server 1803's schema, Microsoft's OID) to the user class, which Samba's schema
lacks: the shipped rules flow it to Graph's preferredDataLocation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import ldap3
from ldap3.protocol.formatters.formatters import format_sid

from aadsync_devkit.paths import aadsync_home, dev_dc_home
from aadsync_devkit.processes import HOST
from aadsync_devkit.world.samba import DEFAULT_DOMAIN, DEFAULT_REALM, SambaDC
from aadsync_devkit.world.seed import USER_CLASSES, _add

#: Exchange recipient type of a linked mailbox (the mailbox of an account that lives in another forest).
LINKED_MAILBOX = 2
#: A domain-local security group: the kind of group that may hold foreign security principals.
GROUP_TYPE_DOMAIN_LOCAL_SECURITY = -2147483644  # 0x80000004
SHARED_MAIL_DOMAIN = "example.test"


@dataclass(frozen=True)
class ForestSpec:
    """One dev forest: its realm, NetBIOS domain, loopback address and the Airflow connection that reads it."""

    name: str
    realm: str
    domain: str
    host: str
    conn_id: str
    connector: str

    def home(self) -> Path:
        """Where its DC lives; the first forest keeps the historical dev DC home."""
        return dev_dc_home() if self.host == HOST else aadsync_home() / "dev" / f"samba-{self.name}"

    def dc(self) -> SambaDC:
        return SambaDC(self.home(), realm=self.realm, domain=self.domain, host=self.host)


FORESTS: tuple[ForestSpec, ...] = (
    ForestSpec("corp", DEFAULT_REALM, DEFAULT_DOMAIN, HOST, "aadsync_ad", "ad"),
    ForestSpec("fabrikam", "FABRIKAM.EXAMPLE.TEST", "FABRIKAM", "127.0.0.2", "aadsync_ad_fabrikam", "ad_fabrikam"),
)
MAX_FORESTS = len(FORESTS)

# ------------------------------------------------------------------------------------------------ Exchange schema
#: (CN, lDAPDisplayName, dev-only attributeID, attributeSyntax, oMSyntax): Exchange's names and syntaxes.
_EXCHANGE_ATTRIBUTES = (
    ("ms-Exch-Recipient-Type-Details", "msExchRecipientTypeDetails", "1.3.6.1.4.1.99999.16.1", "2.5.5.16", 65),
    ("ms-Exch-Master-Account-Sid", "msExchMasterAccountSid", "1.3.6.1.4.1.99999.16.2", "2.5.5.17", 4),
    ("ms-Exch-Mail-Nickname", "mailNickname", "1.3.6.1.4.1.99999.16.3", "2.5.5.12", 64),
    # Exchange's 15 custom attributes (Unicode), which the shipped rules export to onPremisesExtensionAttributes.
    *(
        (f"ms-Exch-Extension-Attribute-{n}", f"extensionAttribute{n}", f"1.3.6.1.4.1.99999.16.{10 + n}", "2.5.5.12", 64)
        for n in range(1, 16)
    ),
)


def _update_schema_now(conn: ldap3.Connection) -> None:
    """Ask the DC to reload its schema (a write of ``schemaUpdateNow`` on the root DSE, whose DN is empty)."""
    check_names, conn.check_names = conn.check_names, False
    try:
        if not conn.modify("", {"schemaUpdateNow": [(ldap3.MODIFY_REPLACE, ["1"])]}):
            raise RuntimeError(f"schemaUpdateNow failed: {conn.result}")
    finally:
        conn.check_names = check_names


#: Windows Server 1803's msDS-preferredDataLocation (Multi-Geo), with Microsoft's attributeID and range (1 to 10
#: characters, [MS-ADA2] 2.431): Samba's schema (Windows Server 2012 R2 / 2016 levels) lacks it, so the dev world adds
#: it to the user class, as a schema upgrade of a real forest does.
_DATA_LOCATION_ATTRIBUTES = (
    ("ms-DS-Preferred-Data-Location", "msDS-preferredDataLocation", "1.2.840.113556.1.4.2366", "2.5.5.12", 64),
)


def ensure_exchange_schema(conn: ldap3.Connection, base_dn: str) -> bool:
    """Add the Exchange attributes the default rules read (to mailRecipient) and msDS-preferredDataLocation (to
    user) to the DC's schema, unless present. True if any was added."""
    exchange = _ensure_attributes(conn, base_dn, _EXCHANGE_ATTRIBUTES, "Mail-Recipient")
    location = _ensure_attributes(conn, base_dn, _DATA_LOCATION_ATTRIBUTES, "User", range_=(1, 10))
    return exchange or location


def _ensure_attributes(
    conn: ldap3.Connection,
    base_dn: str,
    attributes: tuple[tuple[str, str, str, str, int], ...],
    class_cn: str,
    *,
    range_: tuple[int, int] | None = None,
) -> bool:
    schema = f"CN=Schema,CN=Configuration,{base_dn}"
    wanted = "".join(f"(lDAPDisplayName={name})" for _cn, name, *_rest in attributes)
    conn.search(schema, f"(|{wanted})", ldap3.LEVEL, attributes=["lDAPDisplayName"])
    present = {
        str(e["raw_attributes"]["lDAPDisplayName"][0].decode()) for e in conn.response if e["type"] == "searchResEntry"
    }
    missing = [attribute for attribute in attributes if attribute[1] not in present]
    if not missing:
        return False
    for cn, name, oid, syntax, om_syntax in missing:
        attrs: dict[str, object] = {
            "attributeID": oid,
            "lDAPDisplayName": name,
            "adminDisplayName": cn,
            "attributeSyntax": syntax,
            "oMSyntax": om_syntax,
            "isSingleValued": "TRUE",
            "searchFlags": 1,
        }
        if range_ is not None:
            attrs["rangeLower"], attrs["rangeUpper"] = range_
        _add(conn, f"CN={cn},{schema}", ["top", "attributeSchema"], attrs)
    _update_schema_now(conn)
    names = [name for _cn, name, *_rest in missing]
    if not conn.modify(f"CN={class_cn},{schema}", {"mayContain": [(ldap3.MODIFY_ADD, names)]}):
        raise RuntimeError(f"adding {', '.join(names)} to {class_cn} failed: {conn.result}")
    _update_schema_now(conn)
    return True


# ------------------------------------------------------------------------------------------------ seed
@dataclass
class ForestPairReport:
    """What :func:`seed_forest_pair` put in each forest, for tests and the CLI."""

    account_users: dict[str, str] = field(default_factory=dict)  # sAMAccountName -> DN (account forest)
    account_sids: dict[str, str] = field(default_factory=dict)  # sAMAccountName -> objectSid (account forest)
    resource_users: dict[str, str] = field(default_factory=dict)  # sAMAccountName -> DN (resource forest)
    linked_mailboxes: dict[str, str] = field(default_factory=dict)  # resource sAMAccountName -> master's SID
    fsp_group_dn: str = ""
    fsp_member_sid: str = ""


def _ensure_ou(conn: ldap3.Connection, base_dn: str, name: str) -> str:
    root = f"OU=AADSync,{base_dn}"
    _add(conn, root, ["top", "organizationalUnit"], {})
    ou = f"OU={name},{root}"
    _add(conn, ou, ["top", "organizationalUnit"], {})
    return ou


def _raw_sid(conn: ldap3.Connection, dn: str) -> bytes:
    if not conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["objectSid"]):
        raise RuntimeError(f"reading objectSid of {dn} failed: {conn.result}")
    return conn.response[0]["raw_attributes"]["objectSid"][0]


def _user(sam: str, upn_domain: str, given: str, surname: str, **extra: object) -> dict[str, object]:
    return {
        "sAMAccountName": sam,
        "userPrincipalName": f"{sam}@{upn_domain}",
        "givenName": given,
        "sn": surname,
        "displayName": f"{given} {surname}",
        **extra,
    }


def seed_forest_pair(
    account: ldap3.Connection, account_base: str, resource: ldap3.Connection, resource_base: str
) -> ForestPairReport:
    """Seed the account forest (``OU=Accounts,OU=AADSync``) and the resource forest (``OU=Resources,OU=AADSync``).

    Account forest: three people with a shared mail address (``shared<n>@example.test``) and two accounts that own a
    linked mailbox. Resource forest: the same three people by mail (other objects, other UPNs), two linked mailboxes
    (disabled, ``msExchRecipientTypeDetails`` 2, ``msExchMasterAccountSid`` = the account's ``objectSid``, the mail
    address on the mailbox), two people of its own, and the domain-local group ``Fabrikam Staff`` holding one of its
    people and, as a foreign security principal, the account forest's first shared person. Idempotent.
    """
    report = ForestPairReport()
    account_upn = ".".join(part.split("=", 1)[1] for part in account_base.split(",")).lower()
    resource_upn = ".".join(part.split("=", 1)[1] for part in resource_base.split(",")).lower()
    accounts_ou = _ensure_ou(account, account_base, "Accounts")
    resources_ou = _ensure_ou(resource, resource_base, "Resources")

    planned_accounts = [
        (
            f"CN=Shared Person {n},{accounts_ou}",
            _user(f"shared{n}", account_upn, "Shared", f"Person {n}", mail=f"shared{n}@{SHARED_MAIL_DOMAIN}"),
        )
        for n in (1, 2, 3)
    ]
    planned_accounts += [
        (f"CN=Linked Owner {n},{accounts_ou}", _user(f"owner{n}", account_upn, "Linked", f"Owner {n}")) for n in (1, 2)
    ]
    for dn, attrs in planned_accounts:
        _add(account, dn, list(USER_CLASSES), attrs)
        sam = str(attrs["sAMAccountName"])
        report.account_users[sam] = dn
        report.account_sids[sam] = format_sid(_raw_sid(account, dn))

    for n in (1, 2, 3):
        sam = f"fab.shared{n}"
        dn = f"CN=Shared Person {n},{resources_ou}"
        attrs = _user(sam, resource_upn, "Shared", f"Person {n}", mail=f"shared{n}@{SHARED_MAIL_DOMAIN}")
        _add(resource, dn, list(USER_CLASSES), attrs)
        report.resource_users[sam] = dn
    for n in (1, 2):
        sam, owner_dn = f"fab.mailbox{n}", report.account_users[f"owner{n}"]
        dn = f"CN=Linked Mailbox {n},{resources_ou}"
        mail = f"owner{n}@{SHARED_MAIL_DOMAIN}"
        attrs = _user(
            sam,
            resource_upn,
            "Linked",
            f"Mailbox {n}",
            mail=mail,
            proxyAddresses=[f"SMTP:{mail}"],
            userAccountControl=514,  # disabled: the owner logs on in the account forest
            msExchRecipientTypeDetails=LINKED_MAILBOX,
            msExchMasterAccountSid=_raw_sid(account, owner_dn),
        )
        _add(resource, dn, list(USER_CLASSES), attrs)
        report.resource_users[sam] = dn
        report.linked_mailboxes[sam] = report.account_sids[f"owner{n}"]
    for n in (1, 2):
        sam = f"fab.only{n}"
        dn = f"CN=Fabrikam Person {n},{resources_ou}"
        attrs = _user(sam, resource_upn, "Fabrikam", f"Person {n}", mail=f"{sam}@{resource_upn}")
        _add(resource, dn, list(USER_CLASSES), attrs)
        report.resource_users[sam] = dn

    report.fsp_group_dn = f"CN=Fabrikam Staff,{resources_ou}"
    report.fsp_member_sid = report.account_sids["shared1"]
    _add(
        resource,
        report.fsp_group_dn,
        ["top", "group"],
        {"sAMAccountName": "Fabrikam Staff", "groupType": GROUP_TYPE_DOMAIN_LOCAL_SECURITY},
    )
    # Samba, as AD, turns a member given as <SID=...> of another domain into a foreignSecurityPrincipal object
    # (CN=<SID>,CN=ForeignSecurityPrincipals) and stores the member as that object's DN.
    members = [report.resource_users["fab.only1"], f"<SID={report.fsp_member_sid}>"]
    if not resource.modify(report.fsp_group_dn, {"member": [(ldap3.MODIFY_REPLACE, members)]}):
        raise RuntimeError(f"setting the members of {report.fsp_group_dn} failed: {resource.result}")
    return report


# ------------------------------------------------------------------------------------------------ configuration
def connectors_configuration(forests: tuple[ForestSpec, ...], entra_conn_id: str = "aadsync_entra") -> dict:
    """The connectors configuration (YAML shape) naming these forests' AD connectors and the Entra connector."""
    return {
        "ad": [
            {
                "name": spec.connector,
                "conn_id": spec.conn_id,
                "partitions": [{"dn": spec.dc().base_dn, "include_ous": [], "exclude_ous": []}],
            }
            for spec in forests
        ],
        "entra": {"name": "entra", "conn_id": entra_conn_id},
    }
