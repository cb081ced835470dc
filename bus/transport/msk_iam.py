"""SASL OAUTHBEARER tokens for Amazon MSK with IAM access control: the process's AWS role
(Lambda execution role, task role, instance profile, ``AWS_*``) signs a token with
``aws-msk-iam-sasl-signer-python``. Imported only when ``oauth_provider`` is ``msk-iam``, so
the mesh client needs botocore only then.

Signing reads credentials (maybe over the network): it runs in a thread, bounded in time.
A token is reused until a minute before it expires, so the connections a client opens at
start share one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka.abc import AbstractTokenProvider
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
from botocore.exceptions import BotoCoreError, ClientError

from bus.errors import KafkaAuthFailed

SIGN_TIMEOUT_S = 10.0
REFRESH_BEFORE_MS = 60_000
Signer = Callable[[str], tuple[str, int]]


def _sign(region: str) -> tuple[str, int]:
    token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
    return str(token), int(expiry_ms)


class MskIamTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    def __init__(self, region: str, *, signer: Signer = _sign) -> None:
        self.region = region
        self._signer = signer
        self._token: str | None = None
        self._expires_ms = 0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or time.time() * 1000 >= self._expires_ms - REFRESH_BEFORE_MS:
                try:
                    async with asyncio.timeout(SIGN_TIMEOUT_S):
                        token, expires_ms = await asyncio.to_thread(self._signer, self.region)
                except (BotoCoreError, ClientError, ValueError) as exc:
                    raise KafkaAuthFailed(f"cannot sign an MSK IAM token in {self.region}: "
                                          f"{exc}") from None
                except TimeoutError:
                    raise KafkaAuthFailed(f"signing an MSK IAM token in {self.region} took "
                                          f"over {SIGN_TIMEOUT_S:g}s (credentials)") from None
                self._token, self._expires_ms = token, expires_ms
            return self._token


def sign_token(region: str) -> tuple[str, int]:
    """A token and its expiry (epoch ms), signed now (blocking: for librdkafka's oauth_cb,
    which runs in one of its threads); KafkaAuthFailed when it cannot be signed."""
    try:
        return _sign(region)
    except (BotoCoreError, ClientError, ValueError) as exc:
        raise KafkaAuthFailed(f"cannot sign an MSK IAM token in {region}: {exc}") from None


def msk_iam_token_provider(region: str) -> MskIamTokenProvider:
    return MskIamTokenProvider(region)
