"""The node's Prometheus metrics: one custom collector that reads every counter at scrape time.

Nothing on the request path calls prometheus_client: requests add to plain ints
(edge.metrics.counts, edge.metrics.origin) and the stores, listeners, access log, ring and
purge hub keep their own counters. `NodeCollector.collect` turns a snapshot of all of them
into metric families when `GET /metrics` is scraped, on a registry of its own (no global
state). Names follow the Prometheus conventions: an `edgecache_` prefix, units in the name,
`_total` for counters. The node is one process, so prometheus_client's multiprocess mode is
not needed; a deployment that runs several node processes scrapes each admin listener.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from cluster.members import PeerStatus
from cluster.ring import Ring
from edge.metrics.counts import Histogram, RequestCounts
from edge.metrics.origin import OriginCounts
from edge.metrics.reloads import ReloadCounts
from edge.server.accesslog import AccessLog
from edge.server.connections import Connections
from edge.store.base import Store, StoreStats
from edge.store.tiered import TieredStore

__all__ = ["NodeCollector", "Sources", "registry_for", "store_readers"]

PREFIX = "edgecache_"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sources:
    """Where the collector reads each counter; wired in edge.app."""

    node: str
    region: str
    clients: RequestCounts  # requests on the public listener
    peers: RequestCounts  # requests from peers on the internal listener
    origins: OriginCounts
    stores: Mapping[str, Callable[[], StoreStats]]  # tier name → its current stats
    disk_written: Callable[[], int] | None = None  # body bytes written to the disk tier
    listeners: Mapping[str, Connections] = field(default_factory=dict)  # "public", "internal"
    access_log: AccessLog | None = None
    ring: Callable[[], Ring] | None = None  # this region's current ring
    peer_status: Callable[[], list[PeerStatus]] | None = None
    purge_status: Callable[[float], Mapping[str, Any]] | None = None  # cluster.propagate.PurgeHub.status
    purges_invalidated: Callable[[], int] | None = None
    reloads: ReloadCounts | None = None  # config reloads (SIGHUP) by result


def _histogram(name: str, doc: str, labels: list[str], rows: Iterator[tuple[list[str], Histogram]]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, h in rows:
        family.add_metric(values, list(h.cumulative()), h.sum)
    return family


class NodeCollector(Collector):
    """Yields every edgecache metric from a fresh snapshot of the node's counters."""

    def __init__(self, sources: Sources, clock: Callable[[], float] = time.time) -> None:
        self._s = sources
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        """Called by prometheus_client once per scrape."""
        yield from self._requests()
        yield from self._origin()
        yield from self._stores()
        yield from self._listeners()
        yield from self._cluster()
        if self._s.reloads is not None:
            yield from self._s.reloads.families(PREFIX)

    def _requests(self) -> Iterator[Metric]:
        s = self._s
        for who, counts in (("", s.clients), ("peer_", s.peers)):
            whose = "from peers on the internal listener" if who else "from clients on the public listener"
            requests = CounterMetricFamily(
                f"{PREFIX}{who}requests",
                f"Requests {whose}, by outcome and route",
                labels=["outcome", "route"],
            )
            sent = CounterMetricFamily(
                f"{PREFIX}{who}response_body_bytes",
                f"Body bytes sent {whose}, by outcome and route",
                labels=["outcome", "route"],
            )
            for outcome, route, cell in counts.cells():
                requests.add_metric([outcome, route or "none"], cell.count)
                sent.add_metric([outcome, route or "none"], cell.bytes)
            yield requests
            yield sent
            tiers = CounterMetricFamily(
                f"{PREFIX}{who}served_bytes",
                f"Body bytes sent {whose}, by where they came from",
                labels=["tier"],
            )
            for tier, size in counts.tier_bytes().items():
                tiers.add_metric([tier], size)
            yield tiers
            yield _histogram(
                f"{PREFIX}{who}request_duration_seconds",
                f"Time from request head to the answer's end, {whose}, by outcome",
                ["outcome"],
                (([outcome], h) for outcome, h in counts.latency.items()),
            )
            yield CounterMetricFamily(
                f"{PREFIX}{who}coalesced_waiters",
                f"Requests {whose} that waited on another request's fill instead of fetching",
                value=counts.coalesced,
            )

    def _origin(self) -> Iterator[Metric]:
        origins = self._s.origins
        fetches = CounterMetricFamily(
            f"{PREFIX}origin_fetches",
            "Fetches from origin pools, by pool, the server that answered and its status (error: none)",
            labels=["pool", "server", "status"],
        )
        for pool, server, status, count in origins.fetches():
            fetches.add_metric([pool, server, status], count)
        yield fetches
        yield _histogram(
            f"{PREFIX}origin_fetch_duration_seconds",
            "Time to an origin response head (retries and failover included), by pool",
            ["pool"],
            (([pool], h) for pool, h in list(origins.latency.items())),
        )

    def _stores(self) -> Iterator[Metric]:
        s = self._s
        size = GaugeMetricFamily(f"{PREFIX}store_bytes", "Bytes held per store tier", labels=["tier"])
        limit = GaugeMetricFamily(f"{PREFIX}store_max_bytes", "Byte budget per store tier", labels=["tier"])
        objects = GaugeMetricFamily(f"{PREFIX}store_objects", "Objects held per store tier", labels=["tier"])
        evictions = CounterMetricFamily(
            f"{PREFIX}store_evictions", "Objects evicted to make room, per store tier", labels=["tier"]
        )
        inserts = CounterMetricFamily(f"{PREFIX}store_inserts", "Objects stored, per tier", labels=["tier"])
        for tier, read in s.stores.items():
            stats = read()
            size.add_metric([tier], stats.bytes)
            limit.add_metric([tier], stats.max_bytes)
            objects.add_metric([tier], stats.entries)
            evictions.add_metric([tier], stats.evictions)
            inserts.add_metric([tier], stats.inserts)
        yield from (size, limit, objects, evictions, inserts)
        if s.disk_written is not None:
            yield CounterMetricFamily(
                f"{PREFIX}disk_written_bytes", "Body bytes written to the disk tier", value=s.disk_written()
            )

    def _listeners(self) -> Iterator[Metric]:
        s = self._s
        opened = GaugeMetricFamily(f"{PREFIX}connections_open", "Open connections", labels=["listener"])
        accepted = CounterMetricFamily(
            f"{PREFIX}connections_accepted", "Connections accepted", labels=["listener"]
        )
        closed = CounterMetricFamily(
            f"{PREFIX}connections_closed",
            "Connections closed, by reason (a timeout's phase, evicted when idle at the cap, or normal)",
            labels=["listener", "reason"],
        )
        refused = CounterMetricFamily(
            f"{PREFIX}connections_refused", "Connections refused at a cap", labels=["listener", "reason"]
        )
        for name, conns in s.listeners.items():
            open_now, total = len(conns), int(conns.accepted)
            timeouts = {r.value: n for r, n in conns.timeouts.items()}
            opened.add_metric([name], open_now)
            accepted.add_metric([name], total)
            for reason, n in timeouts.items():
                closed.add_metric([name, f"timeout_{reason}"], n)
            closed.add_metric([name, "evicted_idle"], conns.evicted)
            normal = total - open_now - conns.evicted - sum(timeouts.values())
            closed.add_metric([name, "normal"], max(0, normal))
            for admission, n in conns.refused.items():
                refused.add_metric([name, admission.value], n)
        yield from (opened, accepted, closed, refused)
        log = s.access_log
        if log is not None:
            yield CounterMetricFamily(
                f"{PREFIX}access_log_lines", "Access-log lines written", value=log.written
            )
            yield CounterMetricFamily(
                f"{PREFIX}access_log_dropped_lines",
                "Access-log lines dropped (buffer full, or the stream unusable)",
                value=log.dropped,
            )

    def _cluster(self) -> Iterator[Metric]:
        s = self._s
        info = GaugeMetricFamily(f"{PREFIX}node_info", "This node", labels=["node", "region"])
        info.add_metric([s.node, s.region], 1)
        yield info
        if s.ring is not None:
            ring = s.ring()
            yield GaugeMetricFamily(f"{PREFIX}ring_members", "Nodes in this region's ring", value=len(ring))
            share = GaugeMetricFamily(
                f"{PREFIX}ring_share_ratio", "Share of the key space each ring member owns", labels=["member"]
            )
            for member, ratio in sorted(ring.shares().items()):
                share.add_metric([member], ratio)
            yield share
        if s.peer_status is not None:
            up = GaugeMetricFamily(
                f"{PREFIX}peer_up", "1 when a peer passes its health probes", labels=["peer", "region"]
            )
            for peer in s.peer_status():
                up.add_metric([peer.name, peer.region], 1 if peer.healthy else 0)
            yield up
        if s.purge_status is not None:
            yield from self._purges(s.purge_status(self._clock()))
        if s.purges_invalidated is not None:
            yield CounterMetricFamily(
                f"{PREFIX}purge_invalidated_objects", "Objects purges removed", value=s.purges_invalidated()
            )

    def _purges(self, status: Mapping[str, Any]) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            f"{PREFIX}purge_generation", "Purges this node has journaled", value=status["generation"]
        )
        cursor = GaugeMetricFamily(
            f"{PREFIX}purge_journal_position",
            "The last purge sequence number applied, per node that made purges",
            labels=["origin_node"],
        )
        for node, seq in sorted(dict(status["cursor"]).items()):
            cursor.add_metric([node], seq)
        yield cursor
        lag = status["purge_lag_s"]
        yield GaugeMetricFamily(
            f"{PREFIX}purge_lag_seconds",
            "Seconds since the last complete catch-up with every peer (NaN before the first)",
            value=float("nan") if lag is None else lag,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}purge_trusted",
            "1 while the cache is trusted (purge lag within bounds)",
            value=int(status["trusted"]),
        )
        per_peer = GaugeMetricFamily(
            f"{PREFIX}purge_peer_lag_seconds",
            "Seconds since the last successful catch-up with each peer (NaN: never)",
            labels=["peer", "region"],
        )
        for peer, state in sorted(dict(status["peers"]).items()):
            age = state["last_sync_age_s"]
            per_peer.add_metric([peer, state["region"]], float("nan") if age is None else age)
        yield per_peer


def registry_for(sources: Sources) -> CollectorRegistry:
    """A registry of its own holding the node's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(sources))
    return registry


def store_readers(store: TieredStore, hot: Store | None) -> dict[str, Callable[[], StoreStats]]:
    """The stats readers of each tier: memory, disk (if any) and the hot-copy store (if any)."""
    readers: dict[str, Callable[[], StoreStats]] = {"memory": lambda: store.memory.stats}
    disk = store.disk
    if disk is not None:
        readers["disk"] = lambda: disk.stats
    if hot is not None:
        readers["hot"] = lambda: hot.stats
    return readers
