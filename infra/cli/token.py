"""``meshgate token``: a bearer token from the local stack's dev issuer (infra.keys.dev_issuer).

The token alone goes to stdout, so ``TOKEN=$(meshgate token --sub alice)`` works; notes
(a rotation) go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from infra.keys import dev_issuer
from infra.settings import Settings


def register(commands: Any) -> None:
    """Add ``token`` to the ``meshgate`` subcommands (an argparse subparsers action)."""
    token = commands.add_parser("token", help="print a signed JWT from the local dev issuer")
    token.add_argument("--sub", help="the subject (required unless --rotate alone)")
    token.add_argument("--scope", action="append", default=[],
                       help="a scope, e.g. catalog:read (repeat, or space separated)")
    token.add_argument("--ttl", type=int, default=dev_issuer.DEFAULT_TTL_S,
                       help="seconds until it expires (default %(default)s)")
    token.add_argument("--email", help="the email claim")
    token.add_argument("--aud", action="append", default=[],
                       help="the audience (repeat for several; default: the policy's first)")
    token.add_argument("--kid", help="sign with this stored key instead of the newest")
    token.add_argument("--rotate", action="store_true",
                       help="first add a new signing key and publish it with the previous one")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.rotate:
        dev_issuer.rotate(settings, lambda line: print(line, file=sys.stderr, flush=True))
        if args.sub is None:
            return 0
    if not args.sub:
        print("meshgate token: error: --sub is required; e.g. meshgate token --sub alice",
              file=sys.stderr)
        return 2
    if args.ttl <= 0:
        print("meshgate token: error: --ttl must be positive seconds", file=sys.stderr)
        return 2
    claims: dict[str, Any] = {"sub": args.sub}
    scopes = " ".join(part for scope in args.scope for part in scope.split())
    if scopes:
        claims["scope"] = scopes
    if args.email:
        claims["email"] = args.email
    if args.aud:
        claims["aud"] = args.aud[0] if len(args.aud) == 1 else list(args.aud)
    print(dev_issuer.mint(settings, claims, ttl_s=args.ttl, kid=args.kid))
    return 0
