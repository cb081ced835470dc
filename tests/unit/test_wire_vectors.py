"""The wire-format test vectors (tests/vectors/, docs/wire-format.md) hold for this library.

Every signature is recomputed from the vectors' keys, every record verified with the library's
own verifier, the signed bytes rebuilt by an independent encoder written from the document
(not from ``bus.security.signing``), and every tampered record refused with its code. The last
test proves the files are what ``python -m tests.vectors.generate`` writes today.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from bus import envelope as envelope_module
from bus.envelope import from_record
from bus.errors import MeshError
from bus.security.keys import (
    ED25519,
    HMAC_SHA256,
    KeyRing,
    SigningKey,
    VerifyKey,
    decode_b64url,
)
from bus.security.pair_mac import PairKeys, pair_key, parse_pair_header
from bus.security.principals import assertion_bytes, parse_assertion
from bus.security.replay_countersign import (
    BadReplayCountersignature,
    countersign_bytes,
    parse_stamp,
)
from bus.security.signing import (
    DOMAIN,
    canonical_bytes,
    parse_signature,
    sign_bytes,
    signature_valid,
    verify,
)
from tests.vectors import generate

VECTORS = Path(generate.__file__).resolve().parent
KEYS = json.loads((VECTORS / "keys.json").read_text())
MESSAGES = json.loads((VECTORS / "messages.json").read_text())
TAMPERED = json.loads((VECTORS / "tampered.json").read_text())
Json = dict[str, Any]

# docs/wire-format.md, "The signed bytes": the fields in this order, after the domain.
DOC_FIELDS = ("topic", "ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "mesh_kind",
              "mesh_correlation_id", "mesh_reply_to", "mesh_deadline", "content-type",
              "mesh_principal", "mesh_principal_sig", "value")


def signing_keys() -> dict[str, SigningKey]:
    keys = {entry["key_id"]: SigningKey(entry["key_id"], ED25519,
                                        bytes.fromhex(entry["private_seed_hex"]))
            for entry in KEYS["ed25519"]}
    keys.update({entry["key_id"]: SigningKey(entry["key_id"], HMAC_SHA256,
                                             bytes.fromhex(entry["secret_hex"]))
                 for entry in KEYS["hmac-sha256"]})
    return keys


def keyring() -> KeyRing:
    """The published Ed25519 keyring plus the HMAC secrets (which never travel in it)."""
    ring = KeyRing.from_dict(json.loads((VECTORS / "keyring.json").read_text()))
    for entry in KEYS["hmac-sha256"]:
        ring.add(VerifyKey(entry["key_id"], HMAC_SHA256, entry["service"],
                           bytes.fromhex(entry["secret_hex"])))
    return ring


def record(vector: Json) -> tuple[list[tuple[str, bytes]], bytes]:
    return ([(name, text.encode()) for name, text in vector["headers"]],
            vector["value"].encode())


def doc_signed_bytes(topic: str, headers: dict[str, str], value: bytes) -> bytes:
    """The signed bytes as the document spells them: u64be length + bytes for the domain; per
    field u64be length + name, then 0x00 (absent) or 0x01 + u64be length + UTF-8 value."""
    def prefixed(data: bytes) -> bytes:
        return struct.pack(">Q", len(data)) + data

    out = prefixed(b"meshgate-sig-v4")
    for name in DOC_FIELDS:
        content = {"topic": topic.encode(), "value": value}.get(name)
        if content is None and name in headers:
            content = headers[name].encode()
        out += prefixed(name.encode()) + (b"\x00" if content is None else b"\x01" +
                                          prefixed(content))
    return out


def test_the_document_lists_the_signed_fields_in_this_order_and_every_header() -> None:
    doc = (VECTORS.parents[1] / "docs" / "wire-format.md").read_text()
    assert tuple(re.findall(r'\|\| FIELD\("([^"]+)"', doc)) == DOC_FIELDS
    assert f'LP("{DOMAIN.decode()}")' in doc
    names = {value for name, value in vars(envelope_module).items()
             if name.startswith("H_") and isinstance(value, str)}
    assert names <= set(re.findall(r"`([a-z_-]+)`", doc))


def test_the_vectors_use_the_current_domain() -> None:
    assert MESSAGES["signature_domain"] == TAMPERED["signature_domain"] == DOMAIN.decode()


def test_the_vectors_cover_every_kind_and_both_algorithms() -> None:
    kinds = {dict(vector["headers"])["mesh_kind"] for vector in MESSAGES["messages"]}
    algorithms = {vector["signed_by"]["algorithm"] for vector in MESSAGES["messages"]}
    assert kinds == {"request", "reply", "error", "event"}
    assert algorithms == {ED25519, HMAC_SHA256}
    assert any("principal_assertion" in vector for vector in MESSAGES["messages"])
    assert any("principal_assertion" not in vector for vector in MESSAGES["messages"])


@pytest.mark.parametrize("vector", MESSAGES["messages"], ids=lambda v: v["name"])
def test_message_vector(vector: Json) -> None:
    headers, value = record(vector)
    envelope = from_record(headers, value)
    expected = bytes.fromhex(vector["signed_bytes_hex"])
    assert value == bytes.fromhex(vector["value_hex"])
    # The library's encoder, and one written from the document alone, agree with the file.
    assert canonical_bytes(envelope, vector["topic"]) == expected
    assert doc_signed_bytes(vector["topic"], dict(vector["headers"]), value) == expected
    # The signature is recomputed from the key (Ed25519 is deterministic), and verifies.
    key = signing_keys()[vector["signed_by"]["key_id"]]
    signature = sign_bytes(expected, key)
    assert signature == decode_b64url(vector["signature_b64url"])
    assert parse_signature(envelope.signature).signature == signature
    assert verify(envelope, vector["topic"], keyring()).key_id == key.key_id


@pytest.mark.parametrize("vector", [v for v in MESSAGES["messages"] if "principal_assertion" in v],
                         ids=lambda v: v["name"])
def test_principal_assertion_vector(vector: Json) -> None:
    envelope = from_record(*record(vector))
    part = vector["principal_assertion"]
    assert envelope.principal is not None
    assert envelope.principal_assertion is not None
    assertion = parse_assertion(envelope.principal_assertion)
    expected = bytes.fromhex(part["signed_bytes_hex"])
    assert assertion_bytes(envelope.principal, part["expires_ms"]) == expected
    assert assertion.expires_ms == part["expires_ms"]
    assert sign_bytes(expected, signing_keys()[part["by"]["key_id"]]) == assertion.signature
    assert signature_valid(keyring().get(part["by"]["key_id"]), expected, assertion.signature)


@pytest.mark.parametrize("vector", [v for v in MESSAGES["messages"]
                                    if "replay_countersignature" in v], ids=lambda v: v["name"])
def test_replay_countersignature_vector(vector: Json) -> None:
    envelope = from_record(*record(vector))
    part = vector["replay_countersignature"]
    stamp = parse_stamp(envelope.extra)
    assert stamp is not None
    assert (stamp.replay_id, stamp.time_ms) == (part["replay_id"], part["replay_time_ms"])
    expected = bytes.fromhex(part["signed_bytes_hex"])
    assert countersign_bytes(envelope, vector["topic"], stamp.replay_id, stamp.time_ms) == expected
    header = parse_signature(stamp.signature)
    assert sign_bytes(expected, signing_keys()[part["by"]["key_id"]]) == header.signature
    assert signature_valid(keyring().get(header.key_id), expected, header.signature)


def test_a_respelled_replay_time_is_refused() -> None:
    """The countersignature covers the decimal text; ``0`` + it is the same integer."""
    [vector] = [v for v in MESSAGES["messages"] if "replay_countersignature" in v]
    envelope = from_record(*record(vector))
    respelled = tuple((name, b"0" + raw if name == "mesh_replay_time" else raw)
                      for name, raw in envelope.extra)
    with pytest.raises(BadReplayCountersignature, match="mesh_replay_time"):
        parse_stamp(respelled)


@pytest.mark.parametrize("vector", TAMPERED["records"], ids=lambda v: v["name"])
def test_tampered_vector(vector: Json) -> None:
    def outcome() -> str:
        try:
            verify(from_record(*record(vector)), vector["topic"], keyring())
        except MeshError as exc:
            return exc.code
        return "valid"

    assert outcome() == vector["expect"]


def test_tampered_vectors_include_refusals_and_acceptances() -> None:
    expectations = {vector["expect"] for vector in TAMPERED["records"]}
    assert "valid" in expectations
    assert {"bad_signature", "old_wire_format", "sender_mismatch"} <= expectations


def test_regenerating_gives_the_same_files() -> None:
    for name, text in generate.render().items():
        assert (VECTORS / name).read_text() == text, f"{name}: run python -m tests.vectors.generate"


PAIR = json.loads((VECTORS / "pair.json").read_text())


@pytest.mark.parametrize("vector", PAIR["vectors"], ids=lambda v: v["name"])
def test_pair_mac_vector(vector: Json) -> None:
    """docs/wire-format.md §3a: the receiver opens (or refuses) the record with its own key;
    a valid one's MAC is HMAC(pair key, signed bytes), the pair key both ends derive."""
    keys, ring = signing_keys(), keyring()
    receiver = keys[vector["receiver"]["key_id"]]
    envelope = from_record(*record(vector))
    try:
        verify(envelope, vector["topic"], ring, PairKeys([receiver]))
        outcome = "valid"
    except MeshError as exc:
        outcome = exc.code
    assert outcome == vector["expect"]
    header = parse_pair_header(envelope.signature or "")
    signed = doc_signed_bytes(vector["topic"], dict(vector["headers"]), vector["value"].encode())
    assert signed.hex() == vector["signed_bytes_hex"]
    if vector["expect"] == "valid":
        sender = ring.get(header.sender_key_id)
        at_receiver = pair_key(receiver, ring.get(receiver.key_id).material, sender.key_id,
                               sender.material, sending=False)
        own = keys[sender.key_id]
        at_sender = pair_key(own, sender.material, receiver.key_id,
                             ring.get(receiver.key_id).material, sending=True)
        assert at_receiver.hex() == at_sender.hex() == vector["pair_key_hex"]
        assert hmac.new(at_sender, signed, hashlib.sha256).digest() == header.mac


