"""edge.server.lifecycle: readiness answers, the announce period, the gate at start and drain."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from edge.config.server import ServerConfig
from edge.server.lifecycle import Lifecycle, NodeState, PublicGate, announce_s, ready_answer
from edge.server.request import Request

pytestmark = pytest.mark.timeout(10)


class TestReadyAnswer:
    def test_ready_is_200_and_every_other_state_is_503(self) -> None:
        assert ready_answer(NodeState.READY)[0] == 200
        assert ready_answer(NodeState.STARTING) == (503, ready_answer(NodeState.STARTING)[1])
        assert ready_answer(NodeState.DRAINING)[0] == 503
        assert "starting" in ready_answer(NodeState.STARTING)[1]
        assert "draining" in ready_answer(NodeState.DRAINING)[1]


class TestAnnounce:
    def test_announce_is_the_peers_leave_time_when_not_configured(self) -> None:
        assert announce_s(ServerConfig(), 2.0) == 2.0

    def test_announce_is_zero_without_peers_when_not_configured(self) -> None:
        assert announce_s(ServerConfig(), None) == 0.0

    def test_configured_announce_wins_over_the_leave_time(self) -> None:
        assert announce_s(ServerConfig(drain_announce_s=0.5), 2.0) == 0.5

    def test_announce_never_takes_more_than_half_the_drain_timeout(self) -> None:
        cfg = replace(ServerConfig(drain_timeout_s=4.0), drain_announce_s=10.0)
        assert announce_s(cfg, None) == 2.0
        assert announce_s(ServerConfig(drain_timeout_s=4.0), 60.0) == 2.0


class TestLifecycle:
    async def test_wait_started_returns_once_ready_when_starting(self) -> None:
        life = Lifecycle()
        waiter = asyncio.ensure_future(life.wait_started(5.0))
        await asyncio.sleep(0)
        assert not waiter.done()
        life.ready()
        assert await waiter is True and life.state is NodeState.READY

    async def test_wait_started_gives_up_at_its_timeout_when_never_ready(self) -> None:
        assert await Lifecycle().wait_started(0.01) is False

    def test_drain_is_reported_once_and_ready_cannot_undo_it(self) -> None:
        life = Lifecycle()
        assert life.drain() is True and life.drain() is False
        life.ready()
        assert life.state is NodeState.DRAINING and not life.serving_peers


class _Handler:
    def __init__(self) -> None:
        self.handled: list[str] = []

    def try_fast(self, head_only: bool, host: bytes, target: bytes, raw: list[tuple[bytes, bytes]], peer: str) -> bytes:
        return b"fast"

    async def handle(self, request: Request, writer: object) -> None:
        self.handled.append(request.target)


class TestGate:
    def test_fast_path_is_the_handlers_own_method_when_ready_and_declined_when_draining(self) -> None:
        life = Lifecycle()
        gate = PublicGate(life, ServerConfig())
        assert gate.try_fast(False, b"h", b"/", [], "") is None  # no handler yet
        handler = _Handler()
        gate.serve(handler)
        assert gate.try_fast == handler.try_fast  # bound as is: a hit pays nothing for the gate
        gate.draining()
        assert gate.try_fast(False, b"h", b"/", [], "") is None
