"""The hostile HTTP requests sent to the deployed edge (pure: credentials and time are given).

Every request carries a marker unique to the case (in the path, the query or the body), so a
request that got through is found on the request topics. Attacks on one defence come with
valid credentials for the others (an injection string with a valid token), so each case
tests the defence it names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import jwt
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from infra.keys import dev_issuer
from infra.keys.dev_issuer import IssuerConfig, IssuerKey
from proof.attack.mesh_cases import respelled

JWT = "jwt"
API_KEY = "api_key"
BRUTE_FORCE = "api_key_bruteforce"
OVERSIZED = "oversized_body"
MALFORMED_JSON = "malformed_json"
CONTENT_TYPE = "content_type"
INJECTION = "path_injection"
ROUTE_CONFUSION = "route_confusion"
STATUS_FLOOD = "status_route_flood"  # proof/attack/edge_status_flood.py
LAMBDA_EVENTS = "unreadable_lambda_events"  # proof/attack/edge_lambda_events.py
STORE_FAULTS = "rate_limit_store_faults"  # proof/attack/edge_store_faults.py
JWT_CACHE = "jwt_cache"  # proof/attack/edge_jwt_cache.py
CATEGORIES = (JWT, API_KEY, BRUTE_FORCE, OVERSIZED, MALFORMED_JSON, CONTENT_TYPE, INJECTION,
              ROUTE_CONFUSION, STATUS_FLOOD, LAMBDA_EVENTS, STORE_FAULTS, JWT_CACHE)
CONTROL = "control"
JSON_TYPE = {"content-type": "application/json"}


@dataclass(frozen=True)
class Credentials:
    issuer: IssuerConfig
    key: IssuerKey  # the dev issuer's signing key
    api_key: str  # live, with a generous plan
    revoked_key: str
    now: int
    max_body_bytes: int

    def claims(self, **claims: Any) -> dict[str, Any]:
        base = {"sub": "atk-user", "scope": "catalog:read reports:write"}
        return dev_issuer.token_claims(self.issuer, {**base, **claims}, ttl_s=600, now=self.now)

    def token(self, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        return dev_issuer.sign(self.key, self.claims(**claims), headers)

    def bearer(self, **claims: Any) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(**claims)}"}


@dataclass(frozen=True)
class EdgeCase:
    category: str
    label: str
    method: str
    path: str  # already percent-encoded, after the endpoint
    marker: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    chunked: bool = False  # send the body without a content-length


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    return ".".join((_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()),
                     _b64(signature)))


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"], claims["scope"] = "admin", "catalog:read reports:write admin"
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def as_der(token: str) -> str:
    """``token`` with its ES256 signature re-encoded as ASN.1 DER (what OpenSSL emits)."""
    head_payload, _, signature = token.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    return f"{head_payload}.{_b64(encode_dss_signature(r, s))}"


def respelled_signature(token: str) -> str:
    """``token`` with a spare bit of its signature's last character set: the same 64 bytes
    to a lenient base64 decoder, another spelling of them (86 characters carry 4 spare bits)."""
    head_payload, _, signature = token.rpartition(".")
    return f"{head_payload}.{respelled(signature)}"


def forged_tokens(c: Credentials) -> Iterator[tuple[str, str]]:
    """(label, Authorization header value) for every way a bearer token must fail."""
    claims = c.claims(sub="mallory")
    kid = c.key.kid
    yield "missing credentials", ""
    yield "basic scheme", "Basic " + _b64(b"admin:admin")
    yield "bearer without a token", "Bearer"
    yield "not a JWT", "Bearer not.a.jwt"
    yield "expired", f"Bearer {c.token(exp=c.now - 120, iat=c.now - 900)}"
    yield "not yet valid", f"Bearer {c.token(nbf=c.now + 600)}"
    yield "wrong issuer", f"Bearer {c.token(iss='https://evil.example')}"
    yield "wrong audience", f"Bearer {c.token(aud='someone-else')}"
    yield "alg none", "Bearer " + jwt.encode(claims, key="", algorithm="none")
    yield "alg None, kid kept", "Bearer " + _compact({"alg": "None", "kid": kid}, claims, b"")
    head_payload = ".".join((_b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()),
                             _b64(json.dumps(claims).encode())))
    mac = hmac.new(c.key.public_pem(), head_payload.encode(), hashlib.sha256).digest()
    yield "HS256 keyed with the public key", f"Bearer {head_payload}.{_b64(mac)}"
    yield "unknown kid", f"Bearer {c.token(headers={'kid': 'not-a-known-key'})}"
    yield "kid path traversal", f"Bearer {c.token(headers={'kid': '../../../../dev/null'})}"
    other = dev_issuer.new_key()
    yield "signed by another key, real kid", \
        f"Bearer {dev_issuer.sign(other, claims, {'kid': kid})}"
    yield "signed by another key, jku to it", \
        f"Bearer {dev_issuer.sign(other, claims, {'jku': 'http://127.0.0.1:9/jwks.json'})}"
    yield "tampered payload", f"Bearer {_tampered(c.token())}"
    yield "signature stripped", "Bearer " + c.token().rsplit(".", 1)[0] + "."
    # Against the verifier written on cryptography (functions.gateway.auth.jose): the
    # "psychic signature" (CVE-2022-21449: r = s = 0 passed Java's ECDSA check), a genuine
    # signature in DER instead of JOSE's r || s, and the same signature bytes respelled.
    yield "ES256 signature r = s = 0", "Bearer " + _compact(
        {"alg": "ES256", "typ": "JWT", "kid": kid}, claims, bytes(64))
    yield "genuine signature in DER", f"Bearer {as_der(c.token(sub='mallory'))}"
    yield "genuine signature respelled", f"Bearer {respelled_signature(c.token(sub='mallory'))}"
    yield "missing scope", f"Bearer {c.token(scope='reports:write')}"


def _order(marker: str) -> dict[str, Any]:
    return {"customer": marker, "lines": [{"sku": "atk-1", "quantity": 1, "unit_price": "1.00"}]}


class Cases:
    """Builds cases, numbering a marker for each (``<run>-<n>``)."""

    def __init__(self, run: str, credentials: Credentials) -> None:
        self.run = run
        self.c = credentials
        self._next = 0

    def marker(self) -> str:
        self._next += 1
        return f"{self.run}-{self._next:06d}"

    def product(self, category: str, label: str, headers: dict[str, str], sku: str = "",
                query: str = "") -> EdgeCase:
        marker = self.marker()
        path = f"/v1/products/{quote(marker + sku, safe='')}{query}"
        return EdgeCase(category, label, "GET", path, marker, headers)

    def order(self, category: str, label: str, headers: dict[str, str],
              body: bytes | None = None, path: str = "/v1/partner/orders",
              chunked: bool = False) -> EdgeCase:
        marker = self.marker()
        content = body.replace(b"MARKER", marker.encode()) if body is not None else \
            json.dumps(_order(marker)).encode()
        return EdgeCase(category, label, "POST", path, marker, headers, content, chunked)

    def control(self) -> EdgeCase:
        return self.product(CONTROL, "valid token, valid sku", self.c.bearer())

    def jwt(self) -> Iterator[EdgeCase]:
        for label, value in forged_tokens(self.c):
            yield self.product(JWT, label, {"authorization": value} if value else {})

    def api_key(self) -> Iterator[EdgeCase]:
        live = self.c.api_key
        key_id = live[4:20]
        yield self.order(API_KEY, "missing", {})
        yield self.order(API_KEY, "malformed", {"x-api-key": "not-a-key"})
        yield self.order(API_KEY, "unknown key id", {"x-api-key": f"mgk_{'0' * 16}.{'A' * 43}"})
        yield self.order(API_KEY, "tampered secret",
                         {"x-api-key": live[:-2] + ("AA" if not live.endswith("AA") else "BB")})
        yield self.order(API_KEY, "revoked", {"x-api-key": self.c.revoked_key})
        yield self.order(API_KEY, "upper-case key id", {"x-api-key": live.replace(
            key_id, key_id.upper()) if key_id != key_id.upper() else f"mgk_{'G' * 16}.x"})
        yield self.order(API_KEY, "key in the bearer header", {"authorization": f"Bearer {live}"})
        yield self.order(API_KEY, "empty key", {"x-api-key": ""})
        yield self.order(API_KEY, "key id only", {"x-api-key": f"mgk_{key_id}."})

    def brute_force(self, count: int) -> Iterator[EdgeCase]:
        """Guesses of the live key's secret (its id is not secret), and of random ids."""
        key_id = self.c.api_key[4:20]
        for n in range(count):
            guessed_id = key_id if n % 4 else secrets.token_hex(8)
            guess = f"mgk_{guessed_id}.{secrets.token_urlsafe(32)}"
            yield self.order(BRUTE_FORCE, "known key id" if n % 4 else "random key id",
                             {"x-api-key": guess})

    def oversized(self) -> Iterator[EdgeCase]:
        pad = b'{"customer":"MARKER","lines":[],"pad":"' + \
            b"x" * self.c.max_body_bytes + b'"}'
        key = {"x-api-key": self.c.api_key, **JSON_TYPE}
        yield self.order(OVERSIZED, "over the limit, content-length", key, pad)
        yield self.order(OVERSIZED, "over the limit, chunked", key, pad, chunked=True)
        yield self.order(OVERSIZED, "four times the limit", key, pad + b" " * (
            3 * self.c.max_body_bytes))
        yield self.order(OVERSIZED, "over the limit, no auth route", JSON_TYPE, pad,
                         path="/v1/orders")
        yield self.order(OVERSIZED, "over the limit, async route",
                         {**self.c.bearer(sub=self.marker()), **JSON_TYPE},
                         pad.replace(b',"lines":[]', b""), path="/v1/reports")

    def malformed_json(self) -> Iterator[EdgeCase]:
        key = {"x-api-key": self.c.api_key, **JSON_TYPE}
        bodies = {
            "truncated": b'{"customer":"MARKER","lines":[{"sku":"a"',
            "single quotes": b"{'customer':'MARKER','lines':[]}",
            "trailing comma": b'{"customer":"MARKER","lines":[],}',
            "NaN": b'{"customer":"MARKER","lines":[{"sku":"a","quantity":NaN,'
                   b'"unit_price":"1"}]}',
            "not UTF-8": b'{"customer":"MARKER\xff\xfe","lines":[]}',
            "BOM and garbage": b'\xef\xbb\xbf{"customer":"MARKER"}}}',
            "huge integer": b'{"customer":"MARKER","lines":[{"sku":"a","quantity":'
                            + b"9" * 5000 + b',"unit_price":"1"}]}',
            "deeply nested": b'{"customer":"MARKER","lines":' + b"[" * 50_000 + b"]" * 50_000
                             + b"}",
            "wrong types": b'{"customer":"MARKER","lines":"all of them"}',
            "negative quantity": b'{"customer":"MARKER","lines":[{"sku":"a","quantity":-5,'
                                 b'"unit_price":"1.00"}]}',
            "float price": b'{"customer":"MARKER","lines":[{"sku":"a","quantity":1,'
                           b'"unit_price":1e308}]}',
            "extra field": b'{"customer":"MARKER","lines":[{"sku":"a","quantity":1,'
                           b'"unit_price":"1.00"}],"admin":true}',
            "missing lines": b'{"customer":"MARKER"}',
            "array at the top": b'["MARKER"]',
            "null": b"null",
        }
        for label, body in bodies.items():
            yield self.order(MALFORMED_JSON, label, key, body)

    def content_type(self) -> Iterator[EdgeCase]:
        for label, media in (("text/plain", "text/plain"), ("xml", "application/xml"),
                             ("form", "application/x-www-form-urlencoded"),
                             ("multipart", "multipart/form-data; boundary=x"),
                             ("json as a parameter", "text/plain; type=application/json"),
                             ("octet-stream", "application/octet-stream"),
                             ("empty", "")):
            yield self.order(CONTENT_TYPE, label,
                             {"x-api-key": self.c.api_key, "content-type": media})

    def injection(self) -> Iterator[EdgeCase]:
        valid = self.c.bearer()
        for label, suffix in (
            ("path traversal", "/../../etc/passwd"), ("encoded traversal", "%2e%2e%2f"),
            ("null byte", "\x00"), ("sql", "' OR '1'='1' --"), ("script", "<script>x</script>"),
            ("shell", "; cat /etc/passwd"), ("CRLF header injection", "\r\nX-Injected: 1"),
            ("log4shell", "${jndi:ldap://127.0.0.1/a}"), ("template", "{{7*7}}"),
            ("too long", "A" * 80), ("unicode", "é\u202e"), ("spaces", " x "),
        ):
            yield self.product(INJECTION, f"sku: {label}", valid, suffix)
        for label, query in (("quantity: sql", "1 OR 1=1"), ("quantity: negative", "-1"),
                             ("quantity: huge", "9" * 40), ("quantity: array", "[]")):
            yield self.product(INJECTION, label, valid, query="?quantity=" + quote(query))
        marker = self.marker()
        yield EdgeCase(INJECTION, "operation id traversal", "GET",
                       f"/v1/operations/{quote('../../' + marker, safe='')}", marker, valid)

    def route_confusion(self) -> Iterator[EdgeCase]:
        """Near misses of the API-key route's path, with a valid order and no key: no path
        trick may land a request on a policy route past its own check, on another route, or
        on the edge's own pages (the edge tries its routes in an order of its choosing,
        ``functions.gateway.route_match``). Then a valid JWT at that route, which takes keys
        only."""
        for label, path in (("upper case", "/V1/partner/orders"),
                            ("a segment more", "/v1/partner/orders/extra"),
                            ("under the docs", "/docs/v1/partner/orders"),
                            ("dot segments from health", "/healthz/../v1/partner/orders"),
                            ("encoded slash", "/v1/partner%2Forders"),
                            ("doubled slash", "/v1/partner//orders")):
            yield self.order(ROUTE_CONFUSION, f"{label}, no key", JSON_TYPE, path=path)
        yield self.order(ROUTE_CONFUSION, "a valid JWT at the API-key route",
                         {**self.c.bearer(), **JSON_TYPE})


def build(cases: Cases, *, rounds: int, brute_force: int) -> list[EdgeCase]:
    handcrafted = [cases.jwt, cases.api_key, cases.oversized, cases.malformed_json,
                   cases.content_type, cases.injection, cases.route_confusion]
    return [cases.control(),
            *(case for _ in range(rounds) for family in handcrafted for case in family()),
            *cases.brute_force(brute_force)]
