"""bench.gateway_overhead in a tiny run: every request answered correctly, one JSON line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import gateway_overhead

KEYS = ("bare_us", "gateway_us", "bare_cold_ms", "gateway_cold_ms")


def test_tiny_run_answers_every_request_and_ends_with_the_json_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "gateway_overhead.json"
    gateway_overhead.main(["--requests", "20", "--warmup", "5", "--rounds", "2", "--cold", "1",
                           "--cold-warmup", "0", "--no-importtime", "--output", str(output)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert isinstance(result, dict)
    for key in KEYS:
        assert isinstance(result[key], float)
        assert result[key] > 0
    sides = ("bare", "gateway", "edge", "signed", "pair", "jwt", "jwt_edge", "bus")
    assert result["ok"] == {side: 20 for side in sides}
    assert result["sent"] == {side: 20 for side in sides}
    # gateway, jwt and bus reached the orders worker; edge and jwt_edge the instant mesh
    # client; signed and pair each their own worker, which opened each request and kept a
    # record of each call
    assert result["handled"] == {"orders_worker": 3 * 25, "instant_mesh": 2 * 25,
                                 "signed_worker": 25, "pair_worker": 25}
    assert result["records"] == {"signed": 25, "pair": 25}
    # every request and its reply sealed as each side says, none unsealed
    assert result["seals"] == {"signed": {"ed25519": 50}, "pair": {"pair-hmac-sha256": 50}}
    assert set(result["cold_phases_ms"]["gateway"]) == {
        "interpreter", "imports", "standins", "build", "first_call"}
    assert json.loads(output.read_text()) == result


def test_a_wrong_answer_voids_the_run() -> None:
    side = gateway_overhead.Side("bare", lambda: {"statusCode": 500, "body": "{}"},
                                 gateway_overhead.check_bare)
    with pytest.raises(AssertionError, match="bare answered 500"):
        side.run(1)
    assert side.ok == 0
