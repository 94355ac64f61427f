"""Unit tests for cluster.propagate: fan-out acks, catch-up by cursor, the purge-lag watchdog (issue 5).

Three hubs talk through an in-process transport that can cut a node off; no sockets, no sleeps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from cluster.config import PeerConfig
from cluster.propagate import PurgeHub
from cluster.purge import Purge, PurgeKind, PurgeLog
from cluster.purge_wire import Page, PropagationError
from tests.fakes import FakeClock

PEERS = tuple(
    PeerConfig(
        name=f"n{i}", region="r1" if i < 3 else "r2", internal_url=f"http://127.0.0.{i + 1}:9000"
    )
    for i in (1, 2, 3)
)


class Recorder:
    """A PurgeTarget and Trust that remembers what it was told."""

    def __init__(self) -> None:
        self.applied: list[tuple[int, str]] = []
        self.trusted_until = 0.0

    async def apply(self, purge: Purge, gen: int) -> int:
        self.applied.append((gen, purge.id))
        return 0

    def set_trusted_until(self, deadline: float) -> None:
        self.trusted_until = deadline


class Network:
    """Delivers sends and fetches to the named hub unless either end is cut off."""

    def __init__(self) -> None:
        self.hubs: dict[str, PurgeHub] = {}
        self.cut: set[str] = set()

    def transport(self, me: str) -> Transport:
        return Transport(self, me)


class Transport:
    def __init__(self, net: Network, me: str) -> None:
        self._net = net
        self._me = me

    def _reach(self, peer: PeerConfig) -> PurgeHub:
        hub = self._net.hubs.get(peer.name)  # absent: that node is down
        if hub is None or self._me in self._net.cut or peer.name in self._net.cut:
            raise PropagationError(f"peer {peer.name}: connection refused")
        return hub

    async def send(self, peer: PeerConfig, purge: Purge, timeout_s: float) -> None:
        await self._reach(peer).receive(purge)

    async def fetch(self, peer: PeerConfig, cursor: Mapping[str, int], timeout_s: float) -> Page:
        purges, more = self._reach(peer).missing(cursor, limit=2, asker=self._me)
        return Page(peer.name, purges, more)


async def _cluster(clock: FakeClock) -> tuple[Network, dict[str, Recorder]]:
    net = Network()
    recorders = {}
    for peer in PEERS:
        rec = Recorder()
        recorders[peer.name] = rec
        net.hubs[peer.name] = PurgeHub(
            await PurgeLog.open(None, peer.name),
            rec,
            rec,
            self_name=peer.name,
            peers=PEERS,
            transport=net.transport(peer.name),
            sync_interval_s=1.0,
            max_lag_s=10.0,
            clock=clock,
        )
    return net, recorders


class TestFanOut:
    async def test_submit_is_acked_by_every_node_when_all_are_reachable(self) -> None:
        net, recs = await _cluster(FakeClock(100.0))
        result = await net.hubs["n1"].submit(PurgeKind.TAG, "t", "a.test", False, timeout_s=1.0)
        assert result.acked == ("n1", "n2", "n3") and result.pending == ()
        assert all(rec.applied == [(1, "n1:1")] for rec in recs.values())

    async def test_submit_lists_pending_node_when_it_is_cut_off(self) -> None:
        net, recs = await _cluster(FakeClock(100.0))
        net.cut.add("n3")
        result = await net.hubs["n1"].submit(PurgeKind.ALL, "a.test", "a.test", True, timeout_s=1.0)
        assert result.acked == ("n1", "n2") and result.pending == ("n3",)
        assert recs["n3"].applied == []

    async def test_receive_applies_once_when_same_purge_arrives_twice(self) -> None:
        net, recs = await _cluster(FakeClock(100.0))
        result = await net.hubs["n1"].submit(PurgeKind.TAG, "t", "a.test", False, timeout_s=1.0)
        assert await net.hubs["n2"].receive(result.purge) is None
        assert recs["n2"].applied == [(1, "n1:1")]


class TestCatchUp:
    async def test_sync_round_brings_missed_purges_in_pages_when_node_was_cut_off(self) -> None:
        net, recs = await _cluster(FakeClock(100.0))
        net.cut.add("n3")
        for i in range(5):
            await net.hubs["n1" if i % 2 else "n2"].submit(
                PurgeKind.URL, f"http://a.test/{i}", "a.test", False, timeout_s=1.0
            )
        assert await net.hubs["n3"].sync_round() == 0
        net.cut.clear()
        assert await net.hubs["n3"].sync_round() == 2
        assert len(recs["n3"].applied) == 5 and [g for g, _ in recs["n3"].applied] == [
            1,
            2,
            3,
            4,
            5,
        ]
        assert net.hubs["n3"].log.cursor() == net.hubs["n1"].log.cursor() == {"n1": 2, "n2": 3}

    async def test_memory_journal_accepts_purges_only_after_first_sync(self) -> None:
        net, _ = await _cluster(FakeClock(100.0))
        assert not net.hubs["n1"].accepting
        await net.hubs["n1"].sync_round()
        assert net.hubs["n1"].accepting


class TestHolders:
    """Issue 16: which nodes hold a purge, for `edgecache purge --wait`."""

    async def test_cut_off_node_counts_as_holding_once_it_asked_with_a_cursor_past_the_purge(self) -> None:
        net, _ = await _cluster(FakeClock(100.0))
        for hub in net.hubs.values():
            await hub.sync_round()
        net.cut.add("n3")
        result = await net.hubs["n1"].submit(PurgeKind.URL, "http://a.test/x", "a.test", False, timeout_s=1.0)
        assert net.hubs["n1"].holders("n1", result.purge.seq) == (("n1", "n2"), ("n3",))
        net.cut.clear()
        await net.hubs["n3"].sync_round()  # gets the purge; its cursor then was still before it
        assert net.hubs["n1"].holders("n1", result.purge.seq) == (("n1", "n2"), ("n3",))
        await net.hubs["n3"].sync_round()  # asks again with the purge in its cursor
        assert net.hubs["n1"].holders("n1", result.purge.seq) == (("n1", "n2", "n3"), ())

    async def test_unknown_purge_is_held_by_nobody_but_its_maker_when_asked(self) -> None:
        net, _ = await _cluster(FakeClock(100.0))
        assert net.hubs["n1"].holders("n2", 7) == (("n2",), ("n1", "n3"))


class TestWatchdog:
    async def test_trust_ends_after_max_lag_and_returns_after_a_sync(self) -> None:
        clock = FakeClock(100.0)
        net, recs = await _cluster(clock)
        hub = net.hubs["n3"]
        assert recs["n3"].trusted_until == 110.0 and hub.trusted(110.0)
        net.cut.add("n3")
        clock.advance(11.0)
        await hub.sync_round()
        assert not hub.trusted(clock()) and recs["n3"].trusted_until == 110.0
        assert hub.status(clock())["trusted"] is False
        assert hub.status(clock())["peers"]["n1"]["last_error"]
        net.cut.clear()
        await hub.sync_round()
        assert hub.trusted(clock()) and recs["n3"].trusted_until == 121.0

    async def test_node_starts_untrusted_when_it_had_a_cache_and_no_sync_yet(self) -> None:
        rec = Recorder()
        hub = PurgeHub(
            await PurgeLog.open(None, "n1"),
            rec,
            rec,
            self_name="n1",
            peers=PEERS,
            transport=Network().transport("n1"),
            trusted_at_start=False,
            clock=FakeClock(5.0),
        )
        assert rec.trusted_until == -math.inf and not hub.trusted(5.0)

    async def test_lone_node_is_always_trusted(self) -> None:
        rec = Recorder()
        hub = PurgeHub(
            await PurgeLog.open(None, "n1"),
            rec,
            rec,
            self_name="n1",
            peers=PEERS[:1],
            transport=Network().transport("n1"),
            trusted_at_start=False,
            clock=FakeClock(5.0),
        )
        assert rec.trusted_until == math.inf and hub.trusted(1e12) and hub.accepting


class TestAccepting:
    async def test_journal_with_own_purges_accepts_at_once_when_reopened(self, tmp_path: Path) -> None:
        journal = await PurgeLog.open(tmp_path / "j", "n1")
        await journal.append(PurgeKind.TAG, "t", "a.test", False, now=1.0)
        rec = Recorder()
        reopened = await PurgeLog.open(tmp_path / "j", "n1")
        hub = PurgeHub(reopened, rec, rec, self_name="n1", peers=PEERS, transport=Network().transport("n1"),
                       clock=FakeClock(5.0))
        assert hub.accepting
        result = await hub.submit(PurgeKind.TAG, "u", "a.test", False, timeout_s=1.0)
        assert result.purge.id == "n1:2" and result.pending == ("n2", "n3")
