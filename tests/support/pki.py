"""A throwaway certificate authority for TLS and mutual-TLS tests (``cryptography``).

Every file it writes (keys and certificates alike) is created 0600, as the project asks of
any key material it writes. Certificates carry the subject the scheduler reads: the common
name is the principal (a worker's id), the organizational unit its role.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def write_private(path: Path, data: bytes) -> Path:
    """Write ``data`` to a new file that only its owner can read (0600 from creation)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
    return path


def _name(common_name: str, unit: str | None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if unit is not None:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    return x509.Name(parts)


class CertificateAuthority:
    """A CA whose certificate lives at ``cert``; it issues server and client certificates."""

    def __init__(self, directory: Path, name: str = "test-ca") -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._subject = _name(name, None)
        now = dt.datetime.now(dt.UTC)
        self._certificate = (
            x509.CertificateBuilder()
            .subject_name(self._subject)
            .issuer_name(self._subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
            .sign(self._key, hashes.SHA256())
        )
        self.cert = write_private(
            self.dir / f"{name}.pem", self._certificate.public_bytes(serialization.Encoding.PEM)
        )

    def server(self, name: str = "server", hosts: tuple[str, ...] = ("localhost",)) -> Pair:
        """A server certificate for ``hosts`` (and 127.0.0.1, ::1)."""
        alt: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
        alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
        return self._issue(name, name, None, alt, ExtendedKeyUsageOID.SERVER_AUTH)

    def client(self, common_name: str, role: str | None = None) -> Pair:
        """A client certificate: ``CN=common_name`` and, when given, ``OU=role``."""
        return self._issue(
            f"client-{common_name}-{role or 'none'}",
            common_name,
            role,
            [x509.DNSName(common_name)],
            ExtendedKeyUsageOID.CLIENT_AUTH,
        )

    def _issue(
        self,
        file_name: str,
        common_name: str,
        unit: str | None,
        alt: list[x509.GeneralName],
        usage: x509.ObjectIdentifier,
    ) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, unit))
            .issuer_name(self._subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        cert = write_private(
            self.dir / f"{file_name}.pem", certificate.public_bytes(serialization.Encoding.PEM)
        )
        key_path = write_private(
            self.dir / f"{file_name}.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        return Pair(cert, key_path)
