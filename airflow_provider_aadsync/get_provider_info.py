"""Provider metadata for Airflow's ``apache_airflow_provider`` entry point.

Connection form fields and behaviour live here as data (``conn-fields``/``ui-field-behaviour``), so Airflow's API
server can render the connection form without importing the hooks.
"""

from __future__ import annotations

from typing import Any

PACKAGE_NAME = "airflow-provider-aadsync"
VERSION = "0.1.0"


def _text(label: str, description: str | None = None, **schema: Any) -> dict[str, Any]:
    field: dict[str, Any] = {"label": label, "schema": {"type": ["string", "null"], **schema}}
    if description:
        field["description"] = description
    return field


def _number(label: str, description: str, *, integer: bool = False, maximum: int | None = None) -> dict[str, Any]:
    """A positive number field (an integer with ``integer``), as the settings model validates it."""
    schema: dict[str, Any] = {"type": ["integer" if integer else "number", "null"]}
    schema.update({"minimum": 1} if integer else {"exclusiveMinimum": 0})
    if maximum is not None:
        schema["maximum"] = maximum
    return {"label": label, "schema": schema, "description": description}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": PACKAGE_NAME,
        "name": "AADSync (Entra Connect sync as Airflow tasks)",
        "description": "Identity sync from Active Directory to Microsoft Entra ID, in the manner of "
        "Azure AD Connect / Entra Connect sync, run as Airflow tasks.",
        "versions": [VERSION],
        "integrations": [
            {
                "integration-name": "Active Directory (AADSync)",
                "external-doc-url": "https://learn.microsoft.com/windows-server/identity/ad-ds/",
                "tags": ["protocol"],
            },
            {
                "integration-name": "Entra ID (AADSync)",
                "external-doc-url": "https://learn.microsoft.com/graph/overview",
                "tags": ["azure"],
            },
            {
                "integration-name": "AADSync sync engine",
                "external-doc-url": "https://learn.microsoft.com/entra/identity/hybrid/connect/concept-azure-ad-connect-sync-architecture",
                "tags": ["software"],
            },
        ],
        "operators": [
            {
                "integration-name": "Active Directory (AADSync)",
                "python-modules": [
                    "airflow_provider_aadsync.operators.ad_import",
                    "airflow_provider_aadsync.operators.ad_export",
                ],
            },
            {
                "integration-name": "Entra ID (AADSync)",
                "python-modules": [
                    "airflow_provider_aadsync.operators.entra_import",
                    "airflow_provider_aadsync.operators.entra_export",
                ],
            },
            {
                "integration-name": "AADSync sync engine",
                "python-modules": [
                    "airflow_provider_aadsync.operators.sync",
                    "airflow_provider_aadsync.operators.report",
                ],
            },
        ],
        "hooks": [
            {
                "integration-name": "Active Directory (AADSync)",
                "python-modules": ["airflow_provider_aadsync.hooks.active_directory"],
            },
            {
                "integration-name": "Entra ID (AADSync)",
                "python-modules": ["airflow_provider_aadsync.hooks.entra"],
            },
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_aadsync.hooks.active_directory.ActiveDirectoryHook",
                "hook-name": "Active Directory (AADSync)",
                "connection-type": "aadsync_ad",
                "conn-fields": {
                    "base_dn": _text("Base DN", "Subtree to import, e.g. DC=corp,DC=example,DC=com"),
                    "tls": {
                        "label": "Transport security",
                        "schema": {
                            "type": ["string", "null"],
                            "default": "ldaps",
                            "enum": ["ldaps", "starttls", "none"],
                        },
                        "description": "ldaps (636) or starttls (389) validate the DC's certificate; "
                        "none sends the bind password in clear and must be chosen explicitly.",
                    },
                    "ca_cert": _text(
                        "CA certificate",
                        "Path to a PEM file, or the PEM text itself, that signs "
                        "the DC's certificate (empty: system trust store)",
                    ),
                    "page_size": {
                        "label": "Page size",
                        "schema": {
                            "type": ["integer", "null"],
                            "default": 1000,
                            "minimum": 1,
                            "maximum": 5000,
                        },
                    },
                    "attributes": _text(
                        "Attributes",
                        "Comma-separated attributes to import (empty: what the shipped rules need)",
                    ),
                    "binary_attributes": _text(
                        "Binary attributes", "Comma-separated octet-string attributes to keep as base64"
                    ),
                    "allow_plain_ldap_bind": {
                        "label": "Allow a bind in clear (tls none)",
                        "schema": {"type": ["boolean", "null"], "default": False},
                        "description": "With tls none, a simple bind sends the password unencrypted and is refused "
                        "unless this is set. Only for isolated test networks.",
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "extra"],
                    "relabeling": {
                        "login": "Bind DN",
                        "password": "Bind password",
                        "host": "Domain controller",
                    },
                    "placeholders": {
                        "host": "dc1.corp.example.com",
                        "port": "636 (ldaps) or 389 (starttls)",
                        "login": "CN=svc-aadsync,OU=Service Accounts,DC=corp,DC=example,DC=com",
                    },
                },
            },
            {
                "hook-class-name": "airflow_provider_aadsync.hooks.entra.EntraHook",
                "hook-name": "Entra ID (AADSync)",
                "connection-type": "aadsync_entra",
                "conn-fields": {
                    "tenant_id": _text("Tenant ID", "Directory (tenant) id or initial domain"),
                    "cloud": {
                        "label": "Cloud",
                        "schema": {
                            "type": ["string", "null"],
                            "default": "global",
                            "enum": ["global", "china", "usgov", "usgov-dod"],
                        },
                        "description": "National cloud. The retired Germany cloud is refused.",
                    },
                    "authority_host": _text("Authority host override", "e.g. https://127.0.0.1:8443 for the emulator"),
                    "graph_url": _text("Graph URL override", "e.g. https://127.0.0.1:8443 for the emulator"),
                    "ca_bundle": _text("CA bundle", "Path to a PEM bundle to trust (empty: system trust store)"),
                    # "private_key": a name Airflow's redact() masks (UI, REST API, logs); "password": a
                    # password input in the form. The key file's path is a field of its own, never guessed.
                    "private_key": {
                        "label": "Certificate private key (PEM)",
                        "schema": {"type": ["string", "null"], "format": "password"},
                        "description": "Instead of a client secret: the PEM text of the app certificate's private "
                        "key (-----BEGIN PRIVATE KEY-----). Or leave empty and give a key file below.",
                    },
                    "certificate_path": _text(
                        "Certificate private key file",
                        "Instead of the PEM text: path to a PEM file holding the private key (on the workers)",
                    ),
                    "thumbprint": _text("Certificate thumbprint", "SHA-1 thumbprint, hex"),
                    "anchor_extension": _text(
                        "Anchor extension name",
                        "Directory extension of this app holding each object's sourceAnchor (default "
                        "aadsyncSourceAnchor): extension_<appId>_<name>",
                    ),
                    # No "default" in these schemas: an empty field leaves the extra out, and the settings model's
                    # default (named in the description) applies.
                    "timeout": _number("Request timeout (s)", "Seconds per Graph request (empty: 60)"),
                    "max_attempts": _number(
                        "Attempts against faults",
                        "Tries per request when Graph fails (5xx, dropped connection); throttling does not count "
                        "(empty: 6)",
                        integer=True,
                        maximum=20,
                    ),
                    "max_retry_wait": _number(
                        "Longest Retry-After (s)",
                        "A longer Retry-After from Graph stops the run instead of holding the worker (empty: 300)",
                    ),
                    "max_throttle_wait": _number(
                        "Throttling budget per request (s)",
                        "Longest time one request may spend throttled, over all its Retry-After waits, before the "
                        "run stops (empty: 900)",
                    ),
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "extra", "host", "port"],
                    "relabeling": {"login": "Client ID", "password": "Client Secret"},
                    "placeholders": {"login": "00000000-0000-0000-0000-000000000000"},
                },
            },
        ],
    }
