"""Request counters kept as plain ints on the request path; exported at scrape time.

The hit path must stay cheap, so nothing here calls prometheus_client per request: a
request adds to a `Cell` (count, bytes) and a `Histogram` (bucket counts and a sum), and
the collector (edge.metrics.collector) reads them when Prometheus scrapes. Everything runs on
the event loop, so plain `+=` needs no lock. Label sets are bounded: outcomes are the
`OUTCOMES` below, routes are the configured pools, tiers are `TIERS`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from edge.rules.outcome import CacheOutcome

__all__ = [
    "LATENCY_BOUNDS_S",
    "OUTCOMES",
    "TIERS",
    "Cell",
    "Histogram",
    "RequestCounts",
    "metric_outcome",
]

# Upper bounds (seconds) of the latency buckets: 10 µs (a fast hit) to 10 s (a slow origin).
LATENCY_BOUNDS_S: tuple[float, ...] = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

# The `outcome` label: what the client got, as an operator groups it.
OUTCOMES = ("hit", "peer_hit", "stale", "miss", "revalidated", "pass", "error")

# The `tier` label of bytes served: where the body came from.
TIERS = ("memory", "disk", "hot", "peer", "origin")

_OUTCOME_LABEL: dict[CacheOutcome, str] = {
    CacheOutcome.HIT: "hit",
    CacheOutcome.PEER_HIT: "peer_hit",
    CacheOutcome.STALE_HIT: "stale",
    CacheOutcome.STALE_ERROR: "stale",
    CacheOutcome.MISS: "miss",
    CacheOutcome.EXPIRED: "miss",
    CacheOutcome.COLLAPSED: "miss",  # also counted as a coalesced waiter
    CacheOutcome.REVALIDATED: "revalidated",
    CacheOutcome.PASS: "pass",
    CacheOutcome.BYPASS: "pass",
    CacheOutcome.ERROR: "error",
    CacheOutcome.CLIENT_GONE: "error",
    CacheOutcome.BAD_REQUEST: "error",
    CacheOutcome.NO_ROUTE: "error",
    CacheOutcome.NOT_FOUND: "error",
}


def metric_outcome(outcome: CacheOutcome) -> str:
    """The `outcome` label a CacheOutcome is counted under."""
    return _OUTCOME_LABEL[outcome]


class Cell:
    """Requests and body bytes of one (outcome, route)."""

    __slots__ = ("bytes", "count")

    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0


class Histogram:
    """Bucket counts (non-cumulative; the last bucket is +Inf) and the sum of observations."""

    __slots__ = ("buckets", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BOUNDS_S) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Counts one observation (a value equal to a bound falls into that bound's bucket)."""
        self.buckets[bisect_left(LATENCY_BOUNDS_S, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> Iterator[tuple[str, int]]:
        """(le, cumulative count) pairs as the exposition format wants them, +Inf last."""
        total = 0
        for bound, count in zip((*map(repr, LATENCY_BOUNDS_S), "+Inf"), self.buckets, strict=True):
            total += count
            yield bound, total

    @property
    def count(self) -> int:
        """How many observations there were."""
        return sum(self.buckets)


class RequestCounts:
    """The requests one listener answered: by outcome and route, bytes by tier, latency by outcome."""

    __slots__ = ("_cells", "_fast", "bytes_by_tier", "coalesced", "latency")

    def __init__(self) -> None:
        self._cells: dict[tuple[str, str], Cell] = {}
        # hits the fast path answered, by route: apart from `_cells` so the fast path adds no
        # tier bookkeeping (every fast hit is a memory hit); merged when read
        self._fast: dict[str, Cell] = {}
        self.latency = {outcome: Histogram() for outcome in OUTCOMES}
        self.bytes_by_tier = dict.fromkeys(TIERS, 0)
        self.coalesced = 0  # requests that waited on another request's fill

    def cell(self, outcome: str, route: str) -> Cell:
        """The counters of one (outcome, route), created on first use."""
        cell = self._cells.get((outcome, route))
        if cell is None:
            cell = self._cells[(outcome, route)] = Cell()
        return cell

    def fast_cell(self, route: str) -> Cell:
        """The fast path's hit counters of one route (always memory hits)."""
        cell = self._fast.get(route)
        if cell is None:
            cell = self._fast[route] = Cell()
        return cell

    def record(self, outcome: CacheOutcome, route: str, tier: str | None, size: int, seconds: float) -> None:
        """Counts one finished request (the slow path; the fast path adds to its cells directly)."""
        label = _OUTCOME_LABEL[outcome]
        cell = self.cell(label, route)
        cell.count += 1
        cell.bytes += size
        self.latency[label].observe(seconds)
        if tier is not None:
            self.bytes_by_tier[tier] += size
        if outcome is CacheOutcome.COLLAPSED:
            self.coalesced += 1

    def cells(self) -> Iterator[tuple[str, str, Cell]]:
        """(outcome, route, cell) for every pair seen so far, fast-path hits merged in (copies)."""
        merged: dict[tuple[str, str], Cell] = {}
        for key, cell in [*self._cells.items(), *((("hit", r), c) for r, c in self._fast.items())]:
            into = merged.get(key)
            if into is None:
                into = merged[key] = Cell()
            into.count += cell.count
            into.bytes += cell.bytes
        for (outcome, route), cell in merged.items():
            yield outcome, route, cell

    def tier_bytes(self) -> dict[str, int]:
        """Body bytes sent by tier, fast-path hits counted as memory."""
        tiers = dict(self.bytes_by_tier)
        tiers["memory"] += sum(c.bytes for c in self._fast.values())
        return tiers

    def by_outcome(self) -> dict[str, int]:
        """Requests per outcome label over every route (every label present, zeros included)."""
        totals = dict.fromkeys(OUTCOMES, 0)
        for outcome, _, cell in self.cells():
            totals[outcome] += cell.count
        return totals

    def total(self, *outcomes: str) -> int:
        """Requests counted under the given outcome labels (all when none are given)."""
        return sum(c.count for o, _, c in self.cells() if not outcomes or o in outcomes)
