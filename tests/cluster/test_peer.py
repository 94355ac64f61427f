"""PeerClient against real servers on 127.0.0.1: hop, secret and deadline headers, raw target, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Self

import pytest
from aiohttp import web

from cluster.config import PeerConfig
from cluster.peer import (
    DEADLINE_HEADER,
    HOP_HEADER,
    SECRET_HEADER,
    PeerClient,
    check_secret,
    format_deadline,
    parse_deadline,
)
from origin.config import TimeoutConfig
from origin.deadline import head_deadline_at
from origin.errors import BodyError, ConnectError, DeadlineExceeded, UpstreamTimeout
from origin.upstream import UpstreamRequest
from tests.origin.servers import RawServer, closed_port, read_all

pytestmark = pytest.mark.timeout(10)

SECRET = "s3cret-for-tests"


def peer_at(port: int) -> PeerConfig:
    return PeerConfig(name="edge2", region="r1", internal_url=f"http://127.0.0.1:{port}")


CLIENTS: list[PeerClient] = []  # closed after each test by `close_clients`


def client(port: int, *, first_byte_s: float = 5.0, down: asyncio.Event | None = None) -> PeerClient:
    made = PeerClient(
        peer_at(port),
        self_name="edge1",
        secret=SECRET,
        timeouts=TimeoutConfig(connect_s=0.5, first_byte_s=first_byte_s, idle_s=5.0, total_s=10.0),
        margin_s=0.5,
        down=None if down is None else (lambda: down),
    )
    CLIENTS.append(made)
    return made


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    """Closes every client a test made and waits (bounded) for its connections to go."""
    yield
    while CLIENTS:
        made = CLIENTS.pop()
        made.close()
        assert await made.wait_closed(5.0)


async def stall(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the request head and never answers (until the test ends)."""
    await server.read_head(reader)
    await server.release.wait()


def get(target: str = "/obj", headers: tuple[tuple[str, str], ...] = ()) -> UpstreamRequest:
    return UpstreamRequest(method="GET", host="cdn.example", target=target, headers=headers)


class RecordingPeer:
    """An aiohttp server on 127.0.0.1:0 that records each request and answers with a body."""

    def __init__(self) -> None:
        self.requests: list[web.Request] = []
        self.targets: list[str] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        self.targets.append(request.raw_path)
        response = web.StreamResponse(headers={"X-From": "owner", "Content-Length": "12"})
        await response.prepare(request)
        await response.write(b"hello ")
        await response.write(b"world!")
        await response.write_eof()
        return response

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


class TestRequest:
    async def test_fetch_sends_hop_and_secret_headers_when_forwarding(self) -> None:
        async with RecordingPeer() as server:
            response = await client(server.port).fetch(get(headers=(("Accept", "text/html"),)))
            body = await read_all(response)
        (request,) = server.requests
        assert request.headers[HOP_HEADER] == "edge1"
        assert request.headers[SECRET_HEADER] == SECRET
        assert request.headers["Host"] == "cdn.example"
        assert request.headers["Accept"] == "text/html"
        assert body == b"hello world!"
        assert response.status == 200 and response.header("x-from") == "owner"
        assert response.upstream == "peer:edge2"

    async def test_fetch_replaces_hop_and_secret_when_caller_supplies_forged_ones(self) -> None:
        forged = ((HOP_HEADER, "mallory"), ("x-edge-secret", "guess"), ("X-Other", "kept"))
        async with RecordingPeer() as server:
            await read_all(await client(server.port).fetch(get(headers=forged)))
        (request,) = server.requests
        assert request.headers.getall(HOP_HEADER) == ["edge1"]
        assert request.headers.getall(SECRET_HEADER) == [SECRET]
        assert request.headers["X-Other"] == "kept"

    @pytest.mark.parametrize("target", ["/a%3Fx", "/a/../b?x=%41&y=a+b", "//double", "/%7Euser"])
    async def test_fetch_sends_target_byte_for_byte_when_target_has_escapes_or_dots(
        self, target: str
    ) -> None:
        async with RecordingPeer() as server:
            await read_all(await client(server.port).fetch(get(target)))
        assert server.targets == [target]


