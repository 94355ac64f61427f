"""Request: what the listener hands the handler: the raw target, headers and peer.

The header multidict is built only when someone asks for it: a fresh cache hit is
answered from `host` and `plain` (no Range or validators present), which the parser
records while it reads the fields, so the hot path never builds one.
"""

from __future__ import annotations

from typing import Protocol

from multidict import CIMultiDict

__all__ = ["Request", "TrailerCount", "drop_trailers"]


class TrailerCount(Protocol):
    """Where dropped trailer fields are counted (edge.server.connections.Connections)."""

    trailers_dropped: int


def drop_trailers(
    fields: list[tuple[bytes, bytes]], head_count: int, host: bytes | None, count: TrailerCount
) -> bytes | None:
    """Drops a chunked request's trailer fields, the parsed fields from `head_count` on.

    llhttp reports trailer fields through the same callback as header fields, so without
    this a trailer (Cookie, Authorization, Host, X-Forwarded-Host ...) would reach the cache
    key, the policies and the origin as if it were a header (issue 12). RFC 9110 §6.5.1 lets
    a recipient discard trailers and forbids merging them into the header section unless each
    field's definition allows it; the edge buffers the body and sends it upstream with a
    Content-Length, so there is no trailer section left to forward them in. Returns the Host
    of the remaining head (None when only a trailer carried one).
    """
    dropped = len(fields) - head_count
    if dropped <= 0:
        return host
    del fields[head_count:]
    count.trailers_dropped += dropped
    if host is not None and not any(name.lower() == b"host" for name, _ in fields):
        return None
    return host


class Request:
    """One parsed client request; `target` is exactly the bytes sent (latin-1 decoded)."""

    __slots__ = (
        "_headers",
        "body",
        "keep_alive",
        "method",
        "peer",
        "plain",
        "raw_headers",
        "raw_host",
        "target",
        "version",
    )

    def __init__(
        self,
        *,
        method: str,
        target: str,
        version: str,
        headers: CIMultiDict[str] | None = None,
        raw_headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes | None,
        keep_alive: bool,
        peer: str,
        raw_host: str | None = None,
        plain: bool = False,
    ) -> None:
        self.method = method
        self.target = target  # raw request target: never decoded, never normalised
        self.version = version  # "1.1" or "1.0"
        self.raw_headers = raw_headers or []  # as parsed: bytes pairs, decoded on first use
        self._headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.peer = peer  # client IP address
        # the Host field as sent (None when absent or repeated); set by the listener
        self.raw_host = raw_host if raw_host is not None or headers is None else headers.get("host")
        # True when no Range, If-* or Cache-Control-ish fields need the slow path
        self.plain = plain

    @property
    def headers(self) -> CIMultiDict[str]:
        """The header fields, case-insensitive (built on first use)."""
        headers = self._headers
        if headers is None:
            headers = self._headers = CIMultiDict(
                [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self.raw_headers]
            )
        return headers

    @property
    def host(self) -> str:
        """The Host header (lower-cased), or "" when absent."""
        return (self.raw_host or "").lower()
