"""OriginClient against real servers on 127.0.0.1: raw target, headers, timeouts, errors."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Self

import aiohttp
import pytest
from aiohttp import web

from origin.client import OriginClient, make_session
from origin.config import ServerConfig, TimeoutConfig
from origin.errors import (
    BodyError,
    BodyTimeout,
    ConnectError,
    InvalidTarget,
    ProtocolError,
    UpstreamTimeout,
)
from origin.upstream import Headers, UpstreamRequest, UpstreamResponse

pytestmark = pytest.mark.timeout(10)

Handler = Callable[["RawServer", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A scripted TCP server on 127.0.0.1:0; every connection runs `handler`.

    `heads` collects each request head as received (bytes up to the blank line), `connections`
    counts accepted connections, `got_request` is set when a head arrived, and `release` is
    what a handler that must stall waits on: it is set on exit, so nothing outlives the test.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.heads: list[bytes] = []
        self.connections = 0
        self.got_request = asyncio.Event()
        self.release = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def read_head(self, reader: asyncio.StreamReader) -> bytes:
        """Reads one request head; returns b"" at EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return b""
        self.heads.append(head)
        self.got_request.set()
        return head

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        self.connections += 1
        try:
            await self._handler(self, reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


def respond(raw: bytes, *, then_close: bool = True) -> Handler:
    """A handler that answers every request head on the connection with `raw`."""

    async def handler(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await server.read_head(reader):
            writer.write(raw)
            await writer.drain()
            if then_close:
                return

    return handler


def respond_then_stall(raw: bytes) -> Handler:
    """A handler that sends `raw` (a head and maybe part of a body) and then waits for release."""

    async def handler(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if await server.read_head(reader):
            writer.write(raw)
            await writer.drain()
            await server.release.wait()

    return handler


OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def closed_port() -> int:
    """A port on 127.0.0.1 that was just bound and closed, so connecting is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def get(target: str = "/", headers: Headers = ()) -> UpstreamRequest:
    return UpstreamRequest(method="GET", host="example.test", target=target, headers=headers)


def client_for(url: str, session: aiohttp.ClientSession, **timeouts: float) -> OriginClient:
    return OriginClient(ServerConfig(url=url), TimeoutConfig(**timeouts), session)


async def read_all(response: UpstreamResponse) -> bytes:
    return b"".join([chunk async for chunk in response.body])


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session() as s:
        yield s


class TestRequestLine:
    @pytest.mark.parametrize(
        "target",
        ["/a%3Fx", "/a?x", "/%2e%2e/x", "//double", "/a/../b", "/p%20q?x=%41&y=a+b", "/%7Euser"],
    )
    async def test_fetch_sends_target_byte_for_byte_when_target_has_escapes_or_dots(
        self, session: aiohttp.ClientSession, target: str
    ) -> None:
        async with RawServer(respond(OK_EMPTY)) as server:
            response = await client_for(server.url, session).fetch(get(target))
            await read_all(response)
        assert server.heads[0].split(b"\r\n")[0] == f"GET {target} HTTP/1.1".encode()

    async def test_fetch_sends_only_the_given_headers_when_session_would_add_defaults(
        self, session: aiohttp.ClientSession
    ) -> None:
        request = get("/", headers=(("X-App", "1"), ("Accept-Language", "de"), ("X-App", "2")))
        async with RawServer(respond(OK_EMPTY)) as server:
            await read_all(await client_for(server.url, session).fetch(request))
        lines = server.heads[0].decode().split("\r\n")[1:-2]
        assert sorted(lines) == sorted(
            ["Host: example.test", "X-App: 1", "X-App: 2", "Accept-Language: de"]
        )

    async def test_fetch_drops_hop_by_hop_request_headers_when_given_some(
        self, session: aiohttp.ClientSession
    ) -> None:
        request = get(
            "/",
            headers=(
                ("Connection", "x-secret"),
                ("X-Secret", "s"),
                ("TE", "trailers"),
                ("X-Ok", "1"),
            ),
        )
        async with RawServer(respond(OK_EMPTY)) as server:
            await read_all(await client_for(server.url, session).fetch(request))
        head = server.heads[0].lower()
        assert b"x-secret" not in head and b"te:" not in head and b"x-ok: 1" in head

    @pytest.mark.parametrize("target", ["http://other/x", "*", "/a#frag", "/a b", "/a\r\nX: y"])
    async def test_fetch_raises_invalid_target_when_target_is_not_origin_form(
        self, session: aiohttp.ClientSession, target: str
    ) -> None:
        client = client_for(f"http://127.0.0.1:{closed_port()}", session)
        with pytest.raises(InvalidTarget) as info:
            await client.fetch(get(target))
        assert not info.value.retryable


class TestResponse:
    async def test_fetch_strips_hop_by_hop_headers_when_origin_names_them_in_connection(
        self, session: aiohttp.ClientSession
    ) -> None:
        raw = (
            b"HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\n"
            b"Keep-Alive: timeout=5\r\nX-Keep: a\r\nCache-Control: max-age=60\r\nX-Keep: b\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"
        )
        async with RawServer(respond(raw)) as server:
            response = await client_for(server.url, session).fetch(get())
            body = await read_all(response)
        assert response.headers == (
            ("X-Keep", "a"),
            ("Cache-Control", "max-age=60"),
            ("X-Keep", "b"),
        )
        assert body == b"abc"
        assert (response.status, response.reason, response.upstream) == (200, "OK", server.url)

    async def test_fetch_returns_compressed_bytes_when_origin_sends_gzip(
        self, session: aiohttp.ClientSession
    ) -> None:
        compressed = gzip.compress(b"hello " * 1000)

        async def handle(request: web.Request) -> web.Response:
            return web.Response(
                body=compressed, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"}
            )

        app = web.Application()
        app.router.add_get("/g", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            response = await client_for(f"http://127.0.0.1:{port}", session).fetch(get("/g"))
            body = await read_all(response)
        finally:
            await runner.cleanup()
        assert body == compressed
        assert response.header("content-encoding") == "gzip"

    async def test_fetch_reuses_connection_when_previous_body_was_read_to_end(
        self, session: aiohttp.ClientSession
    ) -> None:
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
        async with RawServer(respond(raw, then_close=False)) as server:
            client = client_for(server.url, session)
            first = await read_all(await client.fetch(get("/1")))
            second = await read_all(await client.fetch(get("/2")))
        assert (first, second, server.connections) == (b"hi", b"hi", 1)

    async def test_close_closes_connection_when_body_was_not_read(
        self, session: aiohttp.ClientSession
    ) -> None:
        eof = asyncio.Event()

        async def partial_then_watch(
            server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            if await server.read_head(reader):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhi")
                await writer.drain()
                if await reader.read() == b"":
                    eof.set()

        async with RawServer(partial_then_watch) as server:
            response = await client_for(server.url, session).fetch(get())
            response.close()
            await eof.wait()
        assert eof.is_set()

    async def test_fetch_sets_times_in_order_when_head_arrives(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with RawServer(respond(OK_EMPTY)) as server:
            response = await client_for(server.url, session).fetch(get())
            await read_all(response)
        assert 0 < response.request_time <= response.response_time


class TestErrors:
    async def test_fetch_raises_connect_error_when_port_refuses(
        self, session: aiohttp.ClientSession
    ) -> None:
        client = client_for(f"http://127.0.0.1:{closed_port()}", session)
        with pytest.raises(ConnectError) as info:
            await client.fetch(get())
        assert info.value.retryable and info.value.__cause__ is not None

    async def test_fetch_raises_timeout_within_bound_when_origin_never_answers(
        self, session: aiohttp.ClientSession
    ) -> None:
        loop = asyncio.get_running_loop()
        async with RawServer(respond_then_stall(b"")) as server:
            started = loop.time()
            with pytest.raises(UpstreamTimeout) as info:
                await client_for(server.url, session, first_byte_s=0.2).fetch(get())
            elapsed = loop.time() - started
        assert 0.2 <= elapsed < 2.0
        assert not isinstance(info.value, BodyError)

    async def test_body_raises_body_timeout_when_origin_stalls_mid_body(
        self, session: aiohttp.ClientSession
    ) -> None:
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
        async with RawServer(respond_then_stall(raw)) as server:
            response = await client_for(server.url, session, idle_s=0.2).fetch(get())
            body = aiter(response.body)
            first = await anext(body)
            with pytest.raises(BodyTimeout) as info:
                await anext(body)
        assert first == b"abc"
        assert isinstance(info.value, BodyError) and isinstance(info.value, UpstreamTimeout)
        assert not info.value.retryable

    async def test_body_raises_body_timeout_when_total_timeout_expires_before_idle(
        self, session: aiohttp.ClientSession
    ) -> None:
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
        async with RawServer(respond_then_stall(raw)) as server:
            response = await client_for(server.url, session, total_s=0.3, first_byte_s=5.0).fetch(
                get()
            )
            with pytest.raises(BodyTimeout, match="total"):
                await read_all(response)

    @pytest.mark.parametrize(
        "raw",
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
        ],
        ids=["content-length", "chunked"],
    )
    async def test_body_raises_body_error_when_connection_closes_early(
        self, session: aiohttp.ClientSession, raw: bytes
    ) -> None:
        async with RawServer(respond(raw)) as server:
            response = await client_for(server.url, session).fetch(get())
            with pytest.raises(BodyError) as info:
                await read_all(response)
        assert not isinstance(info.value, BodyTimeout)
        assert info.value.__cause__ is not None

    @pytest.mark.parametrize("raw", [b"", b"garbage\r\n\r\n"], ids=["closed", "malformed"])
    async def test_fetch_raises_protocol_error_when_head_is_missing_or_malformed(
        self, session: aiohttp.ClientSession, raw: bytes
    ) -> None:
        async with RawServer(respond(raw)) as server:
            with pytest.raises(ProtocolError) as info:
                await client_for(server.url, session).fetch(get())
        assert info.value.retryable and info.value.upstream == server.url

    async def test_fetch_propagates_cancellation_when_caller_is_cancelled(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with RawServer(respond_then_stall(b"")) as server:
            task = asyncio.create_task(client_for(server.url, session).fetch(get()))
            await server.got_request.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert task.cancelled()
