"""GuardedConnection: what keeps one client connection bounded, under the HTTP parsing.

The listener's protocol (edge.server.protocol.HttpProtocol) builds on this base, which owns:
admission against the listener's cap (edge.server.connections), flow control (while the
client accepts no bytes, reading pauses, so no new request is parsed, and the send timer
runs), and the connection's ONE timer for every timeout of `[server]`
(rules in edge.server.deadline).

The timer is a single loop.call_later handle armed no later than the earliest deadline of
the current phase; when it fires early (the phase moved on) it re-checks and re-arms, so
a request answered on the hit path only records when it began. Slow events (a head or a
body arriving in pieces) check their deadline as they arrive (`_check_now`), so a head
dripped a line per second is cut at `head_timeout_s`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

from edge.server.connections import Admission, Connections
from edge.server.deadline import Phase, TimeoutReason, Times, verdict
from edge.server.request import Request
from edge.server.writer import Writer, simple_response

__all__ = ["GuardedConnection"]

log = logging.getLogger("edge.server")

_monotonic = time.monotonic
_IDLE, _BUSY = Phase.IDLE, Phase.BUSY
TIMEOUT_REASONS = {
    TimeoutReason.HEAD: "request head not received within server.head_timeout_s",
    TimeoutReason.BODY_IDLE: "request body stalled longer than server.body_timeout_s",
    TimeoutReason.BODY_RATE: "request body slower than server.body_min_rate",
    TimeoutReason.REQUEST: "no response within server.request_timeout_s",
}


class GuardedConnection(asyncio.Protocol):
    """A client connection's admission, flow control and timeouts; subclassed by HttpProtocol."""

    __slots__ = (
        "_busy",
        "_cfg",
        "_closed",
        "_conns",
        "_loop",
        "_mark",
        "_peer",
        "_pending",
        "_phase",
        "_task",
        "_timer",
        "_timer_at",
        "_times",
        "_transport",
        "_writable",
        "_write_paused",
        "_writer",
    )

    def __init__(self, connections: Connections) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._peer = ""
        self._closed = False
        # requests parsed but not yet answered, in arrival order (pipelining)
        self._pending: collections.deque[Request] = collections.deque()
        self._busy = False  # a request task is writing its response
        # set while the transport accepts writes; cleared by pause_writing (flow control)
        self._writable = asyncio.Event()
        self._writable.set()
        self._write_paused = False
        self._conns = connections
        self._cfg = connections.config
        self._phase = _IDLE
        self._mark = 0.0  # when the current phase began (time.monotonic)
        self._times = Times()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._task: asyncio.Task[None] | None = None  # the request being answered
        self._writer: Writer | None = None

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        peer = transport.get_extra_info("peername")
        self._peer = peer[0] if peer else ""
        if self._conns.admit(self, self._peer) is not Admission.ADMITTED:
            self._closed = True
            transport.abort()  # type: ignore[attr-defined]  # refused at once, before reading anything
            return
        now = _monotonic()
        self._mark = now
        self._arm(now + self._cfg.idle_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._writable.set()  # wake a writer waiting on drain so it notices the close
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._conns.release(self)

    def pause_writing(self) -> None:
        """The client accepts no more bytes for now: stop parsing requests, start the send timer."""
        if self._write_paused:
            return
        self._write_paused = True
        self._writable.clear()
        now = _monotonic()
        self._times.stall_since = now
        self._arm(now + self._cfg.send_timeout_s)
        if self._transport is not None and not self._closed:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if not self._write_paused:
            return
        self._write_paused = False
        self._writable.set()
        self._times.stall_since = None
        self._resume_reading()

    # -- reading -------------------------------------------------------------------------
    def _resume_reading(self) -> None:
        transport = self._transport
        if transport is None or self._closed or self._busy or self._pending or self._write_paused:
            return
        transport.resume_reading()

    # -- timeouts -------------------------------------------------------------------------
    def streaming(self) -> None:
        """Called by the Writer once the body goes out in pieces: request_timeout_s stops applying."""
        self._times.bounded = False

    def _arm(self, at: float) -> None:
        """Makes the connection's one timer fire no later than `at` (it re-checks when it fires)."""
        if self._closed:
            return
        timer = self._timer
        if timer is not None:
            if self._timer_at <= at:
                return
            timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_later(max(0.0, at - _monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed:
            return
        found = verdict(self._cfg, self._phase, self._mark, self._times, _monotonic())
        if found.expired is not None:
            self._expire(found.expired)
        elif found.at is not None:
            self._arm(found.at)

    def _check_now(self) -> bool:
        """Checks the phase's deadline on an event; True when it expired (connection closed)."""
        found = verdict(self._cfg, self._phase, self._mark, self._times, _monotonic())
        if found.expired is not None:
            self._expire(found.expired)
            return True
        if found.at is not None:
            self._arm(found.at)
        return False

    def _expire(self, reason: TimeoutReason) -> None:
        """Closes the connection on a timeout: 408 (504 for the request bound) if nothing was sent."""
        self._conns.timed_out(reason)
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        (log.debug if reason is TimeoutReason.IDLE else log.info)(
            "closing connection from %s: %s timeout", self._peer, reason.value
        )
        phase = self._phase
        if phase is _IDLE:
            transport.close()
        elif phase is not _BUSY:
            self._reject(408, TIMEOUT_REASONS[reason])
        else:
            writer, task = self._writer, self._task
            if reason is TimeoutReason.REQUEST and writer is not None and not writer.started:
                writer.answer_now(504, TIMEOUT_REASONS[reason])
            else:
                transport.abort()  # a writer waiting on the client wakes with ClientGone
            if reason is TimeoutReason.REQUEST and task is not None:
                task.cancel()  # the answer may be waiting on something else than the client

    # -- connection registry (edge.server.connections.Member) --------------------------------
    @property
    def idle(self) -> bool:
        """True while no request is in progress on the connection."""
        return self._phase is _IDLE and not self._busy and not self._pending

    def close_idle(self) -> None:
        """Closes an idle connection to make room for a new one."""
        if self._transport is not None:
            self._transport.close()

    def _reject(self, status: int, reason: str) -> None:
        """Answers a request the parser refused and closes the connection."""
        log.info("rejected request from %s: %d %s", self._peer, status, reason)
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._busy:
            # a response is being written; the framing is lost, so just close
            transport.close()
            return
        transport.write(simple_response(status, reason, close=True))
        transport.close()

    @property
    def closed(self) -> bool:
        """True once the client connection is gone."""
        return self._closed
