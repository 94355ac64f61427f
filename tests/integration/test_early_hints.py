"""103 Early Hints from the origin reach the client through a real edge process (issue 11).

The origin (raw asyncio, 127.0.0.1, in the test's loop) sends a 103 and holds its final
response until the test has read the 103 from the edge: the hint is forwarded while the
origin still works, which is the point of Early Hints (RFC 8297). An HTTP/1.0 client gets
no 1xx (RFC 9110 §15.2), and the response itself is unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import next_loopback
from tests.integration.harness import Proc, free_port, parse_responses, start_edge, write_config

pytestmark = pytest.mark.timeout(30)

HINT = b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload; as=style\r\n\r\n"
BODY = b"<html>page</html>"
FINAL = (
    b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Type: text/html\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(BODY), BODY)
)


class HintingOrigin:
    """Answers every request with a 103, then the final 200 once `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> HintingOrigin:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            writer.write(HINT)
            await writer.drain()
            await self.release.wait()
            writer.write(FINAL)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


@pytest.fixture
async def hinting_origin() -> AsyncIterator[HintingOrigin]:
    origin = await HintingOrigin().start()
    try:
        yield origin
    finally:
        await origin.close()


@pytest.fixture
def edge(tmp_path: Path, hinting_origin: HintingOrigin) -> Iterator[Proc]:
    host = next_loopback()
    config = write_config(tmp_path / "e.toml", origin_url=f"http://127.0.0.1:{hinting_origin.port}",
                          nodes={"e": f"{host}:{free_port(host)}"})
    proc = start_edge(config, "e", tmp_path / "logs")
    try:
        yield proc
    finally:
        proc.stop()


async def test_client_gets_origin_103_before_the_origin_answers_when_request_is_a_miss(
    edge: Proc, hinting_origin: HintingOrigin
) -> None:
    reader, writer = await asyncio.open_connection(edge.host, edge.port)
    try:
        writer.write(f"GET /page HTTP/1.1\r\nHost: {edge.host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(10):
            interim = await reader.readuntil(b"\r\n\r\n")  # the origin still holds its answer
        hinting_origin.release.set()
        async with asyncio.timeout(10):
            rest = await reader.read()
    finally:
        writer.close()
    hint, final = parse_responses(interim + rest)
    assert hint.status == 103 and hint.header("link") == "</app.css>; rel=preload; as=style"
    assert final.status == 200 and final.body == BODY, final.headers
    assert hinting_origin.requests == 1


async def test_http10_client_gets_no_103_when_origin_sends_one(
    edge: Proc, hinting_origin: HintingOrigin
) -> None:
    hinting_origin.release.set()
    reader, writer = await asyncio.open_connection(edge.host, edge.port)
    try:
        writer.write(f"GET /page10 HTTP/1.0\r\nHost: {edge.host}\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(10):
            data = await reader.read()
    finally:
        writer.close()
    (only,) = parse_responses(data)
    assert only.status == 200 and only.body == BODY
