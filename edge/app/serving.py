"""What the listeners serve: the request handler for a config, the listening sockets, the admin API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from edge.app.startup import StartupError
from edge.config.deployment import EdgeConfig
from edge.config.limits import Limits
from edge.fill.coalesce import Coalescer
from edge.fill.producer import Filler
from edge.fill.sliced_fill import SlicedFill
from edge.fill.slices import SliceSource
from edge.metrics.node import NodeMetrics
from edge.peering.routing import PeerRouting
from edge.peering.workers import Siblings
from edge.purge.admin import Admin
from edge.purge.invalidate import Invalidator
from edge.request.handler import Handler
from edge.rules.outcome import cache_name
from edge.rules.site_policy import PolicySet
from edge.server.accesslog import AccessLog
from edge.server.connections import Connections
from edge.server.protocol import HttpProtocol, Responder
from edge.server.tls import ServerTls
from edge.store.tiered import TieredStore
from origin.pool import OriginPool
from origin.routes import Router

__all__ = ["build_handler", "listen", "start_admin"]

log = logging.getLogger("edge.app")


def build_handler(
    cfg: EdgeConfig,
    *,
    store: TieredStore,
    coalescer: Coalescer,
    invalidator: Invalidator,
    routing: PeerRouting | None,
    pools: Mapping[str, OriginPool],
    largest: int,
    access_log: AccessLog | None,
    metrics: NodeMetrics,
    siblings: Siblings | None = None,
) -> Handler:
    """The request handler for a config (at start, and on each reload); stores stay the same.

    `largest` is the largest object any tier stores.
    """
    slices = SliceSource(  # issue 14: large objects as slices
        coalescer=coalescer, cache=cfg.cache, max_object_bytes=largest, guard=invalidator
    )
    return Handler(
        store=store,
        coalescer=coalescer,
        filler=Filler(
            cache=cfg.cache,
            max_object_bytes=largest,
            purges=invalidator,
            slicer=SlicedFill(slices),
        ),
        slices=slices,
        routing=routing,
        policies=PolicySet(cfg.policies),
        purges=invalidator,
        router=Router(cfg.routes),
        upstreams=metrics.metered(pools),
        allowlists={name: pool.forward_headers for name, pool in cfg.pools.items()},
        access_log=access_log if cfg.access_log else None,
        counts=metrics.clients,
        peer_counts=metrics.peers,
        cache_name=cache_name(cfg.node.name if cfg.cluster is not None else None),
        siblings=siblings,  # the machine's other workers (docs/workers.md)
    )


async def listen(
    responder: Responder,
    host: str,
    port: int,
    *,
    where: str,
    conns: Connections,
    limits: Limits,
    tasks: set[asyncio.Task[None]],
    tls: ServerTls | None = None,
    handshake_timeout_s: float | None = None,
    reuse_port: bool = False,
) -> asyncio.Server:
    """A listener on host:port whose connections answer with `responder`; request tasks go in `tasks`.

    An address it cannot bind is a StartupError naming `where` (the config key to change).
    """
    loop = asyncio.get_running_loop()
    try:
        return await loop.create_server(
            lambda: HttpProtocol(responder, limits, tasks, conns),
            host,
            port,
            reuse_address=True,
            reuse_port=reuse_port or None,  # SO_REUSEPORT: the machine's worker processes share the port
            backlog=2048,
            ssl=tls.default if tls is not None else None,
            ssl_handshake_timeout=handshake_timeout_s if tls is not None else None,
        )
    except OSError as exc:
        raise StartupError(
            f"cannot listen on {host}:{port}: {exc.strerror}; pick a free address in {where}"
        ) from exc


async def start_admin(admin: Admin, cfg: EdgeConfig) -> None:
    """Starts the admin API on `[nodes.NAME] admin`; an address it cannot bind is a StartupError."""
    assert cfg.node.admin_host is not None
    try:
        await admin.start(cfg.node.admin_host, cfg.node.admin_port)
    except OSError as exc:
        raise StartupError(
            f"cannot listen on {cfg.node.admin_host}:{cfg.node.admin_port}: {exc.strerror}; "
            f"pick a free address in nodes.{cfg.node.name}.admin"
        ) from exc
    log.info("node %s admin API on http://%s:%d", cfg.node.name, cfg.node.admin_host, admin.port)
