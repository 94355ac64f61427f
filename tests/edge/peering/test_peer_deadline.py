"""PeerGate under X-Edge-Deadline: the deadline reaches the fetches made for the request, and a
request whose head is not ready by then is answered 504 (the asker waits a margin longer).

The handler and writer are fakes (the gate's contract is only `handle` and the writer's
`started` / `send_simple`); the waits are real, on the event loop's clock.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from multidict import CIMultiDict

from cluster.peer import DEADLINE_HEADER, SECRET_HEADER
from edge.peering.routing import PeerGate
from edge.server.request import Request
from edge.server.writer import Writer
from origin.deadline import head_deadline

pytestmark = pytest.mark.timeout(10)

SECRET = "s3cret"


class GatedHandler:
    """Records the deadline it saw; sends a head once `answer` is set."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.answer = asyncio.Event()
        self.cancelled = False

    async def handle(self, request: Request, writer: Writer, *, from_peer: bool = False) -> None:
        self.deadline = head_deadline()
        try:
            await self.answer.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        writer.start(200, [], 0)
        writer.finish()

    def try_fast(self, *args: Any) -> None:
        return None


class FakeWriter:
    def __init__(self) -> None:
        self.started = False
        self.sent: list[int] = []

    async def send_simple(self, status: int, reason: str, **_: Any) -> None:
        self.started = True
        self.sent.append(status)

    def start(self, status: int, headers: list[tuple[str, str]], length: int | None) -> None:
        self.started = True
        self.sent.append(status)

    def finish(self) -> None:
        pass


def request(deadline: str | None) -> Request:
    fields = [("Host", "a.test"), (SECRET_HEADER, SECRET)]
    if deadline is not None:
        fields.append((DEADLINE_HEADER, deadline))
    return Request(
        method="GET",
        target="/x",
        version="1.1",
        headers=CIMultiDict(fields),
        body=None,
        keep_alive=True,
        peer="127.0.0.3",
    )


async def test_gate_answers_504_at_deadline_when_no_head_is_ready() -> None:
    handler, writer = GatedHandler(), FakeWriter()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await PeerGate(handler, SECRET).handle(request("0.3"), writer)  # type: ignore[arg-type]
    assert writer.sent == [504] and handler.cancelled
    assert 0.3 <= loop.time() - started < 2.0
    assert handler.deadline is not None and abs(handler.deadline - (started + 0.3)) < 0.1


async def test_gate_lets_answer_through_when_head_is_ready_before_deadline() -> None:
    handler, writer = GatedHandler(), FakeWriter()
    handler.answer.set()
    await PeerGate(handler, SECRET).handle(request("5"), writer)  # type: ignore[arg-type]
    assert writer.sent == [200] and not handler.cancelled


@pytest.mark.parametrize("value", [None, "soon", "-1"])
async def test_gate_serves_without_deadline_when_header_absent_or_malformed(value: str | None) -> None:
    handler, writer = GatedHandler(), FakeWriter()
    handler.answer.set()
    await PeerGate(handler, SECRET).handle(request(value), writer)  # type: ignore[arg-type]
    assert writer.sent == [200] and handler.deadline is None
