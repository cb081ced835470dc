"""The principal through real workers and clients (in-process mesh, closed access map): an
edge's principal reaches a nested call's handler with the edge's assertion; a service that is
not an edge can neither name a principal through its client nor slip one past a receiver."""

from __future__ import annotations

import pytest

from bus.context import caller_principal, mesh_client
from bus.envelope import Envelope, ReplyTo, new_request, now_ms, to_headers
from bus.errors import RemoteError
from bus.security.access import AccessPolicy
from bus.security.principals import PrincipalNotAllowed, assert_principal
from bus.security.quarantine import H_REASON
from bus.security.signing import sign
from bus.service import Payload, Service
from bus.testing import MeshTestKit

ALICE = '{"method":"jwt","sub":"alice"}'
ADMIN = '{"method":"jwt","sub":"admin"}'
ACCESS = AccessPolicy.from_dict(
    {"gateway": ["front.requests"], "front": ["back.requests", "mesh.replies"],
     "back": ["mesh.replies"], "rogue": ["back.requests"]},
    edges=["gateway"],
)


def front_and_back() -> tuple[Service, Service]:
    front, back = Service("front"), Service("back")

    @front.operation("front.ask")
    async def ask(payload: Payload, message: Envelope) -> Payload:
        return await mesh_client().request("back.who", {}, timeout_s=5)

    @front.operation("front.impersonate")
    async def impersonate(payload: Payload, message: Envelope) -> Payload:
        return await mesh_client().request("back.who", {}, timeout_s=5, principal=ADMIN)

    @back.operation("back.who")
    async def who(payload: Payload, message: Envelope) -> Payload:
        return {"principal": caller_principal(), "from": message.source}

    return front, back


async def test_a_nested_call_carries_the_edges_principal_and_assertion() -> None:
    async with MeshTestKit(front_and_back(), access=ACCESS) as kit:
        answer = await kit.client("gateway").request("front.ask", {}, principal=ALICE)
        assert answer == {"principal": {"method": "jwt", "sub": "alice"}, "from": "front"}
        [outer] = kit.envelopes("front.requests")
        [nested] = kit.envelopes("back.requests")
        assert kit.quarantined() == []
    assert outer.principal_assertion is not None
    assert nested.principal == outer.principal == ALICE
    assert nested.principal_assertion == outer.principal_assertion  # forwarded unchanged


async def test_a_handler_naming_another_principal_is_refused_by_its_own_client() -> None:
    async with MeshTestKit(front_and_back(), access=ACCESS) as kit:
        with pytest.raises(RemoteError) as raised:
            await kit.client("gateway").request("front.impersonate", {}, principal=ALICE)
        assert raised.value.remote_code == "principal_not_allowed"
        assert kit.envelopes("back.requests") == []  # nothing was sent
        with pytest.raises(PrincipalNotAllowed):
            await kit.client("rogue").request("back.who", {}, principal=ADMIN)


async def test_a_spoofed_principal_is_quarantined_by_the_receiver() -> None:
    async with MeshTestKit(front_and_back(), access=ACCESS) as kit:
        rogue, gateway = kit.identity("rogue").signing_key, kit.identity("gateway").signing_key
        assert rogue is not None
        assert gateway is not None
        deadline = now_ms() + 5_000

        def spoof(assertion: str | None) -> Envelope:
            return new_request(source="rogue", operation="back.who", value=b"{}",
                               reply_to=ReplyTo("mesh.replies", 0), deadline_ms=deadline,
                               principal=ADMIN, principal_assertion=assertion)

        spoofs = [spoof(None), spoof(assert_principal(ADMIN, deadline, rogue)),
                  spoof(assert_principal(ALICE, deadline, gateway))]
        for envelope in spoofs:
            sealed = sign(envelope, "back.requests", rogue)
            await kit.transport.send("back.requests", sealed.value, headers=to_headers(sealed))
        parked = await kit.wait_for_records("mesh.quarantine", len(spoofs))
        reasons = [dict(record.headers)[H_REASON].decode() for record in parked]
        assert reasons == ["principal_not_allowed", "principal_assertion_not_edge",
                           "bad_principal_assertion"]
        assert kit.worker("back").handled == 0
