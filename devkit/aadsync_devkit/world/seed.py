"""Deterministic, realistic test data for the dev DC (users, nested security groups, one big group).

Why over LDAP: one LDAP add per user over a single LDAPS connection is correct and simple (~250 users/s on an
empty Samba 4.17 DC, 2 cores), but each add is its own transaction and each commit copies records that grow with
the directory (perf: memmove and page faults in ldb's key-value layer, e.g. index lists), so the rate falls with
the directory's size (~12 users/s at 60,000 users). Parallel connections are not faster (Samba serialises writes).
Big fixtures therefore add their OUs and users offline first (:func:`offline_entries` + ``SambaDC.add_offline``:
the DSDB module stack of the stopped DC, 2,000 adds per commit, ~480 users/s) and call :func:`seed_directory` with
``users_present=True`` for the rest. Group members are written in MODIFY operations carrying thousands of values,
which is fast. Users carry every attribute the shipped rules export (issue 17: address, phones, job, hire date,
language, other mails, a manager), some left empty, some in other scripts, some at Graph's length limits. Most users
(all but every tenth, of the first PASSWORD_USERS_MAX) get a password (unicodePwd over LDAPS, one modify each, ~45/s: a
password set costs far more than an add) and an enabled account (userAccountControl 512); the rest stay disabled,
which the sync engine must handle anyway (accountEnabled=false).

Idempotency: when seeding completes, the params are written to ``description`` of ``OU=AADSync``. Seeding a
directory carrying the same marker only re-reads what is there; a different marker raises ``ValueError``; a
directory with a partial (interrupted) seed is completed: existing objects are skipped and group memberships
are rewritten (first chunk MODIFY_REPLACE, then MODIFY_ADD) so they end up exact.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import ldap3

#: 4: the security groups carry no mail (a security group with mail is a mail-enabled security group, which Graph
#: cannot create: with mail on every seeded group, no group would reach Entra ID).
SEED_VERSION = 4
#: Users past this many keep a disabled account without password (big benchmark fixtures: a password set is slow).
PASSWORD_USERS_MAX = 250
#: userAccountControl of an enabled normal account, and of a disabled one.
NORMAL_ACCOUNT, DISABLED_ACCOUNT = 512, 514
MEMBERS_PER_MODIFY = 5000
MAIL_DOMAIN = "corp.example.test"
COMPANY = "Contoso Example Corp"

DEPARTMENTS = ("Engineering", "Sales", "Marketing", "Finance", "HR", "Operations", "Legal", "Support")
TITLES = (
    "Engineer",
    "Senior Engineer",
    "Manager",
    "Analyst",
    "Specialist",
    "Director",
    "Consultant",
    "Coordinator",
    "Associate",
    "Lead",
)
FIRST_NAMES = (
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Frances",
    "John",
    "Radia",
    "Tim",
    "Hedy",
    "Edsger",
    "Katherine",
    "Donald",
    "Sophie",
    "Niklaus",
    "Lucia",
    "Bjarne",
    "Mary",
    "Guido",
    "Anita",
    "James",
    "Shafi",
    "Leslie",
    "Ivan",
    "Joan",
    "Wei",
    "Amara",
    "Kenji",
    "Priya",
    "Omar",
    "Elena",
    "Mateo",
    "Chloe",
    "Yusuf",
    "Ingrid",
    "Tariq",
    "Zoe",
)
LAST_NAMES = (
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Allen",
    "Backus",
    "Perlman",
    "Berners-Lee",
    "Lamarr",
    "Dijkstra",
    "Johnson",
    "Knuth",
    "Wilson",
    "Wirth",
    "Garcia",
    "Stroustrup",
    "Keller",
    "van Rossum",
    "Borg",
    "Gosling",
    "Goldwasser",
    "Lamport",
    "Sutherland",
    "Clarke",
    "Zhang",
    "Okafor",
    "Tanaka",
    "Patel",
    "Haddad",
    "Petrova",
    "Rossi",
    "Dubois",
    "Yilmaz",
    "Larsen",
    "Rahman",
    "Novak",
)

#: (street, city, state, postal code, country name, ISO 3166 code, language): realistic, some in other scripts.
PLACES = (
    ("1 Microsoft Way", "Redmond", "WA", "98052", "United States", "US", "en-US"),
    ("Königsallee 92a", "Düsseldorf", "NRW", "40212", "Germany", "DE", "de-DE"),
    ("Avenida Paulista 1578", "São Paulo", "SP", "01310-200", "Brazil", "BR", "pt-BR"),
    ("Rynek Główny 1", "Kraków", "Małopolska", "31-042", "Poland", "PL", "pl"),
    ("丸の内2-7-2", "東京", "東京都", "100-7090", "Japan", "JP", "ja"),
    ("12 Rue de Rivoli", "Paris", "Île-de-France", "75004", "France", "FR", "fr-FR"),
)
EMPLOYEE_TYPES = ("Employee", "Contractor", "Intern", "Vendor")
#: At Graph's limits: jobTitle 128, postalCode 40, streetAddress 1,024, employeeId 16, city 128 (the AD attributes'
#: own upper bounds are the same or larger).
AT_LIMITS = {
    "title": "Principal Engineer, Identity Platform, " + "x" * 89,
    "postalCode": "9" * 40,
    "streetAddress": ("Long Street " * 86)[:1024],
    "employeeID": "L" * 16,
    "l": "Llanfairpwllgwyngyll" * 6 + "abcdefgh",
}

GROUP_TYPE_GLOBAL_SECURITY = -2147483646  # 0x80000002
GROUP_TYPE_UNIVERSAL_SECURITY = -2147483640  # 0x80000008

USER_CLASSES = ["top", "person", "organizationalPerson", "user"]
_ALREADY_EXISTS = 68


@dataclass
class SeedReport:
    """What :func:`seed_directory` created (or found, when ``reused``), for assertions in tests."""

    users: int
    groups: int
    big_group_dn: str | None
    seconds: float
    root_dn: str
    ou_dns: list[str] = field(default_factory=list)
    user_dns: list[str] = field(default_factory=list)
    group_dns: list[str] = field(default_factory=list)
    reused: bool = False

    @property
    def users_per_second(self) -> float:
        return self.users / self.seconds if self.seconds and not self.reused else 0.0


@dataclass(frozen=True)
class _User:
    dn: str
    attrs: dict[str, object]


def _marker(users: int, groups: int, group_size: int, seed: int) -> str:
    return f"aadsync-seed v{SEED_VERSION} users={users} groups={groups} group_size={group_size} seed={seed}"


def _plan_users(users: int, seed: int, users_ou: str) -> list[_User]:
    rng = random.Random(seed)
    out: list[_User] = []
    for n in range(1, users + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        dept = DEPARTMENTS[rng.randrange(len(DEPARTMENTS))]
        slug_first = first.lower()
        slug_last = last.lower().replace(" ", "").replace("-", "")
        local = f"{slug_first}.{slug_last}.{n}"
        sam = f"{slug_first[0]}{slug_last}"[:12] + str(n)  # <= 12 + 7 digits < 20
        attrs: dict[str, object] = {
            "sAMAccountName": sam,
            "userPrincipalName": f"{local}@{MAIL_DOMAIN}",
            "givenName": first,
            "sn": last,
            "displayName": f"{first} {last}",
            "department": dept,
            "title": rng.choice(TITLES),
            "mail": f"{local}@{MAIL_DOMAIN}",
            "proxyAddresses": [f"SMTP:{local}@{MAIL_DOMAIN}", f"smtp:{sam}@{MAIL_DOMAIN}"],
            "employeeID": f"E{n:07d}",
            "telephoneNumber": f"+1 555 {rng.randrange(100, 999)} {rng.randrange(1000, 9999)}",
            "company": COMPANY,
        }
        street, city, state, postal, country, code, language = PLACES[rng.randrange(len(PLACES))]
        if n % 5 != 0:  # every fifth user has no address, phones, language or hire date: empty values flow too
            attrs |= {
                "streetAddress": street,
                "l": city,
                "st": state,
                "postalCode": postal,
                "co": country,
                "c": code,
                "preferredLanguage": language,
                "mobile": f"+1 555 {rng.randrange(100, 999)} {rng.randrange(1000, 9999)}",
                "physicalDeliveryOfficeName": f"Building {rng.randrange(1, 40)}, Room {n % 50:02d}",
                "employeeType": rng.choice(EMPLOYEE_TYPES),
                "msDS-cloudExtensionAttribute1": f"{rng.randrange(1995, 2026)}-{rng.randrange(1, 13):02d}-"
                f"{rng.randrange(1, 29):02d}T08:00:00Z",
            }
        if n % 3 == 0:
            attrs["facsimileTelephoneNumber"] = f"+1 555 {rng.randrange(100, 999)} 0000"
        if n % 4 == 0:
            attrs["otherMailbox"] = [f"{local}@private.example.org", f"{sam}@home.example.net"]
        if n % 11 == 0:
            attrs |= AT_LIMITS
        manager = max(1, n // 4)
        if manager < n and n % 9 != 0:  # an earlier user (the add needs the DN to exist); some have none
            attrs["manager"] = out[manager - 1].dn
        out.append(_User(f"CN={first} {last} {n},OU={dept},{users_ou}", attrs))
    return out


def _password(n: int, seed: int) -> str:
    """A dev-world password meeting Samba's complexity rules (deterministic: the seeded world is a test fixture)."""
    return f"Seed-{seed}-User-{n}-pw!"


