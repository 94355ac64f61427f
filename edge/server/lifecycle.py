"""The node's lifecycle as the outside sees it: starting, ready, draining; and the public gate.

A node is STARTING from the moment its public listener is bound until its disk index is
loaded, its purge catch-up done and its handler in place; READY then; DRAINING from SIGTERM
or SIGINT until it exits. Load balancers ask the readiness endpoint on the public listener
(`[server] ready_path`, `GET /_edge/ready` by default, the one `/_edge/` path that port
answers): 200 ready, 503 starting, 503 draining. Peers ask the internal health endpoint,
which answers 503 while draining, so they take the node out of their ring.

A graceful stop (edge.app.EdgeNode.drain) runs in this order, all within
`[server] drain_timeout_s`:

1. readiness and peer health turn 503; the listeners keep serving for the announce period
   (`announce_s`), long enough for peers to drop the node from their ring;
2. the listeners stop accepting; idle keep-alive connections are closed, busy ones close
   after their current answer (`Connection: close`);
3. in-flight requests, then running fills, finish (until the deadline, then cancelled);
4. stores, journal and the access log are flushed and closed; the process exits 0.

`PublicGate` is the public listener's responder: it answers the readiness path itself, makes
requests that arrive while the node starts wait for it (at most `head_timeout_s`, then 503
with Retry-After), and hands everything else to the handler. Its `try_fast` is the
handler's own bound method once ready, so a cache hit pays nothing for the gate.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from edge.config.server import ServerConfig
from edge.server.request import Request
from edge.server.writer import Writer

__all__ = ["Lifecycle", "NodeState", "PublicGate", "announce_s", "ready_answer"]

log = logging.getLogger("edge.server.lifecycle")

_NO_STORE = [("Cache-Control", "no-store")]


class NodeState(enum.Enum):
    """Where the node is in its life."""

    STARTING = "starting"  # listener bound; disk index, purge catch-up or handler not ready yet
    READY = "ready"
    DRAINING = "draining"  # SIGTERM/SIGINT received: finishing what runs, then exiting


def ready_answer(state: NodeState) -> tuple[int, str]:
    """The readiness endpoint's status and one-line body for a state — pure."""
    if state is NodeState.READY:
        return 200, "ready"
    if state is NodeState.DRAINING:
        return 503, "draining: the node is stopping; send requests to another node"
    return 503, "not ready: the node is starting (loading its disk index, catching up on purges)"


def announce_s(server: ServerConfig, peers_leave_within_s: float | None) -> float:
    """How long readiness says 503 before the listeners close — pure.

    `server.drain_announce_s` when set, else the time peers need to drop the node from their
    ring (None: the node has no peer that routes to it, so 0); never more than half the
    drain timeout, so in-flight work keeps the other half.
    """
    wanted = server.drain_announce_s
    if wanted is None:
        wanted = peers_leave_within_s or 0.0
    return max(0.0, min(wanted, server.drain_timeout_s / 2))


class Lifecycle:
    """The node's current state, and an Event set once it is ready (requests wait on it)."""

    __slots__ = ("_ready", "state")

    def __init__(self) -> None:
        self.state = NodeState.STARTING
        self._ready = asyncio.Event()

    def ready(self) -> None:
        """The node serves from here on (ignored once draining)."""
        if self.state is NodeState.STARTING:
            self.state = NodeState.READY
            self._ready.set()

    def drain(self) -> bool:
        """Enters DRAINING; False when it already was (a second signal)."""
        if self.state is NodeState.DRAINING:
            return False
        self.state = NodeState.DRAINING
        self._ready.set()  # requests waiting for the start are answered (503) now
        return True

    @property
    def serving_peers(self) -> bool:
        """What the internal health endpoint says: False once draining."""
        return self.state is not NodeState.DRAINING

    async def wait_started(self, timeout_s: float) -> bool:
        """Waits (bounded) until the node is past STARTING; True when it got there."""
        if self.state is NodeState.STARTING:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._ready.wait()
            except TimeoutError:
                return False
        return True


class _Handler(Protocol):
    """What the gate passes requests to (edge.request.handler.Handler)."""

    def try_fast(
        self, head_only: bool, host: bytes, target: bytes, raw_headers: list[tuple[bytes, bytes]], peer: str
    ) -> bytes | tuple[bytes, bytes] | None: ...

    def handle(self, request: Request, writer: Writer) -> Awaitable[None]: ...


_TryFast = Callable[[bool, bytes, bytes, list[tuple[bytes, bytes]], str], bytes | tuple[bytes, bytes] | None]


def _decline(
    head_only: bool, host: bytes, target: bytes, raw_headers: list[tuple[bytes, bytes]], peer: str
) -> None:
    """try_fast while there is no handler, or while draining (every answer then says close)."""
    return None


class PublicGate:
    """The public listener's responder: readiness, the wait at start, then the handler."""

    __slots__ = ("_handler", "_life", "_ready_path", "_start_wait_s", "try_fast")

    def __init__(self, life: Lifecycle, server: ServerConfig) -> None:
        self._life = life
        self._ready_path = server.ready_path
        self._start_wait_s = server.head_timeout_s  # a request waits at most this for the start
        self._handler: _Handler | None = None
        # the listener calls this attribute: rebound, never wrapped
        self.try_fast: _TryFast = _decline

    def serve(self, handler: _Handler) -> None:
        """Installs the handler once the node is ready to serve."""
        self._handler = handler
        if self._life.state is not NodeState.DRAINING:
            self.try_fast = handler.try_fast

    def draining(self) -> None:
        """From now on every request takes the full path, so its answer closes the connection."""
        self.try_fast = _decline

    async def handle(self, request: Request, writer: Writer) -> None:
        """Readiness; a request during start waits (bounded); the rest goes to the handler."""
        if request.target.partition("?")[0] == self._ready_path:
            status, reason = ready_answer(self._life.state)
            draining = self._life.state is NodeState.DRAINING
            await writer.send_simple(status, reason, headers=_NO_STORE, close=draining)
            return
        handler = self._handler
        if handler is None:
            await self._life.wait_started(self._start_wait_s)
            handler = self._handler
        if handler is None:
            await writer.send_simple(
                503,
                "the node is starting or stopping; retry in a second",
                headers=[("Retry-After", "1"), *_NO_STORE],
                close=True,
            )
            return
        await handler.handle(request, writer)
