"""The last minutes of a node's traffic, for the live status page: sampled once a second.

`Series.sample(now)` appends one snapshot of the cumulative counters (requests, requests
answered without an origin fetch, body bytes, origin fetches and their summed time to head)
to a bounded deque; `Series.view()` turns consecutive snapshots into per-interval rates
(requests/s, hit ratio, bytes/s, origin fetches/s, mean origin latency) — pure arithmetic,
no clock. `Sampler` is the thin async loop that calls `sample` every `interval_s`.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.metrics.counts import RequestCounts
from edge.metrics.origin import OriginCounts

__all__ = ["Point", "Sampler", "Series"]

log = logging.getLogger("edge.metrics")

# outcomes answered without an origin fetch for this request
_SERVED_HERE = ("hit", "peer_hit", "stale", "revalidated")


@dataclass(frozen=True, slots=True)
class Point:
    """Cumulative counters at one moment."""

    t: float  # wall clock, seconds
    requests: int
    served_here: int  # hit, peer hit, stale, revalidated
    body_bytes: int
    origin_fetches: int
    origin_seconds: float  # summed time to head of those fetches


class Series:
    """A bounded history of Points (default: ten minutes at one a second)."""

    def __init__(self, clients: RequestCounts, origins: OriginCounts, max_points: int = 600) -> None:
        self._clients = clients
        self._origins = origins
        self._points: collections.deque[Point] = collections.deque(maxlen=max_points)

    def sample(self, now: float) -> Point:
        """Appends a snapshot of the counters taken at `now`."""
        by_outcome = self._clients.by_outcome()
        latency = self._origins.latency.values()
        point = Point(
            t=now,
            requests=sum(by_outcome.values()),
            served_here=sum(by_outcome[o] for o in _SERVED_HERE),
            body_bytes=sum(self._clients.tier_bytes().values()),
            origin_fetches=self._origins.total(),
            origin_seconds=sum(h.sum for h in latency),
        )
        self._points.append(point)
        return point

    def view(self) -> dict[str, Any]:
        """Per-interval rates between consecutive points, oldest first (JSON-ready lists)."""
        points = list(self._points)
        out: dict[str, list[float | None]] = {
            "t": [],
            "requests_per_s": [],
            "hit_ratio": [],
            "bytes_per_s": [],
            "origin_per_s": [],
            "origin_latency_ms": [],
        }
        for before, after in itertools.pairwise(points):
            span = after.t - before.t
            if span <= 0:
                continue
            requests = after.requests - before.requests
            fetches = after.origin_fetches - before.origin_fetches
            out["t"].append(round(after.t, 3))
            out["requests_per_s"].append(requests / span)
            out["hit_ratio"].append((after.served_here - before.served_here) / requests if requests else None)
            out["bytes_per_s"].append((after.body_bytes - before.body_bytes) / span)
            out["origin_per_s"].append(fetches / span)
            seconds = after.origin_seconds - before.origin_seconds
            out["origin_latency_ms"].append(1000 * seconds / fetches if fetches else None)
        return {**out, "totals": _totals(points[-1]) if points else {}}


def _totals(point: Point) -> dict[str, float]:
    return {
        "requests": point.requests,
        "served_here": point.served_here,
        "body_bytes": point.body_bytes,
        "origin_fetches": point.origin_fetches,
    }


class Sampler:
    """Samples a Series every `interval_s` until stopped."""

    def __init__(self, series: Series, clock: Callable[[], float], interval_s: float = 1.0) -> None:
        self._series = series
        self._clock = clock
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts the loop (one sample at once, so the page has a baseline)."""
        self._series.sample(self._clock())
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="metrics-sampler")

    async def stop(self) -> None:
        """Stops the loop."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                self._series.sample(self._clock())
            except Exception:  # a bug in one sample must not end the history
                log.exception("sampling the metrics failed")
