"""The two callers the mesh-vs-raw benches drive side by side, started on one exit stack:
raw aiokafka (``bench.raw_echo.RawCaller``) and the mesh client (``bench.mesh_echo``)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

from bench.mesh_echo import identity_settings, mesh_client
from bench.mesh_vs_raw import Names
from bench.raw_echo import RawCaller
from bus.config import BusSettings
from bus.runtime.client import MeshClient


async def started_callers(stack: AsyncExitStack, settings: BusSettings, names: Names,
                          keys: Path | None, partitions: int) -> tuple[RawCaller, MeshClient]:
    """Both callers started, each closed when ``stack`` unwinds."""
    raw = RawCaller(settings, names.raw_requests, names.topic("raw", "replies"), partitions)
    stack.push_async_callback(raw.close)
    await raw.start()
    client = mesh_client(settings.model_copy(update={
        "service_name": names.mesh_caller, "reply_topic": names.topic("mesh", "replies"),
        **identity_settings(keys, names.mesh_caller)}))
    stack.push_async_callback(client.close)
    await client.start()
    return raw, client

