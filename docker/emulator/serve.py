"""Serve the Graph emulator for the docker deployment: on every interface, with a certificate naming the service.

``aadsync-dev emulator serve`` is made for one machine: it binds 127.0.0.1 and its certificate names ``localhost``, so
other containers could neither reach it nor validate it. This script runs the same emulator app
(:func:`aadsync_devkit.graph_emulator.app.create_app` over an :class:`EmulatorState` kept in a SQLite file) with:

- a bind address (``--host``, default ``0.0.0.0``) and port;
- a private CA and server certificate whose names are given (``--tls-name``, repeatable; the compose service name
  ``graph-emulator`` by default), kept in ``--tls-dir``; only the CA certificate is copied to ``--ca-out``, the volume
  the Airflow services mount read-only;
- the tenant and app registration the ``aadsync_entra`` connection uses, created or updated at every start from
  ``AADSYNC_ENTRA_TENANT_ID``, ``AADSYNC_ENTRA_CLIENT_ID`` and ``AADSYNC_ENTRA_CLIENT_SECRET`` (required), so the
  secret lives in the environment, never in the image; ``--verified-domain`` (repeatable) adds the tenant's verified
  domains (Graph refuses a user whose UPN suffix is not one of them).

The emulator's admin API (``/_emulator``) still answers loopback clients only: ``docker compose exec graph-emulator``
reaches it, the other containers do not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from aadsync_devkit.graph_emulator.state import EmulatorState
from aadsync_devkit.tls import TlsFiles, make_ca_and_server_cert

DEFAULT_TLS_NAMES = ("graph-emulator", "localhost")
DEFAULT_TENANT_NAME = "contosodev"


def make_tls(directory: Path, names: Sequence[str]) -> TlsFiles:
    """Create ``ca.pem``, ``server.pem`` (DNS names *names* and 127.0.0.1) and ``server.key`` (0600) in *directory*.

    Kept across restarts while the certificate still names every one of *names*; the CA key is never stored.
    """
    return make_ca_and_server_cert(
        directory, names, common_name=names[0], ca_common_name="AADSync Docker Graph emulator CA"
    )


def ensure_tenant(
    state: EmulatorState,
    *,
    tenant_id: str,
    name: str,
    client_id: str,
    client_secret: str,
    verified_domains: Sequence[str] = (),
) -> str:
    """Make the tenant, its verified domains and its app registration with this secret exist; return what was done.

    Graph refuses users whose UPN suffix is not a verified domain of the tenant, hence the domains (the seeded AD's
    mail domain).
    """
    tenant = state.find_tenant(tenant_id)
    if tenant is None:
        state.create_tenant(
            {
                "id": tenant_id,
                "name": name,
                "displayName": f"{name} (docker)",
                "verifiedDomains": list(verified_domains),
                "apps": [{"clientId": client_id, "clientSecret": client_secret}],
            }
        )
        state.save()
        return "created"
    changes = []
    with state.lock:
        for domain in verified_domains:
            if domain.lower() not in tenant.verified_domains:
                tenant.verified_domains.append(domain.lower())
                changes.append(f"domain {domain.lower()} verified")
        app = tenant.apps.get(client_id)
        if app is None:
            tenant.add_app({"clientId": client_id, "clientSecret": client_secret})
            changes.append("app added")
        elif app.secret != client_secret:
            app.secret = client_secret
            changes.append("secret updated")
    if not changes:
        return "unchanged"
    state.save()
    return ", ".join(changes)


def _required_env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(f"emulator-serve: set {name}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="emulator-serve", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="0.0.0.0", help="bind address (default: every interface)")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--state", type=Path, required=True, help="SQLite state file, loaded at start")
    parser.add_argument("--tls-dir", type=Path, required=True, help="CA, server certificate and key")
    parser.add_argument("--tls-name", action="append", help="DNS name of the certificate (repeatable)")
    parser.add_argument("--ca-out", type=Path, help="where to copy the CA certificate for the clients")
    parser.add_argument("--verified-domain", action="append", default=[], help="a verified domain of the tenant")
    args = parser.parse_args(argv)

    tenant_id = _required_env("AADSYNC_ENTRA_TENANT_ID")
    client_id = _required_env("AADSYNC_ENTRA_CLIENT_ID")
    client_secret = _required_env("AADSYNC_ENTRA_CLIENT_SECRET")
    tenant_name = os.environ.get("AADSYNC_ENTRA_TENANT_NAME") or DEFAULT_TENANT_NAME

    tls = make_tls(args.tls_dir, args.tls_name or DEFAULT_TLS_NAMES)
    if args.ca_out:
        args.ca_out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tls.ca_cert, args.ca_out)
    state = EmulatorState(state_file=args.state)
    outcome = ensure_tenant(
        state,
        tenant_id=tenant_id,
        name=tenant_name,
        client_id=client_id,
        client_secret=client_secret,
        verified_domains=args.verified_domain,
    )
    print(f"emulator-serve: tenant {tenant_id} {outcome}; https://{args.host}:{args.port}", file=sys.stderr, flush=True)

    # Imported late: the functions above are tested without a server.
    import uvicorn

    from aadsync_devkit.graph_emulator.app import create_app

    uvicorn.run(
        create_app(state),
        host=args.host,
        port=args.port,
        ssl_certfile=str(tls.server_cert),
        ssl_keyfile=str(tls.server_key),
        log_level="info",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
