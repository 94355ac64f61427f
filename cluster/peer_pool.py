"""PeerPool: the keep-alive connections to one peer, bounded in number and in idle time.

`start(exchange)` gives the exchange a connection: the most recently used idle one, else a
new one while fewer than `max_connections` are open or opening, else a place in a bounded
queue of exchanges waiting for the next connection to come free. Everything the fetch awaits
is the exchange's head future, so a give-up (its first-byte timer, the peer marked down)
never has to cancel a connect: a connection still opening when its exchange gave up joins
the pool for the next request.

    open connections   idle + carrying an exchange + opening  <=  max_connections
    idle               closed after keepalive_s unused (one timer for the pool); a peer
                       that closes an idle connection frees its slot at once
    waiting            at most max_waiting exchanges; beyond that PoolSaturated
    connect            bounded by connect_s: UpstreamTimeout; refused or unreachable:
                       ConnectError; both fail that one exchange, and the next waiting
                       one gets a connect of its own

A connection comes back (`release`) when its response has ended; it is reused only on
Reuse.REUSE (cluster.peer_wire), else closed. A request whose kept-alive connection was
closed by the peer before any byte of an answer is sent once more (`retry`): the peer's
idle timeout and our reuse may cross, and a GET is safe to repeat.

`close()` closes the idle connections and refuses new exchanges; connections carrying an
exchange close when their response ends.
"""

from __future__ import annotations

import asyncio
from collections import deque

from cluster.peer_conn import PeerConnection
from cluster.peer_exchange import PeerExchange
from cluster.peer_wire import Reuse
from origin.errors import ConnectError, PoolSaturated, UpstreamTimeout

__all__ = ["KEEPALIVE_S", "MAX_CONNECTIONS", "PeerPool"]

# The values the shared aiohttp session gave peer fetches before (origin.client.make_session:
# 100 connections per host), and half the internal listener's default idle timeout (30 s),
# so this side closes an idle connection before the peer does.
MAX_CONNECTIONS = 100
KEEPALIVE_S = 15.0
_WAITING_PER_CONNECTION = 8  # the waiting queue holds this many exchanges per connection


