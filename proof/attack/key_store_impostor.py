"""An impostor of Secrets Manager, where a function reads its signing key and API-key pepper.

Since issue 15 a function reads its secrets without botocore (``functions.shared.aws_json``),
so the TLS checks botocore made are now this project's: a key served by anyone but the real
endpoint would make the gateway sign with, or trust, the attacker's material. The impostor is
a local HTTPS server answering every ``GetSecretValue`` with the attacker's key; the function's
environment points at it (``AWS_ENDPOINT_URL``), as a poisoned DNS answer or a hijacked route
would. Cases:

- its own self-signed certificate (the default trust store does not know it);
- a certificate from a CA the function trusts (``AWS_CA_BUNDLE``) but for another host.

A case is refused when ``SecretsManagerSource.get`` raises ``InvalidKey`` caused by the TLS
certificate check (``ssl.SSLCertVerificationError``) and the impostor never served a request
("reached the handler": requests it answered). The control: the same impostor with a
certificate for its own address from the trusted CA serves the key (one request), so a
refusal above is the certificate's, not a broken server.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import tempfile
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from bus.security.keys import InvalidKey
from functions.shared.aws_json.clients import aws_client
from functions.shared.aws_json.json_client import Timeouts
from functions.shared.secrets import SecretsManagerSource
from localstack.kafka import tls
from proof.attack.accounting import CONTROL, Outcome
from proof.serving import serving

CATEGORY = "key_store_impostor"
FORGED_KEY = "mallory's signing key"
TIMEOUTS = Timeouts(connect_s=2.0, read_s=2.0, attempts=1)


class _Impostor(ThreadingHTTPServer):
    daemon_threads = True
    served = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Impostor

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.server.served += 1
        body = json.dumps({"Name": "gateway/signing-key", "SecretString": FORGED_KEY}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/x-amz-json-1.1")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


class Certificates:
    """A CA the function is told to trust, and the impostor's server certificates (made by
    the local broker's own certificate code, ``localstack.kafka.tls``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        tls.make_ca(folder)
        self.ca_file = folder / "ca.pem"

    def server(self, name: str, *, alt: x509.GeneralName, self_signed: bool) -> ssl.SSLContext:
        if self_signed:
            key = ec.generate_private_key(ec.SECP256R1())
            certificate = (tls.certificate_builder(tls.subject(name), tls.subject(name),
                                                   key.public_key(), tls.LEAF_DAYS)
                           .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                          critical=True)
                           .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
                           .sign(key, hashes.SHA256()))
        else:
            key, certificate, _ = tls.leaf(self.folder, name, ExtendedKeyUsageOID.SERVER_AUTH,
                                           [alt])
        cert_path, key_path = self.folder / f"{name}.pem", self.folder / f"{name}.key"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(tls.key_pem(key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        return context


def impostor(context: ssl.SSLContext) -> AbstractContextManager[_Impostor]:
    server = _Impostor(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return serving(server)


def _read(server: _Impostor, ca_bundle: str | None) -> tuple[bool, str]:
    """(refused, why) of a function reading its key from ``server``, trusting ``ca_bundle``
    (else the default trust store), with a Lambda's environment."""
    env = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
           "AWS_DEFAULT_REGION": "eu-west-1",
           "AWS_ENDPOINT_URL": f"https://127.0.0.1:{server.server_address[1]}",
           **({"AWS_CA_BUNDLE": ca_bundle} if ca_bundle else {})}
    client = aws_client("secretsmanager", timeouts=TIMEOUTS, env=env)
    try:
        key = SecretsManagerSource(client=client).get("gateway/signing-key")
    except InvalidKey as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
            cause = cause.__cause__
        if cause is None:  # refused, but not for its certificate: the case proves nothing
            return False, f"unclassified: {exc}"
        return True, f"certificate refused: {cause.verify_message}"
    return False, f"read {key!r}"


def run_key_store_impostor() -> list[Outcome]:
    outcomes: list[Outcome] = []
    localhost = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    with tempfile.TemporaryDirectory(prefix="meshgate-impostor-") as tmp:
        certificates = Certificates(Path(tmp))
        cases = [
            ("a self-signed certificate", certificates.server(
                "self-signed", alt=localhost, self_signed=True), None),
            ("a trusted CA's certificate for another host", certificates.server(
                "elsewhere", alt=x509.DNSName("secretsmanager.elsewhere.example"),
                self_signed=False), str(certificates.ca_file)),
        ]
        for case, context, ca_bundle in cases:
            with impostor(context) as server:
                refused, why = _read(server, ca_bundle)
                outcomes.append(Outcome(CATEGORY, case, refused, server.served, why))
        with impostor(certificates.server("genuine", alt=localhost, self_signed=False)) \
                as server:
            refused, why = _read(server, str(certificates.ca_file))
            read = not refused and why == f"read {FORGED_KEY.encode()!r}"
            # a control counts as seen when the key it served was read (accounting's rule)
            outcomes.append(Outcome(CONTROL, "key_store_impostor: the trusted CA's certificate "
                                    "for the endpoint's own address", True,
                                    server.served if read else 0, why))
    return outcomes
