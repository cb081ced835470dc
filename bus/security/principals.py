"""Who may speak for an end user: the decisions about ``mesh_principal`` (pure, no I/O).

A principal (the edge's authenticated caller, compact JSON) is accepted on a message only

- from a service the policy marks as an edge (``services.<name>.edge: true``): the sender's
  verified signature speaks for it; or
- unchanged from the message being handled: the message carries the edge's *assertion*
  (``mesh_principal_sig``), made by a key of an edge over the exact principal bytes and an
  expiry, that a nested call forwards as it came. A receiver that never saw the edge's
  message checks it on its own.

The assertion reads ``<algorithm>:<key_id>:<expires_ms>:<base64url signature>``; the
signature covers ``assertion_bytes(principal, expires_ms)``, a versioned, length-prefixed
encoding. It expires with the edge's call: its expiry is the deadline of the request the
edge sent (up to an hour for async routes), and a request forwarding it may not outlive it
(its signed deadline must not be later), so every honest nested call is covered for its whole
life. It is a bearer proof until then: a service that handled a call for a user may make
other calls for that user until the edge's deadline, never after, never for anyone else.

Every refusal is a non-retriable ``MeshError`` with its own code (the quarantine reason).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from bus.envelope import KIND_REQUEST, Envelope
from bus.errors import MeshError
from bus.security.keys import (
    ED25519,
    HMAC_SHA256,
    KEY_ID_PATTERN,
    Algorithm,
    KeyRing,
    SigningKey,
    UnknownKeyId,
    decode_b64url,
    encode_b64url,
)
from bus.security.signing import SIGNATURE_BYTES, sign_bytes, signature_valid

__all__ = [
    "ASSERTION_DOMAIN",
    "MAX_ASSERTION_TTL_MS",
    "BadPrincipalAssertion",
    "PrincipalAssertion",
    "PrincipalAssertionExpired",
    "PrincipalAssertionNotEdge",
    "PrincipalError",
    "PrincipalNotAllowed",
    "assert_principal",
    "assertion_bytes",
    "check_principal",
    "parse_assertion",
    "principal_for_call",
]

# Versions the encoding below; distinct from the message signature's domain, so neither
# signature can ever be taken for the other.
ASSERTION_DOMAIN: Final = b"meshgate-principal-v1"
# The longest call an edge makes (an async route's timeout is at most an hour).
MAX_ASSERTION_TTL_MS: Final = 3_600_000
# How far ahead of the receiver's clock the edge's may be, on top of that hour.
CLOCK_SKEW_MS: Final = 60_000
_EXPIRY = re.compile(r"0|[1-9][0-9]{0,15}")
_LENGTH = struct.Struct(">Q")

Inherited = tuple[str | None, str | None]  # the handled message's principal and assertion


class PrincipalError(MeshError):
    """A message speaks for an end user without the right to."""

    code = "principal_error"


class PrincipalNotAllowed(PrincipalError):
    """A service that is not an edge names a principal with no edge's assertion of it."""

    code = "principal_not_allowed"


class BadPrincipalAssertion(PrincipalError):
    """The assertion is malformed, by an unknown key, or not over these principal bytes."""

    code = "bad_principal_assertion"


class PrincipalAssertionNotEdge(PrincipalError):
    """A valid assertion made by the key of a service that is not an edge."""

    code = "principal_assertion_not_edge"


class PrincipalAssertionExpired(PrincipalError):
    """The assertion has expired, or the message would outlive it."""

    code = "principal_assertion_expired"


@dataclass(frozen=True)
class PrincipalAssertion:
    algorithm: Algorithm
    key_id: str
    expires_ms: int
    signature: bytes

    def encode(self) -> str:
        return (f"{self.algorithm}:{self.key_id}:{self.expires_ms}:"
                f"{encode_b64url(self.signature)}")


def assertion_bytes(principal: str, expires_ms: int) -> bytes:
    """What an assertion's signature covers: the domain, the exact principal bytes and the
    expiry (decimal), each length-prefixed (8-byte big-endian), so no field bleeds into
    the next."""
    fields = (ASSERTION_DOMAIN, principal.encode("utf-8", "surrogatepass"),
              str(expires_ms).encode())
    return b"".join(_LENGTH.pack(len(field)) + field for field in fields)


def assert_principal(principal: str, expires_ms: int, key: SigningKey) -> str:
    """The ``mesh_principal_sig`` header an edge signs with ``key`` for ``principal``."""
    signature = sign_bytes(assertion_bytes(principal, expires_ms), key)
    return PrincipalAssertion(key.algorithm, key.key_id, expires_ms, signature).encode()


