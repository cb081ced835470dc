"""Where the local development issuer's key set lives (pure).

The policy declares "the dev issuer of whichever emulator this stack runs on" by putting its
``edge.jwt.jwks_url`` on the placeholder origin ``http://emulator.meshgate.local``; the
deploy and ``meshgate token`` replace that origin with the emulator endpoint in force
(``MESHGATE_ENDPOINT_URL``), so a stack on other ports serves and checks its own key set.
Any other URL names a real issuer and is kept as written.
"""

from __future__ import annotations

from typing import Final

from bus.policy.model import Policy
from infra.errors import InfraError

EMULATOR_ORIGIN: Final = "http://emulator.meshgate.local"


class IssuerUrlError(InfraError):
    """The policy asks for the emulator's dev issuer where there is no emulator (AWS)."""


def names_dev_issuer(jwks_url: str) -> bool:
    return jwks_url == EMULATOR_ORIGIN or jwks_url.startswith(EMULATOR_ORIGIN + "/")


def resolve_jwks_url(jwks_url: str, endpoint_url: str | None) -> str:
    """``jwks_url`` with the placeholder origin replaced by the emulator endpoint."""
    if not names_dev_issuer(jwks_url):
        return jwks_url
    if endpoint_url is None:
        raise IssuerUrlError(
            f"edge.jwt.jwks_url {jwks_url} names the local emulator's dev issuer, and this "
            "deploy targets AWS",
            "set edge.jwt (issuer, audience, jwks_url) to your identity provider")
    return endpoint_url.rstrip("/") + jwks_url.removeprefix(EMULATOR_ORIGIN)


def with_jwks_resolved(policy: Policy, endpoint_url: str | None) -> Policy:
    """The policy as deployed: its edge's JWKS URL resolved (see the module doc)."""
    edge = policy.edge
    if edge is None or edge.jwt is None or edge.jwt.jwks_url is None:
        return policy
    resolved = resolve_jwks_url(edge.jwt.jwks_url, endpoint_url)
    if resolved == edge.jwt.jwks_url:
        return policy
    jwt = edge.jwt.model_copy(update={"jwks_url": resolved})
    return policy.model_copy(update={"edge": edge.model_copy(update={"jwt": jwt})})