def test_pair_vectors_include_both_directions_and_refusals() -> None:
    expectations = [vector["expect"] for vector in PAIR["vectors"]]
    assert expectations.count("valid") == 2
    assert {"bad_signature", "pair_key_unknown"} <= set(expectations)


BATCH = json.loads((VECTORS / "batch.json").read_text())


def doc_root(leaf: bytes, index: int, count: int, path: bytes) -> bytes:
    """docs/wire-format.md §3b, folding the path as RFC 9162 §2.1.3.2 reads."""
    fn, sn, node = index, count - 1, leaf
    for offset in range(0, len(path), 32):
        sibling = path[offset:offset + 32]
        if fn % 2 == 1 or fn == sn:
            node = hashlib.sha256(b"\x01" + sibling + node).digest()
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn // 2, sn // 2
        else:
            node = hashlib.sha256(b"\x01" + node + sibling).digest()
        fn, sn = fn // 2, sn // 2
    assert sn == 0
    return node


@pytest.mark.parametrize("vector", BATCH["records"], ids=lambda v: v["name"])
def test_batch_vector(vector: Json) -> None:
    try:
        verify(from_record(*record(vector)), vector["topic"], keyring())
        outcome = "valid"
    except MeshError as exc:
        outcome = exc.code
    assert outcome == vector["expect"]


