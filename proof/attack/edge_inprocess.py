"""The project's edge app in-process, on some of the policy's routes, behind a mesh that is
never connected: a case reached the handler when the edge asked for the mesh client (the
next step after the guard), which ``EdgeInProcess.asked`` counts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from bus.errors import TransportError
from bus.policy.model import Route
from bus.runtime.client import MeshClient
from functions.gateway.app import EdgeDeps, LazyMeshClient, create_app
from functions.gateway.guard import EdgeGuard
from infra.policy.load import load_policy
from infra.settings import Settings


class EdgeInProcess:
    """``async with EdgeInProcess(settings, keep, guard, client_ip) as edge:`` then
    ``edge.http`` (an httpx client on the app) and ``edge.asked``."""

    def __init__(self, settings: Settings, keep: Callable[[Route], bool],
                 guard: EdgeGuard, client_ip: str) -> None:
        policy = load_policy(Path(settings.root) / "policies")
        routes = tuple(r for r in policy.routes if keep(r))
        self.asked = 0
        app = create_app(policy.model_copy(update={"routes": routes}),
                         EdgeDeps(mesh=LazyMeshClient(self._mesh), guard=guard))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False,
                                        client=(client_ip, 40000))
        self.http = httpx.AsyncClient(transport=transport, base_url="http://edge")

    async def _mesh(self) -> MeshClient:
        self.asked += 1
        raise TransportError("the attack's mesh is not connected")

    async def __aenter__(self) -> EdgeInProcess:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
