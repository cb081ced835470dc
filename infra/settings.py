"""Typed settings of the deploy and the local cloud: explicit argument over environment
(``MESHGATE_*``) over default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

ENV_PREFIX = "MESHGATE_"
ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    root: Path = ROOT
    stack_name: str = "meshgate"
    region: str = "us-east-1"
    # None means real AWS with the default credential chain.
    endpoint_url: str | None = "http://127.0.0.1:4566"
    kafka_bootstrap: str = "127.0.0.1:9092"
    artifact_bucket: str = "meshgate-artifacts"
    lambda_python: str = "3.11"
    lambda_platform: str = "manylinux2014_x86_64"
    request_timeout_s: float = Field(default=10.0, gt=0, le=28)

    @property
    def local_dir(self) -> Path:
        return Path(os.environ.get("MESHGATE_LOCAL_DIR", str(self.root / ".local")))

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def is_local(self) -> bool:
        return self.endpoint_url is not None

    def aws_client_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"region_name": self.region}
        if self.endpoint_url is not None:
            args.update(
                endpoint_url=self.endpoint_url,
                aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
                aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
            )
        return args

    @classmethod
    def resolve(cls, env: Mapping[str, str] | None = None, **explicit: Any) -> Settings:
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = source.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = None if (name == "endpoint_url" and raw in ("", "aws")) else raw
        values.update({k: v for k, v in explicit.items() if v is not None})
        if values.get("endpoint_url") == "aws":
            values["endpoint_url"] = None
        return cls.model_validate(values)
