"""Origin work follows clients (issue 12): a fill nothing stores stops when its last client goes.

A raw origin in the test's event loop (127.0.0.1) streams a body slowly, 64 KiB every 20 ms:
64 MB by default (about 20 s), fewer chunks when the query says `n=`. The response is either
not storable (no-store, private, larger than the node's 8 MiB memory-object cap) or
storable. A client of a real edge node process reads
the head and leaves (or asks for one byte): the origin must see the edge close its
connection long before the body would have ended when nothing stores the response, and
must get to send the whole body when the edge stores it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.conftest import next_loopback
from tests.integration.harness import Proc, free_port, start_edge, write_config

pytestmark = pytest.mark.timeout(90)

CHUNK = b"x" * 65536
CHUNKS = 1000  # 64 MB by default (about 20 s at one chunk per 20 ms)
STORED_CHUNKS = 50  # 3.2 MB: under the memory tier's 8 MiB object cap
PACE_S = 0.02
STOP_BOUND_S = 10.0  # the origin must see the close well within this (half the body's time)


class SlowOrigin:
    """Serves paced chunks (`n=` of the query, else CHUNKS) with the Cache-Control of the
    query's `cc=`; records the body bytes it sent and whether the edge closed early."""

    def __init__(self) -> None:
        self.port = 0
        self.requests = 0
        self.sent = 0
        self.closed = asyncio.Event()  # the edge closed the connection before the body's end
        self.finished = asyncio.Event()  # the whole body was sent
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> SlowOrigin:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=10)
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            query = parse_qs(urlsplit(head.split(b" ", 2)[1].decode()).query)
            cache_control = query.get("cc", ["no-store"])[0]
            chunks = int(query.get("n", [CHUNKS])[0])
            writer.write(
                (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    f"Cache-Control: {cache_control}\r\nContent-Length: {len(CHUNK) * chunks}\r\n\r\n"
                ).encode()
            )
            await writer.drain()
            eof = asyncio.ensure_future(reader.read(1))  # b"" once the edge closes its end
            try:
                for _ in range(chunks):
                    if eof.done():
                        self.closed.set()
                        return
                    writer.write(CHUNK)
                    await writer.drain()
                    self.sent += len(CHUNK)
                    await asyncio.sleep(PACE_S)  # the pace of a slow origin, not an ordering
                self.finished.set()
            finally:
                eof.cancel()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.closed.set()
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()


@pytest.fixture
async def slow() -> AsyncIterator[SlowOrigin]:
    origin = await SlowOrigin().start()
    try:
        yield origin
    finally:
        await origin.close()


@pytest.fixture
def edge(tmp_path: Path, slow: SlowOrigin) -> Iterator[Proc]:
    host = next_loopback()
    # memory only: objects over 8 MiB are served but not kept
    config = write_config(
        tmp_path / "edge.toml", origin_url=slow.url, nodes={"edge1": f"{host}:{free_port(host)}"}
    )
    proc = start_edge(config, "edge1", tmp_path / "logs")
    try:
        yield proc
    finally:
        proc.stop()


async def read_head_then_leave(edge: Proc, target: str, fields: str = "") -> bytes:
    """Sends a GET, reads the response head, closes the connection; returns the head."""
    reader, writer = await asyncio.open_connection(edge.host, edge.port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: site.example\r\n{fields}\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(15):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@pytest.mark.parametrize(
    "query", ["cc=no-store", "cc=private", "cc=max-age%3D600"], ids=["no-store", "private", "too-big"]
)
async def test_origin_download_stops_when_last_client_of_unstored_fill_leaves(
    edge: Proc, slow: SlowOrigin, query: str
) -> None:
    head = await read_head_then_leave(edge, f"/big?{query}")
    assert head.startswith(b"HTTP/1.1 200"), head
    await asyncio.wait_for(slow.closed.wait(), STOP_BOUND_S)
    assert not slow.finished.is_set() and slow.sent < len(CHUNK) * CHUNKS // 2
    assert slow.requests == 1


async def test_origin_download_stops_when_one_byte_range_of_unstored_object_is_answered(
    edge: Proc, slow: SlowOrigin
) -> None:
    reader, writer = await asyncio.open_connection(edge.host, edge.port)
    try:
        writer.write(b"GET /big HTTP/1.1\r\nHost: site.example\r\nRange: bytes=0-0\r\n\r\n")
        async with asyncio.timeout(15):
            head = await reader.readuntil(b"\r\n\r\n")
            body = await reader.readexactly(1)
        assert head.startswith(b"HTTP/1.1 206") and body == b"x", head
        # the client stays connected: the answer it asked for is complete, nobody wants more
        await asyncio.wait_for(slow.closed.wait(), STOP_BOUND_S)
        assert not slow.finished.is_set()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_origin_download_goes_on_when_client_of_stored_fill_leaves(
    edge: Proc, slow: SlowOrigin
) -> None:
    head = await read_head_then_leave(edge, f"/big?cc=max-age%3D600&n={STORED_CHUNKS}")
    assert head.startswith(b"HTTP/1.1 200"), head
    await asyncio.wait_for(slow.finished.wait(), 30)  # the fill is the coalescer's: it completes
    assert not slow.closed.is_set() and slow.sent == len(CHUNK) * STORED_CHUNKS
