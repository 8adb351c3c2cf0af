"""A test certificate authority, made with the ``cryptography`` package and written to files.

``make_pki(folder)`` writes a CA, a server certificate for localhost and 127.0.0.1 signed by
it, a second server certificate (to check that a reload serves a new one), an expired server
certificate, a client certificate for mutual TLS, and a second, unrelated CA with a client
certificate of its own: everything a TLS test needs to be refused for the right reason. The
keys are P-256 (fast to make: the whole set takes a few milliseconds).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path

    @property
    def serial(self) -> int:
        """The certificate's serial number, to tell two certificates apart."""
        return x509.load_pem_x509_certificate(self.cert.read_bytes()).serial_number


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA's certificate: what clients trust, and what --tls-client-ca names
    server: KeyPair  # localhost and 127.0.0.1, signed by ca
    renewed_server: KeyPair  # the same names, another key and serial, signed by ca
    expired_server: KeyPair  # signed by ca, valid until yesterday
    client: KeyPair  # a client certificate signed by ca
    other_ca: Path  # an unrelated CA
    other_client: KeyPair  # a client certificate signed by other_ca


@dataclass(frozen=True)
class _Issuer:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey


def make_pki(folder: Path) -> Pki:
    """Makes the certificates and keys in ``folder`` (created when missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = _ca("Trackline test CA", folder / "ca.pem", now)
    other = _ca("Unrelated test CA", folder / "other-ca.pem", now)
    return Pki(
        ca=folder / "ca.pem",
        server=_leaf(ca, folder / "server", now, server=True),
        renewed_server=_leaf(ca, folder / "renewed-server", now, server=True),
        expired_server=_leaf(
            ca, folder / "expired-server", now, server=True, valid=(now - 30 * _DAY, now - _DAY)
        ),
        client=_leaf(ca, folder / "client", now, server=False),
        other_ca=folder / "other-ca.pem",
        other_client=_leaf(other, folder / "other-client", now, server=False),
    )


def _ca(common_name: str, path: Path, now: datetime.datetime) -> _Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 30 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return _Issuer(name, key)


def _leaf(
    issuer: _Issuer,
    stem: Path,
    now: datetime.datetime,
    *,
    server: bool,
    valid: tuple[datetime.datetime, datetime.datetime] | None = None,
) -> KeyPair:
    """A certificate signed by ``issuer``: for localhost and 127.0.0.1 (``server``), or for a
    client named "test-client"; ``valid`` is its validity period (default: a month from a day
    ago). Written to ``<stem>.pem`` and ``<stem>-key.pem``."""
    key = ec.generate_private_key(ec.SECP256R1())
    not_before, not_after = valid or (now - _DAY, now + 30 * _DAY)
    common_name = "localhost" if server else "test-client"
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer.key, hashes.SHA256())
    pair = KeyPair(stem.with_name(stem.name + ".pem"), stem.with_name(stem.name + "-key.pem"))
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pair.key.chmod(0o600)
    return pair
