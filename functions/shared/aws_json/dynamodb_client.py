"""A DynamoDB client whose item calls (``put_item``, ``get_item``, ``update_item``,
``delete_item``) skip botocore's request pipeline: the parameters go out as JSON over a
kept-alive connection, signed with SigV4, and come back as botocore would return them
(binary values as ``bytes``; a refusal as ``botocore.exceptions.ClientError`` with the same
``Error``, ``ResponseMetadata`` and modeled members, e.g. the old ``Item`` of a failed
condition; a connection failure as botocore's ``EndpointConnectionError`` or
``ReadTimeoutError``), so the stores and ``functions.shared.dynamodb.translated`` read
them unchanged. Every other call goes to the botocore client it wraps, which also supplies
what the fast path uses: the resolved endpoint, region, timeouts, attempt count, credentials
and event hooks (``provide-client-params`` and ``before-call`` are emitted as botocore emits
them). Tools that patch botocore's ``_make_api_call`` do not see these calls
(``MESH_DYNAMODB_FAST=0``: ``functions.shared.dynamodb.fast_client_wanted``); the client
makes the OpenTelemetry span such a tool would (``call_spans``). A success carries
botocore's ``ResponseMetadata`` (request id, status, headers, retry attempts).

Retries as botocore's: throttling, 5xx, a wrong CRC32 and connection errors are tried
again (up to the configured attempts, exponential backoff from 50 ms with full jitter, as
botocore's DynamoDB legacy mode); a refusal is raised at once. A kept-alive connection the
server closed while idle is replaced once without counting an attempt. Used only where it
can match botocore: an ``http``/``https`` endpoint and no proxy (else ``wrap`` returns the
botocore client itself).
"""

from __future__ import annotations

import http.client
import json
import queue
import random
import socket
import ssl
import time
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from botocore.exceptions import (
    ChecksumError,
    ClientError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.httpsession import get_cert_path

from functions.shared.aws_json.attribute_values import from_wire, to_wire
from functions.shared.aws_json.call_spans import item_call_span, record_answer
from functions.shared.aws_json.sigv4 import Credentials, SigningKeys, signed_headers

SERVICE: Final = "dynamodb"
TARGET_PREFIX: Final = "DynamoDB_20120810."
CONTENT_TYPE: Final = "application/x-amz-json-1.0"
OPERATIONS: Final = {"put_item": "PutItem", "get_item": "GetItem",
                     "update_item": "UpdateItem", "delete_item": "DeleteItem"}
FAST_CLIENT_ENV: Final = "MESH_DYNAMODB_FAST"
BACKOFF_BASE_S: Final = 0.05
BACKOFF_MAX_S: Final = 20.0
# What may go away on retry besides any 5xx: throttling and the services' internal errors
# (one list for this client's retries and functions.shared.dynamodb's translation).
RETRIABLE_CODES: Final = frozenset({
    "InternalServerError",
    "LimitExceededException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "ThrottlingException",
    "TransactionConflictException",
    "Throttling",  # SSM, Secrets Manager
    "TooManyUpdates",
    "InternalServiceError",
    "InternalServiceErrorException",
})
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)

CredentialSource = Callable[[], Credentials]


def code_of(error_type: str) -> str:
    """``com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException`` -> its name."""
    return error_type.rpartition("#")[2]


def error_response(status: int, body: Mapping[str, Any], request_id: str | None
                   ) -> dict[str, Any]:
    """The ``ClientError.response`` botocore builds from a JSON error body (pure)."""
    modeled = {k: v for k, v in body.items() if k not in ("__type", "message", "Message")}
    response: dict[str, Any] = from_wire(modeled)
    response["Error"] = {"Code": code_of(str(body.get("__type", ""))),
                         "Message": str(body.get("message", body.get("Message", "")))}
    response["ResponseMetadata"] = {"HTTPStatusCode": status, "RequestId": request_id or ""}
    return response


def decoded_body(data: bytes) -> dict[str, Any] | None:
    """A JSON object answer (empty: ``{}``), else None."""
    if not data:
        return {}
    try:
        found = json.loads(data)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def retriable_answer(status: int, code: str) -> bool:
    """Whether a refusal with this HTTP status and error code may go away on retry."""
    return status >= 500 or code in RETRIABLE_CODES