def enabled_users(users: int) -> set[int]:
    """The 1-based numbers of the seeded users that get a password and an enabled account."""
    return {n for n in range(1, min(users, PASSWORD_USERS_MAX) + 1) if n % 10 != 0}


def _enable(conn: ldap3.Connection, dn: str, password: str) -> None:
    """Set the password (unicodePwd: the quoted password in UTF-16LE, LDAPS only) and enable the account."""
    changes = {
        "unicodePwd": [(ldap3.MODIFY_REPLACE, [f'"{password}"'.encode("utf-16-le")])],
        "userAccountControl": [(ldap3.MODIFY_REPLACE, [NORMAL_ACCOUNT])],
    }
    if not conn.modify(dn, changes):
        raise RuntimeError(f"setting the password of {dn} failed: {conn.result.get('description')}")


def _add(conn: ldap3.Connection, dn: str, classes: list[str], attrs: dict[str, object]) -> bool:
    """Add an entry; True if created, False if it already existed. Other failures raise."""
    ok = conn.add(dn, classes, attrs)
    if ok:
        return True
    if conn.result.get("result") == _ALREADY_EXISTS:
        return False
    raise RuntimeError(f"add {dn} failed: {conn.result}")


def _set_members(conn: ldap3.Connection, group_dn: str, members: list[str]) -> None:
    """Make *members* the exact member list, in big chunks (idempotent: first chunk replaces)."""
    if not members:
        ok = conn.modify(group_dn, {"member": [(ldap3.MODIFY_REPLACE, [])]})
        if not ok:
            raise RuntimeError(f"clear members of {group_dn} failed: {conn.result}")
        return
    for i in range(0, len(members), MEMBERS_PER_MODIFY):
        op = ldap3.MODIFY_REPLACE if i == 0 else ldap3.MODIFY_ADD
        if not conn.modify(group_dn, {"member": [(op, members[i : i + MEMBERS_PER_MODIFY])]}):
            raise RuntimeError(f"set members of {group_dn} failed: {conn.result}")


