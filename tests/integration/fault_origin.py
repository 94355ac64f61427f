"""A fault-injecting origin in the test's event loop, on 127.0.0.1 only (issue 11).

Each raw target answers by the `Fault` the test set for it (`set`); the default is OK. Raw
asyncio streams, not a web framework, so every failure is exactly what goes on the wire:

    OK            200, `Cache-Control` from `cache_control`, a body naming the target and
                  how often it was asked ("<target> #<n>")
    HANG          reads the request and never answers (accepts and hangs)
    NO_READ       accepts the connection and never reads from it
    RESET         reads the request and resets the connection (RST, no response)
    ERROR_500     500 with a short body
    ERROR_503_NO_STORE  503 with `Cache-Control: no-store`
    TRUNCATE      200 head promising 4096 bytes, 100 sent, then the connection closes
    SLOW_HEAD     waits `slow_head_s`, then answers as OK

`gate`, when set, holds every answer (a failure included) until the test sets it, so
concurrent requests provably meet in one fill before the origin answers.

`refuse_connections()` swaps the listener for a socket on the same port that listens and
never accepts, with its accept queue already full (a few connections of our own), so the
kernel drops the edge's SYNs and its connect times out: a blackhole inside 127.0.0.0/8.
`accept_connections()` puts the serving listener back.

Every response says `Connection: close`, so each edge fetch opens its own connection.
`counts` is requests read per target (a NO_READ or a refused connection is counted in
`connects`, per target unknown). Held connections are closed by
`close()`, which every test calls in `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import Counter
from enum import Enum

__all__ = ["Fault", "FaultOrigin"]

TRUNCATED_LENGTH = 4096  # what a TRUNCATE head promises
TRUNCATED_SENT = 100  # what it sends before closing


class Fault(Enum):
    """How the origin answers one target."""

    OK = "ok"
    HANG = "hang"
    NO_READ = "no_read"
    RESET = "reset"
    ERROR_500 = "500"
    ERROR_503_NO_STORE = "503-no-store"
    TRUNCATE = "truncate"
    SLOW_HEAD = "slow_head"


class FaultOrigin:
    """A raw HTTP/1.1 origin whose targets fail on demand."""

    def __init__(
        self, *, cache_control: str = "max-age=1, stale-if-error=60", slow_head_s: float = 0.0
    ) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.cache_control = cache_control
        self.slow_head_s = slow_head_s
        self.faults: dict[str, Fault] = {}
        self.default = Fault.OK  # for targets without their own fault (NO_READ applies before the head)
        self.counts: Counter[str] = Counter()  # requests read, per raw target
        self.connects = 0  # connections accepted
        self.request_seen = asyncio.Event()  # set on every request read (tests wait, then clear)
        self.gate: asyncio.Event | None = None  # when set: answers wait for it
        self.age_s: int | None = None  # an Age on OK answers (e.g. past max-age: stored stale)
        self._server: asyncio.Server | None = None
        self._blackhole: list[socket.socket] = []  # the never-accepting listener and its fillers
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set(self, target: str, fault: Fault) -> None:
        """Makes `target` answer with `fault` from the next request on."""
        self.faults[target] = fault

    async def start(self) -> FaultOrigin:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def refuse_connections(self) -> None:
        """Replaces the listener with one that never accepts and whose accept queue is full."""
        await self._stop_server()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(0)
        self._blackhole.append(listener)
        # listen(0) queues one finished handshake; fill the queue (and one more for good
        # measure) so the kernel drops every further SYN instead of completing it.
        for _ in range(2):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):  # the handshake completes in the kernel
                filler.connect((self.host, self.port))
            self._blackhole.append(filler)
        await asyncio.sleep(0)  # let the fillers' handshakes finish

    async def accept_connections(self) -> None:
        """Undoes refuse_connections(): the serving listener is back on the same port."""
        for sock in self._blackhole:
            sock.close()
        self._blackhole.clear()
        self._server = await asyncio.start_server(self._serve, self.host, self.port)

    async def close(self) -> None:
        self._closing.set()
        if self.gate is not None:
            self.gate.set()
        for sock in self._blackhole:
            sock.close()
        self._blackhole.clear()
        await self._stop_server()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)

    async def _stop_server(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connects += 1
        try:
            if self.default is Fault.NO_READ:
                await self._closing.wait()
                return
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
            self.counts[target] += 1
            self.request_seen.set()
            await self._answer(target, self.faults.get(target, self.default), writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass  # the edge gave up on the connection
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def _answer(self, target: str, fault: Fault, writer: asyncio.StreamWriter) -> None:
        if fault in (Fault.HANG, Fault.NO_READ):
            await self._closing.wait()
            return
        if self.gate is not None:
            await self.gate.wait()
        if fault is Fault.RESET:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        if fault is Fault.SLOW_HEAD:
            try:
                await asyncio.wait_for(self._closing.wait(), self.slow_head_s)
                return  # closing
            except TimeoutError:
                pass
        if fault is Fault.ERROR_500:
            writer.write(_response(500, [], b"origin error\n"))
        elif fault is Fault.ERROR_503_NO_STORE:
            writer.write(_response(503, [("Cache-Control", "no-store")], b"unavailable\n"))
        elif fault is Fault.TRUNCATE:
            head = _response(200, [("Cache-Control", self.cache_control)], b"", length=TRUNCATED_LENGTH)
            writer.write(head + b"x" * TRUNCATED_SENT)
        else:
            body = f"{target} #{self.counts[target]}\n".encode()
            fields = [("Cache-Control", self.cache_control)]
            if self.age_s is not None:
                fields.append(("Age", str(self.age_s)))
            writer.write(_response(200, fields, body))
        await writer.drain()


def _response(
    status: int, headers: list[tuple[str, str]], body: bytes, *, length: int | None = None
) -> bytes:
    lines = [f"HTTP/1.1 {status} Fault", *(f"{n}: {v}" for n, v in headers)]
    lines.append(f"Content-Length: {len(body) if length is None else length}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
