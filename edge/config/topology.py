"""The deployment's shape: nodes (`[nodes.*]`), regions (`[regions.*]`) and `[cluster]`.

Reads those tables into NodeConfig, RegionConfig, ClusterConfig and the PeerConfig of every
node with an internal listener; checks that multi-node or shielded deployments give every
node an internal address and a shared secret, and that parent regions form a tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cluster.config import ClusterConfig, PeerConfig
from cluster.discovery import DiscoveryConfig
from edge.config.checks import check_keys, number, opt_str, parse_addr
from edge.config.discovery import DISCOVERY_KEYS, parse_discovery
from edge.config.errors import ConfigError
from edge.config.purge import PURGE_SYNC_KEYS
from edge.config.secrets import read_secret, secret_keys

__all__ = ["NodeConfig", "RegionConfig", "parse_cluster", "parse_nodes", "parse_regions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """One node (`[nodes.NAME]`)."""

    name: str
    host: str  # listen address; each node of a local cluster has its own 127.0.0.x
    port: int
    disk_dir: str | None = None  # overrides [cache].disk_dir for this node
    region: str = "default"  # nodes of one region share one consistent-hash ring
    internal_host: str | None = None  # the peer listener (cluster traffic); None = no peers
    internal_port: int = 0
    weight: float = 1.0  # share of the region's ring relative to its other nodes
    admin_host: str | None = None  # the admin API listener (purge, status); None = no admin API
    admin_port: int = 0
    state_dir: str | None = None  # purge journal; default <disk_dir>/purge, memory only without a disk
    tls_host: str | None = None  # the HTTPS listener ([tls] certificates); None = plain HTTP only
    tls_port: int = 0

    @property
    def internal_url(self) -> str | None:
        """The base URL peers use to reach this node, or None."""
        return f"http://{self.internal_host}:{self.internal_port}" if self.internal_host else None


@dataclass(frozen=True, slots=True, kw_only=True)
class RegionConfig:
    """One region (`[regions.NAME]`)."""

    name: str
    parent: str | None = None  # the shield region this region's owners fill from; None = the origin
    discovery: DiscoveryConfig | None = None  # its nodes also come from DNS (cluster/discovery.py)


def parse_nodes(t: Mapping[str, Any]) -> dict[str, NodeConfig]:
    nodes: dict[str, NodeConfig] = {}
    for name, body in t.items():
        path = f"nodes.{name}"
        if not isinstance(body, Mapping):
            raise ConfigError(f'{path}: expected a table with listen = "host:port"')
        check_keys(
            body, {"listen", "disk_dir", "region", "internal", "weight", "admin", "state_dir", "tls"}, path
        )
        if "listen" not in body:
            raise ConfigError(f'{path}.listen: missing; give the node\'s "host:port"')
        host, port = parse_addr(body["listen"], f"{path}.listen")
        internal_host, internal_port = None, 0
        if "internal" in body:
            internal_host, internal_port = parse_addr(body["internal"], f"{path}.internal")
        region = opt_str(body, "region", path) or "default"
        weight = number(body, "weight", 1.0, path)
        if weight <= 0:
            raise ConfigError(f"{path}.weight: must be greater than 0")
        admin_host, admin_port = None, 0
        if "admin" in body:
            admin_host, admin_port = parse_addr(body["admin"], f"{path}.admin")
        nodes[name] = NodeConfig(
            name=name,
            host=host,
            port=port,
            disk_dir=opt_str(body, "disk_dir", path),
            region=region,
            internal_host=internal_host,
            internal_port=internal_port,
            weight=weight,
            admin_host=admin_host,
            admin_port=admin_port,
            state_dir=opt_str(body, "state_dir", path),
            **_tls_addr(body, path),
        )
    return nodes


def _tls_addr(body: Mapping[str, Any], path: str) -> dict[str, Any]:
    """tls_host and tls_port from `tls = "host:port"` (none when absent)."""
    if "tls" not in body:
        return {}
    host, port = parse_addr(body["tls"], f"{path}.tls")
    return {"tls_host": host, "tls_port": port}


_CLUSTER_NUMBERS = (
    "probe_interval_s",
    "probe_timeout_s",
    "peer_connect_timeout_s",
    "peer_first_byte_timeout_s",
    "peer_idle_timeout_s",
    "peer_total_timeout_s",
    "peer_deadline_margin_s",
    "hot_share",
    "hot_window_s",
)
_CLUSTER_INTS = ("vnodes", "fail_after", "recover_after", "hot_min_hits")


def parse_cluster(
    t: Mapping[str, Any], nodes: Mapping[str, NodeConfig], shielded: bool
) -> tuple[ClusterConfig | None, tuple[PeerConfig, ...]]:
    peers = tuple(
        PeerConfig(name=n.name, region=n.region, internal_url=n.internal_url, weight=n.weight)
        for n in nodes.values()
        if n.internal_url
    )
    regions: dict[str, int] = {}
    for n in nodes.values():
        regions[n.region] = regions.get(n.region, 0) + 1
    clustered = any(count > 1 for count in regions.values()) or shielded
    if clustered:
        missing = [n.name for n in nodes.values() if not n.internal_url]
        if missing:
            raise ConfigError(
                f"nodes.{missing[0]}.internal: missing; every node of a multi-node region needs an "
                'internal "host:port" for peer traffic (multi-node and shielded deployments)'
            )
    if not t and not clustered:
        return None, peers
    check_keys(t, {*secret_keys("secret"), *_CLUSTER_NUMBERS, *_CLUSTER_INTS, *PURGE_SYNC_KEYS}, "cluster")
    secret = read_secret(t, "secret", "cluster")
    if secret is None:
        raise ConfigError(
            "cluster.secret: missing; set secret_file (or secret_env, or secret) to a shared secret "
            "that every node of the deployment uses"
        )
    values: dict[str, Any] = {"secret": secret[0]}
    for key in _CLUSTER_NUMBERS:
        if key in t:
            values[key] = number(t, key, 0.0, "cluster")
    for key in _CLUSTER_INTS:
        if key in t:
            value = t[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"cluster.{key}: expected an integer, got {value!r}")
            values[key] = value
    try:
        return ClusterConfig(**values), peers
    except ValueError as exc:  # ClusterConfig's range checks start with the field they name
        field = str(exc).partition(" ")[0].rstrip(",")
        path = f"cluster.{field}" if field in values else "cluster"
        raise ConfigError(f"{path}: {exc}") from exc


def parse_regions(t: Mapping[str, Any], nodes: Mapping[str, NodeConfig]) -> dict[str, RegionConfig]:
    names = {n.region for n in nodes.values()}
    regions: dict[str, RegionConfig] = {}
    for name, body in t.items():
        path = f"regions.{name}"
        if not isinstance(body, Mapping):
            raise ConfigError(f'{path}: expected a table such as {{ parent = "shield" }}')
        check_keys(body, {"parent", *DISCOVERY_KEYS}, path)
        parent = opt_str(body, "parent", path)
        if parent is not None and parent not in names:
            raise ConfigError(f"{path}.parent: no node is in region {parent!r}; name a region your nodes use")
        if parent == name:
            raise ConfigError(f"{path}.parent: a region cannot be its own parent")
        regions[name] = RegionConfig(name=name, parent=parent, discovery=parse_discovery(body, name, path))
    for name in names:
        regions.setdefault(name, RegionConfig(name=name))
    for name in regions:  # no cycles: walk up at most len(regions) steps
        seen, current = set(), regions[name]
        while current.parent is not None:
            if current.name in seen:
                raise ConfigError(
                    f"regions.{name}.parent: the parent chain loops; shields must end at a region "
                    "without a parent"
                )
            seen.add(current.name)
            current = regions[current.parent]
    return regions
