"""The dev CA / server certificate must satisfy strict LDAPS validation and Samba's key-permission check."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from aadsync_devkit.tls import make_ca_and_server_cert


def test_server_cert_san_and_chain(tmp_path: Path) -> None:
    files = make_ca_and_server_cert(tmp_path / "tls")
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    srv = x509.load_pem_x509_certificate(files.server_cert.read_bytes())

    san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "dc1.corp.example.test"}
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]

    srv.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert srv.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"


def test_key_is_private_and_matches_cert(tmp_path: Path) -> None:
    files = make_ca_and_server_cert(tmp_path)
    assert stat.S_IMODE(files.server_key.stat().st_mode) == 0o600
    key = load_pem_private_key(files.server_key.read_bytes(), password=None)
    srv = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    assert key.public_key().public_numbers() == srv.public_key().public_numbers()


def test_idempotent_reuses_existing_files(tmp_path: Path) -> None:
    first = make_ca_and_server_cert(tmp_path)
    before = {p: p.read_bytes() for p in (first.ca_cert, first.server_cert, first.server_key)}
    first.server_key.chmod(0o644)
    second = make_ca_and_server_cert(tmp_path)
    assert second == first
    assert {p: p.read_bytes() for p in before} == before
    assert stat.S_IMODE(second.server_key.stat().st_mode) == 0o600
