"""EdgeNode: one running edge node, in order: start, reload, drain, stop.

The parts are built by the sibling modules (stores, peering, purging, serving, logs,
status); this one holds them and decides the order they open and close in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from cluster.config import PeerConfig
from cluster.discovery import DnsDiscovery
from cluster.members import Membership
from cluster.propagate import PurgeHub
from edge.app.logs import open_access_log, swap_access_log
from edge.app.peering import build_peering
from edge.app.purging import build_purging, catch_up
from edge.app.serving import build_handler, listen, start_admin
from edge.app.shutdown import close_resources, finish_fills, stop_accepting, wait_closed, wait_requests
from edge.app.startup import StartupError, check_parsers
from edge.app.status import node_status
from edge.app.stores import lock_disk_dir, memory_store, open_disk, tiered_store
from edge.app.workers import WorkerPlan, build_siblings, purge_endpoints, serve_siblings
from edge.config.deployment import EdgeConfig
from edge.config.reload import LiveChange, ReloadPlan, log_reload, merge_live, plan_reload
from edge.fill.coalesce import Coalescer
from edge.metrics.node import NodeMetrics
from edge.peering.routing import PeerGate, PeerRouting
from edge.purge.admin import Admin
from edge.purge.invalidate import Invalidator
from edge.request.handler import Handler
from edge.server.accesslog import AccessLog
from edge.server.connections import Connections, raise_fd_limit
from edge.server.lifecycle import Lifecycle, PublicGate, announce_s
from edge.server.protocol import Responder
from edge.server.tls import ServerTls, TlsError, reload_certificates
from edge.store.base import Store
from edge.store.dirlock import DirLock
from edge.store.memory import MemoryStore
from edge.store.tiered import TieredStore
from origin.client import make_session
from origin.pool import OriginPool, build_pools

__all__ = ["EdgeNode"]

log = logging.getLogger("edge.app")

SHUTDOWN_DEADLINE_S = 10.0  # request tasks and the listener get this long to end
FILL_GRACE_S = 5.0  # running fills get this long to finish and commit before they are cancelled


class EdgeNode:
    """One running edge node."""

    def __init__(self, config: EdgeConfig, worker: WorkerPlan | None = None) -> None:
        self.config = config
        self.worker = worker  # one of the machine's worker processes (edge.app.workers); None: alone
        self._siblings: tuple[asyncio.Server, PeerGate] | None = None  # the sibling listener, its gate
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._pools: dict[str, OriginPool] = {}  # their health checkers run until _close_resources
        self._coalescer: Coalescer | None = None
        self.store: TieredStore | None = None
        self.port = config.node.port
        self._internal: asyncio.Server | None = None  # the peer listener
        self._membership: Membership | None = None
        self._discovery: DnsDiscovery | None = None  # this region's nodes from DNS, when configured
        self.routing: PeerRouting | None = None
        self.invalidator: Invalidator | None = None
        self.purges: PurgeHub | None = None
        self._admin: Admin | None = None
        self.connections: Connections | None = None  # the public listener's, built in start()
        self._access_log: AccessLog | None = None
        self.lifecycle = Lifecycle()  # starting → ready → draining (edge.server.lifecycle)
        self._gate = PublicGate(self.lifecycle, config.server)  # the public listener's responder
        self._internal_connections: Connections | None = None
        self._peer_gate: PeerGate | None = None
        self._largest = 0  # the largest object any tier stores
        self._dir_lock: DirLock | None = None  # held on the disk directory until the node ends
        self.metrics = NodeMetrics()  # plain-int counters read by /metrics and the status page
        self._tls_server: asyncio.Server | None = None  # the HTTPS listener ([nodes.NAME] tls)
        self.tls: ServerTls | None = None
        self.tls_port = config.node.tls_port

    async def start(self) -> None:
        """Opens the stores and the listener."""
        check_parsers()
        cfg = self.config
        # certificates first: an unusable one stops the node before anything is opened
        if cfg.node.tls_host is not None:
            try:
                self.tls = ServerTls(cfg.tls)
            except TlsError as exc:
                raise StartupError(str(exc)) from exc
        nofile = raise_fd_limit()
        self.connections = Connections.for_listener(cfg.server, nofile)
        if cfg.access_log:
            self._access_log = await open_access_log(cfg)
        # bound first: a port in use fails before any disk work, and readiness answers
        # "starting" (503) while the disk index loads; requests wait for the start
        self._server = await self._listen(
            self._gate, cfg.node.host, cfg.node.port, "[nodes] listen or --listen", self.connections
        )
        sockets = self._server.sockets
        if sockets:
            self.port = sockets[0].getsockname()[1]
        if self.tls is not None and cfg.node.tls_host is not None:
            where = f"nodes.{cfg.node.name}.tls"
            self._tls_server = await self._listen(
                self._gate, cfg.node.tls_host, cfg.node.tls_port, where, self.connections, self.tls
            )
            self.tls_port = self._tls_server.sockets[0].getsockname()[1]
        memory = memory_store(cfg)
        disk_dir = cfg.disk_dir
        disk = None
        spool_dir: Path | None = None
        if disk_dir is not None:
            # one node per directory (the supervisor holds it for its workers)
            self._dir_lock = await lock_disk_dir(disk_dir) if self.worker is None else None
            disk = await open_disk(disk_dir, cfg.cache, self.worker)
            spool_dir = disk_dir / "spool"
        self.store = tiered_store(cfg.cache, memory, disk)
        self._session = make_session()
        self._pools = build_pools(cfg.pools, self._session)
        for pool in self._pools.values():
            pool.start()
        self._build_routing(memory.max_bytes)
        co = cfg.coalesce
        self._coalescer = Coalescer(
            spool_dir=spool_dir,
            memory_spool_bytes=co.spool_memory_bytes,
            head_timeout_s=co.head_timeout_s,
            idle_timeout_s=co.idle_timeout_s,
            pass_memo_s=co.pass_memo_s,
        )
        self._largest = max(memory.max_object_bytes, disk.max_object_bytes if disk is not None else 0)
        stores: list[Store] = [self.store] if self.routing is None else [self.store, self.routing.hot]
        try:
            self.invalidator, hub = await build_purging(cfg, self.store, stores, self._session, self.worker)
        except StartupError:
            await self._close_resources()
            raise
        self.purges = hub
        handler = self._build_handler(cfg)
        endpoints = purge_endpoints(self.worker, cfg, hub, self.invalidator, self._session)
        if cfg.cluster is not None and cfg.node.internal_host is not None:
            gate = self._peer_gate = PeerGate(
                handler.for_peers(),
                cfg.cluster.secret,
                purges=endpoints[0],
                serving=lambda: self.lifecycle.serving_peers,
            )
            self._internal_connections = Connections.for_listener(cfg.server, nofile)
            self._internal = await self._listen(
                gate,
                cfg.node.internal_host,
                cfg.node.internal_port,
                f"nodes.{cfg.node.name}.internal",
                self._internal_connections,
            )
            log.info("node %s peer listener on %s", cfg.node.name, cfg.node.internal_url)
        if self.worker is not None:
            self._siblings = await serve_siblings(
                self.worker, handler, endpoints[1], cfg, nofile, self._tasks
            )
        await catch_up(hub, cfg)  # before serving anything cached
        self._gate.serve(handler)
        log.info(
            "node %s listening on http://%s:%d (at most %d client connections)",
            cfg.node.name,
            cfg.node.host,
            self.port,
            self.connections.max_connections,
        )
        if cfg.node.admin_host is not None:
            self._admin = Admin(cfg.admin, hub, self.purge_status, extra_routes=self._observability())
            try:
                await start_admin(self._admin, cfg)
            except StartupError:
                await self._close_resources()
                raise
        hub.start()
        if self._admin is not None:
            self.metrics.start()
        if self._membership is not None:
            self._membership.start()
        if self._discovery is not None:
            self._discovery.start()
        self.lifecycle.ready()

    def _build_handler(self, cfg: EdgeConfig) -> Handler:
        """The request handler for a config (at start, and on each reload); stores stay the same."""
        assert self.store is not None and self._coalescer is not None and self.invalidator is not None
        return build_handler(
            cfg,
            store=self.store,
            coalescer=self._coalescer,
            invalidator=self.invalidator,
            routing=self.routing,
            pools=self._pools,
            largest=self._largest,
            access_log=self._access_log,
            metrics=self.metrics,
            siblings=None if self.worker is None else build_siblings(self.worker, cfg, self._session),
        )

    async def reload(self, new: EdgeConfig) -> ReloadPlan:
        """SIGHUP with a validated config: applies what can change live (edge.config.reload).

        New requests use the new handler; requests in flight finish with the one they began
        with. Stores, running fills and open connections are kept.
        """
        plan = plan_reload(self.config, new)
        membership = LiveChange.MEMBERSHIP in plan.live and self.routing is not None
        if membership and len(new.region_peers) < 2 and not new.parent_peers:
            membership = False  # leaving every ring takes the peer listener away: a restart
            plan = ReloadPlan(plan.live - {LiveChange.MEMBERSHIP}, (*plan.restart_only, "nodes (ring)"))
        applied = merge_live(self.config, new, plan.live)
        if self.tls is not None and not reload_certificates(self.tls, new.tls):  # new handshakes only
            plan = ReloadPlan(plan.live, plan.restart_only, failed=("tls.certificates",))
        if LiveChange.POOLS in plan.live:
            assert self._session is not None
            old_pools, self._pools = self._pools, build_pools(new.pools, self._session)
            for pool in self._pools.values():
                pool.start()
            for pool in old_pools.values():
                await pool.close()  # stops its health checks; fetches in flight go on
        if LiveChange.ADMIN in plan.live and self._admin is not None:
            self._admin.reconfigure(new.admin)
        if LiveChange.ACCESS_LOG in plan.live and new.access_log:
            self._access_log = await swap_access_log(self._access_log, self.config, new)
        self.config = applied
        if membership:
            await self._rejoin(applied)
        handler = self._build_handler(applied)
        self._gate.serve(handler)
        for peer_gate in (self._peer_gate, self._siblings[1] if self._siblings else None):
            if peer_gate is not None:
                peer_gate.serve(handler.for_peers())
        log_reload(plan)
        return plan

    def reopen_logs(self) -> None:
        """SIGUSR1: reopens the access-log file (after logrotate moved it)."""
        if self._access_log is not None:
            self._access_log.reopen()

    async def _rejoin(self, cfg: EdgeConfig) -> None:
        """A reload changed the region's nodes: new ring, peer clients and probes; same hot store."""
        assert self._membership is not None and self.routing is not None and self.purges is not None
        await self._membership.stop()
        if self._discovery is not None:
            await self._discovery.stop()
            self._discovery = None
        old_routing = self.routing
        self._build_routing(cfg.cache.memory_bytes, hot=self.routing.hot)
        old_routing.close()  # the old peer clients' idle connections; streaming ones finish
        self.purges.set_peers(cfg.peers)
        if self._membership is not None:
            self._membership.start()
        if self._discovery is not None:
            self._discovery.start()

    def _build_routing(self, memory_bytes: int, hot: MemoryStore | None = None) -> None:
        """Wires the region's ring, peer clients and membership (edge.app.peering); none when alone."""
        assert self._session is not None
        peering = build_peering(self.config, self._session, memory_bytes, hot, self._discovered)
        if peering is not None:
            self.routing, self._membership = peering.routing, peering.membership
            if peering.discovery is not None:
                self._discovery = peering.discovery

    def _discovered(self, found: tuple[PeerConfig, ...]) -> None:
        """DNS discovery added or dropped nodes: purges fan out to and catch up with them too."""
        if self.purges is not None:
            self.purges.set_peers((*self.config.peers, *found))

    def purge_status(self) -> dict[str, object]:
        """What GET /status shows: this node, its purge state and its store."""
        assert self.purges is not None and self.invalidator is not None and self.store is not None
        return node_status(
            self.config,
            time.time(),
            purges=self.purges,
            invalidator=self.invalidator,
            store=self.store,
            membership=self._membership,
            pools=self._pools,
            connections=self.connections,
            coalescer=self._coalescer,
            access_log=self._access_log,
            metrics=self.metrics,
        )

    def _observability(self) -> Callable[[web.Application], None]:
        """The admin listener's GET /metrics and status page routes."""
        assert self.store is not None and self.purges is not None and self.invalidator is not None
        return self.metrics.routes(
            node=self.config.node.name,
            region=self.config.node.region,
            store=self.store,
            hot=self.routing.hot if self.routing is not None else None,
            listeners={"public": self.connections, "internal": self._internal_connections},
            access_log=self._access_log,
            membership=self._membership,
            purges=self.purges,
            invalidator=self.invalidator,
        )

    async def _listen(
        self,
        responder: Responder,
        host: str,
        port: int,
        where: str,
        conns: Connections,
        tls: ServerTls | None = None,
    ) -> asyncio.Server:
        try:
            return await listen(
                responder,
                host,
                port,
                where=where,
                conns=conns,
                limits=self.config.limits,
                tasks=self._tasks,
                tls=tls,
                handshake_timeout_s=self.config.tls.handshake_timeout_s,
                reuse_port=self.worker is not None,  # the machine's workers share the port
            )
        except StartupError:
            await self._close_resources()
            raise

    async def drain(self) -> None:
        """A graceful stop (SIGTERM, SIGINT): announce, stop accepting, finish, close.

        The order is edge.server.lifecycle's: readiness and peer health turn 503 while the
        listeners still serve, then stop() lets in-flight requests and fills finish, all
        within `[server] drain_timeout_s`.
        """
        server = self.config.server
        loop = asyncio.get_running_loop()
        deadline = loop.time() + server.drain_timeout_s
        if not self.lifecycle.drain():
            return
        cluster = self.config.cluster
        ring_peers = self._membership is not None and len(self.config.region_peers) > 1
        announce = announce_s(server, cluster.leave_within_s if cluster is not None and ring_peers else None)
        log.info(
            "draining node %s: readiness 503 for %.1fs, then at most %.1fs for in-flight work",
            self.config.node.name,
            announce,
            max(0.0, server.drain_timeout_s - announce),
        )
        if announce > 0:
            await asyncio.sleep(announce)
        await self.stop(drain_until=deadline)

    async def stop(self, drain_until: float | None = None) -> None:
        """Stops listening, ends in-flight work, closes everything.

        With `drain_until` (loop time), requests and fills run until then and are cancelled
        after; without it, requests are cancelled at once and fills get FILL_GRACE_S.
        """
        self.lifecycle.drain()
        self._gate.draining()
        loop = asyncio.get_running_loop()
        stop_accepting(
            (self._server, self._internal, self._tls_server, self._siblings[0] if self._siblings else None),
            (self.connections, self._internal_connections),
        )
        if drain_until is not None:
            await wait_requests(self._tasks, drain_until - loop.time())
        if self._discovery is not None:
            await self._discovery.stop()
        if self._membership is not None:
            await self._membership.stop()
        await self.metrics.stop()
        if self._admin is not None:
            await self._admin.stop()
        if self.purges is not None:
            await self.purges.stop()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=SHUTDOWN_DEADLINE_S)
        if self._coalescer is not None:
            grace = FILL_GRACE_S if drain_until is None else max(0.0, drain_until - loop.time())
            await finish_fills(self._coalescer, grace)
        await self._close_resources()
        if self._server is not None:
            await wait_closed(self._server, SHUTDOWN_DEADLINE_S)

    async def _close_resources(self) -> None:
        if self.routing is not None:
            self.routing.close()  # peer connections (fills have finished or been abandoned)
        await close_resources(
            invalidator=self.invalidator,
            coalescer=self._coalescer,
            pools=self._pools,
            session=self._session,
            store=self.store,
            access_log=self._access_log,
            dir_lock=self._dir_lock,
        )
