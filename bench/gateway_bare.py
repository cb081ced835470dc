"""The bare handler of the gateway bench: FastAPI + Mangum hello world, nothing else.

Imports only FastAPI and Mangum, so its cold start is the floor any FastAPI Lambda pays.
``response_model=None``: with a ``dict`` return annotation FastAPI (0.165) would build a
response model, importing ``pydantic.v1`` at app build (~16 ms of cold start on this
machine) for a route that needs none; the canonical hello world (no annotation) does not.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from mangum import Mangum

HELLO = {"hello": "world"}
NO_CONTEXT: Any = None  # the Lambda context object; the apps never read it


def bare_app() -> FastAPI:
    """One POST route (the recorded event's path) answering a small JSON object."""
    app = FastAPI()

    @app.post("/v1/orders", response_model=None)
    async def hello() -> dict[str, str]:
        return HELLO

    return app


def bare_handler() -> Mangum:
    return Mangum(bare_app(), lifespan="off")
