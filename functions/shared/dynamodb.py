"""What every DynamoDB adapter of this project shares: a lazily created client, and what it
does with botocore's errors: a failed
condition is an answer (with the old item when DynamoDB returns it), throttling, 5xx and
connection trouble are retriable, anything else is a refusal."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from functions.errors import FunctionError
from functions.shared.aws_json.clients import aws_client, botocore_args, botocore_client
from functions.shared.aws_json.dynamodb_client import FAST_CLIENT_ENV, FastDynamoDB
from functions.shared.aws_json.json_client import Timeouts, retriable_answer

CONDITION_FAILED = "ConditionalCheckFailedException"


def transient(exc: BaseException) -> bool:
    """Whether an AWS SDK error may go away on retry: throttling, a 5xx, a timeout or a
    connection error; not validation, not found or access denied."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        return retriable_answer(status, code)
    return isinstance(exc, BotoConnectionError | HTTPClientError)


# connect 2 s, read 5 s, 4 attempts (botocore's standard mode with max_attempts 3)
DEFAULT_TIMEOUTS = Timeouts(connect_s=2.0, read_s=5.0, attempts=4)


class ConditionFailed(FunctionError):
    """A conditional write lost: ``item`` is the item as it was (if DynamoDB returned it).
    The stores catch it themselves (the write lost a race: they decide what follows)."""

    code = "condition_failed"

    def __init__(self, item: Mapping[str, Any] | None) -> None:
        super().__init__("conditional check failed")
        self.item = item


@contextmanager
def translated(
    where: str, *, retriable: Callable[[str], Exception], refused: Callable[[str], Exception]
) -> Iterator[None]:
    """Turn botocore errors raised inside into ``ConditionFailed``, ``retriable`` or
    ``refused`` (each message starting with ``where``)."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code == CONDITION_FAILED:
            old = exc.response.get("Item")  # ReturnValuesOnConditionCheckFailure=ALL_OLD
            raise ConditionFailed(old if isinstance(old, Mapping) else None) from None
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        message = f"{where}: {code}: {error.get('Message', '')}"
        if retriable_answer(status, code):
            raise retriable(message) from exc
        raise refused(message) from exc
    except (BotoConnectionError, HTTPClientError) as exc:
        raise retriable(f"{where}: {exc}") from exc
    except BotoCoreError as exc:
        raise refused(f"{where}: {exc}") from exc


def fast_client_wanted(fast: bool | None, env: Mapping[str, str]) -> bool:
    """The item calls skip botocore's pipeline (``functions.shared.aws_json``) unless
    ``fast`` is False, or it is None and ``MESH_DYNAMODB_FAST`` is ``0``."""
    return fast if fast is not None else env.get(FAST_CLIENT_ENV, "1") != "0"


class LazyDynamoDB:
    """A DynamoDB client created on first use, once (thread-safe: stores call it from
    ``asyncio.to_thread``), with this project's timeouts unless ``client_args`` give a
    ``config``. Its item calls take the fast path (``functions.shared.aws_json``) unless
    ``fast_client_wanted`` says otherwise; without botocore at all where the environment
    gives endpoint, region and credentials (``direct_route``: a Lambda, a local worker)."""

    def __init__(self, client_args: Mapping[str, Any] | None = None, *,
                 fast: bool | None = None) -> None:
        self._args = dict(client_args or {})
        self._fast = fast_client_wanted(fast, os.environ)
        self._lock = threading.Lock()
        self._client: Any = None

    def get(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._make()
            return self._client

    def _make(self) -> Any:
        if not self._fast:
            return botocore_client("dynamodb", botocore_args(self._args, DEFAULT_TIMEOUTS))
        return aws_client("dynamodb", self._args, timeouts=DEFAULT_TIMEOUTS,
                          wrap=FastDynamoDB.wrap)
