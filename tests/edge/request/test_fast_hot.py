"""The fast path serves a region's hot copies (keys other nodes own) like local memory hits.

The hot-copy store is edge.peering.routing's; the slow path looks it up after the main store
(Handler._find), and so does the fast path: a hot copy is served from the parser callback with
the same prebuilt head, counted under the "hot" tier, and declined whenever the slow path has
something to decide (stale, purge rules pending, a fresher or staler entry in the main store).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from multidict import CIMultiDict

from cluster.purge import Purge, PurgeKind
from cluster.ring import Ring
from edge.config.deployment import CacheConfig
from edge.fill.coalesce import Coalescer
from edge.fill.producer import VARY_MARKER_STATUS, Filler
from edge.metrics.counts import RequestCounts
from edge.peering.routing import HotCounter, PeerRouting
from edge.purge.invalidate import Invalidator
from edge.request.handler import Handler
from edge.rules.key import make_key
from edge.store.entry import EntryMeta
from edge.store.memory import MemoryStore
from edge.store.tiered import TieredStore
from origin.config import RouteRule
from origin.routes import Router
from tests.fakes import FakeClock, FakeUpstream

RAW = [(b"Host", b"h")]
PEER = "127.0.0.1"


def entry(path: str, lifetime: float = 3600.0, **extra: object) -> EntryMeta:
    key = make_key("http", "h", path)
    now = time.time()
    fields: dict[str, object] = {"key": key.id, "url": key.url, "status": 200,
                                 "headers": (("Content-Type", "text/plain"),), "request_time": now,
                                 "response_time": now, "initial_age_s": 0.0, "lifetime_s": lifetime}
    fields.update(extra)
    return EntryMeta(**fields)  # type: ignore[arg-type]


class Node:
    """A handler with a main memory store and a hot store, as a region's node has them."""

    def __init__(self) -> None:
        self.memory = MemoryStore(max_bytes=8 << 20, max_object_bytes=1 << 20)
        self.hot = MemoryStore(max_bytes=1 << 20, max_object_bytes=1 << 20)
        self.counts = RequestCounts()
        self.store = TieredStore(self.memory, None)
        self.purges = Invalidator([self.store, self.hot])
        routing = PeerRouting(self_name="a", ring=Ring({"a": 1.0, "b": 1.0}),
                              peers={"b": FakeUpstream(name="b")}, hot=self.hot,
                              hot_counter=HotCounter(min_hits=2, window_s=10.0, clock=FakeClock()),
                              report_failure=lambda name: None)
        self.handler = Handler(
            store=self.store,
            coalescer=Coalescer(spool_dir=Path(tempfile.mkdtemp()), head_timeout_s=1, idle_timeout_s=1),
            filler=Filler(cache=CacheConfig(), max_object_bytes=1 << 20),
            router=Router((RouteRule(host="*", path_prefix="/", pool="p"),)), upstreams={}, allowlists={},
            access_log=None, routing=routing, purges=self.purges, counts=self.counts)

    def ask(self, path: str, raw: list[tuple[bytes, bytes]] = RAW, head_only: bool = False) -> bytes | None:
        answer = self.handler.try_fast(head_only, b"h", path.encode(), raw, PEER)
        assert answer is None or isinstance(answer, bytes)
        return answer


def test_hot_copy_is_answered_on_the_fast_path_with_the_local_hit_head_when_fresh() -> None:
    node = Node()
    node.hot.put(entry("/hot"), b"h" * 100)
    node.memory.put(entry("/local"), b"m" * 100)
    hot, local = node.ask("/hot"), node.ask("/local")
    assert hot is not None and local is not None
    assert hot.startswith(b"HTTP/1.1 200 OK\r\n") and hot.endswith(b"\r\n\r\n" + b"h" * 100)
    assert b"Cache-Status: edgecache; hit; ttl=" in hot and b"Age: 0\r\n" in hot
    # the same head as a local memory hit: only the body differs
    assert hot.replace(b"h" * 100, b"") == local.replace(b"m" * 100, b"")
    assert node.hot.stats.hits == 1 and node.memory.stats.hits == 1
    head = node.ask("/hot", head_only=True)
    assert head is not None and head.endswith(b"\r\n\r\n") and b"h" * 100 not in head


def test_hot_copy_hit_counts_bytes_under_the_hot_tier_when_served_fast() -> None:
    node = Node()
    node.hot.put(entry("/hot"), b"h" * 100)
    node.memory.put(entry("/local"), b"m" * 40)
    assert node.ask("/hot") is not None and node.ask("/local") is not None
    tiers = node.counts.tier_bytes()
    assert tiers["hot"] == 100 and tiers["memory"] == 40
    assert node.counts.by_outcome()["hit"] == 2
    assert node.counts.latency["hit"].count == 2


def test_hot_copy_is_declined_when_stale_or_absent() -> None:
    node = Node()
    node.hot.put(entry("/stale", lifetime=0.0), b"x")
    assert node.ask("/stale") is None
    assert node.ask("/missing") is None
    assert node.hot.stats.hits == 0


def test_main_store_entry_shadows_the_hot_copy_when_both_hold_the_key() -> None:
    node = Node()
    node.memory.put(entry("/both", lifetime=0.0), b"old")  # stale in the main store: the slow path decides
    node.hot.put(entry("/both"), b"new")
    assert node.ask("/both") is None


def test_hot_copy_variant_is_selected_from_the_hot_store_when_the_object_varies() -> None:
    node = Node()
    key = make_key("http", "h", "/v")
    for enc in ("gzip", "br"):
        variant = key.variant(("accept-encoding",), CIMultiDict([("Accept-Encoding", enc)]))
        node.hot.put(entry("/v", key=variant.id, headers=(("Content-Encoding", enc),), vary=("accept-encoding",)),
                     enc.encode() * 5)
    node.hot.put(entry("/v", status=VARY_MARKER_STATUS, headers=(), vary=("accept-encoding",)), b"")
    gzip = node.ask("/v", [(b"Host", b"h"), (b"Accept-Encoding", b"gzip")])
    assert gzip is not None and gzip.endswith(b"gzip" * 5) and b"Content-Encoding: gzip" in gzip
    assert node.ask("/v", [(b"Host", b"h"), (b"Accept-Encoding", b"zstd")]) is None


async def test_hot_copy_is_not_served_fast_once_purged() -> None:
    node = Node()
    node.hot.put(entry("/p"), b"x" * 10)
    assert node.ask("/p") is not None
    purge = Purge(node="a", seq=1, kind=PurgeKind.URL, value="http://h/p", host="h", soft=False, at=time.time())
    await node.purges.apply(purge, 1)
    # the URL purge removed the hot copy too (the hot store is purged like the main one)
    assert node.hot.peek(make_key("http", "h", "/p").id) is None
    assert node.ask("/p") is None
