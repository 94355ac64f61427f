"""A real listener on loopback for the server tests: HttpProtocol in front of a scripted responder.

The responder answers `GET /fast` on the fast path (prebuilt bytes) and everything else
through `handle`, where the test scripts the answer. Every test gets its own 127.0.0.x.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from edge.config.server import ServerConfig
from edge.server.connections import Connections
from edge.server.protocol import HttpProtocol, Limits
from edge.server.request import Request
from edge.server.writer import Writer

__all__ = ["FAST_BODY", "Listener", "Scripted", "listening", "read_response"]

FAST_BODY = b"f" * 100
FAST = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + FAST_BODY
_hosts = itertools.count(0)

Script = Callable[[Request, Writer], Awaitable[None]]


async def _default_script(request: Request, writer: Writer) -> None:
    body = b"len=%d" % len(request.body or b"")
    writer.start(200, [], len(body))
    await writer.write(body)
    writer.finish()


@dataclass
class Scripted:
    """A Responder whose slow path runs `script`; records what happened to each request."""

    script: Script = _default_script
    started: asyncio.Event = field(default_factory=asyncio.Event)
    ended: list[str] = field(default_factory=list)  # "done", "cancelled", or the exception's name

    def try_fast(
        self, head_only: bool, host: bytes, target: bytes, raw_headers: list[tuple[bytes, bytes]], peer: str
    ) -> bytes | tuple[bytes, bytes] | None:
        return FAST if target == b"/fast" else None

    async def handle(self, request: Request, writer: Writer) -> None:
        self.started.set()
        try:
            await self.script(request, writer)
            self.ended.append("done")
        except asyncio.CancelledError:
            self.ended.append("cancelled")
            raise
        except Exception as exc:
            self.ended.append(type(exc).__name__)
            if not writer.finished:
                writer.abort()


@dataclass
class Listener:
    host: str
    port: int
    connections: Connections
    responder: Scripted


@asynccontextmanager
async def listening(
    config: ServerConfig, responder: Scripted | None = None, *, max_connections: int = 10_000
) -> AsyncIterator[Listener]:
    """Serves on a fresh 127.0.0.x until the block ends."""
    host = f"127.0.0.{100 + next(_hosts) % 100}"
    conns = Connections(config, max_connections)
    responder = responder or Scripted()
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpProtocol(responder, Limits(), tasks, conns), host, 0, reuse_address=True
    )
    try:
        yield Listener(host, server.sockets[0].getsockname()[1], conns, responder)
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.wait(list(tasks), timeout=10)
        await asyncio.wait_for(server.wait_closed(), 10)


async def read_response(reader: asyncio.StreamReader, timeout_s: float = 10.0) -> tuple[bytes, bytes]:
    """One response with a Content-Length body: (head, body)."""
    async with asyncio.timeout(timeout_s):
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return head, await reader.readexactly(length)
