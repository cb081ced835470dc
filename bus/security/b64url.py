"""Unpadded base64url (RFC 4648 §5), strict: one text per byte string.

Every signature, path and public key on the wire is in this form, and receivers decode two
texts per signed message, so the strict decode is done by ``binascii`` in its strict mode
instead of a regex, a decode and a re-encode to compare: the alphabet and the padding are
checked before and by the decode, and the one freedom base64 leaves (the unused low bits of
the last character) is checked on that character alone.
"""

from __future__ import annotations

import binascii
from typing import Final

_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_VALUE: Final = {char: value for value, char in enumerate(_ALPHABET)}
# By len(text) % 4: the padding the decoder wants, and the bits of the last character that
# carry no data and must be zero (2 and 3 characters hold 1 and 2 bytes: 4 and 2 spare bits).
_PADDING: Final = (b"", b"", b"==", b"=")
_SPARE_BITS: Final = (0, 0, 0x0F, 0x03)
_TO_STANDARD: Final = bytes.maketrans(b"-_", b"+/")
_FROM_STANDARD: Final = bytes.maketrans(b"+/", b"-_")


def encode_b64url(raw: bytes) -> str:
    """Unpadded base64url."""
    return binascii.b2a_base64(raw, newline=False).translate(_FROM_STANDARD).rstrip(
        b"=").decode("ascii")


def decode_b64url(text: str) -> bytes:
    """Strict inverse of ``encode_b64url``: one canonical text per byte string, else ValueError."""
    remainder = len(text) & 3
    # '+', '/' and '=' would pass the standard alphabet's decoder after the translation.
    if remainder == 1 or "=" in text or "+" in text or "/" in text:
        raise ValueError("not unpadded base64url")
    try:
        raw = binascii.a2b_base64(text.encode("ascii").translate(_TO_STANDARD)
                                  + _PADDING[remainder], strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("not unpadded base64url") from None
    if remainder and _VALUE[text[-1]] & _SPARE_BITS[remainder]:
        raise ValueError("non-canonical base64url")
    return raw
