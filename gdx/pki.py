"""The platform's certificate authority: one CA, client certificates for departments and
staff roles, server certificates for the exchange and the agents.

A client certificate names its holder in the subject's CN and its role in the OU; the
exchange trusts nothing else about the caller.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ORGANIZATION = "GDX"
CA_CERT = "ca.crt"
CA_KEY = "ca.key"


class Role(StrEnum):
    """Separate duties (GB/T 39477): no role can both change data and read the audit trail."""

    DEPARTMENT = "department"  # provides and consumes data, as itself only
    ADMIN = "admin"  # records coordination decisions
    AUDITOR = "auditor"  # reads the audit trail, changes nothing
    OPERATOR = "operator"  # reads health, metrics and overdue figures
    INGRESS = "ingress"  # the cluster's ingress, forwarding a verified client identity


class PkiError(Exception):
    pass


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    # Create with the final mode so a private key is never readable, even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def init_ca(directory: Path, *, common_name: str = "GDX Platform CA", days: int = 3650) -> Path:
    """Create the CA key and self-signed certificate; refuse to overwrite an existing CA."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() or key_path.exists():
        raise PkiError(f"{directory} already holds a CA ({CA_CERT}); remove it first to make a new one")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path


def load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
    except FileNotFoundError:
        raise PkiError(f"no CA in {directory}; create one with `gdx ca init --dir {directory}`") from None
    except ValueError as exc:
        raise PkiError(f"the CA in {directory} cannot be read: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{directory / CA_KEY} is not an EC key")
    return cert, key


def _sans(names: list[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def issue(
    directory: Path,
    name: str,
    *,
    role: Role = Role.DEPARTMENT,
    server_names: list[str] | None = None,
    days: int = 397,
    out_dir: Path | None = None,
) -> tuple[Path, Path]:
    """Issue a certificate and key named ``name``. With ``server_names`` it is a server
    certificate for those DNS names or addresses, otherwise a client certificate."""
    ca_cert, ca_key = load_ca(directory)
    out = out_dir or directory
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
        x509.NameAttribute(NameOID.COMMON_NAME, name),
    ]
    usage = [ExtendedKeyUsageOID.SERVER_AUTH] if server_names else [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role is Role.DEPARTMENT and not server_names:
        # A front-end node also serves its health port with it (the monitoring agent verifies the handshake).
        usage.append(ExtendedKeyUsageOID.SERVER_AUTH)
    not_after = min(_now() + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if server_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(server_names)), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = out / f"{name}.crt", out / f"{name}.key"
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def identity_of(cert: x509.Certificate) -> Identity:
    """The holder and role a client certificate names; PkiError when it names neither."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(cns) != 1 or len(ous) != 1:
        raise PkiError("the certificate must name exactly one CN (holder) and one OU (role)")
    try:
        role = Role(str(ous[0].value))
    except ValueError:
        raise PkiError(f"unknown role {ous[0].value!r} in the certificate's OU") from None
    return Identity(str(cns[0].value), role)


def verify_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate, *, at: dt.datetime | None = None) -> None:
    """Raise PkiError unless ``cert`` is signed by ``ca_cert`` and valid at ``at``."""
    moment = at or _now()
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"not issued by the platform CA: {exc}") from None
    except Exception as exc:  # cryptography raises InvalidSignature, which is not a ValueError
        raise PkiError(f"not issued by the platform CA: {type(exc).__name__}") from None
    if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
        raise PkiError(
            f"the certificate is not valid now (valid {cert.not_valid_before_utc} to {cert.not_valid_after_utc})"
        )


def days_left(cert: x509.Certificate, *, at: dt.datetime | None = None) -> float:
    return (cert.not_valid_after_utc - (at or _now())).total_seconds() / 86400
