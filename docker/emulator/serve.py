"""Serve the Graph emulator for the docker deployment: on every interface, with a certificate naming the service.

``aadsync emulator serve`` is made for one machine: it binds 127.0.0.1 and its certificate names ``localhost``, so
other containers could neither reach it nor validate it. This script runs the same emulator app
(:func:`airflow_provider_aadsync.emulator.app.create_app` over an :class:`EmulatorState` kept in a JSON file) with:

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
import datetime as dt
import ipaddress
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from airflow_provider_aadsync.devenv.tls import TlsFiles
from airflow_provider_aadsync.emulator.models import EmulatorState

DEFAULT_TLS_NAMES = ("graph-emulator", "localhost")
DEFAULT_TENANT_NAME = "contosodev"
_VALIDITY = dt.timedelta(days=3650)


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _names_of(cert_path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName))


def _key_usage(**wanted: bool) -> x509.KeyUsage:
    flags = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement")
    flags += ("key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{flag: wanted.get(flag, False) for flag in flags})


def make_tls(directory: Path, names: Sequence[str]) -> TlsFiles:
    """Create ``ca.pem``, ``server.pem`` (DNS names *names* and 127.0.0.1) and ``server.key`` (0600) in *directory*.

    Kept across restarts while the certificate still names every one of *names*; the CA key is never stored.
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    present = all(p.exists() for p in (files.ca_cert, files.server_cert, files.server_key))
    if present and set(names) <= _names_of(files.server_cert):
        return files
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AADSync Docker Graph emulator CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_usage = _key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ca_usage, critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    usage = _key_usage(digital_signature=True, key_encipherment=True, key_agreement=True)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(files.server_key, key_pem, 0o600)
    _write(files.server_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return files


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
    parser.add_argument("--state", type=Path, required=True, help="JSON state file, loaded at start")
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

    from airflow_provider_aadsync.emulator.app import create_app

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
