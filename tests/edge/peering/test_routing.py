"""edge.peering.routing: hot-key counting windows, who owns a key, the hot store's share, the internal gate."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest
import xxhash
from multidict import CIMultiDict

from cluster.peer import HOP_HEADER, SECRET_HEADER
from cluster.ring import Ring
from edge.config.deployment import parse
from edge.store.entry import EntryMeta
from edge.peering.routing import _MAX_TRACKED, HotCounter, PeerGate, PeerRouting
from edge.server.request import Request
from edge.server.writer import Writer
from edge.store.memory import MemoryStore
from origin.upstream import Upstream
from tests.fakes import FakeClock, FakeUpstream

SECRET = "peering-secret"
KiB = 1024


def key(i: int) -> bytes:
    return xxhash.xxh3_128_digest(f"http://demo.test/obj/{i}".encode())


class TestHotCounter:
    def test_key_turns_hot_at_min_hits_when_within_one_window(self) -> None:
        counter = HotCounter(min_hits=3, window_s=10.0, clock=FakeClock())
        assert [counter.hit(b"k") for _ in range(5)] == [False, False, True, True, True]

    def test_counts_each_key_apart_when_several_are_requested(self) -> None:
        counter = HotCounter(min_hits=2, window_s=10.0, clock=FakeClock())
        assert counter.hit(b"k1") is False
        assert counter.hit(b"k2") is False
        assert counter.hit(b"k1") is True
        assert counter.hit(b"k3") is False

    def test_key_starts_counting_again_when_window_has_passed(self) -> None:
        clock = FakeClock()
        counter = HotCounter(min_hits=3, window_s=10.0, clock=clock)
        counter.hit(b"k")
        counter.hit(b"k")
        clock.advance(10.0)  # the window is [start, start + 10): this hit opens a new one
        assert counter.hit(b"k") is False
        assert counter.hit(b"k") is False
        assert counter.hit(b"k") is True

    def test_hits_spread_over_windows_never_turn_hot_when_fewer_than_min_per_window(self) -> None:
        clock = FakeClock()
        counter = HotCounter(min_hits=3, window_s=1.0, clock=clock)
        seen = []
        for _ in range(6):
            seen.append(counter.hit(b"k"))
            seen.append(counter.hit(b"k"))
            clock.advance(1.0)
        assert seen == [False] * 12

    def test_counts_reset_when_too_many_keys_are_tracked(self) -> None:
        counter = HotCounter(min_hits=2, window_s=10.0, clock=FakeClock())
        counter.hit(b"hot")
        for i in range(_MAX_TRACKED - 1):
            counter.hit(i.to_bytes(4, "little"))
        assert counter.hit(b"hot") is False  # the table was full: a fresh window began
        assert counter.hit(b"hot") is True


def routing(ring: Ring, peers: dict[str, Upstream], failures: list[str], *, min_hits: int = 2) -> PeerRouting:
    return PeerRouting(self_name="a", ring=ring, peers=peers,
                       hot=MemoryStore(max_bytes=512 * KiB, max_object_bytes=512 * KiB),
                       hot_counter=HotCounter(min_hits=min_hits, window_s=10.0, clock=FakeClock()),
                       report_failure=failures.append)


class TestPeerRouting:
    def test_owner_is_none_for_own_keys_and_the_peer_name_otherwise_when_ring_has_three_nodes(self) -> None:
        ring = Ring({"a": 1.0, "b": 1.0, "c": 1.0})
        peers: dict[str, Upstream] = {"b": FakeUpstream(name="b"), "c": FakeUpstream(name="c")}
        r = routing(ring, peers, [])
        answers = {ring.owner(key(i)): r.owner(key(i)) for i in range(300)}
        assert answers == {"a": None, "b": "b", "c": "c"}
        assert r.peer("b") is peers["b"]

    def test_owner_is_none_when_ring_names_a_node_without_a_client(self) -> None:
        ring = Ring({"a": 1.0, "zz": 1.0})  # "zz" is not among the peers this node can reach
        r = routing(ring, {"b": FakeUpstream(name="b")}, [])
        assert {r.owner(key(i)) for i in range(100)} == {None}
        assert {ring.owner(key(i)) for i in range(100)} == {"a", "zz"}

    def test_keys_of_a_dead_peer_move_when_a_new_ring_is_set(self) -> None:
        r = routing(Ring({"a": 1.0, "b": 1.0, "c": 1.0}),
                    {"b": FakeUpstream(name="b"), "c": FakeUpstream(name="c")}, [])
        of_c = [key(i) for i in range(300) if r.owner(key(i)) == "c"]
        stay = {k: r.owner(k) for k in (key(i) for i in range(300)) if r.owner(k) != "c"}
        r.set_ring(Ring({"a": 1.0, "b": 1.0}))
        assert of_c and {r.owner(k) for k in of_c} <= {None, "b"}
        assert {k: r.owner(k) for k in stay} == stay  # only the dead node's keys moved

    def test_key_is_hot_when_forwarded_min_hits_times(self) -> None:
        r = routing(Ring({"a": 1.0, "b": 1.0}), {"b": FakeUpstream(name="b")}, [], min_hits=3)
        assert [r.is_hot(key(1)) for _ in range(3)] == [False, False, True]
        assert r.is_hot(key(2)) is False

    def test_reports_the_peer_when_a_peer_fetch_failed(self) -> None:
        failures: list[str] = []
        r = routing(Ring({"a": 1.0, "b": 1.0}), {"b": FakeUpstream(name="b")}, failures)
        r.peer_failed("b")
        r.peer_failed("b")
        assert failures == ["b", "b"]


def meta(i: int, size: int) -> EntryMeta:
    return EntryMeta(key=key(i), url=f"http://demo.test/obj/{i}", status=200, headers=(), request_time=0.0,
                     response_time=0.0, initial_age_s=0.0, lifetime_s=60.0, body_length=size)


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def two_node_config() -> dict[str, Any]:
    """Node a of a two-node region with 4 MiB of memory; b is never started (a's probes of it fail)."""
    return {
        "cache": {"memory_bytes": "4MiB"},
        "cluster": {"secret": SECRET, "hot_share": 0.125, "probe_interval_s": 30.0},
        "nodes": {"a": {"listen": f"127.0.0.1:{free_port('127.0.0.1')}",
                        "internal": f"127.0.0.1:{free_port('127.0.0.1')}", "region": "r1"},
                  "b": {"listen": "127.0.0.1:1", "internal": "127.0.0.1:2", "region": "r1"}},
        "origins": {"demo": {"servers": ["http://127.0.0.1:1"]}},
        "routes": [{"host": "*", "path_prefix": "/", "origin": "demo"}],
    }


@pytest.fixture
async def wired_routing() -> AsyncIterator[PeerRouting]:
    """The PeerRouting a started EdgeNode builds for node a (listening on 127.0.0.1 only)."""
    from edge.app import EdgeNode

    node = EdgeNode(parse(two_node_config(), "a"))
    await node.start()
    try:
        assert node.routing is not None
        yield node.routing
    finally:
        await node.stop()


class TestHotShare:
    async def test_hot_store_gets_hot_share_of_memory_when_node_is_wired(self, wired_routing: PeerRouting) -> None:
        assert wired_routing.hot.max_bytes == 512 * KiB

    async def test_hot_store_keeps_at_most_two_200KiB_keys_when_five_turn_hot(
            self, wired_routing: PeerRouting) -> None:
        hot = wired_routing.hot
        for i in range(5):
            hot.put(meta(i, 200 * KiB), b"x" * 200 * KiB)
            assert hot.stats.bytes <= 512 * KiB
            assert hot.stats.entries <= 2
        kept = [i for i in range(5) if key(i) in hot]
        assert kept == [3, 4]  # the newest two; the rest were evicted to stay within the share


class FakeWriter:
    """Records what PeerGate answered (only send_simple is used by the gate itself)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    async def send_simple(self, status: int, reason: str, **_: Any) -> None:
        self.sent.append((status, reason))


class FakeHandler:
    """Counts the requests the gate lets through, with their from_peer flag."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    async def handle(self, request: Request, writer: Writer, *, from_peer: bool = False) -> None:
        self.calls.append((request.target, from_peer))

    def try_fast(self, head_only: bool, host: bytes, target: bytes, raw_headers: list[tuple[bytes, bytes]],
                 peer: str) -> bytes | None:
        self.calls.append((target.decode(), True))
        return b"FAST"


def request(target: str, headers: list[tuple[str, str]]) -> Request:
    return Request(method="GET", target=target, version="1.1", headers=CIMultiDict([("Host", "demo.test"), *headers]),
                   body=None, keep_alive=True, peer="127.0.0.3")


@pytest.fixture
def gate() -> Iterator[tuple[PeerGate, FakeHandler]]:
    handler = FakeHandler()
    yield PeerGate(handler, SECRET), handler


class TestPeerGate:
    @pytest.mark.parametrize("headers", [
        [], [(SECRET_HEADER, "wrong")], [(SECRET_HEADER, "")], [(SECRET_HEADER, SECRET + " ")],
        [(HOP_HEADER, "b")], [(SECRET_HEADER, "sécret")],
    ], ids=["none", "wrong", "empty", "trailing-space", "hop-only", "non-ascii"])
    async def test_answers_403_and_calls_no_handler_when_secret_is_missing_or_wrong(
            self, gate: tuple[PeerGate, FakeHandler], headers: list[tuple[str, str]]) -> None:
        g, handler = gate
        for target in ("/obj/x", "/_edge/health"):
            writer = FakeWriter()
            await g.handle(request(target, headers), cast(Writer, writer))
            assert [status for status, _ in writer.sent] == [403]
        assert handler.calls == []

    async def test_answers_health_without_the_handler_when_secret_is_right(
            self, gate: tuple[PeerGate, FakeHandler]) -> None:
        g, handler = gate
        writer = FakeWriter()
        await g.handle(request("/_edge/health", [(SECRET_HEADER, SECRET)]), cast(Writer, writer))
        assert writer.sent == [(200, "ok")]
        assert handler.calls == []

    async def test_passes_request_on_as_from_peer_when_secret_is_right(
            self, gate: tuple[PeerGate, FakeHandler]) -> None:
        g, handler = gate
        writer = FakeWriter()
        await g.handle(request("/obj/x?size=1", [(SECRET_HEADER, SECRET), (HOP_HEADER, "b")]), cast(Writer, writer))
        assert writer.sent == []
        assert handler.calls == [("/obj/x?size=1", True)]


class TestPeerGateFastPath:
    @pytest.mark.parametrize("headers", [
        [], [(b"X-Edge-Secret", b"wrong")], [(b"X-Edge-Hop", b"b")],
    ], ids=["none", "wrong", "hop-only"])
    def test_declines_fast_path_when_secret_is_missing_or_wrong(
            self, gate: tuple[PeerGate, FakeHandler], headers: list[tuple[bytes, bytes]]) -> None:
        g, handler = gate
        assert g.try_fast(False, b"demo.test", b"/obj/x", headers, "127.0.0.3") is None
        assert handler.calls == []

    def test_answers_hit_on_fast_path_when_secret_is_right(self, gate: tuple[PeerGate, FakeHandler]) -> None:
        g, handler = gate
        headers = [(b"x-edge-secret", SECRET.encode()), (b"X-Edge-Hop", b"b")]
        assert g.try_fast(False, b"demo.test", b"/obj/x", headers, "127.0.0.3") == b"FAST"
        assert handler.calls == [("/obj/x", True)]

    def test_internal_endpoints_never_take_fast_path_when_secret_is_right(
            self, gate: tuple[PeerGate, FakeHandler]) -> None:
        g, handler = gate
        headers = [(b"X-Edge-Secret", SECRET.encode())]
        assert g.try_fast(False, b"demo.test", b"/_edge/health", headers, "127.0.0.3") is None
        assert handler.calls == []
