"""Membership: health thresholds, the ring it swaps in, the probe loop, and http_probe."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cluster.config import ClusterConfig, PeerConfig
from cluster.members import HEALTH_PATH, Membership, PeerStatus, http_probe
from cluster.peer import SECRET_HEADER
from cluster.ring import Ring
from tests.fakes import FakeClock
from tests.origin.servers import closed_port as free_port

pytestmark = pytest.mark.timeout(15)

SECRET = "members-secret"


def node(name: str, region: str = "r1", port: int = 9080, weight: float = 1.0) -> PeerConfig:
    return PeerConfig(
        name=name, region=region, internal_url=f"http://127.0.0.1:{port}", weight=weight
    )


NODES = [node("edge1"), node("edge2"), node("edge3", weight=2.0), node("far1", region="r2")]


class FakeProbe:
    """A probe whose answer per peer the test sets; counts calls; `hang` peers never answer."""

    def __init__(self) -> None:
        self.up: dict[str, bool] = {}
        self.hang: set[str] = set()
        self.raise_for: set[str] = set()
        self.calls: dict[str, int] = {}
        self.never = asyncio.Event()  # never set: what a hanging probe waits on
        self.answered: dict[str, asyncio.Event] = {}  # per peer: set once a probe answered

    async def __call__(self, peer: PeerConfig) -> bool:
        self.calls[peer.name] = self.calls.get(peer.name, 0) + 1
        if peer.name in self.raise_for:
            raise ConnectionResetError("probe broke")
        if peer.name in self.hang:
            await self.never.wait()
        self.answered.setdefault(peer.name, asyncio.Event()).set()
        return self.up.get(peer.name, True)


class RingWatcher:
    """The on_change callback: records each ring and wakes waiters."""

    def __init__(self) -> None:
        self.rings: list[Ring] = []
        self._changed = asyncio.Event()

    def __call__(self, ring: Ring) -> None:
        self.rings.append(ring)
        self._changed.set()

    async def wait_until(self, predicate: Callable[[Ring], bool]) -> Ring:
        """Waits for a ring change satisfying `predicate`."""
        while not (self.rings and predicate(self.rings[-1])):
            self._changed.clear()
            await self._changed.wait()
        return self.rings[-1]


def membership(
    probe: FakeProbe,
    watcher: RingWatcher,
    clock: FakeClock | None = None,
    **config: Any,
) -> Membership:
    return Membership(
        "edge1",
        NODES,
        ClusterConfig(secret=SECRET, **config),
        probe,
        watcher,
        clock=clock or FakeClock(),
    )


class TestRing:
    def test_ring_holds_self_and_same_region_peers_when_all_healthy(self) -> None:
        members = membership(FakeProbe(), RingWatcher())
        assert members.ring.nodes == ("edge1", "edge2", "edge3")
        assert members.ring.weights["edge3"] == 2.0
        assert members.region == "r1"

    def test_membership_rejects_peers_when_self_is_not_listed(self) -> None:
        with pytest.raises(ValueError, match="edge9"):
            Membership("edge9", NODES, ClusterConfig(secret=SECRET), FakeProbe(), RingWatcher())


class TestHealth:
    def test_peer_leaves_ring_when_fail_after_probes_fail_in_a_row(self) -> None:
        watcher = RingWatcher()
        members = membership(FakeProbe(), watcher)
        members.record("edge2", False)
        members.record("edge2", False)
        assert "edge2" in members.ring and watcher.rings == []
        members.record("edge2", False)
        assert members.ring.nodes == ("edge1", "edge3")
        assert watcher.rings == [members.ring]
        assert not members.is_healthy("edge2")

    def test_down_event_is_set_when_peer_leaves_and_fresh_when_it_rejoins(self) -> None:
        members = membership(FakeProbe(), RingWatcher())
        waiting_on = members.down_event("edge2")
        for _ in range(3):
            members.record("edge2", False)
        assert waiting_on.is_set() and members.down_event("edge2").is_set()
        for _ in range(2):
            members.record("edge2", True)
        assert not members.down_event("edge2").is_set()
        assert not members.down_event("edge1").is_set()  # this node is never down

    def test_failure_count_resets_when_a_probe_succeeds_in_between(self) -> None:
        members = membership(FakeProbe(), RingWatcher())
        for ok in (False, False, True, False, False):
            members.record("edge2", ok)
        assert "edge2" in members.ring
        assert members.status()[0] == PeerStatus(
            name="edge2", region="r1", healthy=True, consecutive_failures=2, changed_at=1000.0
        )

    def test_peer_rejoins_when_recover_after_probes_succeed(self) -> None:
        clock, watcher = FakeClock(), RingWatcher()
        members = membership(FakeProbe(), watcher, clock)
        for _ in range(3):
            members.record("edge2", False)
        clock.advance(5)
        members.record("edge2", True)
        assert "edge2" not in members.ring
        members.record("edge2", True)
        assert members.ring.nodes == ("edge1", "edge2", "edge3")
        assert [r.nodes for r in watcher.rings] == [("edge1", "edge3"), ("edge1", "edge2", "edge3")]
        assert members.status()[0].changed_at == 1005.0

    def test_report_failure_counts_as_failed_probe_when_peer_fetch_fails(self) -> None:
        members = membership(FakeProbe(), RingWatcher())
        members.record("edge2", False)
        members.report_failure("edge2")
        members.report_failure("edge2")
        assert "edge2" not in members.ring

    def test_other_region_peer_is_tracked_but_ring_unchanged_when_it_fails(self) -> None:
        watcher = RingWatcher()
        members = membership(FakeProbe(), watcher)
        for _ in range(3):
            members.record("far1", False)
        assert watcher.rings == []
        assert members.ring.nodes == ("edge1", "edge2", "edge3")
        assert [(s.name, s.region, s.healthy) for s in members.status()] == [
            ("edge2", "r1", True),
            ("edge3", "r1", True),
            ("far1", "r2", False),
        ]

    def test_self_stays_in_ring_when_reported_failed(self) -> None:
        members = membership(FakeProbe(), RingWatcher())
        for _ in range(5):
            members.report_failure("edge1")
        assert "edge1" in members.ring and members.is_healthy("edge1")

    def test_new_ring_is_in_place_when_on_change_raises(self) -> None:
        def broken(ring: Ring) -> None:
            raise RuntimeError("listener bug")

        members = Membership(
            "edge1", NODES, ClusterConfig(secret=SECRET, fail_after=1), FakeProbe(), broken
        )
        members.report_failure("edge2")
        assert "edge2" not in members.ring


class TestProbe:
    async def test_probe_once_counts_failure_when_probe_raises(self) -> None:
        probe = FakeProbe()
        probe.raise_for.add("edge2")
        members = membership(probe, RingWatcher(), fail_after=1)
        assert await members.probe_once("edge2") is False
        assert "edge2" not in members.ring

    async def test_probe_once_counts_failure_when_probe_outlasts_timeout(self) -> None:
        probe = FakeProbe()
        probe.hang.add("edge2")
        members = membership(probe, RingWatcher(), fail_after=1, probe_timeout_s=0.05)
        assert await members.probe_once("edge2") is False
        assert "edge2" not in members.ring

    async def test_probe_all_probes_every_peer_once_when_called(self) -> None:
        probe = FakeProbe()
        probe.up["edge3"] = False
        members = membership(probe, RingWatcher(), fail_after=1)
        await members.probe_all()
        assert probe.calls == {"edge2": 1, "edge3": 1, "far1": 1}
        assert members.ring.nodes == ("edge1", "edge2")


class TestRunLoop:
    async def test_run_removes_and_readds_peer_when_probes_flip(self) -> None:
        probe, watcher = FakeProbe(), RingWatcher()
        members = membership(probe, watcher, probe_interval_s=0.02, probe_timeout_s=0.02)
        members.start()
        try:
            async with asyncio.timeout(5):
                probe.up["edge3"] = False
                await watcher.wait_until(lambda ring: "edge3" not in ring)
                probe.up["edge3"] = True
                await watcher.wait_until(lambda ring: "edge3" in ring)
        finally:
            await members.stop()
        assert [r.nodes for r in watcher.rings] == [("edge1", "edge2"), ("edge1", "edge2", "edge3")]
        await members.stop()  # a second stop is harmless

    async def test_hung_peer_leaves_within_configured_bound_when_defaults_used(self) -> None:
        probe, watcher = FakeProbe(), RingWatcher()
        members = Membership("edge1", NODES, ClusterConfig(secret=SECRET), probe, watcher)
        bound = ClusterConfig(secret=SECRET).leave_within_s
        assert bound <= 2.0
        loop = asyncio.get_running_loop()
        members.start()
        try:
            async with asyncio.timeout(bound + 3):
                await probe.answered.setdefault("edge2", asyncio.Event()).wait()
                probe.hang.add("edge2")  # the worst case: it dies right after a good probe
                died = loop.time()
                await watcher.wait_until(lambda ring: "edge2" not in ring)
                elapsed = loop.time() - died
        finally:
            await members.stop()
        assert elapsed <= bound + 0.3  # scheduling slack; one more probe would add 0.5 s


class HealthServer:
    """A node's internal health endpoint on 127.0.0.1:port: 200 with the secret, else 403."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.runner: web.AppRunner | None = None

    async def health(self, request: web.Request) -> web.Response:
        ok = request.headers.get(SECRET_HEADER) == SECRET
        return web.Response(status=200 if ok else 403, text="ok" if ok else "forbidden")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(HEALTH_PATH, self.health)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()


