"""Typed settings of the deploy and the local cloud: explicit argument over environment
(``MESHGATE_*``) over default."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from bus.transport.connection import KafkaSecurity

ENV_PREFIX = "MESHGATE_"
KAFKA_ENV_PREFIX = ENV_PREFIX + "KAFKA_"
ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
DEFAULT_STACK = "meshgate"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    root: Path = ROOT
    stack_name: str = DEFAULT_STACK
    region: str = "us-east-1"
    # None means real AWS with the default credential chain.
    endpoint_url: str | None = "http://127.0.0.1:4566"
    # True: the emulator at endpoint_url is someone else's (e.g. LocalStack): never started
    # or stopped by ``meshgate up/down``.
    emulator_external: bool = False
    kafka_bootstrap: str = "127.0.0.1:9092"
    # The local broker's KRaft controller listener; default: the bootstrap port + 1.
    kafka_controller_port: int | None = Field(default=None, ge=1, le=65_535)
    # The local broker's SASL_SSL listener (SCRAM-SHA-512), where ``meshgate up`` connects the
    # workers and the gateway, each as its own user; default: the bootstrap port + 2 (+ 3 is
    # its mutual-TLS listener).
    kafka_secure_bootstrap: str | None = None
    # SASL_SSL (default) or PLAINTEXT (the operator's door): how the local mesh connects.
    local_mesh_protocol: Literal["SASL_SSL", "PLAINTEXT"] = "SASL_SSL"
    # The local OTLP/HTTP collector every local process (and the emulated gateway) sends to.
    collector_port: int = Field(default=4318, ge=1, le=65_535)
    # The broker's jars and the emulator's venv (content-stamped installs); default: local_dir.
    # A second stack points it at the first's local dir, so nothing is fetched again.
    tools_dir: Path | None = None
    artifact_bucket: str = "meshgate-artifacts"
    lambda_python: str = "3.11"
    lambda_platform: str = "manylinux2014_x86_64"
    request_timeout_s: float = Field(default=10.0, gt=0, le=28)
    # How the operator's tools (policy plan/apply, tail, dlq, topics) connect to Kafka:
    # MESHGATE_KAFKA_<FIELD> (bus.transport.connection.KafkaSecurity).
    kafka_security: KafkaSecurity = Field(default_factory=KafkaSecurity)

    @property
    def local_dir(self) -> Path:
        """Pids, logs, keys, broker and emulator state: ``MESHGATE_LOCAL_DIR`` (read when
        asked, so a copy of these settings follows the variable), else ``<root>/.local``."""
        return Path(os.environ.get("MESHGATE_LOCAL_DIR", str(self.root / ".local")))

    @property
    def build_dir(self) -> Path:
        """Zips and the policy bundle; a second stack (another name) gets its own folder."""
        base = self.root / "build"
        return base if self.stack_name == DEFAULT_STACK else base / "stacks" / self.stack_name

    @property
    def deps_dir(self) -> Path:
        """Installed Lambda dependencies, keyed by their content: shared by every stack."""
        return self.root / "build" / "deps"

    @property
    def kafka_port(self) -> int:
        """The port of the first bootstrap address (the local broker's listener)."""
        return int(self.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1])

    @property
    def secure_bootstrap(self) -> str:
        """The local broker's SASL_SSL listener."""
        return self.kafka_secure_bootstrap or f"{LOOPBACK}:{self.kafka_port + 2}"

    @property
    def emulator_port(self) -> int | None:
        if self.endpoint_url is None:
            return None
        parts = urllib.parse.urlsplit(self.endpoint_url)
        return parts.port or {"http": 80, "https": 443}.get(parts.scheme)

    @property
    def otlp_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.collector_port}"

    def script_environment(self) -> dict[str, str]:
        """What the localstack/ scripts read: ports and state folders of this stack."""
        env = {"MESHGATE_LOCAL_DIR": str(self.local_dir), "KAFKA_PORT": str(self.kafka_port),
               "KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port or self.kafka_port + 1),
               "KAFKA_SECURE_PORT": self.secure_bootstrap.split(",")[0].rsplit(":", 1)[1]}
        if self.tools_dir is not None:
            env.update(KAFKA_LIBS=str(self.tools_dir / "kafka-libs"),
                       MINISTACK_VENV=str(self.tools_dir / "ministack-venv"))
        if self.emulator_port is not None:
            env["MINISTACK_PORT"] = str(self.emulator_port)
        return env

    def environment(self) -> dict[str, str]:
        """These settings as ``MESHGATE_*`` variables, for the processes ``meshgate up``
        starts (the collector resolves its port and folder from them)."""
        values = self.model_dump(exclude={"root", "kafka_security"}, exclude_none=True)
        env = {ENV_PREFIX + name.upper(): str(value).lower() if isinstance(value, bool)
               else str(value) for name, value in values.items()}
        env.update(kafka_environment(self.kafka_security, KAFKA_ENV_PREFIX))
        env[ENV_PREFIX + "LOCAL_DIR"] = str(self.local_dir)
        if self.endpoint_url is None:
            env[ENV_PREFIX + "ENDPOINT_URL"] = "aws"
        return env

    @property
    def is_local(self) -> bool:
        return self.endpoint_url is not None

    def aws_client_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"region_name": self.region}
        if self.endpoint_url is not None:
            args.update(
                endpoint_url=self.endpoint_url,
                aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
                aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
            )
        return args

    @classmethod
    def resolve(cls, env: Mapping[str, str] | None = None, **explicit: Any) -> Settings:
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        values["kafka_security"] = KafkaSecurity.from_env(source, KAFKA_ENV_PREFIX)
        for name in cls.model_fields:
            raw = source.get(ENV_PREFIX + name.upper())
            if name != "kafka_security" and raw is not None:
                values[name] = None if (name == "endpoint_url" and raw in ("", "aws")) else raw
        values.update({k: v for k, v in explicit.items() if v is not None})
        if values.get("endpoint_url") == "aws":
            values["endpoint_url"] = None
        return cls.model_validate(values)


def kafka_environment(security: KafkaSecurity, prefix: str) -> dict[str, str]:
    """``security``'s explicitly set fields as ``<prefix><FIELD>`` variables (what
    ``KafkaSecurity.from_env`` reads back). A password itself is never handed on (a child
    reads it from where it is kept: ``sasl_password_secret``)."""
    env: dict[str, str] = {}
    for name in sorted(security.model_fields_set):
        value = getattr(security, name)
        if value is None or isinstance(value, SecretStr):
            continue
        env[prefix + name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return env
