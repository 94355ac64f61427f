"""A non-owner's plain miss is relayed to the key's owner without a fill (edge.request.relay).

Everything talks over real sockets on 127.0.0.1: the asking node is the real listener
(HttpProtocol) in front of the real Handler, whose ring makes node "b" own every key and whose
PeerClient reaches b's real internal listener (PeerGate). Behind b's gate, and behind the origin
listener the fallback goes to, is a scripted handler: it holds every answer until the test
releases it (an asyncio.Event), so concurrent requests are ordered without sleeps, and it
records what arrived. What the relay changes is observable as the absence of fill tasks
(the coalescer names them "fill-<id>") while the owner holds its answer.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from cluster.config import PeerConfig
from cluster.peer import PeerClient
from cluster.ring import Ring
from edge.config.deployment import CacheConfig
from edge.config.limits import Limits
from edge.config.server import ServerConfig as ListenerConfig
from edge.fill.coalesce import Coalescer
from edge.fill.producer import Filler
from edge.peering.routing import HotCounter, PeerGate, PeerRouting
from edge.request.handler import Handler
from edge.server.connections import Connections
from edge.server.protocol import HttpProtocol
from edge.server.request import Request
from edge.server.writer import Writer
from edge.store.memory import MemoryStore
from edge.store.tiered import TieredStore
from origin.client import OriginClient
from origin.config import RouteRule, ServerConfig, TimeoutConfig
from origin.routes import Router
from tests.fakes import FakeClock
from tests.origin.servers import closed_port

pytestmark = pytest.mark.timeout(30)

SECRET = "relay-secret"
HOST = "cdn.test"
TIMEOUTS = TimeoutConfig(connect_s=2.0, first_byte_s=10.0, idle_s=10.0, total_s=20.0)


@dataclass
class Script:
    """A listener's handler: holds each answer until `release` is set; records the targets."""

    body: bytes
    cache_status: str | None = "edgecache; hit"
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: list[str] = field(default_factory=list)
    first: asyncio.Event = field(default_factory=asyncio.Event)

    def try_fast(self, head_only: bool, host: bytes, target: bytes, raw: list[tuple[bytes, bytes]],
                 peer: str) -> bytes | tuple[bytes, bytes] | None:
        return None  # every request takes handle(), where it waits for the test

    async def handle(self, request: Request, writer: Writer, *, from_peer: bool = False) -> None:
        self.arrived.append(request.target)
        self.first.set()
        await asyncio.wait_for(self.release.wait(), 20)
        fields = [("Cache-Control", "max-age=60"), ("Content-Type", "application/octet-stream")]
        if self.cache_status is not None:
            fields.append(("Cache-Status", self.cache_status))
        writer.start(200, fields, len(self.body))
        await writer.write(self.body)
        writer.finish()


@dataclass
class Asker:
    """The asking node's listener URL, its handler's coalescer, and the two scripts."""

    url: str
    coalescer: Coalescer
    owner: Script
    origin: Script


async def _listen(responder: object, tasks: set[asyncio.Task[None]]) -> tuple[asyncio.Server, int, Connections]:
    conns = Connections(ListenerConfig(), 1000)
    server = await asyncio.get_running_loop().create_server(
        lambda: HttpProtocol(responder, Limits(), tasks, conns), "127.0.0.1", 0  # type: ignore[arg-type]
    )
    return server, server.sockets[0].getsockname()[1], conns


@pytest.fixture
async def make_asker() -> AsyncIterator[object]:
    closers: list[object] = []

    async def build(owner_body: bytes, *, owner_up: bool = True, origin_body: bytes = b"o" * 100) -> Asker:
        tasks: set[asyncio.Task[None]] = set()
        owner, origin = Script(owner_body), Script(origin_body, cache_status=None)
        peer_port = closed_port()
        if owner_up:
            server, peer_port, conns = await _listen(PeerGate(owner, SECRET), tasks)
            closers.append((server, conns))
        oserver, oport, oconns = await _listen(origin, tasks)
        closers.append((oserver, oconns))
        session = aiohttp.ClientSession()
        closers.append(session)
        peer = PeerClient(PeerConfig(name="b", region="r", internal_url=f"http://127.0.0.1:{peer_port}"),
                          self_name="a", secret=SECRET, timeouts=TIMEOUTS)
        closers.append(peer)
        memory = MemoryStore(max_bytes=8 << 20, max_object_bytes=4 << 20)
        routing = PeerRouting(self_name="a", ring=Ring({"b": 1.0}), peers={"b": peer},
                              hot=MemoryStore(max_bytes=1 << 20, max_object_bytes=1 << 20),
                              hot_counter=HotCounter(min_hits=10**9, window_s=10.0, clock=FakeClock()),
                              report_failure=lambda name: None)
        coalescer = Coalescer(spool_dir=Path(tempfile.mkdtemp()), head_timeout_s=10, idle_timeout_s=10)
        handler = Handler(store=TieredStore(memory, None), coalescer=coalescer,
                          filler=Filler(cache=CacheConfig(), max_object_bytes=4 << 20),
                          router=Router((RouteRule(host="*", path_prefix="/", pool="p"),)),
                          upstreams={"p": OriginClient(ServerConfig(url=f"http://127.0.0.1:{oport}"), TIMEOUTS,
                                                       session)},
                          allowlists={}, access_log=None, routing=routing)
        aserver, aport, aconns = await _listen(handler, tasks)
        closers.append((aserver, aconns))
        closers.append(coalescer)
        return Asker(f"http://127.0.0.1:{aport}", coalescer, owner, origin)

    try:
        yield build
    finally:
        for closer in reversed(closers):
            if isinstance(closer, tuple):
                server, conns = closer
                server.close()
                conns.drain()
                await asyncio.wait_for(server.wait_closed(), 10)
            elif isinstance(closer, aiohttp.ClientSession):
                await closer.close()
            elif isinstance(closer, PeerClient):
                closer.close()
            elif isinstance(closer, Coalescer):
                await closer.close()


