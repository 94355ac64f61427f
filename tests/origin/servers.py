"""Real servers on 127.0.0.1 shared by the origin and cluster tests.

RawServer scripts raw TCP answers (`respond`, `respond_then_stall`); closed_port finds a port
nothing listens on; ArrivalStats lets a test wait for the demo origin to count a request, and
pending_get holds a demo origin with a request in flight; status_of and header_of fetch the
status or one header of an answer; `session` is the fixture every socket test fetches with
(conftest files import it).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Self

import aiohttp
import pytest
import yarl

from origin.client import make_session
from origin.demo.server import DemoOrigin, RequestStats, start_demo_origin
from origin.upstream import UpstreamResponse

__all__ = [
    "OK_EMPTY",
    "ArrivalStats",
    "Handler",
    "RawServer",
    "closed_port",
    "header_of",
    "pending_get",
    "read_all",
    "respond",
    "respond_then_stall",
    "session",
    "status_of",
]

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


def respond(raw: bytes, *, then_close: bool = True, then_stall: bool = False) -> Handler:
    """A handler that answers every request head on the connection with `raw`.

    then_stall: after the first answer, wait for release instead of reading on.
    """

    async def handler(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await server.read_head(reader):
            writer.write(raw)
            await writer.drain()
            if then_stall:
                await server.release.wait()
                return
            if then_close:
                return

    return handler


def respond_then_stall(raw: bytes) -> Handler:
    """A handler that sends `raw` (a head and maybe part of a body) and then waits for release."""
    return respond(raw, then_stall=True)


OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def closed_port() -> int:
    """A port on 127.0.0.1 that was just bound and closed, so connecting is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
    finally:
        sock.close()


async def read_all(response: UpstreamResponse) -> bytes:
    """The whole body of an upstream response."""
    return b"".join([chunk async for chunk in response.body])


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session() as s:
        yield s


class ArrivalStats(RequestStats):
    """RequestStats that sets `arrived` on every counted request."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()

    def record(self, method: str, raw_path: str, headers: tuple[tuple[str, str], ...]) -> None:
        super().record(method, raw_path, headers)
        self.arrived.set()


Pending = asyncio.Future[aiohttp.ClientResponse]


@asynccontextmanager
async def pending_get(target: str) -> AsyncIterator[tuple[DemoOrigin, ArrivalStats, Pending]]:
    """A demo origin that has counted a GET of `target` still waiting for its answer.

    Yields (origin, its stats, the pending GET) inside the client session; closes the
    origin on exit.
    """
    stats = ArrivalStats()
    server = await start_demo_origin(stats=stats)
    try:
        async with aiohttp.ClientSession() as session:
            waiting = asyncio.ensure_future(session.get(server.url + target))
            await stats.arrived.wait()
            yield server, stats, waiting
    finally:
        await server.close()


async def status_of(
    http: aiohttp.ClientSession, path: str | yarl.URL, *, headers: dict[str, str] | None = None
) -> int:
    """The status of a GET of `path` (the body is not read)."""
    async with http.get(path, headers=headers) as resp:
        return resp.status


async def header_of(
    http: aiohttp.ClientSession, path: str, name: str, *, method: str = "GET"
) -> str:
    """Header `name` of the answer to `method path` (e.g. a validator to send back)."""
    async with http.request(method, path) as resp:
        return resp.headers[name]