def _read_marker(conn: ldap3.Connection, root_dn: str) -> str | None:
    if not conn.search(root_dn, "(objectClass=organizationalUnit)", ldap3.BASE, attributes=["description"]):
        return None
    vals = conn.response[0]["attributes"].get("description") or []
    return vals[0] if vals else ""


def _dns_under(conn: ldap3.Connection, base: str, flt: str) -> list[str]:
    entries = conn.extend.standard.paged_search(
        base, flt, ldap3.SUBTREE, attributes=["1.1"], paged_size=1000, generator=True
    )
    return sorted(e["dn"] for e in entries if e.get("type") == "searchResEntry")


def _layout(base_dn: str) -> tuple[str, str, str, list[str]]:
    """(root OU, users OU, groups OU, every OU) of a seeded directory."""
    root = f"OU=AADSync,{base_dn}"
    users_ou, groups_ou = f"OU=Users,{root}", f"OU=Groups,{root}"
    return root, users_ou, groups_ou, [root, users_ou, groups_ou] + [f"OU={d},{users_ou}" for d in DEPARTMENTS]


def offline_entries(base_dn: str, *, users: int, seed: int = 42) -> list[tuple[str, list[str], dict[str, object]]]:
    """The OUs and users :func:`seed_directory` creates, with the same DNs and attributes, for an offline add
    (``SambaDC.add_offline``); then ``seed_directory(..., users_present=True)`` adds the rest over LDAP."""
    _root, users_ou, _groups_ou, ou_dns = _layout(base_dn)
    entries = [(dn, ["top", "organizationalUnit"], {}) for dn in ou_dns]
    return entries + [(user.dn, list(USER_CLASSES), user.attrs) for user in _plan_users(users, seed, users_ou)]


