"""A reset reaches the origin exactly as often as the pool's retry policy says (issue 11).

aiohttp resends an idempotent request once when its connection drops before the head; the
session made by origin.client.make_session must not. Each test runs a raw asyncio server on
127.0.0.1 that reads a request head and resets the connection (RST, no response), and counts
the connections it accepted and the request heads it read.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import aiohttp
import pytest

from origin.client import OriginClient
from origin.config import OriginPoolConfig, PassiveHealthConfig, RetryConfig, ServerConfig, TimeoutConfig
from origin.errors import ProtocolError, StaleConnection
from origin.pool import OriginPool
from origin.upstream import UpstreamRequest
from tests.origin.servers import OK_EMPTY, RawServer, read_all, respond

pytestmark = pytest.mark.timeout(20)


def reset(writer: asyncio.StreamWriter) -> None:
    """Closes the connection with an RST (SO_LINGER 0), as an origin that resets does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def read_then_reset(
    server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    if await server.read_head(reader):
        reset(writer)


async def answer_once_then_reset(
    server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """The first request of the server gets a keep-alive 200; every later one a reset."""
    while await server.read_head(reader):
        if len(server.heads) > 1:
            reset(writer)
            return
        writer.write(OK_EMPTY)
        await writer.drain()


def pool(*servers: RawServer, attempts: int, session: aiohttp.ClientSession) -> OriginPool:
    config = OriginPoolConfig(
        name="web",
        servers=tuple(ServerConfig(url=s.url) for s in servers),
        retry=RetryConfig(attempts=attempts),
        passive=PassiveHealthConfig(failures=0),
    )
    return OriginPool(config, session)


def get(target: str = "/x") -> UpstreamRequest:
    return UpstreamRequest(method="GET", host="example.test", target=target)


class TestResetCount:
    @pytest.mark.parametrize("attempts", [1, 2])
    async def test_reset_reaches_lone_server_once_when_pool_has_no_other_server(
        self, session: aiohttp.ClientSession, attempts: int
    ) -> None:
        async with RawServer(read_then_reset) as server:
            with pytest.raises(ProtocolError):
                await pool(server, attempts=attempts, session=session).fetch(get())
        assert (server.connections, len(server.heads)) == (1, 1)

    @pytest.mark.parametrize("attempts", [1, 2, 3])
    async def test_reset_reaches_each_server_at_most_once_when_retries_go_elsewhere(
        self, session: aiohttp.ClientSession, attempts: int
    ) -> None:
        async with RawServer(read_then_reset) as a, RawServer(read_then_reset) as b:
            with pytest.raises(ProtocolError):
                await pool(a, b, attempts=attempts, session=session).fetch(get())
        # attempts=1: one try; 2 or more: one try on each of the two servers, never a third
        assert len(a.heads) + len(b.heads) == min(attempts, 2)
        assert a.connections + b.connections == min(attempts, 2)

    async def test_reset_on_reused_keepalive_connection_is_not_resent_when_retries_are_zero(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with RawServer(answer_once_then_reset) as server:
            origin = pool(server, attempts=1, session=session)
            first = await origin.fetch(get("/first"))
            assert first.status == 200 and await read_all(first) == b""
            with pytest.raises(ProtocolError):
                await origin.fetch(get("/second"))
        # the second request went out on the first one's keep-alive connection, and only once
        assert server.connections == 1
        assert [head.split(b" ")[1] for head in server.heads] == [b"/first", b"/second"]

    async def test_stale_keepalive_connection_is_tried_once_more_when_policy_allows_a_retry(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with RawServer(answer_once_then_reset) as server:
            origin = pool(server, attempts=2, session=session)
            await read_all(await origin.fetch(get("/first")))
            with pytest.raises(ProtocolError):
                await origin.fetch(get("/second"))
        # the reused connection's reset is retried on the same server, afresh: 2 tries, no more
        assert server.connections == 2
        assert [head.split(b" ")[1] for head in server.heads] == [b"/first", b"/second", b"/second"]
        assert origin.stale_retries == 1 and origin.retries == 0

    async def test_stale_keepalive_connection_fails_over_when_another_server_is_left(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with (
            RawServer(answer_once_then_reset) as a,
            RawServer(respond(OK_EMPTY, then_close=False)) as b,
        ):
            origin = pool(a, b, attempts=2, session=session)
            for target in ("/1", "/2", "/3"):  # round robin: a, b, then a's reused connection
                response = await origin.fetch(get(target))
                await read_all(response)
        assert response.upstream == b.url
        assert [head.split(b" ")[1] for head in a.heads] == [b"/1", b"/3"]
        assert [head.split(b" ")[1] for head in b.heads] == [b"/2", b"/3"]
        assert (origin.retries, origin.stale_retries) == (1, 0)


class TestLoneClient:
    """An OriginClient outside a pool (a peer's) resends only what a stale connection lost."""

    async def test_client_sends_reset_request_once_when_connection_was_fresh(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with RawServer(read_then_reset) as server:
            client = OriginClient(ServerConfig(url=server.url), TimeoutConfig(), session)
            with pytest.raises(ProtocolError) as failure:
                await client.fetch(get())
        assert not isinstance(failure.value, StaleConnection)
        assert (server.connections, len(server.heads)) == (1, 1)

    async def test_client_resends_once_on_fresh_connection_when_reused_one_was_stale(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with RawServer(answer_once_then_reset) as server:
            client = OriginClient(ServerConfig(url=server.url), TimeoutConfig(), session)
            await read_all(await client.fetch(get("/first")))
            with pytest.raises(ProtocolError) as failure:
                await client.fetch(get("/second"))
        assert not isinstance(failure.value, StaleConnection)  # the fresh try's own reset
        assert server.connections == 2 and len(server.heads) == 3