async def get(url: str, path: str, method: str = "GET") -> tuple[int, bytes, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        async with s.request(method, url + path, headers={"Host": HOST}) as r:
            return r.status, await r.read(), r.headers.get("Cache-Status", "")


def fill_tasks() -> list[str]:
    return [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("fill-")]


async def test_plain_miss_at_non_owner_is_relayed_without_a_fill_when_owner_answers(make_asker: object) -> None:
    asker: Asker = await make_asker(b"x" * 1000)  # type: ignore[operator]
    pending = asyncio.ensure_future(get(asker.url, "/obj/1"))
    await asyncio.wait_for(asker.owner.first.wait(), 10)
    assert fill_tasks() == []  # the owner holds its head: no fill was started for this request
    asker.owner.release.set()
    status, body, cache_status = await pending
    assert status == 200 and body == b"x" * 1000
    # the owner's member first, then ours: a peer hit named by its hop
    assert re.fullmatch(r"edgecache; hit, edgecache; fwd=miss; fwd-status=200; ttl=(59|60); detail=peer-b",
                        cache_status), cache_status
    assert asker.owner.arrived == ["/obj/1"] and asker.origin.arrived == []
    assert asker.coalescer.in_flight == 0


async def test_concurrent_misses_share_one_peer_request_when_the_answer_is_small(make_asker: object) -> None:
    asker: Asker = await make_asker(b"s" * 2000)  # type: ignore[operator]
    pending = [asyncio.ensure_future(get(asker.url, "/obj/herd")) for _ in range(10)]
    await asyncio.wait_for(asker.owner.first.wait(), 10)
    assert fill_tasks() == []  # the leader relays; the others wait on its flight, not on a fill
    asker.owner.release.set()
    replies = await asyncio.gather(*pending)
    assert [(s, b) for s, b, _ in replies] == [(200, b"s" * 2000)] * 10
    assert asker.owner.arrived == ["/obj/herd"]  # one peer request for all ten
    assert fill_tasks() == []
    collapsed = [cs for _, _, cs in replies if "collapsed" in cs]
    assert len(collapsed) >= 1 and all(cs.endswith("detail=peer-b") for _, _, cs in replies)


async def test_concurrent_misses_make_at_most_two_peer_requests_when_the_answer_is_large(make_asker: object) -> None:
    body = bytes(range(256)) * 1024  # 256 KiB: streamed, not held whole
    asker: Asker = await make_asker(body)  # type: ignore[operator]
    pending = [asyncio.ensure_future(get(asker.url, "/obj/large")) for _ in range(6)]
    await asyncio.wait_for(asker.owner.first.wait(), 10)
    asker.owner.release.set()
    replies = await asyncio.gather(*pending)
    assert [(s, b) for s, b, _ in replies] == [(200, body)] * 6
    # the leader's relay streams; the requests that waited on it share one fill among them
    assert 1 <= len(asker.owner.arrived) <= 2, asker.owner.arrived


async def test_head_request_is_relayed_without_a_body_when_plain(make_asker: object) -> None:
    asker: Asker = await make_asker(b"h" * 500)  # type: ignore[operator]
    asker.owner.release.set()
    status, body, cache_status = await get(asker.url, "/obj/head", "HEAD")
    assert status == 200 and body == b"" and cache_status.endswith("detail=peer-b")
    assert asker.owner.arrived == ["/obj/head"]


async def test_owner_down_makes_one_origin_fallback_fill_when_several_requests_wait(make_asker: object) -> None:
    asker: Asker = await make_asker(b"never", owner_up=False, origin_body=b"o" * 300)  # type: ignore[operator]
    pending = [asyncio.ensure_future(get(asker.url, "/obj/down")) for _ in range(5)]
    await asyncio.wait_for(asker.origin.first.wait(), 10)
    asker.origin.release.set()
    replies = await asyncio.gather(*pending)
    assert [(s, b) for s, b, _ in replies] == [(200, b"o" * 300)] * 5
    assert asker.origin.arrived == ["/obj/down"]  # the owner refused: one origin request, not five
    assert all("detail=origin-fallback" in cs for _, _, cs in replies if "collapsed" not in cs)
