"""The region's ring, peer clients, membership and hot-key store (none for a lone node)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from cluster.config import PeerConfig
from cluster.discovery import DnsDiscovery
from cluster.members import Membership, http_probe
from cluster.peer import PeerClient
from cluster.ring import Ring
from edge.app.stores import hot_store
from edge.config.deployment import EdgeConfig
from edge.peering.routing import HotCounter, PeerRouting
from edge.store.memory import MemoryStore
from origin.upstream import Upstream

__all__ = ["Peering", "build_peering"]


@dataclass(frozen=True, slots=True)
class Peering:
    """What build_peering wires: routing and membership, and DNS discovery when configured."""

    routing: PeerRouting
    membership: Membership
    discovery: DnsDiscovery | None


def build_peering(
    cfg: EdgeConfig,
    session: aiohttp.ClientSession,
    memory_bytes: int,
    hot: MemoryStore | None = None,
    on_discovered: Callable[[tuple[PeerConfig, ...]], object] = lambda found: None,
) -> Peering | None:
    """The region's ring, peer clients, membership and hot-key store (None for a lone node).

    A reload passes the `hot` store already built: the invalidator purges that one.
    `on_discovered` is told every node DNS discovery currently adds, each time that set
    changes (purges must reach those nodes too, not only the configured ones).
    """
    cluster = cfg.cluster
    parents = cfg.parent_peers
    region = cfg.regions.get(cfg.node.region)
    discovery = region.discovery if region is not None else None
    lone = len(cfg.region_peers) < 2 and not parents and discovery is None
    if cluster is None or cfg.node.internal_url is None or lone:
        return None

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
    if hot is None:
        hot = hot_store(cfg, max(1, int(memory_bytes * cluster.hot_share)))
    membership = Membership(
        cfg.node.name,
        cfg.peers,
        cluster,
        http_probe(session, cluster.secret),
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
    found = None
    if discovery is not None:
        discovered: dict[str, PeerConfig] = {}

        def join(peer: PeerConfig) -> None:
            peers[peer.name] = client(peer)
            discovered[peer.name] = peer
            on_discovered(tuple(discovered.values()))

        def leave(name: str) -> None:
            peers.pop(name, None)
            if discovered.pop(name, None) is not None:
                on_discovered(tuple(discovered.values()))

        found = DnsDiscovery(
            dataclasses.replace(discovery, fail_after=cluster.fail_after),
            membership,
            self_name=cfg.node.name,
            self_url=cfg.node.internal_url,
            on_join=join,
            on_leave=leave,
        )
    return Peering(routing, membership, found)
