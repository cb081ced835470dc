"""The policy model: which services exist, the topics and how they are configured, who may
produce, consume and call what, the HTTP routes, and the traffic rules per operation.

Policies are written in YAML under ``policies/`` and loaded by ``infra.policy``, which maps
every mistake back to a file and a line. This module is pure data (pydantic, strict, closed,
frozen) plus the derivations the mesh client enforces; it reads no YAML, so a service can take
the merged policy as JSON (``Policy.from_json``), from a file or an SSM parameter.

Naming, as in ``bus.topics``: operation ``orders.create`` belongs to service ``orders``; a
service serves each subset it runs on its own request topic: subset ``""`` on
``orders.requests``, subset ``canary`` on ``orders.canary.requests``. Calling an operation
means producing to the request topics of the service that owns it (every subset: the caller's
traffic rules choose one per call); owning operations means consuming one's own request topics.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Annotated, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

from bus.policy.edge import AGGREGATE_PART_PATTERN, AggregatePart, Edge
from bus.security.keys import (
    ED25519,
    ED25519_KEY_BYTES,
    KEY_ID_PATTERN,
    KeyRing,
    VerifyKey,
    decode_b64url,
)
from bus.topics import request_topic
from bus.traffic.model import TrafficRules

SERVICE_PATTERN: Final = r"^[a-z][a-z0-9-]{0,62}$"
OPERATION_PATTERN: Final = r"^[a-z][a-z0-9-]{0,62}(\.[A-Za-z0-9_-]+)+$"
OPERATION_GLOB_PATTERN: Final = r"^[A-Za-z0-9_.*?-]{1,192}$"
TOPIC_PATTERN: Final = r"^[A-Za-z0-9._-]{1,249}$"
TOPIC_GLOB_PATTERN: Final = r"^[A-Za-z0-9._*?-]{1,249}$"
SERVICE_SUBSET_PATTERN: Final = r"^(|[a-z0-9][a-z0-9-]{0,62})$"
CONFIG_KEY_PATTERN: Final = r"^[a-z][a-z0-9.]{0,127}$"
KEY_ID_PATTERN_TEXT: Final = f"^{KEY_ID_PATTERN.pattern}$"
# "/", or segments that are literal text, "{param}", or a last greedy "{param+}".
ROUTE_PATH_PATTERN: Final = (
    r"^(/|(/([A-Za-z0-9._~-]+|\{[A-Za-z_][A-Za-z0-9_]*\}|\{[A-Za-z_][A-Za-z0-9_]*\+\}))+)$"
)
# API Gateway ends an integration after 29 s.
MAX_ROUTE_TIMEOUT_MS: Final = 29_000
MAX_ASYNC_TIMEOUT_MS: Final = 3_600_000

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"]
Auth = Literal["none", "jwt", "api_key"]
Compression = Literal["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]
CleanupPolicy = Literal["delete", "compact"]
Loc = tuple[str | int, ...]  # a place in the policy: ("routes", 0, "path")


def _not_dots(name: str) -> str:
    if name in (".", ".."):
        raise ValueError("Kafka refuses the topic names '.' and '..'; choose another name")
    return name


ServiceName = Annotated[str, Field(pattern=SERVICE_PATTERN)]
OperationName = Annotated[str, Field(pattern=OPERATION_PATTERN)]
OperationGlob = Annotated[str, Field(pattern=OPERATION_GLOB_PATTERN)]
TopicName = Annotated[str, Field(pattern=TOPIC_PATTERN), AfterValidator(_not_dots)]
TopicGlob = Annotated[str, Field(pattern=TOPIC_GLOB_PATTERN)]
SubsetName = Annotated[str, Field(pattern=SERVICE_SUBSET_PATTERN)]
ConfigKey = Annotated[str, Field(pattern=CONFIG_KEY_PATTERN)]
JsonSchema = dict[str, JsonValue]

# Kafka topic configs that have their own field here: one way to say each thing.
TYPED_CONFIGS: Final = {
    "retention.ms": "retention_ms",
    "cleanup.policy": "cleanup_policy",
    "compression.type": "compression",
}


def subset_request_topic(service: str, subset: str = "") -> str:
    """``orders`` + ``""`` -> ``orders.requests``; ``orders`` + ``canary`` ->
    ``orders.canary.requests``."""
    return request_topic(service, subset)


def is_glob(pattern: str) -> bool:
    return any(char in pattern for char in "*?")


def glob_matches(pattern: str, names: Iterable[str]) -> list[str]:
    """The names a pattern (``orders.*``) or a plain name stands for, in their order."""
    return [name for name in names if fnmatch.fnmatchcase(name, pattern)]


def _twice(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    twice: list[str] = []
    for item in items:
        if item in seen and item not in twice:
            twice.append(item)
        seen.add(item)
    return twice


def _show(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in names)


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ServiceKey(_Model):
    """A key the service signs with: the public half of an Ed25519 key, or only its id (the
    key itself lives in Secrets Manager; for HMAC, always: the secret never goes here)."""

    key_id: str = Field(pattern=KEY_ID_PATTERN_TEXT, description="the id in mesh_sig")
    algorithm: Literal["ed25519", "hmac-sha256"] = "ed25519"
    public_key: str | None = Field(
        default=None, description="Ed25519 public key, unpadded base64url (32 bytes)"
    )

    @model_validator(mode="after")
    def _material(self) -> ServiceKey:
        if self.public_key is None:
            return self
        if self.algorithm != "ed25519":
            raise ValueError(
                f"key {self.key_id} is an HMAC secret, which must never be in a policy; "
                "remove public_key and keep only key_id"
            )
        try:
            raw = decode_b64url(self.public_key)
        except ValueError:
            raw = b""
        if len(raw) != ED25519_KEY_BYTES:
            raise ValueError(
                f"public_key of key {self.key_id} is not a 32-byte Ed25519 key in unpadded "
                "base64url; paste the value that `KeyRing.to_dict()` prints"
            )
        return self


class Service(_Model):
    """A service: the operations it serves and the subsets (deployments) it runs."""

    operations: tuple[OperationName, ...] = Field(
        default=(), description="operations it serves, named <service>.<verb>"
    )
    subsets: tuple[SubsetName, ...] = Field(
        default=("",),
        description='deployments it runs: "" serves <service>.requests, "canary" serves '
        "<service>.canary.requests",
    )
    keys: tuple[ServiceKey, ...] = Field(default=(), description="its signing keys")
    edge: bool = Field(
        default=False,
        description="an edge (the gateway): it may name the end user a call is made for "
        "(mesh_principal) and asserts it for nested calls to forward; other services may "
        "only forward the principal of the message they handle",
    )
    side_effect_free: tuple[OperationName, ...] = Field(
        default=(),
        description="operations (of its own) that change nothing anywhere: their requests skip "
        "the idempotency store (no claim, no stored result), so a redelivered or replayed "
        "copy simply runs again",
    )
    message_auth: Literal["signature", "pair-mac"] = Field(
        default="signature",
        description="how messages addressed to it (requests to it, replies to its calls) are "
        "authenticated: 'signature' (Ed25519, checkable by anyone with the keyring) or "
        "'pair-mac' (an HMAC under a key only the sender and this service can compute: about "
        "a sixth of the cost, but a holder of this service's own key could make it accept a "
        "message as from any service, and the operator's tools need its secret to check one)",
    )

    @model_validator(mode="after")
    def _free_ones_are_served(self) -> Service:
        unknown = [op for op in self.side_effect_free if op not in self.operations]
        if unknown:
            raise ValueError(f"side_effect_free {_show(unknown)} are not among its operations")
        return self

    @field_validator("operations", "subsets", "side_effect_free")
    @classmethod
    def _once(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        twice = _twice(values)
        if twice:
            raise ValueError(f"{_show(twice)} listed more than once; keep one of each")
        return values

    @field_validator("keys")
    @classmethod
    def _keys_once(cls, keys: tuple[ServiceKey, ...]) -> tuple[ServiceKey, ...]:
        twice = _twice(key.key_id for key in keys)
        if twice:
            raise ValueError(f"key id {_show(twice)} listed more than once; keep one")
        return keys


class Topic(_Model):
    """A Kafka topic and its configuration. Unset fields keep the broker's defaults."""

    partitions: int = Field(ge=1, le=1000)
    replication: int = Field(default=1, ge=1, le=32)
    retention_ms: int | None = Field(default=None, ge=-1, description="-1 keeps records forever")
    cleanup_policy: CleanupPolicy | None = None
    compression: Compression | None = None
    config: dict[ConfigKey, str] = Field(
        default_factory=dict, description='other Kafka topic configs, as text: "1048576"'
    )

    @field_validator("config")
    @classmethod
    def _no_typed_configs(cls, config: dict[str, str]) -> dict[str, str]:
        for key, field in TYPED_CONFIGS.items():
            if key in config:
                raise ValueError(f"config sets {key}, which has its own field; "
                                 f"write {field} instead of config.{key}")
        return config

    def kafka_config(self) -> dict[str, str]:
        """The topic configs to create it with, as the admin API wants them."""
        typed = {
            "retention.ms": None if self.retention_ms is None else str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy,
            "compression.type": self.compression,
        }
        return {**{k: v for k, v in typed.items() if v is not None}, **self.config}


