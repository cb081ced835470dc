"""Who is calling and whether they may, before a request reaches the bus: authentication by
the route's ``auth`` (JWT bearer, API key, or none), required scopes, then the rate limits
(the route's, per caller or per route, and the API key's usage plan)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from bus.policy.model import Route
from functions.errors import FunctionError
from functions.gateway.auth.api_keys import API_KEY_HEADER, ApiKeyMatch, UsagePlan
from functions.gateway.auth.errors import Forbidden, MissingCredentials
from functions.gateway.auth.principal import Principal
from functions.gateway.problems import EdgeRefusal
from functions.gateway.ratelimit.bucket import Decision, Limit, bucket_key

if TYPE_CHECKING:  # the JWT verifier's modules load only when a JWT route exists
    from functions.gateway.auth.jwt_bearer import JwtVerifier


log = logging.getLogger(__name__)


@lru_cache(maxsize=1024)
def limit_of(rate: float, burst: int) -> Limit:
    """One immutable ``Limit`` per (rate, burst), so its exact rate is computed once."""
    return Limit(rate, burst)


def _safe(part: str) -> str:
    """A subject as a bucket key part: ``|`` separates parts (``auth0|123`` is a real sub)."""
    return part.replace("%", "%25").replace("|", "%7C")


class RateLimitStore(Protocol):
    async def take(self, key: str, limit: Limit) -> Decision: ...


class ApiKeyChecker(Protocol):
    async def authenticate(self, presented: str | None) -> ApiKeyMatch: ...


class QuotaStore(Protocol):
    """Counts a key's requests against its plan's daily quota; raises
    ``DailyQuotaExceeded`` when the quota is used up."""

    async def consume(self, key_id: str, quota: int) -> object: ...


class InsufficientScope(Forbidden):
    reason = "insufficient_scope"

    def www_authenticate(self) -> str | None:
        return 'Bearer error="insufficient_scope"'


class Caller(NamedTuple):
    """The request's caller: the principal (``None`` on ``auth: none`` routes), the API key's
    plan if any, and the source address (the per-caller bucket of anonymous routes)."""

    principal: Principal | None
    plan: UsagePlan | None
    source_ip: str

    def principal_json(self) -> str | None:
        return None if self.principal is None else self.principal.to_json()


@dataclass(frozen=True)
class EdgeGuard:
    jwt: JwtVerifier | None = None
    api_keys: ApiKeyChecker | None = None
    limiter: RateLimitStore | None = None
    quota: QuotaStore | None = None
    # Behind the Lambda authorizer (functions/authorizer), API Gateway has checked the
    # credentials already and passes the principal in the event; only then may it be trusted.
    trust_authorizer: bool = False

    def check_routes(self, routes: tuple[Route, ...]) -> None:
        """Refuse to build an edge whose routes need what it was not given (a loud cold
        start beats a route that fails open or answers 500)."""
        for route in routes:
            if route.auth == "jwt" and self.jwt is None:
                raise ValueError(f"route {route.name} takes JWTs; configure edge.jwt")
            if route.auth == "api_key" and self.api_keys is None:
                raise ValueError(f"route {route.name} takes API keys; configure a key store")
            if route.rate_limit is not None and self.limiter is None:
                raise ValueError(f"route {route.name} is rate limited; configure a store")
            if route.auth == "api_key" and self.limiter is None:
                raise ValueError(f"route {route.name} enforces API keys' usage plans; "
                                 "configure a rate limit store")

    async def authenticate(self, route: Route, headers: Mapping[str, str], source_ip: str,
                           event: Mapping[str, Any] | None = None) -> Caller:
        """Raises ``AuthError`` (401/403/503) when the caller is not who the route needs."""
        if self.trust_authorizer and route.auth != "none":
            return self._from_authorizer(route, event or {}, source_ip)
        if route.auth == "jwt":
            assert self.jwt is not None
            principal = await self.jwt.authenticate(headers.get("authorization"))
            missing = sorted(set(route.scopes) - principal.scopes)
            if missing:
                raise InsufficientScope(f"the token lacks the scope(s) {', '.join(missing)}")
            return Caller(principal, None, source_ip)
        if route.auth == "api_key":
            assert self.api_keys is not None
            match = await self.api_keys.authenticate(headers.get(API_KEY_HEADER))
            return Caller(match.principal, match.record.plan, source_ip)
        return Caller(None, None, source_ip)

    def _from_authorizer(self, route: Route, event: Mapping[str, Any],
                         source_ip: str) -> Caller:
        from functions.gateway.auth.authorizer_context import (
            plan_from_authorizer,
            principal_from_authorizer,
        )

        principal = principal_from_authorizer(event)
        if principal is None or principal.method != route.auth:
            raise MissingCredentials(f"route {route.name} needs {route.auth} credentials")
        missing = sorted(set(route.scopes) - principal.scopes)
        if missing:
            raise InsufficientScope(f"the token lacks the scope(s) {', '.join(missing)}")
        plan = plan_from_authorizer(event)
        return Caller(principal, None if plan is None else UsagePlan(**plan), source_ip)

    async def admit(self, route: Route, caller: Caller) -> dict[str, str]:
        """Take from every bucket the request counts against; the rate-limit headers of the
        tightest one, or ``EdgeRefusal`` 429 (with ``Retry-After``) when one is empty."""
        buckets = self.buckets(route, caller)
        if not buckets or self.limiter is None:
            return {}
        tightest: Decision | None = None
        for key, limit in buckets:
            try:
                decision = await self.limiter.take(key, limit)
            except FunctionError as exc:  # RateLimitError and kin: none may let a call past
                log.warning("rate limit store failed for %s: %r", route.name, exc)
                raise EdgeRefusal(503, "ratelimit_unavailable",
                                  "the gateway could not check the rate limit; retry",
                                  headers={"Retry-After": "1"}) from exc
            if not decision.allowed:
                raise EdgeRefusal(429, "rate_limited", "too many requests; slow down",
                                  headers=decision.headers())
            if tightest is None or decision.remaining < tightest.remaining:
                tightest = decision
        await self._count_quota(caller)
        return {} if tightest is None else tightest.headers()

    async def _count_quota(self, caller: Caller) -> None:
        plan, principal = caller.plan, caller.principal
        if (plan is None or plan.daily_quota is None or principal is None
                or principal.key_id is None or self.quota is None):
            return
        from functions.gateway.ratelimit.quota import DailyQuotaExceeded

        try:
            await self.quota.consume(principal.key_id, plan.daily_quota)
        except DailyQuotaExceeded as exc:
            raise EdgeRefusal(429, "quota_exceeded", "the API key's daily quota is used up",
                              headers=exc.headers()) from None
        except FunctionError as exc:  # the store's known errors: fail closed, never a pass
            log.warning("quota store failed for key %s: %r", principal.key_id, exc)
            raise EdgeRefusal(503, "ratelimit_unavailable",
                              "the gateway could not check the quota; retry",
                              headers={"Retry-After": "1"}) from exc

    @staticmethod
    def buckets(route: Route, caller: Caller) -> list[tuple[str, Limit]]:
        buckets: list[tuple[str, Limit]] = []
        principal = caller.principal
        if route.rate_limit is not None:
            limit = limit_of(route.rate_limit.per_second, route.rate_limit.burst)
            if route.rate_limit.per == "route":
                buckets.append((bucket_key(route=route.name), limit))
            elif principal is not None and principal.key_id is not None:
                buckets.append((bucket_key(route=route.name, key=principal.key_id), limit))
            elif principal is not None:
                buckets.append((bucket_key(route=route.name, user=_safe(principal.subject)),
                                limit))
            else:
                buckets.append((bucket_key(route=route.name, user=f"ip {caller.source_ip}"),
                                limit))
        if caller.plan is not None and principal is not None and principal.key_id is not None:
            buckets.append((bucket_key(key=principal.key_id),
                            limit_of(caller.plan.rate_per_s, caller.plan.burst)))
        return buckets