def backoff_s(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Before attempt ``attempt + 1`` (``attempt`` >= 1): full jitter up to 50 ms x 2^(n-1)."""
    return float(rng() * min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempt - 1)))


def attempts_of(retries: Mapping[str, Any]) -> int:
    """Total attempts as botocore counts them: ``total_max_attempts`` (its normalised
    form of ``max_attempts``, which counts retries), else standard mode's 3."""
    total = retries.get("total_max_attempts")
    if total is None and retries.get("max_attempts") is not None:
        total = int(retries["max_attempts"]) + 1
    return max(1, int(total if total is not None else 3))


def _credentials_of(botocore_client: Any) -> CredentialSource:
    signer = getattr(botocore_client, "_request_signer", None)
    source = getattr(signer, "_credentials", None)

    def current() -> Credentials:
        if source is None:
            raise NoCredentialsError()
        frozen = source.get_frozen_credentials()  # refreshes temporary credentials
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    return current


class _Connections:
    """Idle kept-alive connections to one endpoint; one request per connection at a time
    (the stores call from ``asyncio.to_thread``, several threads at once)."""

    def __init__(self, endpoint_url: str, connect_timeout: float, read_timeout: float) -> None:
        parts = urlsplit(endpoint_url)
        self.secure = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port
        self.host_header = parts.netloc
        self.endpoint_url = endpoint_url
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle: queue.SimpleQueue[http.client.HTTPConnection] = queue.SimpleQueue()
        self._tls = ssl.create_default_context(cafile=get_cert_path(True)) if self.secure \
            else None

    def take(self, *, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        """A connection (an idle one unless ``fresh``) and whether it was used before."""
        if not fresh:
            try:
                return self._idle.get_nowait(), True
            except queue.Empty:
                pass
        connection: http.client.HTTPConnection
        if self._tls is not None:
            connection = http.client.HTTPSConnection(self.host, self.port, context=self._tls,
                                                     timeout=self._connect_timeout)
        else:
            connection = http.client.HTTPConnection(self.host, self.port,
                                                    timeout=self._connect_timeout)
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            raise EndpointConnectionError(endpoint_url=self.endpoint_url, error=exc) from exc
        assert connection.sock is not None
        connection.sock.settimeout(self._read_timeout)
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, False

    def give_back(self, connection: http.client.HTTPConnection) -> None:
        self._idle.put(connection)


class FastDynamoDB:
    """See the module doc. Thread-safe; one per botocore client."""

    def __init__(self, botocore_client: Any, *, credentials: CredentialSource | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = botocore_client
        meta = botocore_client.meta
        config = meta.config
        self.region: str = meta.region_name
        self._connections = _Connections(meta.endpoint_url, float(config.connect_timeout),
                                         float(config.read_timeout))
        self._attempts = attempts_of(config.retries or {})
        self._credentials = credentials or _credentials_of(botocore_client)
        self._keys = SigningKeys()
        self._sleep = sleep

    @classmethod
    def wrap(cls, botocore_client: Any) -> Any:
        """``botocore_client`` with the fast item calls where they can match botocore."""
        meta = botocore_client.meta
        scheme = urlsplit(str(meta.endpoint_url)).scheme
        if scheme not in ("http", "https") or meta.config.proxies or urllib.request.getproxies():
            return botocore_client
        return cls(botocore_client)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_item(self, **params: Any) -> dict[str, Any]:
        return self.call("PutItem", params)

    def get_item(self, **params: Any) -> dict[str, Any]:
        return self.call("GetItem", params)

    def update_item(self, **params: Any) -> dict[str, Any]:
        return self.call("UpdateItem", params)

    def delete_item(self, **params: Any) -> dict[str, Any]:
        return self.call("DeleteItem", params)

    def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        params, extra_headers = self._before_call(operation, dict(params))
        body = json.dumps(to_wire(params), separators=(",", ":")).encode()
        connections = self._connections
        with item_call_span(operation, params, region=self.region, host=connections.host,
                            port=connections.port) as span:
            attempt = 1
            while True:
                try:
                    answer = self._once(operation, body, extra_headers)
                    answer["ResponseMetadata"]["RetryAttempts"] = attempt - 1
                    record_answer(span, answer["ResponseMetadata"])
                    return answer
                except ClientError as exc:
                    metadata = exc.response["ResponseMetadata"]
                    metadata["RetryAttempts"] = attempt - 1
                    if attempt >= self._attempts or not retriable_answer(
                            int(metadata["HTTPStatusCode"]), exc.response["Error"]["Code"]):
                        raise  # the span records it
                except (EndpointConnectionError, ReadTimeoutError, ChecksumError):
                    if attempt >= self._attempts:
                        raise  # the span records it as the error it ends with
                self._sleep(backoff_s(attempt))
                attempt += 1

    def _before_call(self, operation: str, params: dict[str, Any]
                     ) -> tuple[dict[str, Any], dict[str, str]]:
        """botocore's two hooks before a call, as it emits them: ``provide-client-params``
        (a handler may change or replace the parameters) and ``before-call`` (a handler may
        add headers, e.g. the recursion-detection trace header in Lambda), so what is
        registered on the client still runs. A ``before-call`` handler answering in place
        of the service is not supported here (raises)."""
        events = self._client.meta.events
        model = self._client.meta.service_model.operation_model(operation)
        context: dict[str, Any] = {}
        replaced = [r for _, r in events.emit(f"provide-client-params.{SERVICE}.{operation}",
                                              params=params, model=model, context=context)
                    if r is not None]
        params = replaced[0] if replaced else params
        request: dict[str, Any] = {"url_path": "/", "query_string": "", "method": "POST",
                                   "headers": {}, "body": params, "context": context}
        answers = [r for _, r in events.emit(f"before-call.{SERVICE}.{operation}",
                                             model=model, params=request,
                                             request_signer=None, context=context)
                   if r is not None]
        if answers:
            raise NotImplementedError("a before-call handler that answers for the service "
                                      f"needs botocore: set {FAST_CLIENT_ENV}=0")
        return params, {str(k).lower(): str(v) for k, v in request["headers"].items()}

    def _once(self, operation: str, body: bytes, extra_headers: Mapping[str, str]
              ) -> dict[str, Any]:
        credentials = self._credentials()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        key = self._keys.get(credentials.secret_key, amz_date[:8], self.region, SERVICE)
        headers = signed_headers(
            host=self._connections.host_header, target=TARGET_PREFIX + operation,
            content_type=CONTENT_TYPE, body=body, amz_date=amz_date, region=self.region,
            service=SERVICE, credentials=credentials, signing_key=key)
        for name, value in extra_headers.items():  # unsigned, as botocore leaves them
            headers.setdefault(name, value)
        status, response_headers, data = self._exchange(headers, body)
        expected_crc = response_headers.get("x-amz-crc32")
        if expected_crc is not None and expected_crc != str(zlib.crc32(data)):
            raise ChecksumError(checksum_type="crc32", expected_checksum=expected_crc,
                                actual_checksum=str(zlib.crc32(data)))
        decoded = decoded_body(data)
        if status != 200:
            fields = decoded if decoded is not None else {
                "message": data[:200].decode("utf-8", "replace")}  # a proxy's HTML page
            raise ClientError(error_response(status, fields,  # type: ignore[arg-type]
                                             response_headers.get("x-amzn-requestid")),
                              operation)
        if decoded is None:  # what a stores' translation reads as retriable, as a 5xx
            raise HTTPClientError(error=f"{operation}: the answer is not a JSON object: "
                                        f"{data[:200]!r}")
        answer: dict[str, Any] = from_wire(decoded)
        answer["ResponseMetadata"] = {
            "RequestId": response_headers.get("x-amzn-requestid", ""), "HTTPStatusCode": status,
            "HTTPHeaders": response_headers}
        return answer

    def _exchange(self, headers: dict[str, str], body: bytes
                  ) -> tuple[int, dict[str, str], bytes]:
        fresh = False
        while True:  # a second try, on a new connection, only after an idle one was closed
            connection, reused = self._connections.take(fresh=fresh)
            try:
                connection.request("POST", "/", body, headers)
                response = connection.getresponse()
                data = response.read()
            except _STALE as exc:
                connection.close()
                if reused:  # every idle one may be closed by now: the next is a new one
                    fresh = True
                    continue
                raise EndpointConnectionError(
                    endpoint_url=self._connections.endpoint_url, error=exc) from exc
            except TimeoutError as exc:
                connection.close()
                raise ReadTimeoutError(endpoint_url=self._connections.endpoint_url,
                                       error=exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                raise EndpointConnectionError(
                    endpoint_url=self._connections.endpoint_url, error=exc) from exc
            found = {name.lower(): value for name, value in response.getheaders()}
            if response.will_close:
                connection.close()
            else:
                self._connections.give_back(connection)
            return response.status, found, data
