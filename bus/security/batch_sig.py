"""One Ed25519 signature for a batch of messages: a Merkle root signed once, a path per message.

A sender that seals several messages in one event-loop turn (``bus.security.batch_signer``)
signs the root of a Merkle tree over them (RFC 9162 §2.1 shape) and gives each message the
``mesh_sig``::

    ed25519-batch:<key id>:<index>.<count>:<base64url signature>:<base64url path>

- leaf ``i`` is ``SHA-256(0x00 || canonical_bytes(message i, topic i))``: the same bytes a
  lone signature covers (bus.security.signing), so each message stays bound to its topic;
- an inner node is ``SHA-256(0x01 || left || right)``; with ``count`` leaves the tree splits at
  the largest power of two below ``count`` (RFC 9162's ``MTH``);
- the signature is Ed25519 over ``lp("meshgate-batch-v1") || u64be(count) || root``
  (``root_message``), so a root is bound to the size of its tree;
- the path is the message's inclusion proof (RFC 9162's ``PATH``), sibling hashes leaf first,
  32 bytes each, concatenated.

Any one message of a batch is checked alone with the sender's public key: its leaf, its path
to a root, the root's signature (``root_for``, then ``root_message``). A receiver caches roots
it has verified (``bus.security.batch_roots``), so the later messages of a batch cost a few
SHA-256s instead of an Ed25519 verification. A batch of one is signed as a lone message
(``ed25519:``), so a sender that never batches puts nothing new on the wire.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from bus.security.keys import KEY_ID_PATTERN, decode_b64url, encode_b64url
from bus.security.signature_errors import MalformedSignature

BATCH_ED25519: Final = "ed25519-batch"
BATCH_PREFIX: Final = BATCH_ED25519 + ":"
DOMAIN: Final = b"meshgate-batch-v1"
HASH_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
# What a receiver accepts: a path is at most ceil(log2(count)) hashes (11 for 2048 leaves).
MAX_COUNT: Final = 2048

_LEAF = b"\x00"
_NODE = b"\x01"
_U64 = struct.Struct(">Q")
_DOMAIN_FIELD = _U64.pack(len(DOMAIN)) + DOMAIN
_sha256 = hashlib.sha256


@dataclass(frozen=True)
class BatchHeader:
    key_id: str
    index: int
    count: int
    signature: bytes
    path: bytes  # sibling hashes, leaf first, HASH_BYTES each

    def encode(self) -> str:
        return (f"{BATCH_ED25519}:{self.key_id}:{self.index}.{self.count}:"
                f"{encode_b64url(self.signature)}:{encode_b64url(self.path)}")


def batch_signatures(key_id: str, signature: bytes, paths: Sequence[bytes]) -> list[str]:
    """The ``mesh_sig`` of each message of one batch, in order: ``BatchHeader.encode`` of each
    with the shared parts (the key id, the count, the signature) encoded once per batch."""
    head = f"{BATCH_ED25519}:{key_id}:"
    tail = f".{len(paths)}:{encode_b64url(signature)}:"
    return [f"{head}{index}{tail}{encode_b64url(path)}" for index, path in enumerate(paths)]


def leaf_hash(canonical: bytes) -> bytes:
    return _sha256(_LEAF + canonical).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(_NODE + left + right).digest()


def root_message(count: int, root: bytes) -> bytes:
    """The bytes the batch's one signature covers."""
    return _DOMAIN_FIELD + _U64.pack(count) + root


def tree(leaves: Sequence[bytes]) -> tuple[bytes, list[bytes]]:
    """The root of ``leaves`` (at least one) and each leaf's inclusion path, concatenated."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    paths: list[list[bytes]] = [[] for _ in leaves]
    root = _subtree(leaves, 0, len(leaves), paths)
    return root, [b"".join(path) for path in paths]


def _subtree(leaves: Sequence[bytes], start: int, end: int, paths: list[list[bytes]]) -> bytes:
    """MTH(leaves[start:end]); appends the sibling at this level to each leaf's path."""
    if end - start == 1:
        return leaves[start]
    split = start + _largest_power_of_two_below(end - start)
    left = _subtree(leaves, start, split, paths)
    right = _subtree(leaves, split, end, paths)
    for index in range(start, split):
        paths[index].append(right)
    for index in range(split, end):
        paths[index].append(left)
    return node_hash(left, right)


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def root_for(leaf: bytes, index: int, count: int, path: bytes) -> bytes | None:
    """The root ``path`` leads to from ``leaf`` at ``index`` of ``count`` (RFC 9162 §2.1.3.2),
    or None when the path cannot be an inclusion proof for that position (too short, too
    long, or not whole hashes)."""
    if not 0 <= index < count or len(path) % HASH_BYTES:
        return None
    fn, sn, node = index, count - 1, leaf
    for offset in range(0, len(path), HASH_BYTES):
        if sn == 0:
            return None  # the path is longer than the tree is deep
        sibling = path[offset:offset + HASH_BYTES]
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            if not fn & 1:
                while not fn & 1 and fn:
                    fn >>= 1
                    sn >>= 1
        else:
            node = node_hash(node, sibling)
        fn >>= 1
        sn >>= 1
    return node if sn == 0 else None


def parse_batch(text: str) -> BatchHeader:
    """Parse an ``ed25519-batch`` ``mesh_sig``; raises only ``MalformedSignature``."""
    parts = text.split(":")
    if len(parts) != 5 or parts[0] != BATCH_ED25519:
        raise MalformedSignature(
            "a batch signature reads 'ed25519-batch:<key_id>:<index>.<count>:<sig>:<path>'")
    _, key_id, position, encoded_signature, encoded_path = parts
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise MalformedSignature("the signature's key id is not a valid key id")
    index, count = _position(position)
    try:
        signature = decode_b64url(encoded_signature)
        path = decode_b64url(encoded_path)
    except ValueError as exc:
        raise MalformedSignature("the batch signature is not canonical base64url") from exc
    if len(signature) != SIGNATURE_BYTES:
        raise MalformedSignature(
            f"an ed25519 signature is {SIGNATURE_BYTES} bytes, got {len(signature)}")
    if not path or len(path) % HASH_BYTES:
        raise MalformedSignature(f"a batch path is whole {HASH_BYTES}-byte hashes, at least one")
    return BatchHeader(key_id, index, count, signature, path)


def _position(text: str) -> tuple[int, int]:
    index_text, dot, count_text = text.partition(".")
    if not (dot and _canonical_number(index_text) and _canonical_number(count_text)):
        raise MalformedSignature("a batch position reads '<index>.<count>' in decimal")
    index, count = int(index_text), int(count_text)
    if not 2 <= count <= MAX_COUNT or index >= count:
        raise MalformedSignature(
            f"a batch has 2 to {MAX_COUNT} messages and the index is below the count, "
            f"got {index}.{count}")
    return index, count


def _canonical_number(text: str) -> bool:
    # ASCII digits only, no leading zero: one spelling per number (int() also takes '+1', ' 1'
    # and non-ASCII digits).
    return text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0"))
