"""ReloadCounts: how the node's config reloads (SIGHUP) ended, for /metrics.

A reload is `ok` when everything the new file asked for that can change live was applied,
certificates included; it is `failed` when the file was refused (unreadable, invalid), when
applying it raised, or when the new TLS certificates could not be used (the running ones
stay). The exposition names follow the exporters operators already graph for this idea:
`edgecache_config_reloads_total{result}` and
`edgecache_config_last_reload_success_timestamp_seconds`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["ReloadCounts", "ReloadResult"]


class ReloadResult(enum.Enum):
    """How one reload ended: the `result` label's values."""

    OK = "ok"
    FAILED = "failed"


class ReloadCounts:
    """Reloads by result and when the last one succeeded (Unix seconds; the start counts as one)."""

    __slots__ = ("_counts", "last_success_at")

    def __init__(self, started_at: float) -> None:
        self._counts = dict.fromkeys(ReloadResult, 0)
        # the config loaded at start is the first one that took effect, as Prometheus and
        # Alertmanager report it: "time() - last success" then says how old the running config is
        self.last_success_at = started_at

    def succeeded(self, now: float) -> None:
        """Notes one reload that took effect at `now`."""
        self._counts[ReloadResult.OK] += 1
        self.last_success_at = now

    def failed(self) -> None:
        """Notes one reload that was refused or only partly applied."""
        self._counts[ReloadResult.FAILED] += 1

    def __getitem__(self, result: ReloadResult) -> int:
        return self._counts[result]

    def families(self, prefix: str) -> Iterator[Metric]:
        """The two metric families, read at scrape time."""
        total = CounterMetricFamily(
            f"{prefix}config_reloads", "Config reloads (SIGHUP), by result", labels=["result"]
        )
        for result, n in self._counts.items():
            total.add_metric([result.value], n)
        yield total
        yield GaugeMetricFamily(
            f"{prefix}config_last_reload_success_timestamp_seconds",
            "Unix time of the last config reload that took effect (the start counts as one)",
            value=self.last_success_at,
        )
