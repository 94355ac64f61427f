"""Request: what the listener hands the handler: the raw target, headers and peer.

The header multidict is built only when someone asks for it: a fresh cache hit is
answered from `host` and `plain` (no Range or validators present), which the parser
records while it reads the fields, so the hot path never builds one.
"""

from __future__ import annotations

from multidict import CIMultiDict

__all__ = ["Request"]


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
