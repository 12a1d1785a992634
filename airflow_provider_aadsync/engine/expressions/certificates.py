"""The Cert* functions: facts about an X.509 certificate, as .NET's ``X509Certificate2`` reports them.

``certificateRawData`` is binary DER, or Base64/PEM text of it (as bytes or a string). Names are written as .NET
writes ``X500DistinguishedName.Name``: most specific part first, ``", "`` between parts, ``S=`` for the state and
``E=`` for the e-mail attribute, values in double quotes when they contain special characters. DateTimes are UTC
(the docs say "local time": a sync server's local time is a property of the server, not of the certificate).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID, NameOID

from airflow_provider_aadsync.engine.expressions.coerce import enum_name, to_bool
from airflow_provider_aadsync.engine.expressions.errors import ArgumentError
from airflow_provider_aadsync.engine.expressions.registry import function
from airflow_provider_aadsync.engine.expressions.values import mv_result, type_name

_SHORT_NAMES = {
    NameOID.COMMON_NAME: "CN",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "S",
    NameOID.COUNTRY_NAME: "C",
    NameOID.EMAIL_ADDRESS: "E",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.STREET_ADDRESS: "STREET",
    NameOID.SERIAL_NUMBER: "SERIALNUMBER",
    NameOID.TITLE: "T",
    NameOID.GIVEN_NAME: "G",
    NameOID.SURNAME: "SN",
    NameOID.INITIALS: "I",
    NameOID.USER_ID: "UID",
}
_UPN = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


@lru_cache(maxsize=512)
def _load(raw: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(raw)
    except ValueError:
        pass
    text = raw.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            return x509.load_pem_x509_certificate(text)
        except ValueError:
            return None
    try:
        return x509.load_der_x509_certificate(base64.b64decode(b"".join(text.split()), validate=True))
    except (ValueError, binascii.Error):
        return None


def _certificate(value: Any) -> x509.Certificate:
    if isinstance(value, str):
        value = value.encode("ascii", errors="replace")
    if not isinstance(value, bytes):
        raise ArgumentError(f"certificateRawData must be binary, got {type_name(value)}")
    certificate = _load(value)
    if certificate is None:
        raise ArgumentError("certificateRawData is not an X.509 certificate (DER or Base64)")
    return certificate


def net_name(name: x509.Name) -> str:
    """An X.500 name as .NET's ``X500DistinguishedName.Name`` writes it."""
    parts = []
    for rdn in reversed(name.rdns):
        parts.append(
            " + ".join(f"{_SHORT_NAMES.get(a.oid, 'OID.' + a.oid.dotted_string)}={_quote(a.value)}" for a in rdn)
        )
    return ", ".join(parts)


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else bytes(value).hex()
    if text != text.strip() or any(c in text for c in ',+=<>#;"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _cert_function(name: str, *, max_args: int | None = None, min_args: int = 1):
    """Register a certificate function (mapped over a multi-valued attribute; NULL gives NULL)."""

    def register(impl):
        def call(raw: Any, *rest: Any) -> Any:
            return None if raw is None else impl(_certificate(raw), *rest)

        call.__name__, call.__doc__ = impl.__name__, impl.__doc__
        function(name, min_args, max_args if max_args is not None else min_args, per_value=True)(call)
        return impl

    return register


@_cert_function("CertExtensionOids")
def cert_extension_oids(cert: x509.Certificate) -> Any:
    """The OIDs of the certificate's critical extensions."""
    return mv_result(ext.oid.dotted_string for ext in cert.extensions if ext.critical)


@_cert_function("CertFormat")
def cert_format(cert: x509.Certificate) -> str:
    return "X509"


@_cert_function("CertFriendlyName")
def cert_friendly_name(cert: x509.Certificate) -> str:
    """A friendly name lives in a certificate store, never in the certificate's data: always ""."""
    return ""


@_cert_function("CertHashString")
def cert_hash_string(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - the documented (SHA-1) hash


@_cert_function("CertThumbprint")
def cert_thumbprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303


@_cert_function("CertIssuer")
def cert_issuer(cert: x509.Certificate) -> str:
    return net_name(cert.issuer)


@_cert_function("CertIssuerDN")
def cert_issuer_dn(cert: x509.Certificate) -> str:
    return net_name(cert.issuer)


@_cert_function("CertSubject")
def cert_subject(cert: x509.Certificate) -> str:
    return net_name(cert.subject)


@_cert_function("CertSubjectNameDN")
def cert_subject_name_dn(cert: x509.Certificate) -> str:
    return net_name(cert.subject)


@_cert_function("CertIssuerOid")
def cert_issuer_oid(cert: x509.Certificate) -> None:
    """.NET's ``IssuerName.Oid`` of a name read from a certificate is null: NULL."""
    return None


@_cert_function("CertSubjectNameOid")
def cert_subject_name_oid(cert: x509.Certificate) -> None:
    """.NET's ``SubjectName.Oid`` of a name read from a certificate is null: NULL."""
    return None


def _spki_algorithm(cert: x509.Certificate) -> tuple[str, bytes]:
    """The public key's algorithm OID and its encoded parameters (DER), read from SubjectPublicKeyInfo."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    body, _ = _der_content(spki, 0)  # SEQUENCE { AlgorithmIdentifier, BIT STRING }
    algorithm, _ = _der_content(spki, body)  # AlgorithmIdentifier content
    oid_end = _der_end(spki, algorithm)
    oid = _decode_oid(spki[_der_content(spki, algorithm)[0] : oid_end])
    algorithm_end = _der_end(spki, body)
    return oid, spki[oid_end:algorithm_end]


def _der_content(data: bytes, offset: int) -> tuple[int, int]:
    """(content start, content length) of the DER element at ``offset``."""
    length = data[offset + 1]
    if length < 0x80:
        return offset + 2, length
    count = length & 0x7F
    return offset + 2 + count, int.from_bytes(data[offset + 2 : offset + 2 + count], "big")


def _der_end(data: bytes, offset: int) -> int:
    start, length = _der_content(data, offset)
    return start + length


def _decode_oid(content: bytes) -> str:
    first = content[0]
    numbers = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    value = 0
    for byte in content[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            numbers.append(value)
            value = 0
    return ".".join(map(str, numbers))


@_cert_function("CertKeyAlgorithm")
def cert_key_algorithm(cert: x509.Certificate) -> str:
    """The public key algorithm's OID (``1.2.840.113549.1.1.1`` for RSA), as .NET's GetKeyAlgorithm()."""
    return _spki_algorithm(cert)[0]


@_cert_function("CertKeyAlgorithmParams")
def cert_key_algorithm_params(cert: x509.Certificate) -> str:
    """The key algorithm's encoded parameters as hex (``0500`` for RSA's NULL), as GetKeyAlgorithmParametersString()."""
    return _spki_algorithm(cert)[1].hex().upper()


@_cert_function("CertPublicKeyOid")
def cert_public_key_oid(cert: x509.Certificate) -> str:
    return _spki_algorithm(cert)[0]


@_cert_function("CertPublicKeyParametersOid")
def cert_public_key_parameters_oid(cert: x509.Certificate) -> str | None:
    """The OID the key's parameters name (an EC key's curve, e.g. ``1.2.840.10045.3.1.7``); NULL when they name
    none (RSA)."""
    params = _spki_algorithm(cert)[1]
    if params[:1] != b"\x06":
        return None
    start, length = _der_content(params, 0)
    return _decode_oid(params[start : start + length])


@_cert_function("CertSerialNumber")
def cert_serial_number(cert: x509.Certificate) -> str:
    """The serial number as upper-case hex of its DER bytes (as .NET's SerialNumber)."""
    number = cert.serial_number
    size = max(1, (number.bit_length() + 8) // 8)  # room for DER's sign bit
    return number.to_bytes(size, "big", signed=True).hex().upper()


@_cert_function("CertSignatureAlgorithmOid")
def cert_signature_algorithm_oid(cert: x509.Certificate) -> str:
    return cert.signature_algorithm_oid.dotted_string


@_cert_function("CertNotAfter")
def cert_not_after(cert: x509.Certificate) -> _dt.datetime:
    return cert.not_valid_after_utc


@_cert_function("CertNotBefore")
def cert_not_before(cert: x509.Certificate) -> _dt.datetime:
    return cert.not_valid_before_utc


@_cert_function("CertVersion")
def cert_version(cert: x509.Certificate) -> int:
    """The X.509 format version: 3 for v3 certificates (a number, as .NET's Version)."""
    return cert.version.value + 1


_NAME_TYPES = ("SimpleName", "EmailName", "UpnName", "DnsName", "DnsFromAlternativeName", "UrlName")


@_cert_function("CertNameInfo", min_args=3)
def cert_name_info(cert: x509.Certificate, name_type: Any, includes_issuer_name: Any) -> str:
    """.NET's ``GetNameInfo(X509NameType, forIssuer)``: SimpleName (CN, else the most specific part), EmailName,
    UpnName, DnsName (a DNS alternative name, else the CN), DnsFromAlternativeName, UrlName; "" when absent."""
    kind = enum_name(name_type, _NAME_TYPES, "X509NameType")
    issuer = bool(to_bool(includes_issuer_name, "includesIssuerName"))
    name = cert.issuer if issuer else cert.subject
    extension_oid = ExtensionOID.ISSUER_ALTERNATIVE_NAME if issuer else ExtensionOID.SUBJECT_ALTERNATIVE_NAME
    try:
        alternative: Any = cert.extensions.get_extension_for_oid(extension_oid).value
    except x509.ExtensionNotFound:
        alternative = []

    def first(oid: x509.ObjectIdentifier) -> str:
        found = name.get_attributes_for_oid(oid)
        return str(found[0].value) if found else ""

    def alt(kind_: type) -> str:
        for entry in alternative:
            if isinstance(entry, kind_):
                return str(entry.value)
        return ""

    if kind == "SimpleName":
        for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.ORGANIZATION_NAME):
            if first(oid):
                return first(oid)
        return first(NameOID.EMAIL_ADDRESS) or alt(x509.RFC822Name)
    if kind == "EmailName":
        return first(NameOID.EMAIL_ADDRESS) or alt(x509.RFC822Name)
    if kind == "UpnName":
        for entry in alternative:
            if isinstance(entry, x509.OtherName) and entry.type_id == _UPN:
                return _der_utf8(entry.value)
        return ""
    if kind == "DnsName":
        return alt(x509.DNSName) or first(NameOID.COMMON_NAME)
    if kind == "DnsFromAlternativeName":
        return alt(x509.DNSName)
    return alt(x509.UniformResourceIdentifier)


def _der_utf8(value: bytes) -> str:
    start, length = _der_content(value, 0)
    return value[start : start + length].decode("utf-8", errors="replace")


@function("IsCert", 1)
def is_cert(value: Any) -> Any:
    """True when the data is an X.509 certificate (DER or Base64); per value for a multi-valued attribute."""
    if isinstance(value, list):
        return mv_result(is_cert(v) for v in value)
    if not isinstance(value, bytes | str):
        return False
    return _load(value if isinstance(value, bytes) else value.encode("ascii", errors="replace")) is not None
