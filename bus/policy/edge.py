"""The edge's part of the policy: how the gateway checks callers (JWT issuer, key set, claims
carried into the mesh), CORS, body limits, and the pieces of a route that are not a single
call (aggregation parts).

Pure data, like ``bus.policy.model``; the gateway reads it from the edge document bundled into
its Lambda zip (``EdgeDocument``), so a cold start parses JSON and never YAML.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# What the gateway verifies with a public key (functions.gateway.auth.jose.signatures); HS*
# would let anyone holding the JWKS forge tokens.
JwtAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                       "ES512", "EdDSA"]
AGGREGATE_PART_PATTERN: Final = r"^[a-z][a-z0-9_]{0,62}$"
# A synchronous Lambda invocation's payload is at most 6 MB, base64 included.
MAX_BODY_BYTES: Final = 4 * 1024 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class JwtSettings(_Model):
    """How bearer tokens are checked: who issues them, for whom, signed how, with which keys."""

    issuer: str = Field(min_length=1, description="the exact iss claim tokens must carry")
    audience: tuple[str, ...] = Field(min_length=1, description="accepted aud values")
    algorithms: tuple[JwtAlgorithm, ...] = Field(
        default=("RS256",), min_length=1, description="the allow-list; never HS* or none"
    )
    jwks_url: str | None = Field(
        default=None, pattern=r"^https?://", description="where the key set is fetched"
    )
    jwks: dict[str, object] | None = Field(
        default=None, description="an inline key set, for issuers without a URL"
    )
    claims: tuple[str, ...] = Field(
        default=(), description="claims carried into mesh messages besides sub, iss, scopes"
    )
    leeway_s: int = Field(default=30, ge=0, le=300, description="clock skew allowed on exp/nbf")
    jwks_refresh_s: int = Field(
        default=300, ge=1, le=86_400, description="how long a fetched key set is trusted"
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtSettings:
        if (self.jwks_url is None) == (self.jwks is None):
            raise ValueError("set exactly one of jwks_url and jwks")
        return self


class CorsSettings(_Model):
    """Cross-origin browser calls; answered by the gateway (preflight included)."""

    allow_origins: tuple[str, ...] = Field(min_length=1, description='"*" or exact origins')
    allow_methods: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE")
    allow_headers: tuple[str, ...] = ("authorization", "content-type", "x-api-key",
                                      "x-request-id", "traceparent")
    expose_headers: tuple[str, ...] = ("x-request-id", "retry-after", "ratelimit-limit",
                                       "ratelimit-remaining", "ratelimit-reset")
    allow_credentials: bool = False
    max_age_s: int = Field(default=600, ge=0, le=86_400)

    @model_validator(mode="after")
    def _no_wildcard_credentials(self) -> CorsSettings:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("browsers refuse credentials with origin '*'; list the origins")
        return self


class StatusRateLimit(_Model):
    """How often one caller may read async operations (``GET /v1/operations/{id}``): a
    token bucket per API key, user or (auth none) source IP, of its own (polling does not
    eat the submitting route's bucket). The key's usage plan and daily quota count these
    reads too, as every other route's."""

    per_second: float = Field(default=5.0, gt=0, le=1_000_000,
                              description="steady status reads per second per caller")
    burst: int = Field(default=20, ge=1, le=1_000_000,
                       description="status reads allowed at once per caller")


class Edge(_Model):
    """Settings of the edge as a whole."""

    jwt: JwtSettings | None = Field(default=None, description="needed by routes with auth: jwt")
    cors: CorsSettings | None = None
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1, le=MAX_BODY_BYTES,
        description="larger request bodies get 413 before anything is parsed",
    )
    status_rate_limit: StatusRateLimit = Field(
        default_factory=StatusRateLimit,
        description="the async status route's rate limit per caller (it is always limited)",
    )


class AggregatePart(_Model):
    """One call of an aggregating route; its result is the part's key in the answer."""

    operation: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}(\.[A-Za-z0-9_-]+)+$")
    timeout_ms: int = Field(default=5_000, ge=1, le=29_000, description="this part's deadline")
    required: bool = Field(
        default=False, description="if it fails, the whole call fails instead of answering "
        "partially",
    )
