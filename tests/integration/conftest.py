"""Integration fixtures: the real broker started by ``make test`` / ``meshgate up``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from botocore.exceptions import BotoCoreError, ClientError

from bus.config import BusSettings
from infra.deploy.aws import client
from infra.settings import Settings
from tests.support import running_broker


@pytest.fixture(scope="session")
def infra_settings() -> Settings:
    return Settings.resolve()


@pytest.fixture(scope="session")
def bootstrap(infra_settings: Settings) -> str:
    return running_broker(infra_settings)


@pytest.fixture
async def service_name(bootstrap: str) -> AsyncIterator[str]:
    """A fresh service name whose request topic exists (3 partitions), deleted afterwards."""
    name = f"itest{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{name}.requests", 3, 1)])
        yield name
        await admin.delete_topics([f"{name}.requests"])
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def dynamodb(infra_settings: Settings) -> Any:
    """The emulator's DynamoDB (fails clearly when it is not running)."""
    ddb = client(infra_settings, "dynamodb")
    try:
        ddb.list_tables(Limit=1)
    except (BotoCoreError, ClientError) as exc:
        pytest.fail(f"no DynamoDB at {infra_settings.endpoint_url} ({exc}): run 'make test' or "
                    "'.venv/bin/meshgate up' first")
    return ddb


@pytest.fixture
def bus_settings(bootstrap: str) -> BusSettings:
    return BusSettings.resolve(bootstrap_servers=bootstrap, service_name="itest-caller")
