"""A throwaway ES256 issuer for the gateway bench: its public key set goes inline into the
bench policy (``edge.jwt.jwks``, so nothing is fetched) and its tokens into the events.

Imported by the parent process only: the cold-start target must not load PyJWT or
``cryptography`` before the gateway's own build does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

KID = "bench-es256"
TOKEN_TTL_S = 3600


@dataclass(frozen=True)
class BenchIssuer:
    issuer: str
    audience: str
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def jwks(self) -> dict[str, Any]:
        public: dict[str, Any] = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": KID, "alg": "ES256", "use": "sig"}]}

    def token(self, subject: str = "bench-user") -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.audience, "sub": subject,
                  "email": f"{subject}@example.test", "iat": now, "exp": now + TOKEN_TTL_S}
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": KID})
