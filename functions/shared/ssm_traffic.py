"""Traffic rules from an SSM parameter (JSON: ``{operation: rules}``), as a ``TrafficSource``.

An operator changes the parameter; every process polling it picks the change up without a
restart. The client is created on first use (``functions.shared.aws_json.clients``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bus.traffic.table import TrafficSourceError
from functions.shared.aws_json.clients import aws_client
from functions.shared.dynamodb import transient


class SsmTrafficSource:
    def __init__(self, parameter: str, region: str | None = None) -> None:
        self.parameter = parameter
        self._region = region or os.environ.get("AWS_REGION") or os.environ.get(
            "AWS_DEFAULT_REGION", "us-east-1")
        self._client: Any = None

    def load(self) -> Mapping[str, Any]:
        if self._client is None:
            self._client = aws_client("ssm", {"region_name": self._region})
        try:
            value = self._client.get_parameter(Name=self.parameter)["Parameter"]["Value"]
            rules = json.loads(value)
        except (ClientError, BotoCoreError, KeyError, json.JSONDecodeError) as exc:
            error = TrafficSourceError(f"cannot read traffic rules from {self.parameter}: "
                                       f"{exc}")
            error.retriable = transient(exc)  # throttled, unreachable: the next poll may work
            raise error from exc
        if not isinstance(rules, dict):
            raise TrafficSourceError(f"{self.parameter} must hold a JSON object")
        return rules
