"""The only wiring place: builds one node's stores, origin pools, coalescer and listener.

`EdgeNode(config)` is started with `await node.start()` and stopped with
`await node.drain()` (graceful: edge.server.lifecycle) or `await node.stop()`, which closes
the listener, cancels request tasks and fills under a deadline, and closes the stores and
client sessions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import sys
import time
from pathlib import Path
from typing import assert_never

import aiohttp

from cluster.config import PeerConfig
from cluster.discovery import DnsDiscovery
from cluster.members import Membership, http_probe
from cluster.peer import PeerClient
from cluster.propagate import PurgeHub
from cluster.purge import PurgeLog
from cluster.purge_wire import HttpPurgeTransport
from cluster.ring import Ring
from edge.config.cache import Eviction
from edge.config.deployment import EdgeConfig
from edge.config.reload import LiveChange, ReloadPlan, log_reload, merge_live, plan_reload
from edge.fill.coalesce import Coalescer
from edge.fill.producer import Filler
from edge.fill.sliced_fill import SlicedFill
from edge.fill.slices import SliceSource
from edge.peering.routing import HotCounter, PeerGate, PeerRouting
from edge.purge.admin import Admin
from edge.purge.invalidate import Invalidator
from edge.request.handler import Handler
from edge.rules.site_policy import PolicySet, key_url_form
from edge.server.accesslog import AccessLog
from edge.server.connections import Connections, raise_fd_limit
from edge.server.lifecycle import Lifecycle, PublicGate, announce_s
from edge.server.protocol import HttpProtocol, Responder
from edge.store.admission import AdmissionMode, make_admission
from edge.store.base import Store
from edge.store.dirlock import DirLock
from edge.store.disk import DiskStore, DiskUnusable
from edge.store.eviction import EvictionPolicy, LRUPolicy
from edge.store.gdsf import GDSFPolicy
from edge.store.memory import MemoryStore
from edge.store.s3fifo import S3FIFOPolicy
from edge.store.tiered import TieredStore
from origin.client import make_session
from origin.pool import OriginPool, build_pools
from origin.routes import Router
from origin.upstream import Upstream

__all__ = ["EdgeNode", "StartupError", "check_parsers"]

log = logging.getLogger("edge.app")

SHUTDOWN_DEADLINE_S = 10.0  # request tasks and the listener get this long to end
FILL_GRACE_S = 5.0  # running fills get this long to finish and commit before they are cancelled


class StartupError(RuntimeError):
    """The node cannot start; the message says what to do."""


def check_parsers() -> None:
    """Refuses to run on aiohttp's pure-Python HTTP parser (lenient: a smuggling risk)."""
    from aiohttp import http_parser

    c_parser = getattr(http_parser, "HttpResponseParserC", None)
    if c_parser is None or http_parser.HttpResponseParser is not c_parser:
        raise StartupError(
            "aiohttp is running its pure-Python HTTP parser (AIOHTTP_NO_EXTENSIONS set, or the C "
            "extension failed to build); unset AIOHTTP_NO_EXTENSIONS or reinstall aiohttp from a wheel"
        )


def _policy(kind: Eviction, max_bytes: int) -> EvictionPolicy:
    match kind:
        case Eviction.GDSF:
            return GDSFPolicy(max_bytes)
        case Eviction.S3FIFO:
            return S3FIFOPolicy(max_bytes)
        case Eviction.LRU:
            return LRUPolicy(max_bytes)
    assert_never(kind)  # mypy fails here when a new Eviction has no policy above


def _disk_policy(kind: Eviction, max_bytes: int) -> EvictionPolicy:
    # GDSF ranks by hits per byte, right for RAM; the disk tier is there for byte hits.
    return _policy(Eviction.S3FIFO if kind is Eviction.GDSF else kind, max_bytes)


