"""PeerClient: fetches a key from the node that owns it, over that node's internal listener.

It is an origin.upstream.Upstream built on origin.client.OriginClient (raw target, phase
timeouts, hop-by-hop stripping, error translation) aimed at the peer's `internal_url`. It
adds three headers: `X-Edge-Hop: <this node>`, so the owner never forwards the request again
(no loops, even when two nodes disagree about the ring), `X-Edge-Secret`, without which
the owner's internal endpoints answer 403, and `X-Edge-Deadline: <seconds>`, how long the
owner has to send a head: this client's own wait (its first-byte timeout, or less when the
request brought a deadline of its own, origin/deadline.py) minus `margin_s`. The owner caps
its own upstream waits there and answers (504 at worst) before this client stops waiting, so
a slow origin never makes the asker give up on the owner and fetch the key a second time.
Whatever the caller put in those headers is replaced.

The wait for the head ends early when membership marks the peer down (`down`: the Event it
sets): a hung peer is left for the origin as soon as it is known to be gone, while there is
still time left. Errors keep their origin.errors class but name the peer:
`upstream="peer:<name>"`, inside the body iterator too. `check_secret` is the owner's side
of the secret check and `parse_deadline` reads the deadline header.
"""

from __future__ import annotations

import asyncio
import hmac
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from cluster.config import PeerConfig
from cluster.internal_paths import is_internal_target
from origin.client import OriginClient
from origin.config import TimeoutConfig
from origin.deadline import head_deadline
from origin.errors import ConnectError, DeadlineExceeded, InvalidTarget, UpstreamError
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


def _renamed(exc: UpstreamError, label: str) -> UpstreamError:
    """The same error class and message, attributed to the peer."""
    return type(exc)(str(exc), upstream=label)


class PeerClient:
    """Fetches from one peer's internal listener; an Upstream."""

    __slots__ = ("_client", "_down", "_first_byte_s", "_label", "_margin_s", "_peer", "_secret", "_self_name")

    def __init__(
        self,
        peer: PeerConfig,
        *,
        self_name: str,
        secret: str,
        session: aiohttp.ClientSession,
        timeouts: TimeoutConfig,
        margin_s: float = 0.5,
        down: Callable[[], asyncio.Event] | None = None,
    ) -> None:
        self._peer = peer
        self._self_name = self_name
        self._secret = secret
        self._label = f"peer:{peer.name}"
        self._client = OriginClient(peer.server, timeouts, session)
        self._first_byte_s = timeouts.first_byte_s
        self._margin_s = margin_s  # the owner is told to answer this long before we give up
        self._down = down  # membership's "this peer is down" Event, when there is membership

    @property
    def peer(self) -> PeerConfig:
        """The peer this client talks to."""
        return self._peer

    async def fetch(self, request: UpstreamRequest) -> UpstreamResponse:
        """Sends the request to the peer with hop, secret and deadline headers; raises UpstreamError.

        DeadlineExceeded when the request's own deadline leaves the peer no time or passes
        first; ConnectError (retryable: fill from the origin) when the peer is marked down
        while we wait.
        """
        if is_internal_target(request.target):  # issue 12: a client request never reaches /_edge/
            raise InvalidTarget("internal paths are never forwarded to a peer", upstream=self._label)
        loop = asyncio.get_running_loop()
        now = loop.time()
        wait_s = self._first_byte_s
        asked = head_deadline()
        if asked is not None:
            wait_s = min(wait_s, asked - now)
        if wait_s - self._margin_s <= 0:
            raise DeadlineExceeded(
                f"{request.method} {self._label}: the request's deadline leaves the peer no time",
                upstream=self._label,
            )
        headers = tuple((n, v) for n, v in request.headers if n.lower() not in _OWN_HEADERS)
        forwarded = UpstreamRequest(
            method=request.method,
            host=request.host,  # the owner derives the same cache key from the same Host
            target=request.target,
            headers=(
                *headers,
                (HOP_HEADER, self._self_name),
                (SECRET_HEADER, self._secret),
                (DEADLINE_HEADER, format_deadline(wait_s - self._margin_s)),
            ),
            body=request.body,
        )
        try:
            # a shorter wait than our own first-byte timeout only ever comes from `asked`
            response = await self._head(forwarded, now + wait_s if wait_s < self._first_byte_s else None)
        except UpstreamError as exc:
            raise _renamed(exc, self._label) from exc
        return UpstreamResponse(
            status=response.status,
            reason=response.reason,
            headers=response.headers,
            request_time=response.request_time,
            response_time=response.response_time,
            body=_PeerBody(response.body, self._label),
            close=response.close,
            upstream=self._label,
        )

    async def _head(self, request: UpstreamRequest, deadline: float | None) -> UpstreamResponse:
        """The client's fetch, given up at `deadline` or when the peer is marked down."""
        down = self._down() if self._down is not None else None
        if deadline is None and down is None:
            return await self._client.fetch(request)
        fetching = asyncio.ensure_future(self._client.fetch(request))
        waiters: set[asyncio.Future[Any]] = {fetching}
        gone = asyncio.ensure_future(down.wait()) if down is not None else None
        if gone is not None:
            waiters.add(gone)
        timeout = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
        handed_over = False
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if fetching.done():
                handed_over = True
                return fetching.result()
            if gone is not None and gone.done():
                raise ConnectError(f"{request.method} {self._label}: marked down while we waited")
            raise DeadlineExceeded(f"{request.method} {self._label}: the request's deadline passed")
        finally:
            if gone is not None:
                gone.cancel()
            if not handed_over:
                fetching.cancel()
                # it may have finished in between: close a response nobody will read
                fetching.add_done_callback(_close_unread)


def _close_unread(task: asyncio.Future[UpstreamResponse]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().close()


class _PeerBody:
    """The peer response's body iterator, with its errors attributed to the peer."""

    __slots__ = ("_inner", "_label")

    def __init__(self, inner: AsyncIterator[bytes], label: str) -> None:
        self._inner = inner
        self._label = label

    def __aiter__(self) -> _PeerBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._inner.__anext__()
        except UpstreamError as exc:
            raise _renamed(exc, self._label) from exc
