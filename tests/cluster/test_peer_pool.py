"""The peer client's own connections, against scripted servers on 127.0.0.1.

Keep-alive reuse, framing (Content-Length, chunked, none), what closes a connection instead
of reusing it, first-byte and between-chunks timeouts, the connection cap under concurrency,
backpressure on a reader that does not read, and the idle timeout. Every step that depends on
another waits for an Event; every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cluster.config import PeerConfig
from cluster.peer import PeerClient
from cluster.peer_exchange import HIGH_WATER, PeerExchange
from origin.config import TimeoutConfig
from origin.errors import BodyError, BodyTimeout, ConnectError, PoolSaturated, ProtocolError, UpstreamTimeout
from origin.upstream import UpstreamRequest
from tests.origin.servers import RawServer, read_all

pytestmark = pytest.mark.timeout(20)

CLIENTS: list[PeerClient] = []


def make(
    port: int,
    *,
    first_byte_s: float = 5.0,
    idle_s: float = 5.0,
    max_connections: int = 100,
    keepalive_s: float = 15.0,
) -> PeerClient:
    made = PeerClient(
        PeerConfig(name="edge2", region="r1", internal_url=f"http://127.0.0.1:{port}"),
        self_name="edge1",
        secret="s",
        timeouts=TimeoutConfig(connect_s=1.0, first_byte_s=first_byte_s, idle_s=idle_s, total_s=30.0),
        margin_s=0.1,
        max_connections=max_connections,
        keepalive_s=keepalive_s,
    )
    CLIENTS.append(made)
    return made


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    yield
    while CLIENTS:
        made = CLIENTS.pop()
        made.close()
        assert await made.wait_closed(5.0)


def get(target: str = "/obj", method: str = "GET") -> UpstreamRequest:
    return UpstreamRequest(method=method, host="cdn.example", target=target)


def framed(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def answer_each(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request on the connection with its own number as the body."""
    while await server.read_head(reader):
        writer.write(framed(str(len(server.heads)).encode()))
        await writer.drain()


