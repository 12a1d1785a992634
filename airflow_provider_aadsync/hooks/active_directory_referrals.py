"""The hook's ldap3 connection never follows a referral: it raises :class:`ActiveDirectoryReferralError` instead.

A DC answers a search with a referral (result 10) when its base lies in no naming context the DC holds: another
domain of the forest (a partition of a child domain read through a DC of the parent) or no domain at all (a mistyped
partition, ``DC=contoso,DC=co``, referred to the DNS name the DN spells). ldap3 follows referrals by default
(``auto_referrals=True``): it opens a connection to the referred host and binds there with the same DN and password,
over plain LDAP for AD's ``ldap://`` referrals (StartTLS only when the first connection used it, then with ldap3's
default ``Tls()``, which validates no certificate). The connection is therefore made with ``auto_referrals=False``
and a referral result becomes an error that names the base, the referred URLs and what to do. The python-ldap reads
set ``OPT_REFERRALS`` 0 and give the same error (active_directory_pages).

Continuation references inside a successful subtree search (``searchResRef``: a child domain or the DNS
application partitions below a domain's root) are never followed either; the reads keep only ``searchResEntry``.
"""

from __future__ import annotations

from typing import Any

import ldap3
from ldap3.core import exceptions as ldap_errors

from airflow_provider_aadsync.hooks.active_directory_settings import referral_error


class ReferralRefusingConnection(ldap3.Connection):
    """An ldap3 connection whose searches raise ActiveDirectoryReferralError on a referral result.

    ``url`` is the DC's as the errors name it (the connection's ``ldaps://host:port``). Create it with
    ``auto_referrals=False``: with ldap3's default the referral is followed before this class sees it."""

    def __init__(self, server: ldap3.Server, *, url: str, **options: Any):
        super().__init__(server, **options)
        self.aadsync_url = url

    def search(self, search_base: str, search_filter: str, *args: Any, **options: Any) -> Any:
        try:
            return super().search(search_base, search_filter, *args, **options)
        except ldap_errors.LDAPReferralResult:
            referred = list((self.result or {}).get("referrals") or [])
            raise referral_error(self.aadsync_url, search_base, referred) from None
