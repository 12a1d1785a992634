"""Cached, seeded Samba DCs for tests and benchmarks.

Why: provisioning costs ~3.5 s and seeding is slow on Samba (~230 users/s, slower as the directory grows),
while restoring a stopped DC from a tar and starting it takes about a second. So each distinct
``(users, groups, group_size, seed)`` is built once and cached in :func:`fixture_cache_dir` as a
zstd-compressed tar (plain tar if ``zstd`` is missing); an empty provisioned base is cached too.
Bump :data:`FIXTURE_VERSION` whenever provisioning or seeding changes the resulting directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
from collections.abc import Iterator
from pathlib import Path

from aadsync_devkit.paths import fixture_cache_dir
from aadsync_devkit.processes import HOST
from aadsync_devkit.world.samba import DEFAULT_DOMAIN, DEFAULT_REALM, SambaDC
from aadsync_devkit.world.seed import SEED_VERSION, offline_entries, seed_directory

FIXTURE_VERSION = 1 * 100 + SEED_VERSION
#: From this many users, the OUs and users are added offline (``SambaDC.add_offline``, ~480 users/s, near-linear)
#: instead of over LDAP (~250 users/s on an empty DC, ~12/s at 60,000 users). The directory is the same.
OFFLINE_SEED_MIN_USERS = 5_000


def _suffix() -> str:
    return ".tar.zst" if shutil.which("zstd") else ".tar"


def seeded_cache_path(*, users: int, groups: int, group_size: int = 0, seed: int = 42) -> Path:
    """Cache file of one seeded fixture (may not exist yet)."""
    name = f"samba-u{users}-g{groups}-k{group_size}-s{seed}-v{FIXTURE_VERSION}{_suffix()}"
    return fixture_cache_dir() / name


def base_cache_path(realm: str = DEFAULT_REALM) -> Path:
    """Cache file of the provisioned-but-empty DC of *realm* (the default realm keeps its historical name)."""
    label = "" if realm.upper() == DEFAULT_REALM else f"-{realm.lower()}"
    return fixture_cache_dir() / f"samba-base{label}-v{FIXTURE_VERSION}{_suffix()}"


@contextlib.contextmanager
def _cache_lock(target: Path) -> Iterator[None]:
    """Serialise builders of the same cache file across processes (pytest-xdist, parallel benches)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f".{target.name}.lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def provisioned_dc(
    home: Path, *, realm: str = DEFAULT_REALM, domain: str = DEFAULT_DOMAIN, host: str = HOST
) -> SambaDC:
    """A stopped, freshly provisioned (empty) DC of *realm* at *home*, bound to *host*, restored from the realm's base
    cache when possible (a restored DC's certificate is remade at start if it does not name *host*)."""
    dc = SambaDC(home, realm=realm, domain=domain, host=host)
    dc.wipe()
    base = base_cache_path(realm)
    with _cache_lock(base):
        if base.exists():
            dc.restore(base)
        else:
            dc.provision()
            dc.snapshot(base)
    return dc


def cached_seeded_dc(
    home: Path, *, users: int, groups: int, group_size: int = 0, seed: int = 42, host: str = HOST
) -> SambaDC:
    """Return a *running* DC at *home*, bound to *host*, whose directory is provisioned and seeded with these
    parameters. Another loopback *host* (127.0.0.20) lets a long benchmark run beside the DC on 127.0.0.1.

    Any DC already running from *home* is stopped and *home* is wiped. The caller must stop the DC.
    """
    target = seeded_cache_path(users=users, groups=groups, group_size=group_size, seed=seed)
    dc = SambaDC(home, host=host)
    dc.wipe()
    with _cache_lock(target):
        if target.exists():
            dc.restore(target)
        else:
            dc = provisioned_dc(home, host=host)
            offline = users >= OFFLINE_SEED_MIN_USERS
            if offline:
                dc.add_offline(offline_entries(dc.base_dn, users=users, seed=seed))
            dc.start()
            try:
                conn = dc.connect()
                try:
                    seed_directory(
                        conn,
                        dc.base_dn,
                        users=users,
                        groups=groups,
                        group_size=group_size,
                        seed=seed,
                        users_present=offline,
                    )
                finally:
                    conn.unbind()
            finally:
                dc.stop()
            dc.snapshot(target)
    dc.start()
    return dc
