"""AWS Signature Version 4 for one JSON-protocol POST (pure; RFC-free but AWS-documented:
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html).

The request is always ``POST /`` with no query string, which is what every JSON-protocol
service call is; the signed headers are ``content-type``, ``host``, ``x-amz-date``,
``x-amz-target`` and, with temporary credentials, ``x-amz-security-token``. The derived
signing key depends only on the secret, the day, the region and the service, so a caller
keeps it for the day (``SigningKeys``).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final, NamedTuple

ALGORITHM: Final = "AWS4-HMAC-SHA256"


class Credentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str | None = None


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def derive_signing_key(secret_key: str, day: str, region: str, service: str) -> bytes:
    """``kSigning`` of the AWS documentation for ``day`` (``YYYYMMDD``)."""
    key = _hmac(("AWS4" + secret_key).encode(), day)
    return _hmac(_hmac(_hmac(key, region), service), "aws4_request")


class SigningKeys:
    """The last derived key per (secret, day, region, service): one derivation a day."""

    def __init__(self) -> None:
        self._last: tuple[tuple[str, str, str, str], bytes] | None = None

    def get(self, secret_key: str, day: str, region: str, service: str) -> bytes:
        ident = (secret_key, day, region, service)
        last = self._last
        if last is not None and last[0] == ident:
            return last[1]
        key = derive_signing_key(secret_key, day, region, service)
        self._last = (ident, key)
        return key


def signed_headers(*, host: str, target: str, content_type: str, body: bytes,
                   amz_date: str, region: str, service: str, credentials: Credentials,
                   signing_key: bytes) -> dict[str, str]:
    """The headers of a signed ``POST /`` carrying ``body``; ``amz_date`` is
    ``YYYYMMDD'T'HHMMSS'Z'`` (UTC) and ``signing_key`` the day's key of that date."""
    headers = {
        "content-type": content_type,
        "host": host,
        "x-amz-date": amz_date,
        "x-amz-target": target,
    }
    if credentials.token:
        headers["x-amz-security-token"] = credentials.token
    names = sorted(headers)
    canonical = "\n".join([
        "POST", "/", "",
        *(f"{name}:{' '.join(headers[name].split())}" for name in names),
        "", ";".join(names), hashlib.sha256(body).hexdigest(),
    ])
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return headers
