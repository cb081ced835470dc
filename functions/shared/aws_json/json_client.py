"""One AWS JSON-protocol service over kept-alive HTTP connections, without botocore's request
pipeline: each call is ``POST /`` with ``X-Amz-Target``, signed with SigV4
(``functions.shared.aws_json.sigv4``), and its failures are botocore's own exception types,
so every caller's ``except`` reads them as before: a refusal is ``ClientError`` with
botocore's ``response`` shape, a connection failure ``EndpointConnectionError`` or
``ReadTimeoutError``.

Retries as botocore's: throttling, 5xx, a wrong CRC32 and connection errors are tried again
(up to the client's attempts, exponential backoff from 50 ms with full jitter, the base of
botocore's DynamoDB legacy mode); a refusal is raised at once. A kept-alive connection the
server closed while idle is replaced once without counting an attempt (as urllib3 does).

``dynamodb_client`` puts DynamoDB's item calls on it; ``direct`` the few Secrets Manager and
SSM reads a function makes, when no botocore session is needed at all.
"""

from __future__ import annotations

import http.client
import json
import queue
import random
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

from botocore.exceptions import (
    ChecksumError,
    ClientError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ReadTimeoutError,
)

from functions.shared.aws_json.direct_route import DirectRoute, default_ca_file
from functions.shared.aws_json.sigv4 import Credentials, SigningKeys, signed_headers

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
Decode = Callable[[Mapping[str, Any]], dict[str, Any]]


class JsonService(NamedTuple):
    """What names a JSON-protocol service on the wire."""

    signing_name: str  # SigV4's service, e.g. ``dynamodb``
    target_prefix: str  # ``X-Amz-Target`` before the operation, e.g. ``DynamoDB_20120810.``
    content_type: str  # ``application/x-amz-json-1.0`` or ``-1.1``


class Timeouts(NamedTuple):
    """A client's socket timeouts and total attempts (botocore's ``Config`` fields)."""

    connect_s: float
    read_s: float
    attempts: int

    @classmethod
    def of(cls, config: Any, default: Timeouts) -> Timeouts:
        """From a botocore ``Config`` (or anything with its attributes), ``default`` where
        it has none."""
        if config is None:
            return default
        connect = getattr(config, "connect_timeout", None)
        read = getattr(config, "read_timeout", None)
        retries = getattr(config, "retries", None)
        return cls(default.connect_s if connect is None else float(connect),
                   default.read_s if read is None else float(read),
                   attempts_of(retries) if retries else default.attempts)


# botocore's own defaults (a client made without a Config): 60 s timeouts, standard retries
# (the installed botocore's default mode; a unit test checks them against its client).
BOTOCORE_DEFAULTS: Final = Timeouts(connect_s=60.0, read_s=60.0, attempts=3)


def code_of(error_type: str) -> str:
    """``com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException`` -> its name."""
    return error_type.rpartition("#")[2]


def error_response(status: int, body: Mapping[str, Any], request_id: str | None,
                   decode: Decode = dict) -> dict[str, Any]:
    """The ``ClientError.response`` botocore builds from a JSON error body (pure)."""
    modeled = {k: v for k, v in body.items() if k not in ("__type", "message", "Message")}
    response: dict[str, Any] = decode(modeled)
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


def static_credentials(credentials: Credentials | None) -> CredentialSource:
    def current() -> Credentials:
        if credentials is None:
            raise NoCredentialsError()
        return credentials

    return current


class _Connections:
    """Idle kept-alive connections to one endpoint; one request per connection at a time
    (the stores call from ``asyncio.to_thread``, several threads at once)."""

    def __init__(self, endpoint_url: str, timeouts: Timeouts, ca_file: Callable[[], str]
                 ) -> None:
        parts = urlsplit(endpoint_url)
        self.secure = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port
        self.host_header = parts.netloc
        self.endpoint_url = endpoint_url
        self._connect_timeout = timeouts.connect_s
        self._read_timeout = timeouts.read_s
        self._idle: queue.SimpleQueue[http.client.HTTPConnection] = queue.SimpleQueue()
        self._tls = ssl.create_default_context(cafile=ca_file()) if self.secure else None

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


