"""Typed settings of the mesh client: explicit argument over environment over default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bus.transport.connection import KafkaSecurity

ENV_PREFIX = "MESH_"
KAFKA_ENV_PREFIX = ENV_PREFIX + "KAFKA_"


class BusSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = "127.0.0.1:9092"
    service_name: str = Field(default="anonymous", min_length=1)
    reply_topic: str = "mesh.replies"
    reply_partition: int | None = Field(default=None, ge=0)
    request_timeout_s: float = Field(default=10.0, gt=0, le=900)
    max_attempts: int = Field(default=3, ge=1, le=10)
    linger_ms: int = Field(default=0, ge=0)
    # With fetch_min_bytes=1 the broker answers as soon as a record arrives, so this bounds
    # only how often an idle consumer polls: 100 ms costs <1% of a core, 10 ms about 5%.
    fetch_max_wait_ms: int = Field(default=100, ge=0)
    max_batch_bytes: int = Field(default=256 * 1024, gt=0)
    max_message_bytes: int = Field(default=1_000_000, gt=0)
    # Identity: a signing key (file, or MESH_SIGNING_KEY in the environment, or a secret
    # name resolved by a SecretSource), the trusted public keys, and the access map.
    signing_key_file: str | None = None
    signing_key_secret: str | None = None
    keyring_file: str | None = None
    keyring_json: str | None = None
    access_file: str | None = None
    access_json: str | None = None
    signing_algorithm: Literal["ed25519", "hmac-sha256"] = "ed25519"
    signing_key_id: str | None = None  # needed for HMAC (Ed25519 ids derive from the key)
    # HMAC shared secrets ({"keys": [{"key_id", "service", "secret"}]}, secret in base64url):
    # never in the public keyring, never committed.
    hmac_keys_file: str | None = None
    insecure: bool = False
    # Ed25519-signed messages sent in one event-loop turn share one signature over a Merkle
    # root, at most this many (bus.security.batch_signer); 1 signs every message alone.
    signature_batch_max: int = Field(default=64, ge=1, le=2048)
    # Requests (and replies) must be this fresh; events are bound by it only on the future
    # side (clock skew): a backlog that waited out an outage is still handled.
    freshness_window_ms: int = Field(default=300_000, gt=0)
    replay_max_entries: int = Field(default=200_000, gt=0)
    # Events older than this are refused (possible_replay): the durable replay memory of an
    # event is kept this long (plus the window), so no copy can outlive it. Kafka's default
    # retention is 7 days; set it to your topics' retention.ms.
    event_max_age_ms: int = Field(default=7 * 24 * 3600 * 1000, gt=0)
    # The durable idempotency store (a DynamoDB table) of a worker or function process;
    # required outside insecure mode.
    idempotency_table: str | None = None
    # How every Kafka client connects (TLS, SASL): MESH_KAFKA_<FIELD> variables.
    kafka: KafkaSecurity = Field(default_factory=KafkaSecurity)
    # Which Kafka client library the transport uses (bus.transport.select): aiokafka, or
    # librdkafka through confluent-kafka (the "rdkafka" extra). MESH_TRANSPORT.
    transport: Literal["aiokafka", "rdkafka"] = "aiokafka"

    @classmethod
    def resolve(cls, env: Mapping[str, str] | None = None, **explicit: Any) -> BusSettings:
        """Explicit keyword arguments win over ``MESH_*`` variables, which win over defaults
        (``kafka`` is read from ``MESH_KAFKA_*`` unless given explicitly)."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            env_value = source.get(ENV_PREFIX + name.upper())
            if name != "kafka" and env_value is not None and env_value != "":
                values[name] = env_value
        values["kafka"] = KafkaSecurity.from_env(source, KAFKA_ENV_PREFIX)
        values.update({k: v for k, v in explicit.items() if v is not None})
        return cls.model_validate(values)
