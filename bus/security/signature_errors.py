"""Why a message's signature does not prove who sent it: one error per reason, each a
non-retriable ``MeshError`` whose ``code`` is the quarantine reason. Re-exported by
``bus.security.signing``; a module of its own so the signature formats can share them."""

from __future__ import annotations

from bus.errors import MeshError


class SignatureError(MeshError):
    """The message's signature does not prove who sent it."""

    code = "signature_error"


class MissingSignature(SignatureError):
    code = "missing_signature"


class MalformedSignature(SignatureError):
    code = "malformed_signature"


class BadSignature(SignatureError):
    code = "bad_signature"


class SenderMismatch(SignatureError):
    """A validly signed message whose key belongs to another service than its ``ce_source``."""

    code = "sender_mismatch"
