"""The one seam for every fetch: UpstreamRequest in, UpstreamResponse out.

Implemented by origin.client.OriginClient (one server), origin.pool.OriginPool, later
cluster.peer.PeerClient, and tests.fakes.FakeUpstream. The caller owns the response: it
reads `body` to the end or calls `close()`; an abandoned response must be closed so the
connection is released.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Headers", "Upstream", "UpstreamRequest", "UpstreamResponse"]

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamRequest:
    """What to ask upstream. `target` is the raw path+query, sent byte-for-byte."""

    method: str
    host: str  # the Host header value to send
    target: str  # raw request target, never decoded or normalised
    headers: Headers = ()  # already filtered by the route's allowlist, hop-by-hop removed
    body: bytes | None = None  # only for methods that carry one (GET/HEAD never do)


class UpstreamResponse:
    """A response head plus a body iterator that raises origin.errors.BodyError on failure."""

    __slots__ = (
        "_body",
        "_close",
        "headers",
        "reason",
        "request_time",
        "response_time",
        "status",
        "upstream",
    )

    def __init__(
        self,
        *,
        status: int,
        reason: str,
        headers: Headers,
        request_time: float,
        response_time: float,
        body: AsyncIterator[bytes],
        close: object = None,
        upstream: str = "",
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers  # end-to-end headers only (hop-by-hop already stripped)
        self.request_time = request_time  # wall clock when the request was sent
        self.response_time = response_time  # wall clock when the head arrived
        self._body = body
        self._close = close  # a zero-argument callable releasing the connection, or None
        self.upstream = upstream  # which server answered, for logs

    @property
    def body(self) -> AsyncIterator[bytes]:
        """The body chunks, in order; the iterator ends at the end of the body."""
        return self._body

    def header(self, name: str) -> str | None:
        """The first value of a header, case-insensitively, or None."""
        lname = name.lower()
        for n, v in self.headers:
            if n.lower() == lname:
                return v
        return None

    def close(self) -> None:
        """Releases the connection without reading the rest of the body."""
        if callable(self._close):
            self._close()
            self._close = None


class Upstream(Protocol):
    """Anything that answers an UpstreamRequest: an origin pool, a peer, a fake."""

    async def fetch(self, request: UpstreamRequest) -> UpstreamResponse:
        """Sends the request; returns once the head has arrived. Raises UpstreamError."""
        ...