def seed_directory(
    conn: ldap3.Connection,
    base_dn: str,
    *,
    users: int,
    groups: int,
    group_size: int = 0,
    seed: int = 42,
    users_present: bool = False,
) -> SeedReport:
    """Create ``OU=AADSync,<base_dn>`` with *users* users, *groups* nested security groups and, if
    *group_size* > 0, ``CN=BigGroup-<group_size>`` holding exactly that many users. Deterministic per seed.

    Layout: ``OU=AADSync`` / ``OU=Users`` / ``OU=<Department>`` (users), ``OU=AADSync`` / ``OU=Groups``.
    ``users_present``: the OUs and users were already added offline (:func:`offline_entries`).
    """
    if group_size > users:
        raise ValueError(f"group_size={group_size} needs users >= group_size (users={users})")
    t0 = time.monotonic()
    root, users_ou, groups_ou, ou_dns = _layout(base_dn)
    marker = _marker(users, groups, group_size, seed)
    big_dn = f"CN=BigGroup-{group_size},{groups_ou}" if group_size > 0 else None

    existing = _read_marker(conn, root)
    if existing:
        if existing != marker:
            raise ValueError(f"{root} was seeded with different parameters: {existing!r} (wanted {marker!r})")
        user_dns = _dns_under(conn, users_ou, "(&(objectCategory=person)(objectClass=user))")
        group_dns = _dns_under(conn, groups_ou, "(objectClass=group)")
        plain = [g for g in group_dns if g != big_dn]
        return SeedReport(
            len(user_dns),
            len(plain),
            big_dn,
            time.monotonic() - t0,
            root,
            ou_dns,
            user_dns,
            plain,
            reused=True,
        )

    planned = _plan_users(users, seed, users_ou)
    if not users_present:
        for dn in ou_dns:
            _add(conn, dn, ["top", "organizationalUnit"], {})
        for u in planned:
            _add(conn, u.dn, USER_CLASSES, u.attrs)
    user_dns = [u.dn for u in planned]
    for n in sorted(enabled_users(users)):
        _enable(conn, planned[n - 1].dn, _password(n, seed))

    rng = random.Random(seed * 7919 + 1)
    group_dns: list[str] = []
    group_members: dict[str, list[str]] = {}
    for i in range(1, groups + 1):
        universal = i % 3 == 0
        name = f"SG-{DEPARTMENTS[i % len(DEPARTMENTS)]}-{i:04d}"
        dn = f"CN={name},{groups_ou}"
        _add(
            conn,
            dn,
            ["top", "group"],
            {
                "sAMAccountName": name[:20] if len(name) <= 20 else f"SG{i:06d}",
                "groupType": GROUP_TYPE_UNIVERSAL_SECURITY if universal else GROUP_TYPE_GLOBAL_SECURITY,
                "description": f"{'Universal' if universal else 'Global'} security group {i}",
            },
        )
        group_dns.append(dn)
        k = min(users, rng.randint(1, 25)) if users else 0
        group_members[dn] = sorted(rng.sample(user_dns, k)) if k else []
    # Nesting: every 4th group also contains one or two groups created after it (acyclic).
    for idx, dn in enumerate(group_dns):
        later = group_dns[idx + 1 :]
        if idx % 4 == 0 and later:
            group_members[dn] += rng.sample(later, min(len(later), 1 + idx % 2))
    for dn in group_dns:
        _set_members(conn, dn, group_members[dn])

    if big_dn is not None:
        _add(
            conn,
            big_dn,
            ["top", "group"],
            {
                "sAMAccountName": f"BigGroup-{group_size}"[:20],
                "groupType": GROUP_TYPE_GLOBAL_SECURITY,
                "description": f"Group with exactly {group_size} user members",
            },
        )
        _set_members(conn, big_dn, user_dns[:group_size])

    if not conn.modify(root, {"description": [(ldap3.MODIFY_REPLACE, [marker])]}):
        raise RuntimeError(f"writing seed marker failed: {conn.result}")
    return SeedReport(
        len(user_dns),
        len(group_dns),
        big_dn,
        time.monotonic() - t0,
        root,
        ou_dns,
        sorted(user_dns),
        sorted(group_dns),
    )


# ------------------------------------------------------------------------------------------- group writeback
#: The dev world's writeback OU (the product has no default: group writeback is opt-in and needs an OU). It lies under
#: the seeded root, inside the AD connection's base DN, so the import reads the written-back groups back.
DEV_BASE_DN = "DC=corp,DC=example,DC=test"


def dev_writeback_ou(base_dn: str = DEV_BASE_DN) -> str:
    """The OU the dev world writes Microsoft 365 groups back to."""
    return f"OU=Writeback,OU=AADSync,{base_dn}"


DEV_WRITEBACK_OU = dev_writeback_ou()


def ensure_writeback_ou(conn: ldap3.Connection, base_dn: str) -> str:
    """Create the dev writeback OU (and the seeded root above it) when missing; return its DN."""
    ou = dev_writeback_ou(base_dn)
    for dn in (f"OU=AADSync,{base_dn}", ou):
        _add(conn, dn, ["top", "organizationalUnit"], {})
    return ou


def dev_writeback_variables(base_dn: str = DEV_BASE_DN) -> dict[str, str]:
    """The Airflow Variables of the dev world (`aadsync-dev env`, the demo): group writeback on, and the Entra export
    paced to the dev tenant's write budget, which throttles nothing unless a test turns the emulator's throttling on
    (paced to Graph's 3,000 writes per 150 s, the demo's 2,000 users with their managers waited 140 s for nothing)."""
    return {
        "aadsync_writeback_enabled": "true",
        "aadsync_writeback_ou": dev_writeback_ou(base_dn),
        "aadsync_write_budget": "1000000",
        "aadsync_write_window_seconds": "1",
    }