def test_a_batch_vector_is_rebuilt_from_the_document() -> None:
    """Each valid message's leaf, its path's root, the root's signed bytes and the one
    signature, from the document alone (the library's tree is not used)."""
    batch, ring = BATCH["batch"], keyring()
    valid = [v for v in BATCH["records"] if v["expect"] == "valid"]
    assert len(valid) == batch["count"] == 3
    domain = BATCH["batch_domain"].encode()
    for index, vector in enumerate(valid):
        headers = dict(vector["headers"])
        leaf = hashlib.sha256(b"\x00" + doc_signed_bytes(
            vector["topic"], headers, vector["value"].encode())).digest()
        assert leaf.hex() == vector["leaf_hex"]
        algorithm, key_id, position, signature, path = headers["mesh_sig"].split(":")
        assert (algorithm, key_id, position) == ("ed25519-batch", batch["signed_by"]["key_id"],
                                                 f"{index}.3")
        assert decode_b64url(path).hex() == vector["path_hex"]
        root = doc_root(leaf, index, 3, decode_b64url(path))
        assert root.hex() == batch["root_hex"]
        signed = struct.pack(">Q", len(domain)) + domain + struct.pack(">Q", 3) + root
        assert signed.hex() == batch["root_message_hex"]
        assert signature == batch["signature_b64url"]
        assert signature_valid(ring.get(key_id), signed, decode_b64url(signature))


def test_batch_vectors_include_refusals_of_each_kind() -> None:
    expectations = {vector["expect"] for vector in BATCH["records"]}
    assert {"valid", "bad_signature", "malformed_signature", "sender_mismatch",
            "unknown_key_id"} <= expectations
