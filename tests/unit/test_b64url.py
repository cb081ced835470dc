"""The strict base64url codec against a reference that states the rule the slow way: the text
is in the URL-safe alphabet, not 1 mod 4 long, and re-encoding its bytes gives it back."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.security.b64url import decode_b64url, encode_b64url

_URLSAFE = re.compile(r"[A-Za-z0-9_-]*")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# The alphabet plus what a forger or a sloppy encoder would put in: the standard alphabet's
# characters, padding, whitespace, a NUL, a non-ASCII letter and a non-ASCII digit.
NEAR_MISSES = "+/= \n\t\x00.:é٣"


def reference_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def reference_decode(text: str) -> bytes | None:
    if not _URLSAFE.fullmatch(text) or len(text) % 4 == 1:
        return None
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return raw if reference_encode(raw) == text else None


def decoded(text: str) -> bytes | None:
    try:
        return decode_b64url(text)
    except ValueError:
        return None


texts = st.text(
    alphabet=st.one_of(st.sampled_from(ALPHABET), st.sampled_from(ALPHABET),
                       st.sampled_from(ALPHABET), st.sampled_from(NEAR_MISSES)),
    max_size=16)


@settings(max_examples=3000, deadline=None)
@given(texts)
def test_decode_accepts_exactly_what_the_reference_accepts(text: str) -> None:
    assert decoded(text) == reference_decode(text)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_encode_is_the_reference_and_round_trips(raw: bytes) -> None:
    assert encode_b64url(raw) == reference_encode(raw)
    assert decode_b64url(encode_b64url(raw)) == raw


@pytest.mark.parametrize("text", [
    "AB",    # 2 characters, spare bits 0001 set: "AA" is the one spelling of b"\x00"
    "AAB",   # 3 characters, spare bits 01 set
    "AAAA=", "AA==", "AAA=",  # padding
    "AA AA", "AA\nA", "a+b/",  # whitespace, the standard alphabet
    "A", "AAAAA",  # 1 mod 4
    "AAé",  # not ASCII
])
def test_every_other_spelling_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        decode_b64url(text)


def test_the_spare_bits_are_checked_on_the_last_character_only() -> None:
    assert decode_b64url("AA") == b"\x00"
    assert decode_b64url("AAA") == b"\x00\x00"
    assert decode_b64url("_w") == b"\xff"
    assert decode_b64url("__8") == b"\xff\xff"
