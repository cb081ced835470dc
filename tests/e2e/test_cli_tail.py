"""``meshgate tail`` against the running stack: real HTTP calls through the endpoint show up
as verified orders.create calls from the gateway with a latency; a request signed with the
wrong key, published by the test, shows up as FORGED; ``--since`` finds past calls.

Other tests may run against the same stack at the same time, so each test follows only its
own trace (``--trace``, sent as the W3C ``traceparent`` the edge carries into the mesh)."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import secrets
import subprocess
import threading
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from bus.config import BusSettings
from bus.envelope import ReplyTo, new_request, now_ms, to_headers
from bus.security.keys import KeyRing, SigningKey, generate_ed25519
from bus.security.signing import sign
from bus.transport.kafka import KafkaTransport
from infra.settings import Settings
from tests.support import MESHGATE, run

pytestmark = pytest.mark.e2e
ORDER = {"customer": "tail-e2e", "lines": [{"sku": "a", "quantity": 2, "unit_price": "1.25"}]}


def traceparent() -> tuple[str, str]:
    trace = secrets.token_hex(16)
    return trace, f"00-{trace}-{secrets.token_hex(8)}-01"


class Tail:
    """``meshgate tail`` as a subprocess; ``ready`` waits for its ready line on stderr."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([str(MESHGATE), "tail", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        self.errors: queue.Queue[str] = queue.Queue()
        assert self.proc.stderr is not None
        threading.Thread(target=self._pump, args=(self.proc.stderr,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.errors.put(line)

    def ready(self, timeout_s: float = 30) -> str:
        try:
            line = self.errors.get(timeout=timeout_s)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError("meshgate tail printed no ready line") from None
        assert line.startswith("tail: following "), line
        return line

    def finish(self, timeout_s: float = 60) -> tuple[int, str, str]:
        try:
            out, _ = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            raise AssertionError(f"meshgate tail did not finish: {out}") from None
        rest = []
        while not self.errors.empty():
            rest.append(self.errors.get())
        return self.proc.returncode, out, "".join(rest)


def post_order(endpoint: str, header: str) -> dict[str, Any]:
    response = httpx.post(f"{endpoint}/v1/orders", json=ORDER,
                          headers={"traceparent": header}, timeout=30)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_http_calls_show_as_verified_calls_with_latency(endpoint: str) -> None:
    trace, header = traceparent()
    tail = Tail("--count", "2", "--json", "--trace", trace)
    ready = tail.ready()
    assert "orders.requests" in ready
    assert "mesh.replies" in ready
    for _ in range(2):
        post_order(endpoint, header)
    code, out, err = tail.finish()
    assert code == 0, err
    calls = [json.loads(line) for line in out.splitlines()]
    assert len(calls) == 2, out
    for call in calls:
        assert call["operation"] == "orders.create"
        assert (call["caller"], call["callee"]) == ("gateway", "orders")
        assert call["signature"] == "verified"
        assert call["result"] == "ok"
        assert call["trace_id"] == trace
        assert isinstance(call["latency_ms"], int)
        assert 0 <= call["latency_ms"] < 30_000
        assert call["principal"] is None  # auth: none
    assert calls[0]["correlation_id"] != calls[1]["correlation_id"]


def test_text_lines_and_the_operation_and_service_filters(endpoint: str) -> None:
    trace, header = traceparent()
    tail = Tail("--count", "1", "--operation", "orders.*", "--service", "orders",
                "--trace", trace)
    tail.ready()
    post_order(endpoint, header)
    code, out, err = tail.finish()
    assert code == 0, err
    head, line = out.splitlines()
    assert head.split()[:3] == ["TIME", "(UTC)", "OPERATION"]
    assert "orders.create" in line
    assert "gateway -> orders" in line
    assert " ms " in line
    assert " ok " in line
    assert "verified" in line


def test_a_request_signed_with_the_wrong_key_shows_as_forged(settings: Settings,
                                                             endpoint: str) -> None:
    keyring = KeyRing.from_dict(json.loads(
        (settings.local_dir / "identity" / "keyring.json").read_text()))
    [gateway_key] = keyring.for_service("gateway")[:1]
    # The gateway's key id, someone else's private key.
    impostor = SigningKey(gateway_key.key_id, "ed25519", generate_ed25519("x")[0].secret)
    trace, header = traceparent()
    forged = sign(new_request(
        source="gateway", operation="orders.create", value=json.dumps(ORDER).encode(),
        reply_to=ReplyTo("mesh.replies", 0), deadline_ms=now_ms() + 5_000,
        traceparent=header), "orders.requests", impostor)
    tail = Tail("--count", "1", "--json", "--trace", trace)
    tail.ready()

    async def publish() -> None:
        transport = KafkaTransport(BusSettings.resolve(
            bootstrap_servers=settings.kafka_bootstrap, service_name="e2e", insecure=True))
        try:
            await transport.send("orders.requests", forged.value, headers=to_headers(forged),
                                 key=forged.correlation_id.encode() if forged.correlation_id
                                 else None)
        finally:
            await transport.close()

    asyncio.run(publish())
    code, out, err = tail.finish()
    assert code == 0, err
    [call] = [json.loads(line) for line in out.splitlines()]
    assert call["signature"] == "FORGED"
    assert call["detail"] == "bad_signature"
    assert call["result"] == "rejected"  # the orders worker parks it: no reply comes
    assert (call["operation"], call["caller"], call["callee"]) == ("orders.create", "gateway",
                                                                   "orders")


def test_since_reads_calls_made_before_tail_started(endpoint: str) -> None:
    trace, header = traceparent()
    post_order(endpoint, header)
    result = run([str(MESHGATE), "tail", "--since", "60", "--count", "1", "--json",
                  "--trace", trace], timeout_s=60)
    assert result.returncode == 0, result.stderr
    [call] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (call["operation"], call["result"], call["signature"]) == ("orders.create", "ok",
                                                                      "verified")


def test_refusals_are_one_line(tmp_path: Path) -> None:
    bad = run([str(MESHGATE), "tail", "--count", "0"])
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "meshgate: error: tail: --count 0 is not a positive number; pass --count 1 or more"]
    missing = run([str(MESHGATE), "tail", "--count", "1"],
                  env={"MESHGATE_LOCAL_DIR": str(tmp_path)})
    assert missing.returncode == 1
    [line] = missing.stderr.strip().splitlines()
    assert "no keyring at" in line
    assert "run 'meshgate up'" in line
