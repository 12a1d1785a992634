"""A tenant's domains as Graph's ``domain`` resource documents them: the initial ``<name>.onmicrosoft.com`` domain
(``isInitial``, verified, the default until another is made default), the verified custom domains, and domains added
but not yet verified. Only verified domains may carry a user's UPN (the unverified-UPN error keys off them) and name
the tenant at the token endpoint.

Graph serves ``GET /domains`` and ``GET /domains/{name}``; the emulator's admin API adds, verifies, makes default and
removes them (``/_emulator/tenants/{id}/domains``), standing for the portal and the registrar's DNS record.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from aadsync_devkit.graph_emulator import exceptions as err

_DOMAIN = re.compile(r"^(?=.{1,255}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
AUTHENTICATION_TYPES = ("Managed", "Federated")


class TenantDomains:
    """The domain side of :class:`~aadsync_devkit.graph_emulator.tenant.Tenant`. ``verified_domains`` keeps the
    initial domain first; ``unverified_domains`` the rest; ``default_domain`` and ``federated_domains`` what differs
    from the defaults (the initial domain, Managed)."""

    _lock: threading.RLock
    initial_domain: str
    verified_domains: list[str]
    unverified_domains: list[str]
    default_domain: str
    federated_domains: set[str]

    def domains(self) -> list[dict[str, Any]]:
        """Every domain of the tenant as Graph renders it: the initial one, the verified, then the unverified."""
        with self._lock:
            return [self._domain_json(name) for name in [*self.verified_domains, *self.unverified_domains]]

    def domain(self, name: str) -> dict[str, Any]:
        with self._lock:
            if name.lower() not in self.verified_domains and name.lower() not in self.unverified_domains:
                raise err.ResourceNotFound(name)
            return self._domain_json(name.lower())

    def add_domain(self, spec: Any) -> dict[str, Any]:
        """Add a domain (``{"name", "isVerified"?: true, "isDefault"?: false, "authenticationType"?: "Managed"}``)."""
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise err.BadRequest("A JSON object with the domain's 'name' is expected.")
        name = spec["name"].strip().lower()
        if not _DOMAIN.match(name) or name.endswith(".onmicrosoft.com"):
            raise err.BadRequest(f"'{spec['name']}' is not a domain name a tenant can add.")
        with self._lock:
            if name in self.verified_domains or name in self.unverified_domains:
                raise err.GraphError(409, "Conflict", f"Domain '{name}' already exists in the tenant.")
            self.unverified_domains.append(name)
            return self.update_domain(name, {"isVerified": True, **spec, "name": name})

    def update_domain(self, name: str, spec: Any) -> dict[str, Any]:
        """Verify a domain, make it the default, or change its authentication type (``isVerified`` cannot go back
        to false: a verified domain stays verified, as in Graph)."""
        if not isinstance(spec, dict):
            raise err.BadRequest("A JSON object is expected.")
        unknown = set(spec) - {"name", "isVerified", "isDefault", "authenticationType"}
        if unknown:
            raise err.BadRequest(f"Unknown domain setting(s): {', '.join(sorted(unknown))}.")
        verify, default, auth = spec.get("isVerified"), spec.get("isDefault"), spec.get("authenticationType")
        if verify is not None and not isinstance(verify, bool):
            raise err.BadRequest("isVerified must be true or false.")
        if default is not None and not isinstance(default, bool):
            raise err.BadRequest("isDefault must be true or false.")
        if auth is not None and auth not in AUTHENTICATION_TYPES:
            raise err.BadRequest("authenticationType must be Managed or Federated.")
        with self._lock:
            name = name.lower()
            self.domain(name)
            verified = name in self.verified_domains
            if verify is False and verified:
                raise err.BadRequest(f"Domain '{name}' is verified; verification cannot be undone.")
            if verify and not verified:
                self.unverified_domains.remove(name)
                self.verified_domains.append(name)
                verified = True
            if default is not None:
                if default and not verified:
                    raise err.BadRequest(f"Domain '{name}' must be verified before it can be the default.")
                if default:
                    self.default_domain = name
                elif self.default_domain == name:
                    self.default_domain = self.initial_domain
            if auth is not None:
                if name == self.initial_domain and auth == "Federated":
                    raise err.BadRequest("The initial domain cannot be federated.")
                (self.federated_domains.add if auth == "Federated" else self.federated_domains.discard)(name)
            return self._domain_json(name)

    def remove_domain(self, name: str) -> None:
        with self._lock:
            name = name.lower()
            self.domain(name)
            if name == self.initial_domain:
                raise err.BadRequest("The initial domain cannot be removed.")
            for table in (self.verified_domains, self.unverified_domains):
                if name in table:
                    table.remove(name)
            self.federated_domains.discard(name)
            if self.default_domain == name:
                self.default_domain = self.initial_domain

    def _domain_json(self, name: str) -> dict[str, Any]:
        verified = name in self.verified_domains
        parent_verified = any(name.endswith("." + other) for other in self.verified_domains if other != name)
        return {
            "authenticationType": "Federated" if name in self.federated_domains else "Managed",
            "availabilityStatus": None,
            "id": name,
            "isAdminManaged": True,
            "isDefault": name == self.default_domain,
            "isInitial": name == self.initial_domain,
            "isRoot": verified and not parent_verified,
            "isVerified": verified,
            "passwordNotificationWindowInDays": 14,
            "passwordValidityPeriodInDays": 90,
            "supportedServices": ["Email", "OfficeCommunicationsOnline"] if verified else [],
            "state": None,
        }
