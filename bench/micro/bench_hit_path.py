"""The hit path's Python cost: one keep-alive request fed to the listener, answered from memory.

Drives `HttpProtocol` with a transport that discards writes, so the figure is the Python and
llhttp work per fresh hit, without syscalls. The baseline in the same run is a bare protocol
that parses with llhttp and answers a prebuilt response: the floor any hit path pays.
Run: make bench-micro (or pytest bench/micro/bench_hit_path.py --benchmark-only -o testpaths=bench)
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httptools
import pytest

from edge.config.deployment import CacheConfig
from edge.fill.coalesce import Coalescer
from edge.fill.producer import Filler
from edge.metrics.counts import RequestCounts
from edge.request.handler import Handler
from edge.rules.key import make_key
from edge.server.protocol import HttpProtocol, Limits
from edge.store.entry import EntryMeta
from edge.store.memory import MemoryStore
from edge.store.tiered import TieredStore
from origin.config import RouteRule
from origin.routes import Router

REQUEST = (b"GET /obj/k1?size=1024 HTTP/1.1\r\nHost: 127.0.0.2:8080\r\nUser-Agent: wrk\r\n"
           b"Accept: */*\r\n\r\n")


class NullTransport(asyncio.Transport):
    """Accepts writes and drops them; counts bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: Any) -> None:
        self.written += len(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class BareProtocol(asyncio.Protocol):
    """The floor: llhttp parse + one prebuilt response, no cache logic at all."""

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n" + b"x" * 1024

    def __init__(self, transport: NullTransport) -> None:
        self._t = transport
        self._p = httptools.HttpRequestParser(self)

    def on_message_complete(self) -> None:
        self._t.write(self.RESPONSE)

    def data_received(self, data: bytes) -> None:
        self._p.feed_data(data)


def _edge_protocol(loop: asyncio.AbstractEventLoop, tmp: Path) -> tuple[HttpProtocol, NullTransport]:
    memory = MemoryStore(max_bytes=64 << 20, max_object_bytes=8 << 20)
    store = TieredStore(memory, None)
    key = make_key("http", "127.0.0.2:8080", "/obj/k1?size=1024")
    now = time.time()
    meta = EntryMeta(key=key.id, url=key.url, status=200,
                     headers=(("Content-Type", "application/octet-stream"), ("Cache-Control", "max-age=3600")),
                     request_time=now, response_time=now, initial_age_s=0.0, lifetime_s=3600.0, body_length=1024)
    memory.put(meta, b"x" * 1024)
    assert key.id == make_key("http", "127.0.0.2:8080", "/obj/k1?size=1024").id
    handler = Handler(store=store, coalescer=Coalescer(spool_dir=tmp, head_timeout_s=1, idle_timeout_s=1),
                      filler=Filler(cache=CacheConfig(), max_object_bytes=8 << 20),
                      router=Router((RouteRule(host="*", path_prefix="/", pool="p"),)), upstreams={},
                      allowlists={}, access_log=None, counts=RequestCounts())  # counted, as in a node
    transport = NullTransport()
    proto = HttpProtocol(handler, Limits(), set())
    proto.connection_made(transport)
    return proto, transport


@pytest.fixture
def loop() -> Any:
    lp = asyncio.new_event_loop()
    asyncio.set_event_loop(lp)
    yield lp
    asyncio.set_event_loop(None)
    lp.close()


def test_bench_bare_llhttp_floor(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    transport = NullTransport()
    proto = BareProtocol(transport)
    benchmark(proto.data_received, REQUEST)
    assert transport.written > 0


def test_bench_edge_fresh_memory_hit(benchmark: Any, loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    async def build() -> tuple[HttpProtocol, NullTransport]:
        return _edge_protocol(asyncio.get_running_loop(), tmp_path)

    proto, transport = loop.run_until_complete(build())
    benchmark(proto.data_received, REQUEST)
    assert transport.written > 1024  # every request got the prebuilt hit, not the slow path
