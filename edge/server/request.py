"""Request: what the listener hands the handler: the raw target, headers and peer."""

from __future__ import annotations

from dataclasses import dataclass

from multidict import CIMultiDict

__all__ = ["Request"]


@dataclass(slots=True, kw_only=True)
class Request:
    """One parsed client request; `target` is exactly the bytes sent (latin-1 decoded)."""

    method: str
    target: str  # raw request target: never decoded, never normalised
    version: str  # "1.1" or "1.0"
    headers: CIMultiDict[str]
    body: bytes | None
    keep_alive: bool
    peer: str  # client IP address

    @property
    def host(self) -> str:
        """The Host header (lower-cased), or "" when absent."""
        return self.headers.get("host", "").lower()
