"""The gateway's FastAPI app. The mesh client is created lazily, once per process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from bus.client import MeshClient
from bus.errors import DeadlineExceeded, MeshError, RemoteError, TransportError
from bus.tracing import valid_traceparent
from bus.traffic.breaker import CircuitOpen
from bus.traffic.faults import InjectedFault
from functions.shared.orders_contract import CreateOrder

ClientFactory = Callable[[], Awaitable[MeshClient]]
# API Gateway ends an integration at 29 s: a route's deadline must fit inside it.
ORDER_TIMEOUT_S = 28.0


class LazyMeshClient:
    """Builds the mesh client on first use and keeps it for the life of the process."""

    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._client: MeshClient | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> MeshClient:
        async with self._lock:
            if self._client is None:
                client = await self._factory()
                await client.start()
                self._client = client
            return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


def mesh_error_response(error: MeshError) -> JSONResponse:
    """Map a mesh error to an HTTP answer that says what failed without leaking internals."""
    if isinstance(error, DeadlineExceeded):
        return _problem(504, "Gateway Timeout", "the service did not answer in time")
    if isinstance(error, TransportError):
        return _problem(503, "Service Unavailable", "the message bus is unavailable")
    if isinstance(error, InjectedFault | CircuitOpen):
        return _problem(503, "Service Unavailable", "the service is not taking calls now")
    if isinstance(error, RemoteError):
        if error.remote_code.startswith("invalid"):
            return _problem(422, "Unprocessable Content", error.message)
        status = 503 if error.remote_retriable else 502
        return _problem(status, "Bad Gateway", f"the service answered {error.remote_code}")
    return _problem(502, "Bad Gateway", "the request could not be completed")


async def mesh_client(request: Request) -> MeshClient:
    mesh: LazyMeshClient = request.app.state.mesh
    return await mesh.get()


def create_app(factory: ClientFactory) -> FastAPI:
    app = FastAPI(title="meshgate edge", version="0.1.0")
    app.state.mesh = LazyMeshClient(factory)

    @app.exception_handler(MeshError)
    async def on_mesh_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MeshError)
        return mesh_error_response(exc)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/orders", status_code=201)
    async def create_order(
        order: CreateOrder,
        request: Request,
        client: Annotated[MeshClient, Depends(mesh_client)],
    ) -> dict[str, Any]:
        return await client.request(
            "orders.create",
            order,
            timeout_s=min(ORDER_TIMEOUT_S, client.settings.request_timeout_s),
            traceparent=valid_traceparent(request.headers.get("traceparent")),
            headers=request.headers,  # for the operation's header-match and sticky rules
        )

    return app