class EdgeNode:
    """One running edge node."""

    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
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

    async def start(self) -> None:
        """Opens the stores and the listener."""
        check_parsers()
        cfg = self.config
        nofile = raise_fd_limit()
        self.connections = Connections.for_listener(cfg.server, nofile)
        if cfg.access_log:
            self._access_log = await self._open_access_log(cfg)
        # bound first: a port in use fails before any disk work, and readiness answers
        # "starting" (503) while the disk index loads; requests wait for the start
        self._server = await self._listen(
            self._gate, cfg.node.host, cfg.node.port, "[nodes] listen or --listen", self.connections
        )
        sockets = self._server.sockets
        if sockets:
            self.port = sockets[0].getsockname()[1]
        cache = cfg.cache
        memory = MemoryStore(
            max_bytes=cache.memory_bytes,
            max_object_bytes=cache.memory_object_cap(has_disk=cfg.disk_dir is not None),
            policy=_policy(cache.policy, cache.memory_bytes),
        )
        disk_dir = cfg.disk_dir
        disk = None
        spool_dir: Path | None = None
        if disk_dir is not None:
            disk = await self._open_disk(disk_dir)
            spool_dir = disk_dir / "spool"
        admission = make_admission(AdmissionMode(cache.disk_admission), cache.disk_admission_window)
        self.store = TieredStore(memory, disk, admission=admission)
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
        _, hub = await self._build_purging()
        handler = self._build_handler(cfg)
        if cfg.cluster is not None and cfg.node.internal_host is not None:
            gate = self._peer_gate = PeerGate(
                handler, cfg.cluster.secret, purges=hub, serving=lambda: self.lifecycle.serving_peers
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
        # catch up on purges missed while down before serving anything cached (bounded: each
        # peer gets one timeout; a node that reached none serves under the purge-lag rule)
        synced = await hub.sync_round()
        if hub.has_peers:
            log.info(
                "purge catch-up at start: %d of %d peers answered; generation %d",
                synced,
                len(cfg.peers) - 1,
                hub.log.generation,
            )
        self._gate.serve(handler)
        log.info(
            "node %s listening on http://%s:%d (at most %d client connections)",
            cfg.node.name,
            cfg.node.host,
            self.port,
            self.connections.max_connections,
        )
        if cfg.node.admin_host is not None:
            self._admin = Admin(cfg.admin, hub, self.purge_status)
            try:
                await self._admin.start(cfg.node.admin_host, cfg.node.admin_port)
            except OSError as exc:
                await self._close_resources()
                raise StartupError(
                    f"cannot listen on {cfg.node.admin_host}:{cfg.node.admin_port}: {exc.strerror}; "
                    f"pick a free address in nodes.{cfg.node.name}.admin"
                ) from exc
            log.info(
                "node %s admin API on http://%s:%d", cfg.node.name, cfg.node.admin_host, self._admin.port
            )
        hub.start()
        if self._membership is not None:
            self._membership.start()
        if self._discovery is not None:
            self._discovery.start()
        self.lifecycle.ready()

    def _build_handler(self, cfg: EdgeConfig) -> Handler:
        """The request handler for a config (at start, and on each reload); stores stay the same."""
        assert self.store is not None and self._coalescer is not None and self.invalidator is not None
        slices = SliceSource(  # issue 14: large objects as slices
            coalescer=self._coalescer, cache=cfg.cache, max_object_bytes=self._largest, guard=self.invalidator
        )
        return Handler(
            store=self.store,
            coalescer=self._coalescer,
            filler=Filler(
                cache=cfg.cache,
                max_object_bytes=self._largest,
                purges=self.invalidator,
                slicer=SlicedFill(slices),
            ),
            slices=slices,
            routing=self.routing,
            policies=PolicySet(cfg.policies),
            purges=self.invalidator,
            router=Router(cfg.routes),
            upstreams=dict(self._pools),
            allowlists={name: pool.forward_headers for name, pool in cfg.pools.items()},
            access_log=self._access_log if cfg.access_log else None,
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
            await self._swap_access_log(new)
        self.config = applied
        if membership:
            await self._rejoin(applied)
        handler = self._build_handler(applied)
        self._gate.serve(handler)
        if self._peer_gate is not None:
            self._peer_gate.serve(handler)
        log_reload(plan)
        return plan

    async def _open_access_log(self, cfg: EdgeConfig) -> AccessLog:
        """The access log on stdout, or appending to access_log_file (a StartupError if it cannot)."""
        lines, path = cfg.server.access_log_buffer_lines, cfg.access_log_file
        try:
            return await asyncio.to_thread(
                AccessLog, sys.stdout, cfg.node.name, lines, Path(path) if path else None
            )
        except OSError as exc:
            raise StartupError(
                f"access_log_file {path}: cannot open it for appending ({exc.strerror}); make its "
                "directory writable by this user or pick another path"
            ) from exc

    async def _swap_access_log(self, new: EdgeConfig) -> None:
        """A reload turned the access log on or moved it to another file."""
        old = self._access_log
        if old is not None and new.access_log_file == self.config.access_log_file:
            return
        try:
            self._access_log = await self._open_access_log(new)
        except StartupError as exc:
            log.error("SIGHUP: keeping the access log as it was: %s", exc)
            return
        if old is not None:  # requests in flight may still write to it: their lines are lost
            await asyncio.to_thread(old.close)

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
        self._build_routing(cfg.cache.memory_bytes, hot=self.routing.hot)
        self.purges.set_peers(cfg.peers)
        if self._membership is not None:
            self._membership.start()
        if self._discovery is not None:
            self._discovery.start()

    async def _open_disk(self, disk_dir: Path) -> DiskStore:
        """Opens the disk tier and its spool directory; a directory it cannot use is a StartupError."""
        cache = self.config.cache
        started = time.monotonic()
        where = "disk tier"
        try:
            self._dir_lock = await asyncio.to_thread(DirLock.acquire, disk_dir)  # one node per directory
            disk = await DiskStore.open(
                disk_dir,
                max_bytes=cache.disk_bytes,
                max_object_bytes=cache.disk_max_object_bytes,
                policy=_disk_policy(cache.policy, cache.disk_bytes),
            )
        except DiskUnusable as exc:
            raise StartupError(f"{where}: {exc}") from exc
        except OSError as exc:  # reading what is already there (permissions inside the tree)
            raise StartupError(
                f"{where}: {exc.strerror or exc} on {exc.filename or disk_dir}; fix its permissions "
                "or pick another directory"
            ) from exc
        log.info(
            "disk tier %s: %d objects, %d bytes indexed in %.2fs",
            disk_dir,
            disk.stats.entries,
            disk.stats.bytes,
            time.monotonic() - started,
        )
        try:
            await asyncio.to_thread((disk_dir / "spool").mkdir, exist_ok=True)
        except OSError as exc:
            await disk.close()
            raise StartupError(
                f"{where}: cannot create {disk_dir / 'spool'} ({exc.strerror}); remove what is in its way"
            ) from exc
        return disk

    async def _build_purging(self) -> tuple[Invalidator, PurgeHub]:
        """Opens the purge journal, re-applies purges not yet swept, and builds the hub."""
        cfg = self.config
        assert self.store is not None and self._session is not None
        state = cfg.state_dir
        sync = cfg.purge_sync
        stores: list[Store] = [self.store] if self.routing is None else [self.store, self.routing.hot]
        # a peer's copy may predate a purge that had not reached it yet: see edge.purge.invalidate
        window = sync.max_lag_s + sync.sync_interval_s + cfg.admin.purge_timeout_s
        invalidator = Invalidator(
            stores,
            state_path=state / "swept" if state is not None else None,
            peer_window_s=window,
            normalise_url=key_url_form(PolicySet(cfg.policies)),
        )
        try:
            journal = await PurgeLog.open(state / "journal" if state is not None else None, cfg.node.name)
            await invalidator.load(journal.generation)
        except OSError as exc:
            await self._close_resources()
            raise StartupError(
                f"purge state in {state}: {exc.strerror or exc} on {exc.filename or state}; make "
                f"nodes.{cfg.node.name}.state_dir (default <disk_dir>/purge) a writable directory"
            ) from exc
        for gen, purge in journal.after(invalidator.swept_through):
            await invalidator.apply(purge, gen)
        invalidator.start()
        peers = cfg.peers if cfg.cluster is not None and cfg.node.internal_url is not None else ()
        transport = HttpPurgeTransport(
            self._session, secret=cfg.cluster.secret if cfg.cluster else "", self_name=cfg.node.name
        )
        hub = PurgeHub(
            journal,
            invalidator,
            invalidator,
            self_name=cfg.node.name,
            peers=peers,
            transport=transport,
            sync_interval_s=sync.sync_interval_s,
            max_lag_s=sync.max_lag_s,
            sync_timeout_s=cfg.admin.purge_timeout_s,
            trusted_at_start=self.store.stats.entries == 0,
        )
        self.invalidator, self.purges = invalidator, hub
        return invalidator, hub

    def purge_status(self) -> dict[str, object]:
        """What GET /status shows: this node, its purge state and its store."""
        assert self.purges is not None and self.invalidator is not None and self.store is not None
        stats = self.store.stats
        return {
            "node": self.config.node.name,
            "region": self.config.node.region,
            **self.purges.status(time.time()),
            "pending_rules": self.invalidator.pending,
            "swept_through": self.invalidator.swept_through,
            "invalidated": self.invalidator.removed,
            "store": {
                "entries": stats.entries,
                "bytes": stats.bytes,
                "hits": stats.hits,
                "misses": stats.misses,
            },
            "peers": [dataclasses.asdict(p) for p in self._membership.status()] if self._membership else [],
            "origins": [dataclasses.asdict(pool.status()) for pool in self._pools.values()],
            "listener": self.connections.stats() if self.connections is not None else {},
            "fills": self._fill_stats(),
            "access_log": self._access_log.stats() if self._access_log is not None else {},
        }

    def _fill_stats(self) -> dict[str, int]:
        """Fills in flight and the requests waiting on them (issue 11: coalescing is visible)."""
        co = self._coalescer
        return {"in_flight": co.in_flight, "waiting": co.waiting} if co is not None else {}

    async def _listen(
        self, responder: Responder, host: str, port: int, where: str, conns: Connections
    ) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        limits = self.config.limits
        try:
            return await loop.create_server(
                lambda: HttpProtocol(responder, limits, self._tasks, conns),
                host,
                port,
                reuse_address=True,
                backlog=2048,
            )
        except OSError as exc:
            await self._close_resources()
            raise StartupError(
                f"cannot listen on {host}:{port}: {exc.strerror}; pick a free address in {where}"
            ) from exc

    def _build_routing(self, memory_bytes: int, hot: MemoryStore | None = None) -> PeerRouting | None:
        """The region's ring, peer clients, membership and hot-key store (None for a lone node)."""
        cfg = self.config
        cluster = cfg.cluster
        parents = cfg.parent_peers
        region = cfg.regions.get(cfg.node.region)
        discovery = region.discovery if region is not None else None
        lone = len(cfg.region_peers) < 2 and not parents and discovery is None
        if cluster is None or cfg.node.internal_url is None or lone:
            return None
        assert self._session is not None
        session = self._session

        def client(p: PeerConfig) -> PeerClient:
            return PeerClient(
                p,
                self_name=cfg.node.name,
                secret=cluster.secret,
                session=session,
                timeouts=cluster.peer_timeouts,
                margin_s=cluster.peer_deadline_margin_s,
                down=functools.partial(lambda name: membership.down_event(name), p.name),
            )

        peers: dict[str, Upstream] = {
            p.name: client(p) for p in (*cfg.region_peers, *parents) if p.name != cfg.node.name
        }
        if hot is None:  # a reload keeps the one the invalidator already purges
            hot_bytes = max(1, int(memory_bytes * cluster.hot_share))
            hot = MemoryStore(
                max_bytes=hot_bytes,
                max_object_bytes=min(
                    hot_bytes, cfg.cache.memory_object_cap(has_disk=cfg.disk_dir is not None)
                ),
                policy=_policy(cfg.cache.policy, hot_bytes),
            )
        membership = Membership(
            cfg.node.name,
            cfg.peers,
            cluster,
            http_probe(self._session, cluster.secret),
            on_change=lambda ring: routing.set_ring(ring),
        )
        parent_ring = Ring({p.name: p.weight for p in parents}, vnodes=cluster.vnodes) if parents else None
        routing = PeerRouting(
            self_name=cfg.node.name,
            ring=membership.ring,
            peers=peers,
            hot=hot,
            hot_counter=HotCounter(min_hits=cluster.hot_min_hits, window_s=cluster.hot_window_s),
            report_failure=membership.report_failure,
            parent_ring=parent_ring,
            is_healthy=membership.is_healthy,
        )
        self._membership = membership
        self.routing = routing
        if discovery is not None:
            self._discovery = DnsDiscovery(
                dataclasses.replace(discovery, fail_after=cluster.fail_after),
                membership,
                self_name=cfg.node.name,
                self_url=cfg.node.internal_url,
                on_join=lambda peer: peers.__setitem__(peer.name, client(peer)),
                on_leave=lambda name: peers.pop(name, None),
            )
        return routing

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
        for server in (self._server, self._internal):
            if server is not None:
                server.close()  # stop accepting; open connections stay
        for conns in (self.connections, self._internal_connections):
            if conns is not None:
                conns.drain()  # idle ones closed now, busy ones after their answer
        if drain_until is not None and self._tasks:
            _, running = await asyncio.wait(list(self._tasks), timeout=max(0.0, drain_until - loop.time()))
            if running:
                log.warning("drain timeout: cutting off %d requests still running", len(running))
        if self._discovery is not None:
            await self._discovery.stop()
        if self._membership is not None:
            await self._membership.stop()
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
            left = await self._coalescer.drain(grace)
            if left:
                log.info("abandoning %d fills still running after %.1fs", left, grace)
        await self._close_resources()
        if self._server is not None:
            try:
                async with asyncio.timeout(SHUTDOWN_DEADLINE_S):
                    await self._server.wait_closed()
            except TimeoutError:
                log.warning("listener did not close within %.0fs", SHUTDOWN_DEADLINE_S)

    async def _close_resources(self) -> None:
        if self.invalidator is not None:
            await self.invalidator.close()
        if self._coalescer is not None:
            await self._coalescer.close()
        for pool in self._pools.values():
            await pool.close()
        if self._session is not None:
            await self._session.close()
        if self.store is not None:
            await self.store.close()
        if self._access_log is not None:
            self._access_log.close()
        if self._dir_lock is not None:
            self._dir_lock.release()
