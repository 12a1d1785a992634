"""The tenant's domains as one export run sees them: which UPN suffixes Entra ID accepts, and the initial
``<name>.onmicrosoft.com`` domain.

Graph refuses a user whose UPN suffix is not a verified domain of the tenant ("The domain portion of the
userPrincipalName property is invalid"). The product then writes the UPN on the initial domain instead (its MOERA,
``<prefix>@<initial>.onmicrosoft.com``, the prefix being the UPN's local part), and writes the real UPN once the
domain is verified: the next sync stages the real UPN again (the connector space holds the substitute), and this
class lets it through. The domain list is read once per export run (``GET /domains``, ``isVerified`` and
``isInitial`` of Graph's domain resource), lazily: a run that writes no UPN does not read it.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow_provider_aadsync.engine.connectors.entra.graph import GraphWriter

log = logging.getLogger(__name__)


class TenantDomains:
    """Verified domains and the initial domain of the tenant, read once from Graph when first needed."""

    def __init__(self, writer: GraphWriter) -> None:
        self._writer = writer
        self._verified: set[str] | None = None
        self._initial: str | None = None

    def _load(self) -> None:
        if self._verified is not None:
            return
        answer: Any = self._writer.request("GET", "/domains")
        domains = [item for item in (answer or {}).get("value") or [] if isinstance(item, dict)]
        self._verified = {str(item.get("id", "")).lower() for item in domains if item.get("isVerified")}
        initial = [str(item["id"]).lower() for item in domains if item.get("isInitial") and item.get("id")]
        self._initial = initial[0] if initial else None
        log.info(
            "tenant domains: %d verified, initial %s", len(self._verified), self._initial or "unknown (not listed)"
        )

    @property
    def initial(self) -> str | None:
        """The tenant's initial ``onmicrosoft.com`` domain (None when Graph lists none)."""
        self._load()
        return self._initial

    def accepted_upn(self, upn: str) -> str:
        """``upn`` when its suffix is a verified domain, else the same prefix on the initial domain (unchanged when
        the initial domain is unknown: Graph's answer then says what is wrong)."""
        prefix, at, suffix = upn.rpartition("@")
        if not at:
            return upn
        self._load()
        assert self._verified is not None
        if suffix.lower() in self._verified or self._initial is None:
            return upn
        return f"{prefix}@{self._initial}"
