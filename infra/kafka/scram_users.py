"""SCRAM credentials on the broker (AlterUserScramCredentials, KIP-554) over aiokafka's admin
connection: aiokafka 0.14 has no method and no struct for it, so the v0 request (a flexible
version) is declared here. The salted password is computed on this side, as Kafka's own
clients do (RFC 5802's Hi(): PBKDF2-HMAC with the mechanism's hash); the password itself
never leaves the process.

Used by the ACL tests and attack case to make throwaway service identities (retired, never
deleted: see ``retire_user``); the stack's own service users are made by ``meshgate up``.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any, Final

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from infra.errors import KafkaAdminFailed

MECHANISMS: Final = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}
ITERATIONS: Final = 4096  # Kafka's minimum


class _Response(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", CompactArray(("user_name", CompactString("utf-8")), ("error_code", Int16),
                                 ("error_message", CompactString("utf-8")),
                                 ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class _Struct(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _Response
    SCHEMA = Schema(
        ("deletions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8),
                                   ("tags", TaggedFields))),
        ("upsertions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8),
                                    ("iterations", Int32), ("salt", CompactBytes),
                                    ("salted_password", CompactBytes),
                                    ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class _Alter(Request[_Struct]):  # type: ignore[misc]
    API_KEY = 51

    """Upsertions only: this project never sends a deletion (see ``retire_user``)."""

    def __init__(self,
                 upsertions: list[tuple[str, int, int, bytes, bytes, dict[int, bytes]]]) -> None:
        self._upsertions = upsertions

    def build(self, struct: type[Any]) -> Any:
        return struct([], self._upsertions, {})


def salted_password(password: str, salt: bytes, mechanism: str, iterations: int) -> bytes:
    _, digest = MECHANISMS[mechanism]
    return hashlib.pbkdf2_hmac(digest, password.encode(), salt, iterations)


async def _alter(admin: AIOKafkaAdminClient, request: _Alter, what: str) -> None:
    response = await admin._send_request(request)
    for result in response.to_object()["results"]:
        if result["error_code"]:
            raise KafkaAdminFailed(f"Kafka refused to {what} {result['user_name']}: "
                                   f"error {result['error_code']} {result['error_message']}",
                                   "connect as a super user (ALTER on the cluster)")


async def upsert_user(admin: AIOKafkaAdminClient, name: str, password: str,
                      mechanism: str = "SCRAM-SHA-512") -> None:
    """Create ``name`` (or change its password) for ``mechanism``."""
    code, _ = MECHANISMS[mechanism]
    salt = secrets.token_bytes(32)
    salted = salted_password(password, salt, mechanism, ITERATIONS)
    await _alter(admin, _Alter([(name, code, ITERATIONS, salt, salted, {})]),
                 "set the SCRAM credential of")


async def retire_user(admin: AIOKafkaAdminClient, name: str,
                      mechanism: str = "SCRAM-SHA-512") -> None:
    """Make ``name`` unusable by giving it a random password nobody keeps.

    Not a deletion, on purpose: Kafka's KRaft metadata image (``ScramDelta.apply``, checked on
    4.1.1, 4.2.1 and 4.4.0) drops every credential of a mechanism when a replay from an empty
    image meets a removed user first in its hash order, so one deleted user can make a broker
    restarted before its next metadata snapshot refuse every SCRAM login
    (docs/decisions.md, "SCRAM credentials lost on restart")."""
    await upsert_user(admin, name, secrets.token_urlsafe(32), mechanism)
