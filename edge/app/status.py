"""What GET /status shows: this node, its purge state, its store, peers, origins and listener."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from cluster.members import Membership
from cluster.propagate import PurgeHub
from edge.config.deployment import EdgeConfig
from edge.fill.coalesce import Coalescer
from edge.metrics.node import NodeMetrics
from edge.purge.invalidate import Invalidator
from edge.server.accesslog import AccessLog
from edge.server.connections import Connections
from edge.store.tiered import TieredStore
from origin.pool import OriginPool

__all__ = ["fill_stats", "node_status"]


def node_status(
    cfg: EdgeConfig,
    now: float,
    *,
    purges: PurgeHub,
    invalidator: Invalidator,
    store: TieredStore,
    membership: Membership | None,
    pools: Mapping[str, OriginPool],
    connections: Connections | None,
    coalescer: Coalescer | None,
    access_log: AccessLog | None,
    metrics: NodeMetrics,
) -> dict[str, object]:
    """The /status dictionary at wall-clock time `now`."""
    stats = store.stats
    purge_state = purges.status(now)
    return {
        "node": cfg.node.name,
        "region": cfg.node.region,
        **purge_state,
        "purge_peers": purge_state["peers"],  # each peer's catch-up state ("peers" below is membership)
        "requests": metrics.clients.by_outcome(),  # client requests by outcome, as /metrics
        "pending_rules": invalidator.pending,
        "swept_through": invalidator.swept_through,
        "invalidated": invalidator.removed,
        "store": {
            "entries": stats.entries,
            "bytes": stats.bytes,
            "hits": stats.hits,
            "misses": stats.misses,
        },
        "peers": [dataclasses.asdict(p) for p in membership.status()] if membership else [],
        "origins": [dataclasses.asdict(pool.status()) for pool in pools.values()],
        "listener": connections.stats() if connections is not None else {},
        "fills": fill_stats(coalescer),
        "access_log": access_log.stats() if access_log is not None else {},
    }


def fill_stats(coalescer: Coalescer | None) -> dict[str, int]:
    """Fills in flight and the requests waiting on them (issue 11: coalescing is visible)."""
    co = coalescer
    return {"in_flight": co.in_flight, "waiting": co.waiting} if co is not None else {}