class Access(_Model):
    """What one service may do besides serving its own operations. Names may be patterns
    (``orders.*``)."""

    produce: tuple[TopicGlob, ...] = Field(default=(), description="topics it may produce to")
    consume: tuple[TopicGlob, ...] = Field(default=(), description="topics it may consume from")
    call: tuple[OperationGlob, ...] = Field(
        default=(),
        description="operations it may call: implies producing to the owner's request topics",
    )


class Operator(_Model):
    """A person's or tool's identity that is not a service (``meshgate dlq replay``): it sends
    no messages of its own; its key (``<stack>/<operator>/signing-key``, in the keyring) only
    countersigns the replay of a dead letter, which receivers admit only onto these topics."""

    replay: tuple[TopicGlob, ...] = Field(
        default=(), description="base topics whose dead letters it may replay (patterns allowed)"
    )


class RateLimit(_Model):
    per_second: float = Field(gt=0, le=1_000_000, description="steady requests per second")
    burst: int = Field(ge=1, le=1_000_000, description="requests allowed at once")
    per: Literal["caller", "route"] = Field(
        default="caller",
        description="caller: one bucket per API key, user or (auth none) source IP; "
        "route: one bucket shared by every caller",
    )


PartName = Annotated[str, Field(pattern=AGGREGATE_PART_PATTERN)]
ParamName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Route(_Model):
    """An HTTP route of the edge: the gateway service ``caller`` turns it into a call."""

    method: HttpMethod
    path: str = Field(pattern=ROUTE_PATH_PATTERN, description="/v1/orders/{id}")
    operation: OperationName | None = Field(
        default=None, description="the operation the route calls (or set aggregate)"
    )
    aggregate: dict[PartName, AggregatePart] | None = Field(
        default=None, description="calls made concurrently, answered as one object by part "
        "name; a failed optional part is reported, not fatal",
    )
    mode: Literal["sync", "async"] = Field(
        default="sync", description="async: answer 202 with a status URL, keep the result",
    )
    auth: Auth = Field(description="none, jwt or api_key: say it, never by default")
    scopes: tuple[str, ...] = Field(
        default=(), description="scopes the caller's token must all carry (auth: jwt)"
    )
    caller: ServiceName = Field(default="gateway", description="the edge service serving it")
    rate_limit: RateLimit | None = None
    status: int = Field(default=200, ge=200, le=299, description="the status of a success")
    params: dict[ParamName, JsonSchema] = Field(
        default_factory=dict, description="JSON Schema of each path parameter"
    )
    query: dict[ParamName, JsonSchema] = Field(
        default_factory=dict, description="JSON Schema of each accepted query parameter"
    )
    required_query: tuple[ParamName, ...] = Field(
        default=(), description="query parameters that must be present"
    )
    timeout_ms: int = Field(
        default=10_000, ge=1, le=MAX_ASYNC_TIMEOUT_MS,
        description="at most 29000 (API Gateway ends an integration after 29 s), except for "
        "async routes (up to an hour)",
    )
    request_schema: JsonSchema | None = Field(
        default=None,
        description='JSON Schema of the body, inline or {"$ref": "<file relative to the policy>"}',
    )
    response_schema: JsonSchema | None = None

    @field_validator("path")
    @classmethod
    def _params(cls, path: str) -> str:
        params = [s.strip("{}+") for s in route_segments(path) if s.startswith("{")]
        twice = _twice(params)
        if twice:
            raise ValueError(f"path parameter {_show(twice)} appears twice; rename one")
        greedy = [s for s in route_segments(path)[:-1] if s.endswith("+}")]
        if greedy:
            raise ValueError(f"greedy parameter {greedy[0]} must be the last segment; "
                             "move it to the end or drop the '+'")
        return path

    @model_validator(mode="after")
    def _shape(self) -> Route:
        if (self.operation is None) == (self.aggregate is None):
            raise ValueError("set exactly one of operation and aggregate")
        if self.aggregate is not None and not self.aggregate:
            raise ValueError("aggregate needs at least one part")
        if self.aggregate is not None and self.mode == "async":
            raise ValueError("an aggregating route cannot be async; make it sync")
        if self.mode == "sync" and self.timeout_ms > MAX_ROUTE_TIMEOUT_MS:
            raise ValueError(f"timeout_ms {self.timeout_ms} is over {MAX_ROUTE_TIMEOUT_MS}, when "
                             "API Gateway ends the call; lower it or make the route async")
        if self.scopes and self.auth != "jwt":
            raise ValueError("scopes need auth: jwt")
        path_params = {s.strip("{}+") for s in route_segments(self.path) if s.startswith("{")}
        unknown = sorted(set(self.params) - path_params)
        if unknown:
            raise ValueError(f"params {_show(unknown)} are not in the path {self.path}")
        missing = sorted(set(self.required_query) - set(self.query))
        if missing:
            raise ValueError(f"required_query {_show(missing)} are not declared in query")
        return self

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"

    def operations(self) -> tuple[str, ...]:
        """Every operation the route calls."""
        if self.aggregate is not None:
            return tuple(part.operation for part in self.aggregate.values())
        assert self.operation is not None
        return (self.operation,)


