"""Origin fetch counters: every fetch a pool makes, by server and status, with head latency.

`MeteredUpstream` wraps one origin pool (an Upstream) where edge.app wires the pools, so
the origin package stays unaware of metrics. A fetch is counted once its head arrives (the
status the server sent, and which server sent it: UpstreamResponse.upstream) or once it
fails (status `error`, server `none` unless the error names one); the latency is the time
to the head, retries and failover included, as the request saw it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from edge.metrics.counts import Histogram
from origin.errors import UpstreamError
from origin.upstream import Upstream, UpstreamRequest, UpstreamResponse

__all__ = ["MeteredUpstream", "OriginCounts"]


class OriginCounts:
    """Fetches by (pool, server, status) and head latency by pool."""

    __slots__ = ("_fetches", "latency")

    def __init__(self) -> None:
        self._fetches: dict[tuple[str, str, str], int] = {}
        self.latency: dict[str, Histogram] = {}

    def record(self, pool: str, server: str, status: str, seconds: float) -> None:
        """Counts one fetch."""
        key = (pool, server or "none", status)
        self._fetches[key] = self._fetches.get(key, 0) + 1
        histogram = self.latency.get(pool)
        if histogram is None:
            histogram = self.latency[pool] = Histogram()
        histogram.observe(seconds)

    def fetches(self) -> Iterator[tuple[str, str, str, int]]:
        """(pool, server, status, count) for every combination seen."""
        for (pool, server, status), count in list(self._fetches.items()):
            yield pool, server, status, count

    def total(self) -> int:
        """All fetches counted."""
        return sum(self._fetches.values())


class MeteredUpstream:
    """An origin pool whose fetches are counted; otherwise the pool itself."""

    __slots__ = ("_counts", "_inner", "_pool")

    def __init__(self, pool: str, inner: Upstream, counts: OriginCounts) -> None:
        self._pool = pool
        self._inner = inner
        self._counts = counts

    async def fetch(self, request: UpstreamRequest) -> UpstreamResponse:
        """Fetches through the pool and counts the result."""
        started = time.perf_counter()
        try:
            response = await self._inner.fetch(request)
        except UpstreamError as exc:
            self._counts.record(self._pool, exc.upstream, "error", time.perf_counter() - started)
            raise
        self._counts.record(
            self._pool, response.upstream, str(response.status), time.perf_counter() - started
        )
        return response
