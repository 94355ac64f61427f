"""AccessLog: one JSON line per request on a stream (stdout by default)."""

from __future__ import annotations

import json
import sys
import time
from typing import Protocol, TextIO

from edge.server.request import Request

__all__ = ["AccessLog", "LoggedOutcome"]


class LoggedOutcome(Protocol):
    """How a request ended, as the log names it (edge.rules.outcome.CacheOutcome)."""

    @property
    def log_name(self) -> str: ...


class AccessLog:
    """Writes `{"t", "peer", "method", "host", "target", "status", "cache", "bytes", "ms"}` lines."""

    def __init__(self, stream: TextIO | None = None, node: str = "") -> None:
        self._stream = stream or sys.stdout
        self._node = node

    def write(self, request: Request, status: int, cache: LoggedOutcome, size: int, seconds: float) -> None:
        """Logs one finished request."""
        line = json.dumps(
            {
                "t": round(time.time(), 3),
                "node": self._node,
                "peer": request.peer,
                "method": request.method,
                "host": request.host,
                "target": request.target,
                "status": status,
                "cache": cache.log_name,
                "bytes": size,
                "ms": round(seconds * 1000, 2),
            },
            separators=(",", ":"),
        )
        self._stream.write(line + "\n")
        self._stream.flush()

    def write_fast(
        self, peer: str, method: str, host: bytes, target: bytes, status: int, size: int, cache: LoggedOutcome
    ) -> None:
        """Logs a hit answered on the fast path (no Request object exists for it)."""
        line = json.dumps(
            {
                "t": round(time.time(), 3),
                "node": self._node,
                "peer": peer,
                "method": method,
                "host": host.decode("latin-1").lower(),
                "target": target.decode("latin-1"),
                "status": status,
                "cache": cache.log_name,
                "bytes": size,
                "ms": 0.0,
            },
            separators=(",", ":"),
        )
        self._stream.write(line + "\n")
        self._stream.flush()