class TestKeepAlive:
    async def test_sequential_requests_share_one_connection_when_responses_are_framed(self) -> None:
        async with RawServer(answer_each) as server:
            peer = make(server.port)
            bodies = [await read_all(await peer.fetch(get())) for _ in range(5)]
        assert bodies == [b"1", b"2", b"3", b"4", b"5"]
        assert server.connections == 1 and peer.pool.connects == 1

    async def test_chunked_body_arrives_whole_and_connection_is_reused(self) -> None:
        async def chunked(
            server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            while await server.read_head(reader):
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
                await writer.drain()
                writer.write(b"7\r\n, world\r\n0\r\n\r\n")
                await writer.drain()

        async with RawServer(chunked) as server:
            peer = make(server.port)
            first = await peer.fetch(get())
            assert first.header("transfer-encoding") is None  # hop-by-hop: never handed on
            assert await read_all(first) == b"hello, world"
            assert await read_all(await peer.fetch(get())) == b"hello, world"
        assert server.connections == 1

    async def test_unframed_body_reads_to_close_and_connection_is_not_reused(self) -> None:
        async def until_close(
            server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            if await server.read_head(reader):
                writer.write(b"HTTP/1.1 200 OK\r\n\r\nno length, ")
                await writer.drain()
                writer.write(b"ends at the close")

        async with RawServer(until_close) as server:
            peer = make(server.port)
            assert await read_all(await peer.fetch(get())) == b"no length, ends at the close"
            assert await read_all(await peer.fetch(get())) == b"no length, ends at the close"
        assert server.connections == 2 and peer.pool.connects == 2

    @pytest.mark.parametrize(
        "raw",
        [
            framed(b"bye", "Connection: close\r\n"),
            framed(b"bye") + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",  # a response nobody asked for
            b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nbye",
        ],
        ids=["connection-close", "extra-response", "http-1.0"],
    )
    async def test_connection_is_not_reused_when_peer_closes_or_sends_more(self, raw: bytes) -> None:
        async def answer(
            server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            while await server.read_head(reader):
                writer.write(raw)
                await writer.drain()

        async with RawServer(answer) as server:
            peer = make(server.port)
            assert await read_all(await peer.fetch(get())) == b"bye"
            assert await read_all(await peer.fetch(get())) == b"bye"
        assert server.connections == 2

    async def test_head_request_gets_no_body_and_its_connection_is_closed(self) -> None:
        async with RawServer(answer_each) as server:
            peer = make(server.port)
            response = await peer.fetch(get(method="HEAD"))
            assert response.header("content-length") == "1" and await read_all(response) == b""
            assert await read_all(await peer.fetch(get())) == b"2"
        assert server.connections == 2

    async def test_request_is_sent_again_when_kept_alive_connection_closes_unanswered(self) -> None:
        async def once_per_connection(
            server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            if await server.read_head(reader):
                writer.write(framed(b"ok"))
                await writer.drain()
            await server.read_head(reader)  # the next request on it: closed unanswered (an idle race)

        async with RawServer(once_per_connection) as server:
            peer = make(server.port)
            assert await read_all(await peer.fetch(get())) == b"ok"
            assert await read_all(await peer.fetch(get())) == b"ok"
        assert server.connections == 2 and len(server.heads) == 3


class TestFailures:
    async def test_body_error_and_no_reuse_when_peer_closes_mid_body(self) -> None:
        async def truncated(
            server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            if await server.read_head(reader):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
                await writer.drain()

        async with RawServer(truncated) as server:
            peer = make(server.port)
            response = await peer.fetch(get())
            with pytest.raises(BodyError) as info:
                await read_all(response)
            assert info.value.upstream == "peer:edge2"
            assert peer.pool.idle_connections == 0
            with pytest.raises(BodyError):
                await read_all(await peer.fetch(get()))
        assert server.connections == 2

    async def test_protocol_error_when_head_is_malformed(self) -> None:
        async def garbage(
            server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            if await server.read_head(reader):
                writer.write(b"HTTP/1.1 2x0 What\r\n\r\n")
                await writer.drain()
                await server.release.wait()

        async with RawServer(garbage) as server:
            with pytest.raises(ProtocolError) as info:
                await make(server.port).fetch(get())
        assert info.value.retryable and info.value.upstream == "peer:edge2"

    async def test_first_byte_timeout_when_peer_never_answers(self) -> None:
        async def stall(
            server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            await server.read_head(reader)
            await server.release.wait()

        loop = asyncio.get_running_loop()
        async with RawServer(stall) as server:
            peer = make(server.port, first_byte_s=0.3)
            started = loop.time()
            with pytest.raises(UpstreamTimeout) as info:
                await peer.fetch(get())
            waited = loop.time() - started
            assert server.got_request.is_set()
            assert peer.pool.idle_connections == 0  # the stalled connection is never reused
        assert 0.25 <= waited < 3.0
        assert info.value.retryable and not isinstance(info.value, BodyTimeout)

    async def test_between_chunks_timeout_when_body_stalls(self) -> None:
        first_chunk_sent = asyncio.Event()

        async def stall_mid_body(
            server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            if await server.read_head(reader):
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nsome\r\n")
                await writer.drain()
                first_chunk_sent.set()
                await server.release.wait()

        loop = asyncio.get_running_loop()
        async with RawServer(stall_mid_body) as server:
            peer = make(server.port, idle_s=0.3)
            response = await peer.fetch(get())
            await asyncio.wait_for(first_chunk_sent.wait(), 5.0)
            assert await anext(response.body) == b"some"
            started = loop.time()
            with pytest.raises(BodyTimeout) as info:
                await anext(response.body)
            waited = loop.time() - started
        assert 0.25 <= waited < 3.0 and info.value.upstream == "peer:edge2"


class TestPool:
    async def test_connections_stay_within_cap_when_more_requests_run_at_once(self) -> None:
        go = asyncio.Event()
        open_now = peak = 0

        async def held(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal open_now, peak
            open_now += 1
            peak = max(peak, open_now)
            try:
                while await server.read_head(reader):
                    await go.wait()
                    writer.write(framed(b"x"))
                    await writer.drain()
            finally:
                open_now -= 1

        async with RawServer(held) as server:
            peer = make(server.port, max_connections=2)
            fetches = [asyncio.ensure_future(peer.fetch(get())) for _ in range(6)]
            while len(server.heads) < 2:  # both connections carry a request; the rest wait
                await asyncio.wait_for(server.got_request.wait(), 5.0)
                server.got_request.clear()
            assert peer.pool.open_connections == 2
            go.set()
            bodies = [await read_all(r) for r in await asyncio.wait_for(asyncio.gather(*fetches), 10.0)]
        assert bodies == [b"x"] * 6
        assert peak == 2 and server.connections == 2 and len(server.heads) == 6

    async def test_reading_pauses_when_reader_does_not_read_and_resumes_when_it_does(self) -> None:
        size = 64 * 1024 * 1024  # far beyond what the socket buffers of both sides hold
        blocked = asyncio.Event()

        async def flood(
            server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            if not await server.read_head(reader):
                return
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
            block = b"z" * (1024 * 1024)
            for _ in range(size // len(block)):
                writer.write(block)
                try:
                    await asyncio.wait_for(writer.drain(), 0.5)
                except TimeoutError:
                    blocked.set()  # the client stopped reading: the buffers are full
                    await writer.drain()

        async with RawServer(flood) as server:
            peer = make(server.port)
            response = await peer.fetch(get())
            await asyncio.wait_for(blocked.wait(), 15.0)
            exchange = response.body
            assert isinstance(exchange, PeerExchange)
            assert 0 < exchange.buffered <= HIGH_WATER + 1024 * 1024  # at most one read past the mark
            received = 0
            async for chunk in response.body:
                received += len(chunk)
        assert received == size

    async def test_idle_connection_closes_after_keepalive(self) -> None:
        closed = asyncio.Event()

        async def note_close(
            server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            while await server.read_head(reader):
                writer.write(framed(b"ok"))
                await writer.drain()
            closed.set()  # the client closed its idle connection

        async with RawServer(note_close) as server:
            peer = make(server.port, keepalive_s=0.2)
            assert await read_all(await peer.fetch(get())) == b"ok"
            await asyncio.wait_for(closed.wait(), 5.0)
            assert peer.pool.idle_connections == 0

    async def test_pool_saturated_when_waiting_queue_is_full(self) -> None:
        go = asyncio.Event()

        async def held(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await server.read_head(reader):
                await go.wait()
                writer.write(framed(b"x"))
                await writer.drain()

        async with RawServer(held) as server:
            peer = make(server.port, max_connections=1)  # one connection, 8 waiting
            fetches = [asyncio.ensure_future(peer.fetch(get())) for _ in range(9)]
            await asyncio.wait_for(server.got_request.wait(), 5.0)
            with pytest.raises(PoolSaturated) as info:
                await peer.fetch(get())
            assert not info.value.retryable and info.value.upstream == "peer:edge2"
            go.set()
            bodies = [await read_all(r) for r in await asyncio.wait_for(asyncio.gather(*fetches), 10.0)]
        assert bodies == [b"x"] * 9 and server.connections == 1

    async def test_closed_client_refuses_new_fetches_with_retryable_connect_error(self) -> None:
        async with RawServer(answer_each) as server:
            peer = make(server.port)
            assert await read_all(await peer.fetch(get())) == b"1"
            peer.close()
            assert await peer.wait_closed(5.0)
            with pytest.raises(ConnectError) as info:
                await peer.fetch(get())
        assert info.value.retryable and server.connections == 1