class TestErrors:
    async def test_fetch_raises_connect_error_naming_peer_when_port_refuses(self) -> None:
        with pytest.raises(ConnectError) as info:
            await client(closed_port()).fetch(get())
        assert info.value.upstream == "peer:edge2"
        assert info.value.retryable
        assert isinstance(info.value.__cause__, OSError)  # the refusal, kept as cause

    async def test_body_raises_body_error_naming_peer_when_peer_closes_mid_body(self) -> None:
        async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(truncated, "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            response = await client(port).fetch(get())
            with pytest.raises(BodyError) as info:
                await read_all(response)
        finally:
            server.close()
            await server.wait_closed()
        assert info.value.upstream == "peer:edge2" and not info.value.retryable


class TestDeadline:
    async def test_fetch_tells_peer_its_first_byte_timeout_minus_margin_when_no_deadline_given(self) -> None:
        async with RecordingPeer() as server:
            await read_all(await client(server.port, first_byte_s=5.0).fetch(get()))
        assert server.requests[0].headers.getall(DEADLINE_HEADER) == ["4.500"]

    async def test_fetch_passes_on_what_is_left_of_request_deadline_when_it_is_shorter(self) -> None:
        forged = ((DEADLINE_HEADER, "999"),)
        async with RecordingPeer() as server:
            with head_deadline_at(asyncio.get_running_loop().time() + 2.0):
                await read_all(await client(server.port).fetch(get(headers=forged)))
        (value,) = server.requests[0].headers.getall(DEADLINE_HEADER)
        assert 1.0 <= float(value) <= 1.5  # 2 s left, minus the 0.5 s margin, minus elapsed

    async def test_fetch_gives_up_at_request_deadline_without_fallback_when_peer_is_slow(self) -> None:
        loop = asyncio.get_running_loop()
        async with RawServer(stall) as server:
            started = loop.time()
            with head_deadline_at(started + 0.8), pytest.raises(DeadlineExceeded) as info:
                await client(server.port).fetch(get())
        assert 0.75 <= loop.time() - started < 2.0
        assert not info.value.retryable and info.value.upstream == "peer:edge2"

    async def test_fetch_raises_at_once_when_deadline_leaves_less_than_margin(self) -> None:
        async with RecordingPeer() as server:
            with head_deadline_at(asyncio.get_running_loop().time() + 0.3), pytest.raises(DeadlineExceeded):
                await client(server.port).fetch(get())
        assert server.requests == []

    async def test_own_first_byte_timeout_stays_retryable_when_no_deadline_was_given(self) -> None:
        async with RawServer(stall) as server:
            with pytest.raises(UpstreamTimeout) as info:
                await client(server.port, first_byte_s=0.6).fetch(get())
        assert info.value.retryable and not isinstance(info.value, DeadlineExceeded)

    async def test_fetch_stops_waiting_when_membership_marks_peer_down(self) -> None:
        down = asyncio.Event()
        async with RawServer(stall) as server:
            fetching = asyncio.ensure_future(client(server.port, down=down).fetch(get()))
            await server.got_request.wait()
            down.set()  # a hung peer: the probes found it gone
            with pytest.raises(ConnectError) as info:
                await asyncio.wait_for(fetching, 2.0)
        assert info.value.retryable and info.value.upstream == "peer:edge2"

    @pytest.mark.parametrize(("value", "seconds"), [("4.5", 4.5), (" 10 ", 10.0), ("0.000", 0.0)])
    def test_parse_deadline_reads_seconds_when_plain_decimal(self, value: str, seconds: float) -> None:
        assert parse_deadline(value) == seconds

    @pytest.mark.parametrize("value", [None, "", "-1", "1e3", "inf", "nan", "1.2.3", "٣", "99999999", "0x10"])
    def test_parse_deadline_ignores_value_when_not_plain_decimal_in_range(self, value: str | None) -> None:
        assert parse_deadline(value) is None

    def test_format_deadline_rounds_down_to_milliseconds_and_never_negative(self) -> None:
        assert (format_deadline(1.23456), format_deadline(-3.0)) == ("1.234", "0.000")
        assert parse_deadline(format_deadline(7.5)) == 7.5


class TestCheckSecret:
    def test_check_secret_accepts_when_secret_matches(self) -> None:
        assert check_secret(SECRET, SECRET)

    @pytest.mark.parametrize("presented", [None, "", "wrong", SECRET + "x", SECRET[:-1], "ünï"])
    def test_check_secret_rejects_when_secret_missing_or_different(self, presented: str | None) -> None:
        assert not check_secret(presented, SECRET)

    def test_check_secret_rejects_everything_when_configured_secret_is_empty(self) -> None:
        assert not check_secret("", "") and not check_secret("x", "")
