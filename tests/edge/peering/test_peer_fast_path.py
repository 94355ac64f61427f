"""A peer's fill request reaches the owner's fast path: PeerClient -> HttpProtocol -> PeerGate.try_fast.

The owner side is the real internal listener (HttpProtocol behind PeerGate) on 127.0.0.1; only
the handler behind the gate is a recording stand-in, since what is checked is which of its two
entries the listener calls: `try_fast` (a fresh memory hit answered from the parser callback,
as for a client) or `handle` (the full path).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cluster.config import PeerConfig
from cluster.peer import PeerClient
from edge.config.limits import Limits
from edge.config.server import ServerConfig
from edge.peering.routing import PeerGate
from edge.server.connections import Connections
from edge.server.protocol import HttpProtocol
from edge.server.request import Request
from edge.server.writer import Writer
from origin.config import TimeoutConfig
from origin.upstream import UpstreamRequest
from tests.origin.servers import read_all

pytestmark = pytest.mark.timeout(15)

SECRET = "fast-path-secret"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCache-Status: edgecache; hit\r\n\r\nhello"


class Recording:
    """The handler behind the gate: answers try_fast with a prebuilt hit and records the calls."""

    def __init__(self) -> None:
        self.fast: list[tuple[bytes, bytes, list[tuple[bytes, bytes]]]] = []
        self.slow: list[Request] = []

    def try_fast(
        self, head_only: bool, host: bytes, target: bytes, raw_headers: list[tuple[bytes, bytes]], peer: str
    ) -> bytes | tuple[bytes, bytes] | None:
        self.fast.append((host, target, list(raw_headers)))
        return ANSWER

    async def handle(self, request: Request, writer: Writer, *, from_peer: bool = False) -> None:
        self.slow.append(request)
        await writer.send_simple(500, "the slow path was not expected")


@pytest.fixture
async def owner() -> AsyncIterator[tuple[int, Recording]]:
    handler = Recording()
    tasks: set[asyncio.Task[None]] = set()
    conns = Connections(ServerConfig(), 1000)
    gate = PeerGate(handler, SECRET)
    server = await asyncio.get_running_loop().create_server(
        lambda: HttpProtocol(gate, Limits(), tasks, conns), "127.0.0.1", 0
    )
    try:
        yield server.sockets[0].getsockname()[1], handler
    finally:
        server.close()
        conns.drain()
        await asyncio.wait_for(server.wait_closed(), 10)


def fill_request(target: str) -> UpstreamRequest:
    """What a non-owner's fill sends (edge.request.forward.upstream_request, fill=True)."""
    return UpstreamRequest(
        method="GET",
        host="cdn.example",
        target=target,
        headers=(
            ("Accept", "*/*"),
            ("Accept-Encoding", "gzip"),
            ("User-Agent", "curl/8"),
            ("X-Forwarded-For", "127.0.0.9"),
            ("Via", "1.1 edgecache"),
        ),
    )


async def test_fill_requests_take_owners_fast_path_over_one_kept_alive_connection(
    owner: tuple[int, Recording],
) -> None:
    port, handler = owner
    client = PeerClient(
        PeerConfig(name="owner", region="r", internal_url=f"http://127.0.0.1:{port}"),
        self_name="asker",
        secret=SECRET,
        timeouts=TimeoutConfig(connect_s=1.0, first_byte_s=5.0, idle_s=5.0, total_s=10.0),
    )
    try:
        bodies = [await read_all(await client.fetch(fill_request(f"/obj/{i}?v=1"))) for i in range(3)]
    finally:
        client.close()
        assert await client.wait_closed(5.0)
    assert bodies == [b"hello"] * 3
    assert handler.slow == []
    assert [(host, target) for host, target, _ in handler.fast] == [
        (b"cdn.example", b"/obj/0?v=1"),
        (b"cdn.example", b"/obj/1?v=1"),
        (b"cdn.example", b"/obj/2?v=1"),
    ]
    names = {name.lower() for name, _ in handler.fast[0][2]}
    assert {b"x-edge-hop", b"x-edge-secret", b"x-edge-deadline"} <= names
    assert client.pool.connects == 1
