"""The local broker's certificates, made here (no downloads): a certificate authority, the
broker's certificate (SAN 127.0.0.1 and localhost) as a password-protected PKCS#12 keystore,
and one client certificate (CN=admin) for the mutual-TLS listener.

Usage: python tls.py DIR. Idempotent: what exists is kept; a missing CA re-issues everything,
a missing broker or client file re-issues that one from the CA. Files in DIR:
``ca.pem`` (what clients trust), ``ca.key``, ``broker.p12`` + ``broker.password`` (the broker's
keystore), ``client.pem`` + ``client.key`` (an mTLS client). Keys and passwords are 0600.
Needs only ``cryptography`` (a project dependency)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 825
CLIENT_NAME = "admin"


def _write(path: Path, data: bytes, *, private: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def subject(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshgate local"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def certificate_builder(subject: x509.Name, issuer: x509.Name,
                        public: ec.EllipticCurvePublicKey, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))


def make_ca(folder: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = subject("meshgate local CA")
    cert = (certificate_builder(name, name, key.public_key(), CA_DAYS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write(folder / "ca.key", key_pem(key), private=True)
    _write(folder / "ca.pem", cert.public_bytes(serialization.Encoding.PEM), private=False)


def _load_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SystemExit(f"tls: error: {folder / 'ca.key'} is not an EC key; delete {folder}")
    return cert, key


def leaf(folder: Path, common_name: str, usage: x509.ObjectIdentifier,
          san: list[x509.GeneralName]) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate,
                                                x509.Certificate]:
    ca_cert, ca_key = _load_ca(folder)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (certificate_builder(subject(common_name), ca_cert.subject, key.public_key(),
                                   LEAF_DAYS)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256()), ca_cert


def make_broker(folder: Path) -> None:
    key, cert, ca_cert = leaf(folder, "localhost", ExtendedKeyUsageOID.SERVER_AUTH,
                               [x509.DNSName("localhost"),
                                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    password = secrets.token_hex(16)
    keystore = pkcs12.serialize_key_and_certificates(
        b"broker", key, cert, [ca_cert], serialization.BestAvailableEncryption(password.encode()))
    _write(folder / "broker.password", password.encode(), private=True)
    _write(folder / "broker.p12", keystore, private=True)


def make_client(folder: Path) -> None:
    key, cert, _ = leaf(folder, CLIENT_NAME, ExtendedKeyUsageOID.CLIENT_AUTH, [])
    _write(folder / "client.key", key_pem(key), private=True)
    _write(folder / "client.pem", cert.public_bytes(serialization.Encoding.PEM), private=False)


def ensure(folder: Path) -> list[str]:
    """Make what is missing; the names of what was made."""
    folder.mkdir(parents=True, exist_ok=True)
    made: list[str] = []
    if not (folder / "ca.pem").is_file() or not (folder / "ca.key").is_file():
        make_ca(folder)
        for stale in ("broker.p12", "broker.password", "client.pem", "client.key"):
            (folder / stale).unlink(missing_ok=True)
        made.append("CA")
    if not (folder / "broker.p12").is_file() or not (folder / "broker.password").is_file():
        make_broker(folder)
        made.append("broker certificate")
    if not (folder / "client.pem").is_file() or not (folder / "client.key").is_file():
        make_client(folder)
        made.append("client certificate")
    return made


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: tls.py DIR")
    made = ensure(Path(sys.argv[1]))
    if made:
        print(f"made {', '.join(made)} in {sys.argv[1]}")
