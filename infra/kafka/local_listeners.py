"""The local broker's listeners, as a client reaches them (``localstack/kafka/kafka.sh``):
PLAINTEXT on the bootstrap port (the operator's and test harness's door), SASL_SSL with
SCRAM-SHA-512 on port + 2 (``MESHGATE_KAFKA_SECURE_BOOTSTRAP``) and SSL with client
certificates on port + 3 (``MESHGATE_KAFKA_MTLS_BOOTSTRAP``); the CA and the mTLS client
certificate under ``<local dir>/kafka/tls/``, SCRAM passwords under
``<local dir>/kafka/secrets/<user>`` (0600). For tests, the attack suite and local tools."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from bus.transport.connection import KafkaSecurity
from infra.errors import InfraError
from infra.settings import LOOPBACK, Settings


@dataclass(frozen=True)
class LocalListeners:
    plaintext: str
    secure: str
    mtls: str
    tls_dir: Path
    secrets_dir: Path

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    def password(self, user: str) -> str:
        """The SCRAM password of ``user`` kept for local tools."""
        path = self.secrets_dir / user
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise InfraError(f"no SCRAM password of {user} at {path} ({exc.strerror})",
                             "start the broker with 'meshgate up'") from None
        if not text:
            raise InfraError(f"the SCRAM password file {path} is empty",
                             "delete it and run 'meshgate up'")
        return text

    def scram(self, user: str, password: str | None = None) -> KafkaSecurity:
        """SASL_SSL + SCRAM-SHA-512 as ``user`` (its kept password unless one is given),
        trusting the local CA."""
        secret = self.password(user) if password is None else password
        return KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                             sasl_username=user, sasl_password=SecretStr(secret),
                             ssl_cafile=str(self.ca_file))

    def mutual_tls(self, *, with_certificate: bool = True) -> KafkaSecurity:
        """SSL trusting the local CA, with the local client certificate (CN=admin) or none."""
        if not with_certificate:
            return KafkaSecurity(protocol="SSL", ssl_cafile=str(self.ca_file))
        return KafkaSecurity(protocol="SSL", ssl_cafile=str(self.ca_file),
                             ssl_certfile=str(self.tls_dir / "client.pem"),
                             ssl_keyfile=str(self.tls_dir / "client.key"))


def local_listeners(settings: Settings) -> LocalListeners:
    port = settings.kafka_port
    secure = settings.secure_bootstrap
    mtls = os.environ.get("MESHGATE_KAFKA_MTLS_BOOTSTRAP") or f"{LOOPBACK}:{port + 3}"
    state = settings.local_dir / "kafka"
    return LocalListeners(plaintext=settings.kafka_bootstrap, secure=secure, mtls=mtls,
                          tls_dir=state / "tls", secrets_dir=state / "secrets")
