"""103 Early Hints through OriginClient, against a raw server on 127.0.0.1 (issue 11).

aiohttp drops 1xx responses without a hook; origin/client.py's response class reports each
103 to the request's sink (origin/early_hints.py). These tests fail if a new aiohttp reads
responses differently, rather than letting hints vanish quietly.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from origin.client import OriginClient
from origin.config import ServerConfig, TimeoutConfig
from origin.early_hints import early_hints_to
from origin.upstream import UpstreamRequest
from tests.origin.servers import RawServer, read_all

pytestmark = pytest.mark.timeout(10)

HINTS = (
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n"
    b"Connection: keep-alive\r\n\r\n"
)
FINAL = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nLink: </style.css>; rel=preload\r\n\r\nok"


async def hints_then_final(
    server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Two 103s, then (once the test releases it) the final response."""
    if not await server.read_head(reader):
        return
    writer.write(HINTS + HINTS.replace(b"style.css", b"app.js").replace(b"as=style", b"as=script"))
    await writer.drain()
    await server.release.wait()
    writer.write(FINAL)
    await writer.drain()


def client(url: str, session: aiohttp.ClientSession) -> OriginClient:
    return OriginClient(ServerConfig(url=url), TimeoutConfig(), session)


GET = UpstreamRequest(method="GET", host="example.test", target="/page")


async def test_each_103_reaches_sink_before_final_head_when_request_wants_hints(
    session: aiohttp.ClientSession,
) -> None:
    got: list[tuple[tuple[str, str], ...]] = []
    both = asyncio.Event()

    def sink(fields: tuple[tuple[str, str], ...]) -> None:
        got.append(fields)
        if len(got) == 2:
            both.set()

    async with RawServer(hints_then_final) as server:
        with early_hints_to(sink):
            fetching = asyncio.create_task(client(server.url, session).fetch(GET))
        async with asyncio.timeout(5):
            await both.wait()  # the final response is still held by the server
        assert not fetching.done()
        server.release.set()
        response = await fetching
        assert response.status == 200 and await read_all(response) == b"ok"
    assert got == [
        (("Link", "</style.css>; rel=preload; as=style"),),  # Connection is hop-by-hop: dropped
        (("Link", "</app.js>; rel=preload; as=script"),),
    ]


async def test_103s_are_skipped_when_request_has_no_sink(session: aiohttp.ClientSession) -> None:
    async with RawServer(hints_then_final) as server:
        server.release.set()
        response = await client(server.url, session).fetch(GET)
        assert response.status == 200 and await read_all(response) == b"ok"
