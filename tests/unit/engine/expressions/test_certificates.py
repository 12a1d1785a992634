"""The Cert* functions against certificates made here with ``cryptography`` (the docs give no examples)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from airflow_provider_aadsync.engine.expressions import ExpressionEvaluationError, compile_expression

UTC = dt.UTC
NOW = dt.datetime.now(UTC).replace(microsecond=0)


def _certificate(key, *, not_after, serial=0x1234, critical_key_usage=True):
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "com"),
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "contoso"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Contoso, Ltd"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Ann Lee"),
        ]
    )
    issuer = x509.Name(
        [x509.NameAttribute(NameOID.COUNTRY_NAME, "US"), x509.NameAttribute(NameOID.COMMON_NAME, "Contoso CA")]
    )
    upn = x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x0fann@contoso.com")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - dt.timedelta(days=10))
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name("ann@contoso.com"), x509.DNSName("ann.contoso.com"), upn]),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=critical_key_usage
        )
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def ec_cert():
    return _certificate(ec.generate_private_key(ec.SECP256R1()), not_after=NOW + dt.timedelta(days=365))


@pytest.fixture(scope="module")
def rsa_cert():
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return _certificate(key, not_after=NOW + dt.timedelta(days=365), serial=0x80FF, critical_key_usage=False)


@pytest.fixture(scope="module")
def expired_cert():
    return _certificate(ec.generate_private_key(ec.SECP256R1()), not_after=NOW - dt.timedelta(days=1))


def ev(text, **context):
    return compile_expression(text).evaluate(context)


def test_names_are_written_as_dotnet_writes_them(ec_cert):
    assert ev("CertSubject([c])", c=ec_cert) == 'CN=Ann Lee, O="Contoso, Ltd", DC=contoso, DC=com'
    assert ev("CertSubjectNameDN([c])", c=ec_cert) == ev("CertSubject([c])", c=ec_cert)
    assert ev("CertIssuer([c])", c=ec_cert) == "CN=Contoso CA, C=US"
    assert ev("CertIssuerDN([c])", c=ec_cert) == "CN=Contoso CA, C=US"
    assert ev("CertIssuerOid([c])", c=ec_cert) is None and ev("CertSubjectNameOid([c])", c=ec_cert) is None


def test_hashes_and_serial(ec_cert, rsa_cert):
    sha1 = hashlib.sha1(ec_cert).hexdigest().upper()  # noqa: S324 - the certificate's thumbprint is SHA-1
    assert ev("CertThumbprint([c])", c=ec_cert) == sha1
    assert ev("CertHashString([c])", c=ec_cert) == sha1
    assert ev("CertSerialNumber([c])", c=ec_cert) == "1234"
    assert ev("CertSerialNumber([c])", c=rsa_cert) == "0080FF"  # DER keeps the sign byte


def test_key_algorithm_facts(ec_cert, rsa_cert):
    assert ev("CertKeyAlgorithm([c])", c=rsa_cert) == "1.2.840.113549.1.1.1"
    assert ev("CertKeyAlgorithmParams([c])", c=rsa_cert) == "0500"
    assert ev("CertPublicKeyOid([c])", c=ec_cert) == "1.2.840.10045.2.1"
    assert ev("CertKeyAlgorithmParams([c])", c=ec_cert) == "06082A8648CE3D030107"
    assert ev("CertPublicKeyParametersOid([c])", c=ec_cert) == "1.2.840.10045.3.1.7"
    assert ev("CertPublicKeyParametersOid([c])", c=rsa_cert) is None
    assert ev("CertSignatureAlgorithmOid([c])", c=rsa_cert) == "1.2.840.113549.1.1.11"  # sha256WithRSAEncryption
    assert ev("CertSignatureAlgorithmOid([c])", c=ec_cert) == "1.2.840.10045.4.3.2"  # ecdsa-with-SHA256


def test_validity_version_format_and_extensions(ec_cert, rsa_cert):
    assert ev("CertNotBefore([c])", c=ec_cert) == NOW - dt.timedelta(days=10)
    assert ev("CertNotAfter([c])", c=ec_cert) == NOW + dt.timedelta(days=365)
    assert ev("CertVersion([c])", c=ec_cert) == 3
    assert ev("CertFormat([c])", c=ec_cert) == "X509"
    assert ev("CertFriendlyName([c])", c=ec_cert) == ""
    assert ev("CertExtensionOids([c])", c=ec_cert) == "2.5.29.15"  # only key usage is critical
    assert ev("CertExtensionOids([c])", c=rsa_cert) is None


@pytest.mark.parametrize(
    ("name_type", "issuer", "expected"),
    [
        ("SimpleName", "False", "Ann Lee"),
        ("SimpleName", "True", "Contoso CA"),
        ("EmailName", "False", "ann@contoso.com"),
        ("UpnName", "False", "ann@contoso.com"),
        ("DnsName", "False", "ann.contoso.com"),
        ("DnsFromAlternativeName", "False", "ann.contoso.com"),
        ("UrlName", "False", ""),
    ],
)
def test_cert_name_info(ec_cert, name_type, issuer, expected):
    assert ev(f'CertNameInfo([c], "{name_type}", {issuer})', c=ec_cert) == expected


def test_base64_and_pem_data_are_certificates_too(ec_cert):
    b64 = base64.b64encode(ec_cert)
    pem = b"-----BEGIN CERTIFICATE-----\n" + b64 + b"\n-----END CERTIFICATE-----\n"
    for data in (ec_cert, b64, pem, b64.decode()):
        assert ev("IsCert([c])", c=data) is True
        assert ev("CertThumbprint([c])", c=data) == ev("CertThumbprint([c])", c=ec_cert)
    assert ev("IsCert([c])", c=b"not a certificate") is False
    assert ev("IsCert([c])") is False


def test_where_keeps_unexpired_certificates(ec_cert, expired_cert, rsa_cert):
    # docs: `Where($item,[userCertificate],CertNotAfter($item)>Now())`
    text = "Where($item,[userCertificate],CertNotAfter($item)>Now())"
    assert ev(text, userCertificate=[ec_cert, expired_cert, rsa_cert]) == [ec_cert, rsa_cert]
    # docs: `With($unExpiredCerts,Where($item,[userCertificate],CertNotAfter($item)>Now()),
    #        IIF(Count($unExpiredCerts)>0,$unExpiredCerts,NULL))`
    with_text = (
        "With($unExpiredCerts,Where($item,[userCertificate],CertNotAfter($item)>Now()),"
        "IIF(Count($unExpiredCerts)>0,$unExpiredCerts,NULL))"
    )
    assert ev(with_text, userCertificate=[expired_cert, ec_cert]) == ec_cert
    assert ev(with_text, userCertificate=[expired_cert]) is None


def test_not_a_certificate_is_an_evaluation_error():
    with pytest.raises(ExpressionEvaluationError, match="CertThumbprint: certificateRawData is not an X.509"):
        ev("CertThumbprint([c])", c=b"\x01\x02")
    with pytest.raises(ExpressionEvaluationError, match="CertSubject: certificateRawData must be binary"):
        ev("CertSubject(42)")


def test_null_certificate_is_null():
    assert ev("CertThumbprint([c])") is None
