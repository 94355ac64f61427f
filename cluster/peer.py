"""PeerClient: fetches a key from the node that owns it, over that node's internal listener.

It is an origin.upstream.Upstream on a pool of keep-alive connections of its own
(cluster/peer_pool.py: llhttp on a plain asyncio.Protocol, bounded connections, streamed
bodies with backpressure). It sends the raw target byte for byte with the Host the caller
chose, the caller's fields minus hop-by-hop ones, and three headers of its own:
`X-Edge-Hop: <this node>`, so the owner never forwards the request again (no loops, even
when two nodes disagree about the ring), `X-Edge-Secret`, without which the owner's
internal endpoints answer 403, and `X-Edge-Deadline: <seconds>`, how long the owner has to
send a head: this client's own wait (its first-byte timeout, or less when the request
brought a deadline of its own, origin/deadline.py) minus `margin_s`. The owner caps its own
upstream waits there and answers (504 at worst) before this client stops waiting, so a slow
origin never makes the asker give up on the owner and fetch the key a second time.
Whatever the caller put in those headers is replaced. The hop and secret fields are encoded
once per client (cluster/peer_wire.py), so a request head is one string join.

The wait for the head ends early when membership marks the peer down (`down`: the Event it
sets): a hung peer is left for the origin as soon as it is known to be gone, while there is
still time left. One watcher task per client and Event does that for every waiting fetch.
Errors are origin.errors classes naming the peer (`upstream="peer:<name>"`), in the body
too: ConnectError (refused, or marked down), UpstreamTimeout (connect or first byte),
DeadlineExceeded (the request's own deadline), ProtocolError (closed or malformed before
the head), BodyError / BodyTimeout (after it), PoolSaturated (too many waiting).
`check_secret` is the owner's side of the secret check and `parse_deadline` reads the
deadline header.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from cluster.config import PeerConfig
from cluster.internal_paths import is_internal_target
from cluster.peer_exchange import PeerExchange
from cluster.peer_pool import KEEPALIVE_S, MAX_CONNECTIONS, PeerPool
from cluster.peer_wire import HopHead
from origin.config import TimeoutConfig
from origin.deadline import head_deadline
from origin.errors import ConnectError, DeadlineExceeded, InvalidTarget
from origin.upstream import UpstreamRequest, UpstreamResponse

__all__ = [
    "DEADLINE_HEADER",
    "HOP_HEADER",
    "SECRET_HEADER",
    "PeerClient",
    "check_secret",
    "format_deadline",
    "parse_deadline",
]

HOP_HEADER = "X-Edge-Hop"  # name of the node that forwarded the request; never forward again
SECRET_HEADER = "X-Edge-Secret"  # the cluster secret; internal endpoints require it
DEADLINE_HEADER = "X-Edge-Deadline"  # seconds the asked node has to send a response head

_OWN_HEADERS = frozenset({HOP_HEADER.lower(), SECRET_HEADER.lower(), DEADLINE_HEADER.lower()})
_MAX_DEADLINE_S = 86400.0  # a larger value is not a deadline anyone means: ignored


def format_deadline(seconds: float) -> str:
    """The deadline header value: seconds with millisecond precision, rounded down."""
    return f"{math.floor(max(0.0, seconds) * 1000) / 1000:.3f}"


def parse_deadline(value: str | None) -> float | None:
    """Seconds from a deadline header, or None when absent or not a plain decimal in range.

    A node only ever shortens its own waits with it (a value beyond its own timeouts changes
    nothing), so a wrong value cannot make it wait longer than configured.
    """
    if value is None:
        return None
    text = value.strip()
    digits = text.replace(".", "", 1)
    if not digits or not digits.isascii() or not digits.isdigit() or len(text) > 16:
        return None
    seconds = float(text)
    return seconds if seconds <= _MAX_DEADLINE_S else None


def check_secret(presented: str | None, secret: str) -> bool:
    """Whether the presented secret is the cluster secret; constant-time, never true if empty."""
    if presented is None or not secret:
        return False
    # compare_digest on bytes: a str argument with non-ASCII characters would raise TypeError.
    return hmac.compare_digest(presented.encode("utf-8"), secret.encode("utf-8"))


class PeerClient:
    """Fetches from one peer's internal listener; an Upstream."""

    __slots__ = (
        "_down",
        "_first_byte_s",
        "_head",
        "_idle_s",
        "_label",
        "_margin_s",
        "_peer",
        "_pool",
        "_total_s",
        "_waiting",
        "_watched",
        "_watcher",
    )

    def __init__(
        self,
        peer: PeerConfig,
        *,
        self_name: str,
        secret: str,
        timeouts: TimeoutConfig,
        margin_s: float = 0.5,
        down: Callable[[], asyncio.Event] | None = None,
        max_connections: int = MAX_CONNECTIONS,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        parts = urlsplit(peer.internal_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(
                f"peer {peer.name}: internal listeners speak plain http://, not {peer.internal_url!r}"
            )
        self._peer = peer
        self._label = f"peer:{peer.name}"
        self._pool = PeerPool(
            parts.hostname,
            parts.port or 80,
            label=self._label,
            connect_s=timeouts.connect_s,
            max_connections=max_connections,
            keepalive_s=keepalive_s,
        )
        self._head = HopHead(
            ((HOP_HEADER, self_name), (SECRET_HEADER, secret)),
            _OWN_HEADERS,
        )
        self._first_byte_s = min(timeouts.first_byte_s, timeouts.total_s)
        self._idle_s = timeouts.idle_s
        self._total_s = timeouts.total_s
        self._margin_s = margin_s  # the owner is told to answer this long before we give up
        self._down = down  # membership's "this peer is down" Event, when there is membership
        self._waiting: set[PeerExchange] = set()  # fetches waiting for a head
        self._watched: asyncio.Event | None = None  # the down Event the watcher waits on
        self._watcher: asyncio.Task[None] | None = None

    @property
    def peer(self) -> PeerConfig:
        """The peer this client talks to."""
        return self._peer

    @property
    def pool(self) -> PeerPool:
        """The client's connections (tests and status read their counts)."""
        return self._pool

    async def fetch(self, request: UpstreamRequest) -> UpstreamResponse:
        """Sends the request to the peer with hop, secret and deadline headers; raises UpstreamError.

        DeadlineExceeded when the request's own deadline leaves the peer no time or passes
        first; ConnectError (retryable: fill from the origin) when the peer is marked down
        while we wait.
        """
        label = self._label
        if is_internal_target(request.target):  # issue 12: a client request never reaches /_edge/
            raise InvalidTarget("internal paths are never forwarded to a peer", upstream=label)
        loop = asyncio.get_running_loop()
        now = loop.time()
        wait_s = self._first_byte_s
        asked = head_deadline()
        # a shorter wait than our own first-byte timeout only ever comes from `asked`
        by_request = False
        if asked is not None and asked - now < wait_s:
            wait_s, by_request = asked - now, True
        if wait_s - self._margin_s <= 0:
            raise DeadlineExceeded(
                f"{request.method} {label}: the request's deadline leaves the peer no time", upstream=label
            )
        body = request.body
        try:
            head = self._head.build(
                request.method,
                request.target,
                request.host,  # the owner derives the same cache key from the same Host
                request.headers,
                ((DEADLINE_HEADER, format_deadline(wait_s - self._margin_s)),),
                None if body is None else len(body),
            )
        except InvalidTarget as exc:
            raise InvalidTarget(str(exc), upstream=label) from exc
        if self._down is not None:
            self._watch_down(self._down(), request.method)
        exchange = PeerExchange(
            loop,
            head if body is None else head + body,
            label=label,
            head_only=request.method == "HEAD",
            idle_s=self._idle_s,
            total_at=now + self._total_s,
        )
        request_time = time.time()
        exchange.arm_head(now + wait_s, asked=by_request)
        waiting = self._waiting
        waiting.add(exchange)
        try:
            self._pool.start(exchange)  # PoolSaturated, or ConnectError once closed
            await exchange.head
        except BaseException:
            exchange.close()  # cancelled, or failed: nothing of it is read
            raise
        finally:
            waiting.discard(exchange)
        return UpstreamResponse(
            status=exchange.status,
            reason=exchange.reason,
            headers=exchange.headers,
            request_time=request_time,
            response_time=time.time(),
            body=exchange,
            close=exchange.close,
            upstream=label,
        )

    def close(self) -> None:
        """Closes idle connections and the down watcher; busy connections close when done."""
        self._pool.close()
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    async def wait_closed(self, timeout_s: float) -> bool:
        """After close(): waits up to timeout_s for the connections to be gone; True if they are."""
        return await self._pool.wait_closed(timeout_s)

    def _watch_down(self, event: asyncio.Event, method: str) -> None:
        """Raises ConnectError when the peer is down now; else makes sure its Event is watched."""
        if event.is_set():
            raise ConnectError(f"{method} {self._label}: marked down", upstream=self._label)
        if event is not self._watched:
            if self._watcher is not None:
                self._watcher.cancel()
            self._watched = event
            self._watcher = asyncio.get_running_loop().create_task(
                self._on_down(event), name=f"down-{self._label}"
            )

    async def _on_down(self, event: asyncio.Event) -> None:
        """Fails every fetch still waiting for a head once the peer is marked down."""
        await event.wait()
        for exchange in list(self._waiting):
            exchange.interrupt(
                ConnectError(f"{self._label}: marked down while we waited", upstream=self._label)
            )
        if self._watched is event:
            self._watched = self._watcher = None
