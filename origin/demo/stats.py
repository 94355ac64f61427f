"""RequestStats: what reached the demo origin, counted exactly, for tests to assert on.

Counts requests per raw target (path and query exactly as received) and per method, and
keeps the last few request records per target (method and header pairs in arrival order,
original case, duplicates kept). The demo origin records a request synchronously when it
arrives, before any await, so a count read after a response came back is never short.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["RECENT_PER_PATH", "RequestRecord", "RequestStats"]

RECENT_PER_PATH = 20  # request records kept per raw target


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the origin received it."""

    method: str
    raw_path: str  # request target as sent: path and query, undecoded
    headers: tuple[tuple[str, str], ...]  # in arrival order, names in their original case

    def header(self, name: str) -> str | None:
        """The first value of a header, case-insensitively, or None."""
        lname = name.lower()
        for n, v in self.headers:
            if n.lower() == lname:
                return v
        return None

    def to_json(self) -> dict[str, Any]:
        """The record as served by GET /__stats."""
        return {"method": self.method, "headers": [[n, v] for n, v in self.headers]}


class RequestStats:
    """Per-target and per-method counters plus the last requests per target."""

    __slots__ = ("_keep", "_recent", "methods", "paths", "total")

    def __init__(self, keep: int = RECENT_PER_PATH) -> None:
        self._keep = keep
        self.total = 0
        self.paths: dict[str, int] = {}
        self.methods: dict[str, int] = {}
        self._recent: dict[str, deque[RequestRecord]] = {}

    def record(self, method: str, raw_path: str, headers: tuple[tuple[str, str], ...]) -> None:
        """Counts one request; synchronous so callers count before their first await."""
        self.total += 1
        self.paths[raw_path] = self.paths.get(raw_path, 0) + 1
        self.methods[method] = self.methods.get(method, 0) + 1
        recent = self._recent.get(raw_path)
        if recent is None:
            recent = self._recent[raw_path] = deque(maxlen=self._keep)
        recent.append(RequestRecord(method, raw_path, headers))

    def count(self, raw_path: str) -> int:
        """How many requests arrived for exactly this raw target."""
        return self.paths.get(raw_path, 0)

    def requests(self, raw_path: str) -> list[RequestRecord]:
        """The last requests for this raw target, oldest first."""
        return list(self._recent.get(raw_path, ()))

    def reset(self) -> None:
        """Zeroes every counter and forgets every record."""
        self.total = 0
        self.paths.clear()
        self.methods.clear()
        self._recent.clear()

    def to_json(self) -> dict[str, Any]:
        """The snapshot served by GET /__stats."""
        return {
            "total": self.total,
            "paths": dict(self.paths),
            "methods": dict(self.methods),
            "requests": {p: [r.to_json() for r in recs] for p, recs in self._recent.items()},
        }
