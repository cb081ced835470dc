"""One admin connection of the operator's to Kafka, shared by ``TopicAdmin`` and ``AclAdmin``.

It connects with ``security`` (default: the operator's, ``MESHGATE_KAFKA_*``, secrets read
from the stack's Secrets Manager); a connection refused for a reason of security
(credentials, TLS) leaves as its one-line ``bus.errors.KafkaConnectRefused``, a broker that
does not answer as ``NotReachable``, and every call is bounded by ``timeout_s``."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, Self, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bus.errors import KafkaConnectRefused, MeshError
from bus.transport.connect_check import start_client
from bus.transport.connection import KafkaSecurity, aiokafka_kwargs, resolve_kafka_secrets
from infra.errors import KafkaAdminFailed, NotReachable
from infra.kafka.connect import OperatorSecrets, operator_security
from infra.settings import Settings

ADMIN_TIMEOUT_S = 20.0
"""Upper bound of one admin call, connection included."""
REQUEST_TIMEOUT_MS = 15_000
"""The client's request timeout, and how long the broker may take to create or delete."""

T = TypeVar("T")


def describe_error(exc: BaseException) -> str:
    """An aiokafka error as one phrase: its class and its text without the ``[Error 37]``."""
    name = type(exc).__name__
    text = re.sub(r"^\[Error -?\d+\]\s*", "", str(exc).strip())
    if not text:
        return name
    return text if name in text else f"{name}: {text}"


class AdminConnection:
    """``async with <subclass>(bootstrap) as admin:`` one admin connection, closed on exit."""

    client_id = "meshgate-admin"
    start_what = "start the admin client"

    def __init__(self, bootstrap: str, *, timeout_s: float = ADMIN_TIMEOUT_S,
                 security: KafkaSecurity | None = None,
                 settings: Settings | None = None) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self._security = security
        self._settings = settings
        self._client: Any = None

    async def _resolved(self) -> KafkaSecurity:
        if self._security is None:
            return await operator_security(self._settings)
        settings = self._settings or Settings.resolve()
        return await resolve_kafka_secrets(self._security, OperatorSecrets(settings))

    async def __aenter__(self) -> Self:
        security = await self._resolved()
        self._client = AIOKafkaAdminClient(
            **aiokafka_kwargs(self.bootstrap, security), client_id=self.client_id,
            request_timeout_ms=min(REQUEST_TIMEOUT_MS, int(self.timeout_s * 1000)))
        try:
            await start_client(self.start_what, self._client.start, self.bootstrap,
                               security, self.timeout_s)
        except KafkaConnectRefused:
            await self._close()
            raise  # one line naming what failed (credentials, TLS)
        except (MeshError, OSError) as exc:
            await self._close()
            raise NotReachable(f"Kafka at {self.bootstrap} does not answer "
                               f"({describe_error(exc)})",
                               "start it with 'localstack/kafka/kafka.sh start' or 'make up'"
                               ) from exc
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._client is None:
            return
        # closing a connection that failed or never opened: nothing left to release
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            await asyncio.wait_for(self._client.close(), self.timeout_s)

    async def _bounded(self, what: str, fix: str, call: Awaitable[T]) -> T:
        """One admin call within ``timeout_s``; its failure a ``KafkaAdminFailed``."""
        try:
            return await asyncio.wait_for(call, self.timeout_s)
        except TimeoutError as exc:
            raise KafkaAdminFailed(
                f"Kafka at {self.bootstrap} did not answer '{what}' within {self.timeout_s:g}s",
                "check that the broker is healthy (its log), then run the plan again",
                retriable=True) from exc
        except KafkaError as exc:
            raise KafkaAdminFailed(f"{what} failed: {describe_error(exc)}", fix,
                                   retriable=bool(exc.retriable)) from exc