class JsonClient:
    """Calls of one service at one endpoint. Thread-safe. ``decode`` turns an answer's JSON
    (and a refusal's modeled fields) into what the caller reads (DynamoDB: binary values as
    ``bytes``)."""

    def __init__(self, service: JsonService, *, endpoint_url: str, region: str,
                 credentials: CredentialSource, timeouts: Timeouts,
                 ca_file: Callable[[], str], decode: Decode = dict,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.service = service
        self.region = region
        self.connections = _Connections(endpoint_url, timeouts, ca_file)
        self._attempts = timeouts.attempts
        self._credentials = credentials
        self._decode = decode
        self._keys = SigningKeys()
        self._sleep = sleep

    @classmethod
    def for_route(cls, service: JsonService, route: DirectRoute, timeouts: Timeouts, *,
                  decode: Decode = dict, sleep: Callable[[float], None] = time.sleep
                  ) -> JsonClient:
        """The client of ``service`` at the endpoint, region and credentials ``direct_route``
        found, trusting its CA bundle (else the default store)."""
        return cls(service, endpoint_url=route.endpoint_url, region=route.region,
                   credentials=static_credentials(route.credentials), timeouts=timeouts,
                   ca_file=lambda: default_ca_file(route), decode=decode, sleep=sleep)

    def call(self, operation: str, body: bytes, extra_headers: Mapping[str, str] | None = None
             ) -> dict[str, Any]:
        """The decoded answer with botocore's ``ResponseMetadata`` (its ``RetryAttempts``
        too), after the retries botocore's standard mode would make."""
        attempt = 1
        while True:
            try:
                answer = self._once(operation, body, extra_headers or {})
                answer["ResponseMetadata"]["RetryAttempts"] = attempt - 1
                return answer
            except ClientError as exc:
                metadata = exc.response["ResponseMetadata"]
                metadata["RetryAttempts"] = attempt - 1
                if attempt >= self._attempts or not retriable_answer(
                        int(metadata["HTTPStatusCode"]), exc.response["Error"]["Code"]):
                    raise
            except (EndpointConnectionError, ReadTimeoutError, ChecksumError):
                if attempt >= self._attempts:
                    raise
            self._sleep(backoff_s(attempt))
            attempt += 1

    def _once(self, operation: str, body: bytes, extra_headers: Mapping[str, str]
              ) -> dict[str, Any]:
        credentials = self._credentials()
        service = self.service
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        key = self._keys.get(credentials.secret_key, amz_date[:8], self.region,
                             service.signing_name)
        headers = signed_headers(
            host=self.connections.host_header, target=service.target_prefix + operation,
            content_type=service.content_type, body=body, amz_date=amz_date,
            region=self.region, service=service.signing_name, credentials=credentials,
            signing_key=key)
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
            raise ClientError(error_response(  # type: ignore[arg-type]
                status, fields, response_headers.get("x-amzn-requestid"), self._decode),
                operation)
        if decoded is None:  # what a stores' translation reads as retriable, as a 5xx
            raise HTTPClientError(error=f"{operation}: the answer is not a JSON object: "
                                        f"{data[:200]!r}")
        answer = self._decode(decoded)
        answer["ResponseMetadata"] = {
            "RequestId": response_headers.get("x-amzn-requestid", ""), "HTTPStatusCode": status,
            "HTTPHeaders": response_headers}
        return answer

    def _exchange(self, headers: dict[str, str], body: bytes
                  ) -> tuple[int, dict[str, str], bytes]:
        connections = self.connections
        fresh = False
        while True:  # a second try, on a new connection, only after an idle one was closed
            connection, reused = connections.take(fresh=fresh)
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
                    endpoint_url=connections.endpoint_url, error=exc) from exc
            except TimeoutError as exc:
                connection.close()
                raise ReadTimeoutError(endpoint_url=connections.endpoint_url,
                                       error=exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                raise EndpointConnectionError(
                    endpoint_url=connections.endpoint_url, error=exc) from exc
            found = {name.lower(): value for name, value in response.getheaders()}
            if response.will_close:
                connection.close()
            else:
                connections.give_back(connection)
            return response.status, found, data