class PeerPool:
    """Connections to one peer at host:port."""

    __slots__ = (
        "_closed",
        "_connect_s",
        "_connecting",
        "_host",
        "_idle",
        "_keepalive_s",
        "_label",
        "_loop",
        "_max",
        "_max_waiting",
        "_open",
        "_port",
        "_shut",
        "_sweep",
        "_waiting",
        "connects",
    )

    def __init__(
        self,
        host: str,
        port: int,
        *,
        label: str,
        connect_s: float,
        max_connections: int = MAX_CONNECTIONS,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        if max_connections < 1 or not keepalive_s > 0 or not connect_s > 0:
            raise ValueError("max_connections must be >= 1, keepalive_s and connect_s > 0")
        self._host = host
        self._port = port
        self._label = label
        self._connect_s = connect_s
        self._max = max_connections
        self._max_waiting = max_connections * _WAITING_PER_CONNECTION
        self._keepalive_s = keepalive_s
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop of the first exchange
        self._idle: list[PeerConnection] = []  # oldest first; reused from the end
        self._waiting: deque[PeerExchange] = deque()
        self._connecting: set[asyncio.Task[None]] = set()
        self._open = 0  # connections open or opening
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False
        self._shut: asyncio.Event | None = None  # set once closed with no connection left
        self.connects = 0  # connections opened so far (tests and status read it)

    @property
    def open_connections(self) -> int:
        """Connections open or opening now."""
        return self._open

    @property
    def idle_connections(self) -> int:
        """Connections kept for the next request now."""
        return len(self._idle)

    def start(self, exchange: PeerExchange) -> None:
        """Sends the exchange on a connection now or as soon as one is free; raises
        PoolSaturated when the waiting queue is full, ConnectError once closed."""
        if self._closed:
            raise ConnectError(f"{self._label}: peer client closed", upstream=self._label)
        idle = self._idle
        while idle:
            conn = idle.pop()
            conn.in_idle = False
            if conn.usable:
                conn.reused = True
                conn.send(exchange)
                return
            conn.close()
        if self._open < self._max:
            self._connect(exchange)
            return
        waiting = self._waiting
        if len(waiting) >= self._max_waiting:
            self._waiting = waiting = deque(ex for ex in waiting if ex.pending)  # drop those who gave up
            if len(waiting) >= self._max_waiting:
                raise PoolSaturated(
                    f"{self._label}: {self._max} connections busy and {len(waiting)} requests waiting",
                    upstream=self._label,
                )
        waiting.append(exchange)

    def retry(self, exchange: PeerExchange) -> None:
        """Sends an exchange once more whose kept-alive connection closed unanswered."""
        exchange.retried = True
        if not exchange.pending:
            return
        try:
            self.start(exchange)
        except (ConnectError, PoolSaturated) as exc:
            exchange.fail(exc)

    def release(self, conn: PeerConnection, verdict: Reuse) -> None:
        """A response on conn has ended: reuse it for a waiting exchange or keep it idle."""
        if verdict is not Reuse.REUSE or self._closed or not conn.usable:
            conn.close()  # `lost` frees its slot
            return
        waiting = self._waiting
        while waiting:
            exchange = waiting.popleft()
            if exchange.pending:
                conn.reused = True
                conn.send(exchange)
                return
        loop = self._loop
        assert loop is not None
        conn.in_idle = True
        conn.idle_since = loop.time()
        self._idle.append(conn)
        if self._sweep is None:
            self._sweep = loop.call_at(conn.idle_since + self._keepalive_s, self._expire_idle)

    def lost(self, conn: PeerConnection) -> None:
        """A connection closed (either side): its slot goes to the next waiting exchange."""
        self._open -= 1
        if conn.in_idle:
            conn.in_idle = False
            self._idle.remove(conn)
        self._serve_waiting()
        if self._closed and self._open == 0 and self._shut is not None:
            self._shut.set()

    async def wait_closed(self, timeout_s: float) -> bool:
        """After close(): waits up to timeout_s for every connection to be gone; True if they are."""
        if self._open == 0:
            return True
        if self._shut is None:
            self._shut = asyncio.Event()
        try:
            async with asyncio.timeout(timeout_s):
                await self._shut.wait()
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Closes idle connections and stops opening new ones; busy ones close when done."""
        self._closed = True
        for conn in self._idle:
            conn.close()
        for task in self._connecting:
            task.cancel()
        while self._waiting:
            self._waiting.popleft().fail(
                ConnectError(f"{self._label}: peer client closed", upstream=self._label)
            )
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    # -- internals ----------------------------------------------------------------------------
    def _serve_waiting(self) -> None:
        waiting = self._waiting
        while waiting and self._open < self._max and not self._closed:
            exchange = waiting.popleft()
            if exchange.pending:
                self._connect(exchange)

    def _connect(self, exchange: PeerExchange) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self._open += 1
        task = loop.create_task(self._open_for(exchange), name=f"connect-{self._label}")
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _open_for(self, exchange: PeerExchange) -> None:
        """Opens a connection and sends the exchange on it (or, if it gave up, keeps it)."""
        assert self._loop is not None
        label = self._label
        try:
            async with asyncio.timeout(self._connect_s):
                _, conn = await self._loop.create_connection(
                    lambda: PeerConnection(self), self._host, self._port
                )
        except TimeoutError:
            self._failed(
                exchange, UpstreamTimeout(f"{label}: no connection after {self._connect_s}s", upstream=label)
            )
            return
        except OSError as exc:
            refused = ConnectError(f"{label}: cannot connect: {exc}", upstream=label)
            refused.__cause__ = exc  # as `raise ... from exc` would: the reason stays readable
            self._failed(exchange, refused)
            return
        except asyncio.CancelledError:
            self._failed(exchange, ConnectError(f"{label}: peer client closed", upstream=label))
            raise
        self.connects += 1
        if self._closed:
            conn.close()
        elif exchange.pending:
            conn.send(exchange)
        else:
            self.release(conn, Reuse.REUSE)

    def _failed(self, exchange: PeerExchange, exc: ConnectError | UpstreamTimeout) -> None:
        self._open -= 1
        exchange.fail(exc)
        self._serve_waiting()

    def _expire_idle(self) -> None:
        """Closes connections idle for keepalive_s; re-arms for the oldest one left."""
        self._sweep = None
        loop = self._loop
        assert loop is not None
        cutoff = loop.time() - self._keepalive_s
        idle = self._idle
        while idle and idle[0].idle_since <= cutoff:
            conn = idle.pop(0)
            conn.in_idle = False
            conn.close()
        if idle:
            self._sweep = loop.call_at(idle[0].idle_since + self._keepalive_s, self._expire_idle)
