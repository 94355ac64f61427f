"""What a config reload (SIGHUP) may change in a running node, and what needs a restart — pure.

`plan_reload(old, new)` compares two validated configs of the same node. Routes, origin
pools, cache policies (TTL rules, key normalisation), the admin API's tokens and rate
limits, the access log (on or off, which file) and the region's membership (nodes, weights, the cluster's
probe settings) are applied in place: the stores, the coalescer's running fills and every
open connection are kept. Everything bound at start is reported as needing a restart and
keeps its running value: the listening addresses, the disk and state directories, the
cache and coalescer sizes, the listener's limits and timeouts (the TLS handshake's too), the
cluster secret. TLS certificates are read again on every reload (edge.server.tls), whether
`[tls]` changed or only the files behind it.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from edge.config.deployment import EdgeConfig

__all__ = ["LiveChange", "ReloadPlan", "log_reload", "merge_live", "plan_reload"]

log = logging.getLogger("edge.config.reload")


class LiveChange(enum.Enum):
    """A part of the config a reload applies without a restart."""

    ROUTES = "routes"
    POOLS = "origins"
    POLICIES = "policies"
    ADMIN = "admin"
    ACCESS_LOG = "access_log"
    MEMBERSHIP = "nodes/regions/cluster membership"


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What differs between the running config and the new one."""

    live: frozenset[LiveChange]  # applied now
    restart_only: tuple[str, ...]  # dotted keys that differ but keep their running value
    failed: tuple[str, ...] = ()  # dotted keys whose new value could not be used (the old one runs)

    @property
    def empty(self) -> bool:
        """Nothing differs."""
        return not self.live and not self.restart_only


def _node_bound(cfg: EdgeConfig) -> dict[str, object]:
    node = cfg.node
    return {
        f"nodes.{node.name}.listen": (node.host, node.port),
        f"nodes.{node.name}.internal": (node.internal_host, node.internal_port),
        f"nodes.{node.name}.admin": (node.admin_host, node.admin_port),
        "disk_dir": cfg.disk_dir,
        "state_dir": cfg.state_dir,
        "cache": cfg.cache,
        "coalesce": cfg.coalesce,
        "limits": cfg.limits,
        "server": cfg.server,
        "tls.handshake_timeout_s": cfg.tls.handshake_timeout_s,
        "cluster.secret": cfg.cluster.secret if cfg.cluster is not None else None,
        "cluster (added or removed)": cfg.cluster is None,
        "cluster purge catch-up": cfg.purge_sync,
    }


_LIVE: dict[LiveChange, Callable[[EdgeConfig], object]] = {
    LiveChange.ROUTES: lambda c: c.routes,
    LiveChange.POOLS: lambda c: c.pools,
    LiveChange.POLICIES: lambda c: c.policies,
    LiveChange.ADMIN: lambda c: c.admin,
    LiveChange.ACCESS_LOG: lambda c: (c.access_log, c.access_log_file),
    LiveChange.MEMBERSHIP: lambda c: (c.peers, c.regions, c.cluster),
}


def plan_reload(old: EdgeConfig, new: EdgeConfig) -> ReloadPlan:
    """Compares the running config with a validated new one for the same node."""
    before, after = _node_bound(old), _node_bound(new)
    restart = tuple(key for key, value in before.items() if after[key] != value)
    live = frozenset(change for change, part in _LIVE.items() if part(old) != part(new))
    if "cluster.secret" in restart or "cluster (added or removed)" in restart:
        live -= {LiveChange.MEMBERSHIP}  # peers cannot be rebuilt without the secret in use
    return ReloadPlan(live=live, restart_only=restart)


def merge_live(old: EdgeConfig, new: EdgeConfig, live: frozenset[LiveChange]) -> EdgeConfig:
    """The config the node runs after a reload: `new`'s live parts, `old`'s start-bound ones."""
    fields: dict[str, object] = {}
    if LiveChange.ROUTES in live:
        fields["routes"] = new.routes
    if LiveChange.POOLS in live:
        fields["pools"] = new.pools
    if LiveChange.POLICIES in live:
        fields["policies"] = new.policies
    if LiveChange.ADMIN in live:
        fields["admin"] = new.admin
    if LiveChange.ACCESS_LOG in live:
        fields["access_log"] = new.access_log
        fields["access_log_file"] = new.access_log_file
    if LiveChange.MEMBERSHIP in live:
        bound = old.node
        node = dataclasses.replace(
            new.node,
            host=bound.host,
            port=bound.port,
            internal_host=bound.internal_host,
            internal_port=bound.internal_port,
            admin_host=bound.admin_host,
            admin_port=bound.admin_port,
            disk_dir=bound.disk_dir,
            state_dir=bound.state_dir,
        )
        nodes = {**new.nodes, node.name: node}
        fields.update(node=node, nodes=nodes, peers=new.peers, regions=new.regions, cluster=new.cluster)
    return dataclasses.replace(old, **fields)  # type: ignore[arg-type]


def log_reload(plan: ReloadPlan) -> None:
    """One line for what was applied; one warning per key that needs a restart."""
    if plan.empty:
        log.info("SIGHUP: config reloaded; nothing changed")
        return
    applied = ", ".join(sorted(change.value for change in plan.live)) or "nothing"
    log.info("SIGHUP: config reloaded; applied: %s", applied)
    for key in plan.restart_only:
        log.warning("SIGHUP: %s changed but needs a restart; the running value stays until then", key)
