"""OriginClient against real servers on 127.0.0.1: raw target, headers, timeouts, errors."""

from __future__ import annotations

import asyncio
import gzip

import aiohttp
import pytest
from aiohttp import web

from origin.client import OriginClient
from origin.config import ServerConfig, TimeoutConfig
from origin.errors import (
    BodyError,
    BodyTimeout,
    ConnectError,
    InvalidTarget,
    ProtocolError,
    UpstreamTimeout,
)
from origin.upstream import Headers, UpstreamRequest
from tests.origin.servers import (
    OK_EMPTY,
    RawServer,
    closed_port,
    read_all,
    respond,
    respond_then_stall,
)

pytestmark = pytest.mark.timeout(10)


def get(target: str = "/", headers: Headers = ()) -> UpstreamRequest:
    return UpstreamRequest(method="GET", host="example.test", target=target, headers=headers)


def client_for(url: str, session: aiohttp.ClientSession, **timeouts: float) -> OriginClient:
    return OriginClient(ServerConfig(url=url), TimeoutConfig(**timeouts), session)


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
