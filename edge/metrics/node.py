"""NodeMetrics: what one node counts for /metrics and the status page, and where it reads the rest.

edge.app builds one, hands its counters to the handler (`clients`, `peers`), wraps the origin
pools with it (`metered`), and gives the admin listener its routes (`routes`), naming the
stores, listeners, access log, ring and purge state the collector reads at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from aiohttp import web

from cluster.members import Membership
from cluster.propagate import PurgeHub
from edge.metrics.collector import Sources, store_readers
from edge.metrics.counts import RequestCounts
from edge.metrics.http import observability_routes
from edge.metrics.origin import MeteredUpstream, OriginCounts
from edge.metrics.reloads import ReloadCounts
from edge.metrics.series import Sampler, Series
from edge.purge.invalidate import Invalidator
from edge.server.accesslog import AccessLog
from edge.server.connections import Connections
from edge.store.base import Store
from edge.store.tiered import TieredStore
from origin.upstream import Upstream

__all__ = ["NodeMetrics"]


class NodeMetrics:
    """The node's counters, its traffic history and the sampler that keeps it."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clients = RequestCounts()  # requests on the public listener(s)
        self.peers = RequestCounts()  # requests from peers on the internal listener
        self.origins = OriginCounts()
        self.series = Series(self.clients, self.origins)
        self._sampler = Sampler(self.series, clock)
        self.reloads = ReloadCounts(clock())  # SIGHUP reloads, counted by edge.cli.serve

    def metered(self, pools: Mapping[str, Upstream]) -> dict[str, Upstream]:
        """The origin pools by name, each counting its fetches."""
        return {name: MeteredUpstream(name, pool, self.origins) for name, pool in pools.items()}

    def routes(
        self,
        *,
        node: str,
        region: str,
        store: TieredStore,
        hot: Store | None,
        listeners: Mapping[str, Connections | None],
        access_log: AccessLog | None,
        membership: Membership | None,
        purges: PurgeHub,
        invalidator: Invalidator,
    ) -> Callable[[web.Application], None]:
        """GET /metrics and the status page, reading these parts of the node."""
        disk = store.disk
        sources = Sources(
            node=node,
            region=region,
            clients=self.clients,
            peers=self.peers,
            origins=self.origins,
            stores=store_readers(store, hot),
            disk_written=(lambda: disk.bytes_written) if disk is not None else None,
            listeners={name: conns for name, conns in listeners.items() if conns is not None},
            access_log=access_log,
            ring=(lambda: membership.ring) if membership is not None else None,
            peer_status=membership.status if membership is not None else None,
            purge_status=purges.status,
            purges_invalidated=lambda: invalidator.removed,
            reloads=self.reloads,
        )
        return observability_routes(sources, self.series)

    def start(self) -> None:
        """Starts sampling the traffic history (with the admin listener that shows it)."""
        self._sampler.start()

    async def stop(self) -> None:
        """Stops sampling."""
        await self._sampler.stop()
