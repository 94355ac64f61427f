"""Test doubles shared by the unit tests: a counting, gated FakeUpstream, a FakeClock, and a
FakeProducer that drives a coalesced Fill from a FakeUpstream the way the edge does.

FakeUpstream answers like an origin.upstream.Upstream, but its head and each body chunk
wait for the test to release them (asyncio.Event gates), so tests order concurrent steps
without sleeping. It counts calls, keeps the requests, and can fail before the head
(`error`) or after exactly N body bytes (`fail_at`, raising origin.errors.BodyError).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from edge.fill.coalesce import Fill, FillHead, JoinResult
from origin.errors import BodyError, UpstreamError
from origin.upstream import Headers, UpstreamRequest, UpstreamResponse

_T = TypeVar("_T")

__all__ = [
    "FakeClock",
    "FakeProducer",
    "FakeUpstream",
    "open_files_under",
    "producer_ended",
    "read_fill",
    "serve_join",
    "start",
]


class FakeClock:
    """A clock that moves only when the test says so; call it for the current time."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Moves time forward."""
        self.now += seconds


class FakeUpstream:
    """An Upstream serving one body, with the head and every chunk released by the test."""

    def __init__(
        self,
        body: bytes = b"",
        *,
        chunk_size: int = 4096,
        status: int = 200,
        reason: str = "OK",
        headers: Headers | None = None,
        gated: bool = False,
        fail_at: int | None = None,
        error: UpstreamError | None = None,
        name: str = "fake",
    ) -> None:
        self.body = body
        self.chunks = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)]
        self.status = status
        self.reason = reason
        # Content-Length is sent unless the test gives its own headers.
        self.headers: Headers = (
            headers if headers is not None else (("content-length", str(len(body))),)
        )
        self.fail_at = fail_at  # deliver exactly this many body bytes, then raise BodyError
        self.error = error  # raised by fetch() once the head gate opens
        self.name = name
        self.calls = 0
        self.requests: list[UpstreamRequest] = []
        self.closed = 0  # responses closed before their body was read to the end
        self.fetched = asyncio.Event()  # set by the first fetch()
        self.head_gate = asyncio.Event()  # fetch() returns (or raises `error`) once set
        self.chunk_gates = [asyncio.Event() for _ in self.chunks]  # chunk i is sent once set
        if not gated:
            self.release_all()

    def release_head(self) -> None:
        """Lets fetch() return the head."""
        self.head_gate.set()

    def release_chunks(self, count: int) -> None:
        """Lets the first `count` body chunks through (the head too)."""
        self.head_gate.set()
        for gate in self.chunk_gates[:count]:
            gate.set()

    def release_all(self) -> None:
        """Lets the head and the whole body through."""
        self.release_chunks(len(self.chunks))

    async def fetch(self, request: UpstreamRequest) -> UpstreamResponse:
        """Counts the call, waits for the head gate, then answers or raises `error`."""
        self.calls += 1
        self.requests.append(request)
        self.fetched.set()
        await self.head_gate.wait()
        if self.error is not None:
            raise self.error
        return UpstreamResponse(
            status=self.status,
            reason=self.reason,
            headers=self.headers,
            request_time=0.0,
            response_time=0.0,
            body=self._body(),
            close=self._close,
            upstream=self.name,
        )

    def _close(self) -> None:
        self.closed += 1

    async def _body(self) -> AsyncIterator[bytes]:
        sent = 0
        for gate, chunk in zip(self.chunk_gates, self.chunks, strict=True):
            await gate.wait()
            if self.fail_at is not None and sent + len(chunk) >= self.fail_at:
                if self.fail_at > sent:
                    yield chunk[: self.fail_at - sent]
                raise BodyError(f"fake upstream failed at byte {self.fail_at}", upstream=self.name)
            sent += len(chunk)
            yield chunk
        if self.fail_at is not None:
            raise BodyError(f"fake upstream failed at byte {self.fail_at}", upstream=self.name)


class FakeProducer:
    """The edge's producer, cut down: fetch, publish the head, spool each chunk, finish."""

    def __init__(
        self,
        upstream: FakeUpstream,
        *,
        shareable: bool = True,
        request: UpstreamRequest | None = None,
    ) -> None:
        self.upstream = upstream
        self.request = request or UpstreamRequest(method="GET", host="example.test", target="/obj")
        self.shareable = shareable
        self.runs = 0
        self.received = 0
        self.cancelled = False
        self.commit_gate = asyncio.Event()  # stands for the store commit before finish()
        self.commit_gate.set()
        self._progress = asyncio.Event()  # replaced after every chunk, like Fill's own

    async def __call__(self, fill: Fill) -> None:
        self.runs += 1
        try:
            resp = await self.upstream.fetch(self.request)
            length = resp.header("content-length")
            fill.set_head(
                FillHead(
                    status=resp.status,
                    reason=resp.reason,
                    headers=resp.headers,
                    shareable=self.shareable,
                    length=int(length) if length is not None else None,
                    extra=None,
                )
            )
            async for chunk in resp.body:
                await fill.append(chunk)
                self.received += len(chunk)
                progress, self._progress = self._progress, asyncio.Event()
                progress.set()
            await self.commit_gate.wait()
            fill.finish()
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    async def wait_received(self, count: int) -> None:
        """Waits until at least `count` body bytes are spooled."""
        while self.received < count:
            await self._progress.wait()


async def read_fill(fill: Fill, offset: int = 0, end: int | None = None) -> bytes:
    """Reads fill.body(offset, end) to its end."""
    out = bytearray()
    async for chunk in fill.body(offset, end):
        out += chunk
    return bytes(out)


async def serve_join(joined: JoinResult) -> bytes:
    """What an edge handler does with a join: head, then the whole body, then release."""
    with joined:
        assert joined.fill is not None
        await joined.fill.head(leader=joined.leader)
        return await read_fill(joined.fill)


async def producer_ended(key: bytes) -> None:
    """Waits for the producer task of key (named fill-<hex>); its bookkeeping runs inside it."""
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == f"fill-{key.hex()}"]
    if tasks:
        await asyncio.wait(tasks)


def open_files_under(directory: Path) -> list[str]:
    """Targets of this process's open descriptors under directory (Linux /proc)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


async def start(coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
    """Runs coro in a task and returns once it has reached its first wait (no sleeping)."""
    running = asyncio.Event()

    async def run() -> _T:
        running.set()  # the wake-up is queued; coro runs on until it suspends before it lands
        return await coro

    task = asyncio.create_task(run())
    await running.wait()
    return task