class TestHttpProbe:
    async def test_http_probe_is_true_when_health_answers_200_to_secret(
        self, session: aiohttp.ClientSession
    ) -> None:
        server = HealthServer(free_port())
        await server.start()
        try:
            peer = node("edge2", port=server.port)
            assert await http_probe(session, SECRET)(peer) is True
            assert await http_probe(session, "wrong")(peer) is False
        finally:
            await server.stop()

    async def test_http_probe_is_false_when_port_refuses(
        self, session: aiohttp.ClientSession
    ) -> None:
        assert await http_probe(session, SECRET)(node("edge2", port=free_port())) is False

    async def test_peer_leaves_and_rejoins_when_real_server_stops_and_restarts(
        self, session: aiohttp.ClientSession
    ) -> None:
        server = HealthServer(free_port())
        nodes = [node("edge1", port=free_port()), node("edge2", port=server.port)]
        watcher = RingWatcher()
        config = ClusterConfig(secret=SECRET, probe_interval_s=0.05, probe_timeout_s=0.5)
        members = Membership("edge1", nodes, config, http_probe(session, SECRET), watcher)
        await server.start()
        members.start()
        try:
            async with asyncio.timeout(10):
                assert await members.probe_once("edge2") is True
                await server.stop()
                await watcher.wait_until(lambda ring: "edge2" not in ring)
                await server.start()
                await watcher.wait_until(lambda ring: "edge2" in ring)
        finally:
            await members.stop()
            await server.stop()
        assert [r.nodes for r in watcher.rings] == [("edge1",), ("edge1", "edge2")]
