"""PeerExchange: one request to a peer and its response, between the connection and the reader.

The connection (cluster/peer_conn.py) fills it: the head (`got_head`), body chunks (`push`),
the end (`finish`) or a failure (`fail`). The fetch awaits `head`, one future that every
outcome before the head settles: the head itself, the connection's failure, the first-byte
timer (`arm_head`), or `interrupt` (the peer was marked down). The body is the exchange
itself, an async iterator over the chunks received:

- chunks wait in a queue bounded in bytes: past `HIGH_WATER` the connection stops reading
  from the socket, and below `LOW_WATER` it reads again, so a slow reader slows the peer
  instead of filling memory;
- while the reader waits for bytes, the wait is bounded by the between-chunks timeout and by
  the fetch's total timeout (BodyTimeout); time spent with chunks queued is the reader's
  own, never held against the peer;
- `close()` before the end abandons the response: the connection is closed, since the rest
  of the body is still on the wire. An exchange read to its end has already given its
  connection back (the connection decides whether it is reused).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from origin.errors import BodyError, BodyTimeout, DeadlineExceeded, UpstreamError, UpstreamTimeout

__all__ = ["HIGH_WATER", "LOW_WATER", "PeerExchange"]

HIGH_WATER = 256 * 1024  # queued body bytes at which the connection pauses reading
LOW_WATER = 64 * 1024  # and below which it reads again

Headers = tuple[tuple[str, str], ...]


class _Connection(Protocol):
    """What an exchange asks of the connection carrying it (cluster.peer_conn.PeerConnection)."""

    def abandon(self) -> None: ...

    def resume(self) -> None: ...


class PeerExchange:
    """A request's bytes, its response head, and its body as an async iterator."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_done",
        "_error",
        "_head_timer",
        "_idle_s",
        "_loop",
        "_timer",
        "_total_at",
        "_waiter",
        "conn",
        "head",
        "head_only",
        "headers",
        "label",
        "reason",
        "request",
        "retried",
        "status",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        request: bytes,
        *,
        label: str,
        head_only: bool,
        idle_s: float,
        total_at: float,
    ) -> None:
        self._loop = loop
        self.request = request  # the whole request (head and body), sent as it is, again on a retry
        self.label = label
        self.head_only = head_only
        self.head: asyncio.Future[None] = loop.create_future()
        self.status = 0  # 0 until the final response head arrived
        self.reason = ""
        self.headers: Headers = ()
        self.conn: _Connection | None = None  # set while a connection carries this exchange
        self.retried = False  # sent again once, after a kept-alive connection closed unanswered
        self._idle_s = idle_s
        self._total_at = total_at  # loop.time() at which the total timeout expires
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False  # every body byte has arrived (or there is no body)
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None  # the reader waiting for bytes
        self._timer: asyncio.TimerHandle | None = None  # its between-chunks / total timer
        self._head_timer: asyncio.TimerHandle | None = None

    # -- the fetch's side ------------------------------------------------------------------
    @property
    def buffered(self) -> int:
        """Body bytes received and not yet read."""
        return self._buffered

    @property
    def pending(self) -> bool:
        """True while nobody has settled the head: it still wants a connection and an answer."""
        return not self.head.done()

    def arm_head(self, at: float, *, asked: bool) -> None:
        """Fails the head at loop time `at` unless it has arrived by then: DeadlineExceeded when
        `at` is the request's own deadline (`asked`), else UpstreamTimeout (retryable)."""
        self._head_timer = self._loop.call_at(at, self._head_expired, asked, at - self._loop.time())

    def _head_expired(self, asked: bool, wait_s: float) -> None:
        label = self.label
        if asked:
            self.interrupt(DeadlineExceeded(f"{label}: the request's deadline passed", upstream=label))
        else:
            self.interrupt(UpstreamTimeout(f"{label}: no response head after {wait_s:.3f}s", upstream=label))

    def interrupt(self, exc: UpstreamError) -> None:
        """Gives up before the head (timer, peer marked down): the connection, if any, closes."""
        if self.head.done():
            return
        self.head.set_exception(exc)
        self._cancel_head_timer()
        self._abandon()

    # -- the connection's side --------------------------------------------------------------
    def got_head(self, status: int, reason: str, headers: Headers) -> None:
        """The final response head arrived."""
        self.status = status
        self.reason = reason
        self.headers = headers
        if not self.head.done():
            self.head.set_result(None)
        self._cancel_head_timer()

    def push(self, chunk: bytes) -> int:
        """Queues a body chunk; returns the bytes now queued."""
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        self._wake()
        return self._buffered

    def finish(self) -> None:
        """Every body byte has arrived; the connection has let go of this exchange."""
        self._done = True
        self.conn = None
        self._wake()

    def fail(self, exc: UpstreamError) -> None:
        """The connection failed or broke the protocol; it has let go of this exchange."""
        self.conn = None
        if not self.head.done():
            self.head.set_exception(exc)
            self._cancel_head_timer()
            return
        if not self._done and self._error is None:
            self._error = exc
            self._wake()

    # -- the reader's side -------------------------------------------------------------------
    def __aiter__(self) -> PeerExchange:
        return self

    async def __anext__(self) -> bytes:
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._buffered <= LOW_WATER and self.conn is not None:
                    self.conn.resume()
                return chunk
            if self._error is not None:
                raise self._error
            if self._done:
                raise StopAsyncIteration
            await self._wait()

    async def _wait(self) -> None:
        loop = self._loop
        now = loop.time()
        idle_at = now + self._idle_s
        at = min(idle_at, self._total_at)
        waiter = self._waiter = loop.create_future()
        self._timer = loop.call_at(at, self._expire, idle_at > self._total_at)
        try:
            await waiter
        finally:
            self._waiter = None
            self._timer.cancel()
            self._timer = None

    def _expire(self, total: bool) -> None:
        what = "total timeout expired" if total else f"no body bytes for {self._idle_s}s"
        self._error = BodyTimeout(f"{self.label}: {what} mid-body", upstream=self.label)
        self._abandon()
        self._wake()

    def close(self) -> None:
        """Abandons the response: an unread rest of the body closes the connection."""
        if not self.head.done():
            self.head.cancel()
        self._cancel_head_timer()
        if not self._done and self._error is None:
            self._error = BodyError(f"{self.label}: response abandoned", upstream=self.label)
        self._chunks.clear()
        self._buffered = 0
        self._abandon()

    # -- internals ----------------------------------------------------------------------------
    def _abandon(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abandon()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