def route_segments(path: str) -> list[str]:
    return [segment for segment in path.split("/") if segment]


# Editors flag a key that does not match the section's name pattern.
_KEYED: Final[dict[str, JsonValue]] = {"additionalProperties": False}


class Policy(_Model):
    """One mesh's policy (or one file's part of it: every section may be empty)."""

    services: dict[ServiceName, Service] = Field(
        default_factory=dict, description="by service name", json_schema_extra=_KEYED
    )
    topics: dict[TopicName, Topic] = Field(
        default_factory=dict, description="by topic name", json_schema_extra=_KEYED
    )
    access: dict[ServiceName, Access] = Field(
        default_factory=dict, description="by service name: what it may produce, consume, call",
        json_schema_extra=_KEYED,
    )
    routes: tuple[Route, ...] = Field(default=(), description="the HTTP routes of the edge")
    edge: Edge | None = Field(default=None, description="settings of the edge (one file sets it)")
    traffic: dict[OperationName, TrafficRules] = Field(
        default_factory=dict, description="by operation: how its calls are routed and shaped",
        json_schema_extra=_KEYED,
    )
    operators: dict[ServiceName, Operator] = Field(
        default_factory=dict, description="by operator name: identities that replay dead letters",
        json_schema_extra=_KEYED,
    )

    @classmethod
    def from_json(cls, text: str | bytes) -> Policy:
        """The merged policy from its JSON form (what ``model_dump_json`` writes)."""
        return cls.model_validate_json(text, strict=True)

    # --- derivations: what the mesh client enforces ------------------------------------

    def owners(self) -> dict[str, str]:
        """Operation -> the service that serves it (the first, if a policy is inconsistent)."""
        owners: dict[str, str] = {}
        for service, spec in self.services.items():
            for operation in spec.operations:
                owners.setdefault(operation, service)
        return owners

    def owner_of(self, operation: str) -> str | None:
        return self.owners().get(operation)

    def request_topics(self, service: str) -> tuple[str, ...]:
        """The topics ``service`` serves its operations on, one per subset it runs."""
        spec = self.services.get(service)
        if spec is None:
            return ()
        return tuple(subset_request_topic(service, subset) for subset in spec.subsets)

    def callable_operations(self, service: str) -> tuple[str, ...]:
        """The owned operations that ``service`` may call."""
        access = self.access.get(service, Access())
        return tuple(
            operation for operation in self.owners()
            if any(fnmatch.fnmatchcase(operation, p) for p in access.call)
        )

    def may_call(self, service: str, operation: str) -> bool:
        access = self.access.get(service, Access())
        return any(fnmatch.fnmatchcase(operation, pattern) for pattern in access.call)

    def produce_topics(self, service: str) -> tuple[str, ...]:
        """Declared topics ``service`` may produce to: its ``produce`` list and the request
        topics of every operation it may call."""
        access = self.access.get(service, Access())
        topics: list[str] = []
        for pattern in access.produce:
            topics.extend(glob_matches(pattern, self.topics))
        owners = self.owners()
        for operation in self.callable_operations(service):
            topics.extend(self.request_topics(owners[operation]))
        return tuple(dict.fromkeys(topics))

    def consume_topics(self, service: str) -> tuple[str, ...]:
        """Topics ``service`` may consume from: its ``consume`` list and, if it serves
        operations, its own request topics."""
        access = self.access.get(service, Access())
        topics: list[str] = []
        for pattern in access.consume:
            topics.extend(glob_matches(pattern, self.topics))
        spec = self.services.get(service)
        if spec is not None and spec.operations:
            topics.extend(self.request_topics(service))
        return tuple(dict.fromkeys(topics))

    def keyring(self) -> KeyRing:
        """The published Ed25519 public keys of every service (keys given only by id are
        not in it: their public half comes from where the key lives)."""
        return KeyRing(
            VerifyKey(key.key_id, ED25519, service, decode_b64url(key.public_key))
            for service, spec in self.services.items()
            for key in spec.keys
            if key.public_key is not None
        )

    def produce_map(self) -> dict[str, list[str]]:
        """Every service -> the topics it may produce to (``bus.security.access.AccessPolicy``)."""
        return {service: list(self.produce_topics(service)) for service in self.services}

    def consume_map(self) -> dict[str, list[str]]:
        return {service: list(self.consume_topics(service)) for service in self.services}

    def side_effect_free(self) -> list[str]:
        """The operations declared free of side effects (no idempotency record), sorted."""
        return sorted(op for spec in self.services.values() for op in spec.side_effect_free)

    def pair_mac_services(self) -> list[str]:
        """The services that accept per-pair MACs on messages addressed to them, sorted."""
        return sorted(service for service, spec in self.services.items()
                      if spec.message_auth == "pair-mac")

    def edges(self) -> list[str]:
        """The services that may name a principal (``bus.security.principals``), sorted."""
        return sorted(service for service, spec in self.services.items() if spec.edge)

    def replay_map(self) -> dict[str, list[str]]:
        """Every operator -> the declared topics it may replay dead letters onto."""
        return {operator: list(dict.fromkeys(topic for pattern in spec.replay
                                             for topic in glob_matches(pattern, self.topics)))
                for operator, spec in self.operators.items()}


def topic_name_collisions(names: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs of names Kafka refuses together: '.' and '_' are the same in its metric names."""
    seen: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    for name in names:
        key = re.sub(r"[._]", "_", name)
        if key in seen:
            pairs.append((seen[key], name))
        else:
            seen[key] = name
    return pairs