def parse_assertion(text: str) -> PrincipalAssertion:
    """Parse a ``mesh_principal_sig`` value; raises only ``BadPrincipalAssertion``."""
    parts = text.split(":")
    if len(parts) != 4:
        raise BadPrincipalAssertion(
            "an assertion reads '<algorithm>:<key_id>:<expires_ms>:<base64url>'")
    algorithm_text, key_id, expiry, encoded = parts
    if algorithm_text == ED25519:
        algorithm: Algorithm = ED25519
    elif algorithm_text == HMAC_SHA256:
        algorithm = HMAC_SHA256
    else:
        raise BadPrincipalAssertion("the assertion names an unknown algorithm")
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise BadPrincipalAssertion("the assertion's key id is not a valid key id")
    if not _EXPIRY.fullmatch(expiry):
        raise BadPrincipalAssertion("the assertion's expiry is not epoch milliseconds")
    try:
        signature = decode_b64url(encoded)
    except ValueError as exc:
        raise BadPrincipalAssertion("the assertion's signature is not canonical base64url"
                                    ) from exc
    if len(signature) != SIGNATURE_BYTES[algorithm]:
        raise BadPrincipalAssertion(f"an {algorithm} signature is {SIGNATURE_BYTES[algorithm]}"
                                    f" bytes, got {len(signature)}")
    return PrincipalAssertion(algorithm, key_id, int(expiry), signature)


def principal_for_call(
    own: str | None,
    inherited: Inherited,
    *,
    service: str,
    edge: bool,
    key: SigningKey | None,
    expires_ms: int,
    now_ms: int,
) -> Inherited:
    """The principal and assertion a call made by ``service`` carries.

    ``own`` is the principal the caller names; ``inherited`` the handled message's principal
    and assertion (both ``None`` outside a handler); ``expires_ms`` the call's deadline. An
    edge signs a fresh assertion (none without a signing key: an insecure identity). Any
    other service forwards the handled message's principal and assertion unchanged, and
    naming another principal, or one with no assertion to forward, is refused here with
    ``PrincipalNotAllowed``: the receiver would refuse it anyway.
    """
    parent, parent_assertion = inherited
    principal = parent if own is None else own
    if principal is None:
        return None, None
    if edge:
        if key is None:
            return principal, None
        if expires_ms - now_ms > MAX_ASSERTION_TTL_MS:
            raise BadPrincipalAssertion(
                f"a principal is asserted for at most {MAX_ASSERTION_TTL_MS} ms; this call's "
                f"deadline is {expires_ms - now_ms} ms away: shorten its timeout")
        return principal, assert_principal(principal, expires_ms, key)
    if principal != parent:
        raise PrincipalNotAllowed(
            f"{service} is not an edge: it may only forward the principal of the message it "
            "handles, unchanged (mark it an edge in the policy to name principals)")
    if parent_assertion is None:
        raise PrincipalNotAllowed(
            f"{service} is not an edge and the handled message's principal carries no edge's "
            "assertion to forward")
    return principal, parent_assertion


def check_principal(envelope: Envelope, keyring: KeyRing, is_edge: Callable[[str], bool],
                    now_ms: int) -> None:
    """Admit ``envelope``'s principal, or raise the reason to quarantine it.

    ``envelope``'s signature is already verified (``ce_source`` is its sender, and the
    assertion is covered). A principal is admitted from an edge as it is; from any other
    sender only with a valid assertion: by a trusted key of an edge, over these exact
    principal bytes, not expired. A request must not outlive the assertion (its deadline at
    or before the expiry); once the expiry has passed, so has such a request's deadline, and
    the worker drops it unhandled, as any expired request (so a backlog is not quarantined).
    """
    principal, text = envelope.principal, envelope.principal_assertion
    if principal is None:
        if text is not None:
            raise BadPrincipalAssertion("the message carries an assertion but no principal")
        return
    if is_edge(envelope.source):
        return  # the edge's own signature over the message speaks for the principal
    if text is None:
        raise PrincipalNotAllowed(
            f"{envelope.source} is not an edge and forwards no edge's assertion of the principal")
    assertion = parse_assertion(text)
    try:
        key = keyring.get(assertion.key_id)
    except UnknownKeyId as exc:
        raise BadPrincipalAssertion(
            f"the assertion's key {assertion.key_id} is not trusted") from exc
    if assertion.algorithm != key.algorithm:  # the key decides, never the header
        raise BadPrincipalAssertion(
            f"key {key.key_id} is {key.algorithm}, the assertion claims {assertion.algorithm}")
    if not signature_valid(key, assertion_bytes(principal, assertion.expires_ms),
                           assertion.signature):
        raise BadPrincipalAssertion(
            f"the assertion by key {key.key_id} is not over this principal and expiry")
    # After the signature: a real key of a service that is not an edge made it.
    if not is_edge(key.service):
        raise PrincipalAssertionNotEdge(
            f"the assertion is made by {key.service!r}, which is not an edge")
    if assertion.expires_ms - now_ms > MAX_ASSERTION_TTL_MS + CLOCK_SKEW_MS:
        raise BadPrincipalAssertion(
            f"the assertion expires {assertion.expires_ms - now_ms} ms from now, over the "
            f"{MAX_ASSERTION_TTL_MS} ms an edge's call may last")
    if envelope.kind == KIND_REQUEST:
        if envelope.deadline_ms is None or envelope.deadline_ms > assertion.expires_ms:
            raise PrincipalAssertionExpired(
                "the request's deadline is later than its principal assertion's expiry")
    elif now_ms >= assertion.expires_ms:
        raise PrincipalAssertionExpired(
            f"the principal assertion expired {now_ms - assertion.expires_ms} ms ago")
