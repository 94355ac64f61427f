"""Test doubles shared by the unit tests: a counting, gated FakeUpstream and a FakeClock.

FakeUpstream answers like an origin.upstream.Upstream, but its head and each body chunk
wait for the test to release them (asyncio.Event gates), so tests order concurrent steps
without sleeping. It counts calls, keeps the requests, and can fail before the head
(`error`) or after exactly N body bytes (`fail_at`, raising origin.errors.BodyError).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from origin.errors import BodyError, UpstreamError
from origin.upstream import Headers, UpstreamRequest, UpstreamResponse

__all__ = ["FakeClock", "FakeUpstream"]


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
        self.chunks = [body[i:i + chunk_size] for i in range(0, len(body), chunk_size)]
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
        for gate, chunk in zip(self.chunk_gates, self.chunks):
            await gate.wait()
            if self.fail_at is not None and sent + len(chunk) >= self.fail_at:
                if self.fail_at > sent:
                    yield chunk[: self.fail_at - sent]
                raise BodyError(f"fake upstream failed at byte {self.fail_at}", upstream=self.name)
            sent += len(chunk)
            yield chunk
        if self.fail_at is not None:
            raise BodyError(f"fake upstream failed at byte {self.fail_at}", upstream=self.name)
