"""A DynamoDB client whose item calls (``put_item``, ``get_item``, ``update_item``,
``delete_item``) skip botocore's request pipeline: the parameters go out as JSON over a
kept-alive connection (``json_client``), signed with SigV4, and come back as botocore would
return them (binary values as ``bytes``; a refusal as ``botocore.exceptions.ClientError``
with the same ``Error``, ``ResponseMetadata`` and modeled members, e.g. the old ``Item`` of
a failed condition; a connection failure as botocore's ``EndpointConnectionError`` or
``ReadTimeoutError``), so the stores and ``functions.shared.dynamodb.translated`` read
them unchanged. Tools that patch botocore's ``_make_api_call`` do not see these calls
(``MESH_DYNAMODB_FAST=0``: ``functions.shared.dynamodb.fast_client_wanted``); the client
makes the OpenTelemetry span such a tool would (``call_spans``). A success carries
botocore's ``ResponseMetadata`` (request id, status, headers, retry attempts).

Two ways to make one:
- ``wrap(botocore_client)``: every other call goes to that client, which also supplies
  what the fast path uses: the resolved endpoint, region, timeouts, attempt count,
  credentials and event hooks (``provide-client-params`` and ``before-call`` are emitted as
  botocore emits them). Used only where it can match botocore: an ``http``/``https``
  endpoint and no proxy (else ``wrap`` returns the botocore client itself).
- ``direct(route, ...)``: no botocore session at all (``direct_route``: the environment
  gives endpoint, region and credentials); the botocore client is made only when something
  else is asked of it (another call, ``meta``). Until then there are no hooks to emit, and
  the one botocore registers itself, Lambda's recursion-detection header, is added; after,
  the hooks registered on it run as above.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from botocore.exceptions import NoCredentialsError

from functions.shared.aws_json.attribute_values import from_wire, to_wire
from functions.shared.aws_json.call_spans import item_call_span, record_answer
from functions.shared.aws_json.direct_route import DirectRoute, recursion_header
from functions.shared.aws_json.json_client import (
    BOTOCORE_DEFAULTS,
    CredentialSource,
    JsonClient,
    JsonService,
    Timeouts,
)
from functions.shared.aws_json.lazy_botocore import LazyBotocore
from functions.shared.aws_json.sigv4 import Credentials

SERVICE: Final = "dynamodb"
DYNAMODB: Final = JsonService(SERVICE, "DynamoDB_20120810.", "application/x-amz-json-1.0")
OPERATIONS: Final = {"put_item": "PutItem", "get_item": "GetItem",
                     "update_item": "UpdateItem", "delete_item": "DeleteItem"}
FAST_CLIENT_ENV: Final = "MESH_DYNAMODB_FAST"


def _credentials_of(botocore_client: Any) -> CredentialSource:
    signer = getattr(botocore_client, "_request_signer", None)
    source = getattr(signer, "_credentials", None)

    def current() -> Credentials:
        if source is None:
            raise NoCredentialsError()
        frozen = source.get_frozen_credentials()  # refreshes temporary credentials
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    return current


def _botocore_ca_file() -> str:
    from botocore.httpsession import get_cert_path

    return str(get_cert_path(True))


class FastDynamoDB:
    """See the module doc. Thread-safe; one per botocore client or direct route."""

    def __init__(self, json_client: JsonClient, botocore: LazyBotocore,
                 env: Mapping[str, str]) -> None:
        self._json = json_client
        self.region: str = json_client.region
        self._botocore = botocore
        self._env = env

    @classmethod
    def of_client(cls, botocore_client: Any, *, credentials: CredentialSource | None = None,
                  sleep: Callable[[float], None] = time.sleep) -> FastDynamoDB:
        """On ``botocore_client``'s endpoint, region, timeouts, credentials and hooks."""
        meta = botocore_client.meta
        return cls(JsonClient(
            DYNAMODB, endpoint_url=meta.endpoint_url, region=meta.region_name,
            credentials=credentials or _credentials_of(botocore_client),
            timeouts=Timeouts.of(meta.config, BOTOCORE_DEFAULTS),
            ca_file=_botocore_ca_file, decode=from_wire, sleep=sleep),
            LazyBotocore.given(botocore_client), {})

    @classmethod
    def wrap(cls, botocore_client: Any) -> Any:
        """``botocore_client`` with the fast item calls where they can match botocore."""
        meta = botocore_client.meta
        scheme = urlsplit(str(meta.endpoint_url)).scheme
        if scheme not in ("http", "https") or meta.config.proxies or urllib.request.getproxies():
            return botocore_client
        return cls.of_client(botocore_client)

    @classmethod
    def direct(cls, route: DirectRoute, timeouts: Timeouts, *, fallback: Callable[[], Any],
               env: Mapping[str, str], sleep: Callable[[float], None] = time.sleep
               ) -> FastDynamoDB:
        """Without botocore (see the module doc); ``fallback`` makes the botocore client
        for any other call."""
        return cls(JsonClient.for_route(DYNAMODB, route, timeouts, decode=from_wire,
                                        sleep=sleep), LazyBotocore(fallback), env)

    def __getattr__(self, name: str) -> Any:
        return self._botocore.attribute(name)

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
        connections = self._json.connections
        with item_call_span(operation, params, region=self.region, host=connections.host,
                            port=connections.port) as span:
            answer = self._json.call(operation, body, extra_headers)  # the span records a raise
            record_answer(span, answer["ResponseMetadata"])
            return answer

    def _before_call(self, operation: str, params: dict[str, Any]
                     ) -> tuple[dict[str, Any], dict[str, str]]:
        """botocore's two hooks before a call, as it emits them: ``provide-client-params``
        (a handler may change or replace the parameters) and ``before-call`` (a handler may
        add headers, e.g. the recursion-detection trace header in Lambda), so what is
        registered on the client still runs. A ``before-call`` handler answering in place
        of the service is not supported here (raises). A direct client has no hooks until
        its botocore client is made (a handler is registered through ``meta.events``, which
        makes it): until then it adds the header botocore's own handler would."""
        client = self._botocore.made
        if client is None:
            return params, recursion_header(self._env)
        events = client.meta.events
        model = client.meta.service_model.operation_model(operation)
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
