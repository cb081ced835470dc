"""Micro-benchmark: what per-message authentication costs, per message, on this machine.

``python -m bench.signing_cost [--size 400 --number 3000 --rounds 5]`` prints microseconds per
call (the best of ``--rounds`` runs of ``--number`` calls; the cases take turns within each
round, so a slow spell of the shared machine falls on all of them) for:

- the primitive alone on a ``--size``-byte message: Ed25519 sign and verify through OpenSSL
  (``cryptography``) and through libsodium (PyNaCl), HMAC-SHA256 for reference;
- the mesh's whole functions on a request envelope carrying a ``--size``-byte value:
  ``canonical_bytes`` alone, ``sign(envelope, topic, key)`` and ``verify(envelope, topic,
  keyring)`` with a key on each Ed25519 backend and with an HMAC key, and a per-pair MAC
  (``bus.security.pair_mac``: sealed by the sender, opened by the receiver, pair key cached),
  plus the one-off derivation of a pair key (X25519 + HKDF) that the cache saves.

A number to read, never a pass/fail. The output ends with one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import time
from collections.abc import Callable
from functools import partial

import cryptography
import nacl
import nacl.bindings
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bus.envelope import Envelope, ReplyTo, new_request
from bus.security import ed25519
from bus.security.keys import KeyRing, SigningKey, generate_ed25519, hmac_key
from bus.security.pair_mac import PairKeys, pair_key
from bus.security.signing import canonical_bytes, sign, verify

TOPIC = "orders.requests"
AT_MS = 1_767_225_600_123
Case = Callable[[], object]


def primitive_cases(size: int) -> dict[str, Case]:
    message = os.urandom(size)
    seed = os.urandom(32)
    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key()
    signature = private.sign(message)
    public_raw, expanded = nacl.bindings.crypto_sign_seed_keypair(seed)
    signed = signature + message
    secret = os.urandom(32)
    return {
        "ed25519 sign, openssl": lambda: private.sign(message),
        "ed25519 verify, openssl": lambda: public.verify(signature, message),
        "ed25519 sign, libsodium": lambda: nacl.bindings.crypto_sign(message, expanded)[:64],
        "ed25519 verify, libsodium": lambda: nacl.bindings.crypto_sign_open(signed, public_raw),
        "hmac-sha256": lambda: hmac.new(secret, message, hashlib.sha256).digest(),
    }


def _request(size: int) -> Envelope:
    return new_request(source="gateway", operation="orders.create", value=os.urandom(size),
                       reply_to=ReplyTo("mesh.replies", 3), deadline_ms=AT_MS + 10_000,
                       at_ms=AT_MS)


def whole_cases(size: int) -> dict[str, Case]:
    envelope = _request(size)
    cases: dict[str, Case] = {
        "canonical_bytes": lambda: canonical_bytes(envelope, TOPIC),
    }
    seed = os.urandom(32)
    for backend in ed25519.BACKENDS:
        key = SigningKey("bench-ed", "ed25519", seed, backend=backend)
        ring = KeyRing([key.verify_key("gateway")])
        signed = sign(envelope, TOPIC, key)
        cases[f"sign(), ed25519 {backend.name}"] = partial(sign, envelope, TOPIC, key)
        cases[f"verify(), ed25519 {backend.name}"] = partial(verify, signed, TOPIC, ring)
    signing, verifying = hmac_key("gateway", os.urandom(32), "bench-hmac")
    hmac_ring = KeyRing([verifying])
    hmac_signed = sign(envelope, TOPIC, signing)
    cases["sign(), hmac-sha256"] = lambda: sign(envelope, TOPIC, signing)
    cases["verify(), hmac-sha256"] = lambda: verify(hmac_signed, TOPIC, hmac_ring)
    (sender, sender_public), (receiver, receiver_public) = (generate_ed25519("gateway"),
                                                            generate_ed25519("orders"))
    pair_ring = KeyRing([sender_public, receiver_public])
    sealing, opening = PairKeys([sender]), PairKeys([receiver])
    sealed = sealing.seal(envelope, TOPIC, sender, receiver_public)
    cases["seal(), pair-hmac-sha256"] = partial(sealing.seal, envelope, TOPIC, sender,
                                                receiver_public)
    cases["verify(), pair-hmac-sha256"] = partial(verify, sealed, TOPIC, pair_ring, opening)
    cases["pair key derivation (once per pair)"] = partial(
        pair_key, sender, sender_public.material, receiver_public.key_id,
        receiver_public.material, sending=True)
    return cases


def measure(cases: dict[str, Case], number: int, rounds: int) -> dict[str, float]:
    """Microseconds per call of each case: the best of ``rounds`` interleaved runs."""
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, call in cases.items():
            started = time.perf_counter()
            for _ in range(number):
                call()
            best[name] = min(best[name], (time.perf_counter() - started) / number * 1e6)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="per-message authentication cost")
    parser.add_argument("--size", type=int, default=400, help="message / value bytes")
    parser.add_argument("--number", type=int, default=3_000, help="calls per run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved runs, best kept")
    args = parser.parse_args(argv)
    cases = {**primitive_cases(args.size), **whole_cases(args.size)}
    results = measure(cases, args.number, args.rounds)
    for name, micros in results.items():
        print(f"{name:40s} {micros:8.1f} us")
    print(json.dumps({
        "bench": "signing_cost", "size": args.size, "number": args.number,
        "rounds": args.rounds, "us": {name: round(us, 2) for name, us in results.items()},
        "cryptography": cryptography.__version__, "pynacl": nacl.__version__,
        "python": platform.python_version(),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
