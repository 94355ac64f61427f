"""cluster.discovery: a region's nodes from DNS join and leave the ring with the static list's
health checks and hysteresis.

The DNS server is real (tests/cluster/dns_server.py, UDP on 127.0.0.1, records the test
changes); so is the resolver (dnspython's, as the node runs it) and Membership. Only the
health probe is the FakeProbe of test_members.py, so each test says which peers answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cluster.config import ClusterConfig, PeerConfig
from cluster.discovery import DiscoveryConfig, DnsDiscovery, LookupOutcome, RecordType, plan, to_peers
from cluster.members import Membership
from tests.cluster.dns_server import DnsServer
from tests.cluster.test_members import FakeProbe, RingWatcher

pytestmark = pytest.mark.timeout(20)

NAME = "peers.r1.test."
SELF = PeerConfig(name="127.0.0.10:9080", region="r1", internal_url="http://127.0.0.10:9080")


@pytest.fixture
async def dns() -> AsyncIterator[DnsServer]:
    server = await DnsServer().start()
    try:
        yield server
    finally:
        server.close()


def _discovery(
    dns: DnsServer, members: Membership, record: RecordType = RecordType.A, name: str = NAME
) -> DnsDiscovery:
    config = DiscoveryConfig(
        region="r1",
        name=name,
        record=record,
        port=9080,
        interval_s=0.05,
        timeout_s=0.5,
        nameservers=((dns.host, dns.port),),
        fail_after=2,
    )
    return DnsDiscovery(config, members, self_name=SELF.name, self_url=SELF.internal_url)


def _members(probe: FakeProbe, watcher: RingWatcher, *static: PeerConfig) -> Membership:
    config = ClusterConfig(secret="discovery-secret", fail_after=2, recover_after=2)
    return Membership(SELF.name, [SELF, *static], config, probe, watcher)


class TestPure:
    def test_a_records_name_nodes_by_address_and_port(self) -> None:
        peers = to_peers("r1", [("127.0.0.12", 9080), ("::1", 9080), ("127.0.0.12", 9080)], RecordType.A)
        assert [(p.name, p.internal_url) for p in peers] == [
            ("127.0.0.12:9080", "http://127.0.0.12:9080"),
            ("[::1]:9080", "http://[::1]:9080"),
        ]

    def test_srv_records_name_nodes_by_the_targets_first_label(self) -> None:
        peers = to_peers("r1", [("edge-1.peers.r1.test.", 9081)], RecordType.SRV)
        assert [(p.name, p.internal_url) for p in peers] == [("edge-1", "http://edge-1.peers.r1.test:9081")]

    def test_plan_joins_new_nodes_and_removes_them_after_fail_after_answers_without_them(self) -> None:
        a, b = to_peers("r1", [("127.0.0.11", 1), ("127.0.0.12", 1)], RecordType.A)
        first = plan({}, [a, b], fail_after=2)
        assert first.join == (a, b) and first.leave == ()
        second = plan(first.missed, [a], fail_after=2)
        assert second.join == () and second.leave == () and second.missed[b.name] == 1
        back = plan(second.missed, [a, b], fail_after=2)
        assert back.join == () and back.missed[b.name] == 0  # back in time: the count restarts
        gone = plan(plan(back.missed, [a], 2).missed, [a], fail_after=2)
        assert gone.leave == (b.name,) and b.name not in gone.missed


class TestResolving:
    async def test_nodes_that_appear_join_after_good_probes_and_vanished_ones_leave(
        self, dns: DnsServer
    ) -> None:
        probe, watcher = FakeProbe(), RingWatcher()
        members = _members(probe, watcher)
        discovery = _discovery(dns, members)
        dns.records[(NAME, "A")] = ["127.0.0.10", "127.0.0.11", "127.0.0.12"]  # this node's own too
        assert await discovery.resolve_once() is LookupOutcome.ANSWER
        assert discovery.discovered == ("127.0.0.11:9080", "127.0.0.12:9080")
        assert members.ring.nodes == (SELF.name,), "a discovered node is not trusted before its probes"
        await members.probe_all()
        assert members.ring.nodes == (SELF.name,)
        await members.probe_all()  # recover_after = 2 good probes
        assert set(members.ring.nodes) == {SELF.name, "127.0.0.11:9080", "127.0.0.12:9080"}

        dns.records[(NAME, "A")] = ["127.0.0.10", "127.0.0.11"]
        await discovery.resolve_once()
        assert "127.0.0.12:9080" in members.ring, "one answer without it is not enough (fail_after = 2)"
        await discovery.resolve_once()
        assert set(members.ring.nodes) == {SELF.name, "127.0.0.11:9080"}
        assert [p.name for p in members.status()] == ["127.0.0.11:9080"]

    async def test_srv_records_and_aaaa_records(self, dns: DnsServer) -> None:
        members = _members(FakeProbe(), RingWatcher())
        srv = _discovery(dns, members, RecordType.SRV, "_peer._tcp." + NAME)
        dns.records[("_peer._tcp." + NAME, "SRV")] = [
            "0 50 9081 edge-1.peers.r1.test.",
            "0 50 9081 edge-2.peers.r1.test.",
        ]
        await srv.resolve_once()
        assert srv.discovered == ("edge-1", "edge-2")
        peer = members.peer("edge-1")
        assert peer is not None and peer.internal_url == "http://edge-1.peers.r1.test:9081"
        dns.records[("v6." + NAME, "AAAA")] = ["::1"]
        v6 = _discovery(dns, members, name="v6." + NAME)
        await v6.resolve_once()
        assert v6.discovered == ("[::1]:9080",)

    async def test_a_failed_lookup_changes_nothing(self, dns: DnsServer) -> None:
        members = _members(FakeProbe(), RingWatcher())
        discovery = _discovery(dns, members)
        dns.records[(NAME, "A")] = ["127.0.0.11"]
        await discovery.resolve_once()
        dns.silent = True  # the server stops answering: timeouts
        for _ in range(3):
            assert await discovery.resolve_once() is LookupOutcome.FAILED
        assert discovery.discovered == ("127.0.0.11:9080",) and members.peer("127.0.0.11:9080") is not None
        assert discovery.lookups[LookupOutcome.FAILED] == 3

    async def test_an_empty_answer_removes_discovered_nodes_but_never_configured_ones(
        self, dns: DnsServer
    ) -> None:
        configured = PeerConfig(name="edge-static", region="r1", internal_url="http://127.0.0.13:9080")
        members = _members(FakeProbe(), RingWatcher(), configured)
        discovery = _discovery(dns, members)
        dns.records[(NAME, "A")] = ["127.0.0.11", "127.0.0.13"]
        await discovery.resolve_once()
        assert discovery.discovered == ("127.0.0.11:9080", "127.0.0.13:9080")
        dns.records.clear()  # NXDOMAIN: the name is gone
        await discovery.resolve_once()
        await discovery.resolve_once()
        assert discovery.discovered == ()
        assert [p.name for p in members.status()] == ["edge-static"]
        assert "edge-static" in members.ring

    async def test_running_discovery_and_probes_bring_a_node_in_and_take_it_out(self, dns: DnsServer) -> None:
        probe, watcher = FakeProbe(), RingWatcher()
        config = ClusterConfig(
            secret="discovery-secret",
            fail_after=2,
            recover_after=2,
            probe_interval_s=0.02,
            probe_timeout_s=0.02,
        )
        members = Membership(SELF.name, [SELF], config, probe, watcher)
        discovery = _discovery(dns, members)
        members.start()
        discovery.start()
        try:
            async with asyncio.timeout(10):
                dns.records[(NAME, "A")] = ["127.0.0.11"]
                await watcher.wait_until(lambda ring: "127.0.0.11:9080" in ring)
                dns.records[(NAME, "A")] = []
                dns.records[(NAME, "AAAA")] = []  # the name exists, with no addresses
                await watcher.wait_until(lambda ring: "127.0.0.11:9080" not in ring)
        finally:
            await discovery.stop()
            await members.stop()
        assert [r.nodes for r in watcher.rings] == [(SELF.name, "127.0.0.11:9080"), (SELF.name,)]
