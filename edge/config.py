"""Loads config.toml into frozen dataclasses for one node, validating every key once.

`load(path, node)` reads the deployment and picks the named node's part; `quickstart(...)`
builds the same structure from command-line flags (one node in front of one origin, as
`varnishd -b` does). Unknown keys, wrong types and bad values raise ConfigError naming
the dotted key and saying what to do. Sizes accept integers (bytes) or strings such as
"256MiB", "2GiB", "64KiB".
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cluster.config import ClusterConfig, PeerConfig
from edge.admin_config import PURGE_SYNC_KEYS, AdminConfig, PurgeSyncConfig, parse_admin, parse_purge_sync
from edge.policy import CachePolicy
from edge.server.protocol import Limits
from origin.config import ConfigError, OriginPoolConfig, RouteRule
from origin.config_toml import parse_pools, parse_routes

__all__ = [
    "CacheConfig", "CoalesceConfig", "NodeConfig", "DemoConfig", "EdgeConfig", "RegionConfig", "ConfigError",
    "load", "quickstart", "parse_size", "parse_addr",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfig:
    """Stores and HTTP caching knobs (`[cache]`)."""

    memory_bytes: int = 256 * MiB  # memory tier budget
    memory_max_object_bytes: int = 8 * MiB  # larger bodies live on disk only
    disk_dir: str | None = None  # disk tier directory ("{node}" is replaced); None = memory only
    disk_bytes: int = 2 * GiB  # disk tier budget
    disk_max_object_bytes: int = 1 * GiB  # larger bodies are served but not stored
    policy: Literal["s3fifo", "lru"] = "s3fifo"  # eviction policy of both tiers
    heuristic_fraction: float = 0.1  # RFC 9111 §4.2.2: share of (Date - Last-Modified)
    heuristic_max_s: float = 86400.0  # upper bound of a heuristic lifetime
    allow_set_cookie: bool = False  # store responses carrying Set-Cookie (never by default)


@dataclass(frozen=True, slots=True, kw_only=True)
class CoalesceConfig:
    """Request coalescing (`[coalesce]`)."""

    head_timeout_s: float = 30.0  # how long a request waits for a fill's response head (then 504)
    idle_timeout_s: float = 30.0  # longest gap between body chunks a reader waits (then abort)
    pass_memo_s: float = 10.0  # how long an unshareable response stops coalescing for its key
    spool_memory_bytes: int = 8 * MiB  # fill bytes kept in memory before spilling to a file


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

    @property
    def internal_url(self) -> str | None:
        """The base URL peers use to reach this node, or None."""
        return f"http://{self.internal_host}:{self.internal_port}" if self.internal_host else None


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoConfig:
    """The demo origin `make run` starts (`[demo]`)."""

    host: str = "127.0.0.1"
    port: int = 8000
    root: str = ".cache-demo/site"  # the generated sample site


@dataclass(frozen=True, slots=True, kw_only=True)
class RegionConfig:
    """One region (`[regions.NAME]`)."""

    name: str
    parent: str | None = None  # the shield region this region's owners fill from; None = the origin


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeConfig:
    """The deployment as seen by one node."""

    node: NodeConfig
    nodes: Mapping[str, NodeConfig]
    cache: CacheConfig = field(default_factory=CacheConfig)
    coalesce: CoalesceConfig = field(default_factory=CoalesceConfig)
    limits: Limits = field(default_factory=Limits)
    pools: Mapping[str, OriginPoolConfig] = field(default_factory=dict)
    routes: tuple[RouteRule, ...] = ()
    access_log: bool = True  # one JSON line per request on stdout
    demo: DemoConfig | None = None
    policies: tuple[CachePolicy, ...] = ()  # [[policies]]: first match applies
    regions: Mapping[str, RegionConfig] = field(default_factory=dict)  # [regions.NAME]
    cluster: ClusterConfig | None = None  # None: a lone node, no peers
    peers: tuple[PeerConfig, ...] = ()  # every node with an internal listener, this one included
    admin: AdminConfig = field(default_factory=AdminConfig)  # [admin]: purge API, tokens
    purge_sync: PurgeSyncConfig = field(default_factory=PurgeSyncConfig)  # [cluster] purge catch-up, lag

    @property
    def parent_peers(self) -> tuple[PeerConfig, ...]:
        """The nodes of this node's parent (shield) region, or () without one."""
        region = self.regions.get(self.node.region)
        if region is None or region.parent is None:
            return ()
        return tuple(p for p in self.peers if p.region == region.parent)

    @property
    def region_peers(self) -> tuple[PeerConfig, ...]:
        """The nodes of this node's region (this node included)."""
        return tuple(p for p in self.peers if p.region == self.node.region)

    @property
    def disk_dir(self) -> Path | None:
        """This node's disk tier directory, or None for memory only."""
        raw = self.node.disk_dir or self.cache.disk_dir
        return Path(raw.replace("{node}", self.node.name)) if raw else None

    @property
    def state_dir(self) -> Path | None:
        """Where the purge journal lives, or None to keep it in memory."""
        if self.node.state_dir:
            return Path(self.node.state_dir.replace("{node}", self.node.name))
        disk = self.disk_dir
        return disk / "purge" if disk is not None else None


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "kib": KiB, "mib": MiB, "gib": GiB, "tib": 1024 * GiB}


def parse_size(value: object, path: str) -> int:
    """Parses a byte size: an int or a string like "256MiB"."""
    if isinstance(value, bool):
        raise ConfigError(f"{path}: expected a size such as 268435456 or \"256MiB\", got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{path}: size must not be negative")
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            return int(float(m.group(1)) * _UNITS[(m.group(2) or "B").lower()])
    raise ConfigError(f"{path}: expected a size such as 268435456 or \"256MiB\", got {value!r}")


def parse_addr(value: object, path: str) -> tuple[str, int]:
    """Parses "host:port"."""
    if isinstance(value, str) and ":" in value:
        host, _, port = value.rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return host.strip("[]"), int(port)
    raise ConfigError(f"{path}: expected \"host:port\" such as \"127.0.0.1:8080\", got {value!r}")


def _table(data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a table")
    return value


def _check_keys(table: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{path}.{key}: unknown key; allowed keys are {', '.join(sorted(allowed))}")


def _number(table: Mapping[str, Any], key: str, default: float, path: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{path}.{key}: expected a non-negative number, got {value!r}")
    return float(value)


def _bool(table: Mapping[str, Any], key: str, default: bool, path: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{path}.{key}: expected true or false, got {value!r}")
    return value


def _opt_str(table: Mapping[str, Any], key: str, path: str) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{path}.{key}: expected a string, got {value!r}")
    return value


def _cache(t: Mapping[str, Any]) -> CacheConfig:
    d = CacheConfig()
    _check_keys(t, set(CacheConfig.__dataclass_fields__), "cache")
    policy = t.get("policy", d.policy)
    if policy not in ("s3fifo", "lru"):
        raise ConfigError(f"cache.policy: expected \"s3fifo\" or \"lru\", got {policy!r}")
    return CacheConfig(
        memory_bytes=parse_size(t.get("memory_bytes", d.memory_bytes), "cache.memory_bytes"),
        memory_max_object_bytes=parse_size(t.get("memory_max_object_bytes", d.memory_max_object_bytes),
                                           "cache.memory_max_object_bytes"),
        disk_dir=_opt_str(t, "disk_dir", "cache"),
        disk_bytes=parse_size(t.get("disk_bytes", d.disk_bytes), "cache.disk_bytes"),
        disk_max_object_bytes=parse_size(t.get("disk_max_object_bytes", d.disk_max_object_bytes),
                                         "cache.disk_max_object_bytes"),
        policy=policy,
        heuristic_fraction=_number(t, "heuristic_fraction", d.heuristic_fraction, "cache"),
        heuristic_max_s=_number(t, "heuristic_max_s", d.heuristic_max_s, "cache"),
        allow_set_cookie=_bool(t, "allow_set_cookie", d.allow_set_cookie, "cache"),
    )


def _coalesce(t: Mapping[str, Any]) -> CoalesceConfig:
    d = CoalesceConfig()
    _check_keys(t, set(CoalesceConfig.__dataclass_fields__), "coalesce")
    return CoalesceConfig(
        head_timeout_s=_number(t, "head_timeout_s", d.head_timeout_s, "coalesce"),
        idle_timeout_s=_number(t, "idle_timeout_s", d.idle_timeout_s, "coalesce"),
        pass_memo_s=_number(t, "pass_memo_s", d.pass_memo_s, "coalesce"),
        spool_memory_bytes=parse_size(t.get("spool_memory_bytes", d.spool_memory_bytes),
                                      "coalesce.spool_memory_bytes"),
    )


def _limits(t: Mapping[str, Any]) -> Limits:
    d = Limits()
    _check_keys(t, set(Limits.__dataclass_fields__), "limits")
    return Limits(**{k: parse_size(t.get(k, getattr(d, k)), f"limits.{k}") for k in Limits.__dataclass_fields__})


def _nodes(t: Mapping[str, Any]) -> dict[str, NodeConfig]:
    nodes: dict[str, NodeConfig] = {}
    for name, body in t.items():
        path = f"nodes.{name}"
        if not isinstance(body, Mapping):
            raise ConfigError(f"{path}: expected a table with listen = \"host:port\"")
        _check_keys(body, {"listen", "disk_dir", "region", "internal", "weight", "admin", "state_dir"}, path)
        if "listen" not in body:
            raise ConfigError(f"{path}.listen: missing; give the node's \"host:port\"")
        host, port = parse_addr(body["listen"], f"{path}.listen")
        internal_host, internal_port = None, 0
        if "internal" in body:
            internal_host, internal_port = parse_addr(body["internal"], f"{path}.internal")
        region = _opt_str(body, "region", path) or "default"
        weight = _number(body, "weight", 1.0, path)
        if weight <= 0:
            raise ConfigError(f"{path}.weight: must be greater than 0")
        admin_host, admin_port = None, 0
        if "admin" in body:
            admin_host, admin_port = parse_addr(body["admin"], f"{path}.admin")
        nodes[name] = NodeConfig(name=name, host=host, port=port, disk_dir=_opt_str(body, "disk_dir", path),
                                 region=region, internal_host=internal_host, internal_port=internal_port,
                                 weight=weight, admin_host=admin_host, admin_port=admin_port,
                                 state_dir=_opt_str(body, "state_dir", path))
    return nodes


_CLUSTER_NUMBERS = ("probe_interval_s", "probe_timeout_s", "peer_connect_timeout_s", "peer_first_byte_timeout_s",
                    "peer_idle_timeout_s", "peer_total_timeout_s", "hot_share", "hot_window_s")
_CLUSTER_INTS = ("vnodes", "fail_after", "recover_after", "hot_min_hits")


def _cluster(t: Mapping[str, Any], nodes: Mapping[str, NodeConfig],
             shielded: bool) -> tuple[ClusterConfig | None, tuple[PeerConfig, ...]]:
    peers = tuple(PeerConfig(name=n.name, region=n.region, internal_url=n.internal_url, weight=n.weight)
                  for n in nodes.values() if n.internal_url)
    regions: dict[str, int] = {}
    for n in nodes.values():
        regions[n.region] = regions.get(n.region, 0) + 1
    clustered = any(count > 1 for count in regions.values()) or shielded
    if clustered:
        missing = [n.name for n in nodes.values() if not n.internal_url]
        if missing:
            raise ConfigError(f"nodes.{missing[0]}.internal: missing; every node of a multi-node region needs an "
                              "internal \"host:port\" for peer traffic (multi-node and shielded deployments)")
    if not t and not clustered:
        return None, peers
    _check_keys(t, {"secret", *_CLUSTER_NUMBERS, *_CLUSTER_INTS, *PURGE_SYNC_KEYS}, "cluster")
    secret = t.get("secret")
    if not isinstance(secret, str) or not secret:
        raise ConfigError("cluster.secret: missing; set a shared secret string that every node of the deployment uses")
    values: dict[str, Any] = {"secret": secret}
    for key in _CLUSTER_NUMBERS:
        if key in t:
            values[key] = _number(t, key, 0.0, "cluster")
    for key in _CLUSTER_INTS:
        if key in t:
            value = t[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"cluster.{key}: expected an integer, got {value!r}")
            values[key] = value
    try:
        return ClusterConfig(**values), peers
    except ValueError as exc:
        raise ConfigError(f"cluster: {exc}") from exc


def _demo(t: Mapping[str, Any]) -> DemoConfig:
    _check_keys(t, {"listen", "root"}, "demo")
    host, port = parse_addr(t.get("listen", "127.0.0.1:8000"), "demo.listen")
    root = _opt_str(t, "root", "demo") or DemoConfig().root
    return DemoConfig(host=host, port=port, root=root)


_TOP = {"cache", "coalesce", "limits", "nodes", "origins", "routes", "demo", "access_log", "cluster", "admin",
        "policies", "regions"}

_POLICY_KEYS = {"host", "path_prefix", "default_ttl_s", "negative_ttl_s", "grace_s", "ttl_by_extension", "query",
                "drop_params"}


def _policies(raw: object) -> tuple[CachePolicy, ...]:
    if not isinstance(raw, list):
        raise ConfigError("policies: expected an array of tables ([[policies]])")
    rules = []
    for i, t in enumerate(raw):
        path = f"policies[{i}]"
        if not isinstance(t, Mapping):
            raise ConfigError(f"{path}: expected a table")
        _check_keys(t, _POLICY_KEYS, path)
        host = t.get("host", "*")
        prefix = t.get("path_prefix", "/")
        if not isinstance(host, str) or not host or not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ConfigError(f"{path}: host must be a name or \"*\" and path_prefix must start with \"/\"")
        query = t.get("query", "keep")
        if query not in ("keep", "sort", "drop"):
            raise ConfigError(f"{path}.query: expected \"keep\", \"sort\" or \"drop\", got {query!r}")
        drop = t.get("drop_params", [])
        if not isinstance(drop, list) or not all(isinstance(d, str) and d for d in drop):
            raise ConfigError(f"{path}.drop_params: expected a list of parameter names or patterns like \"utm_*\"")
        ext_raw = t.get("ttl_by_extension", {})
        if not isinstance(ext_raw, Mapping):
            raise ConfigError(f"{path}.ttl_by_extension: expected a table such as {{ m3u8 = 2, ts = 86400 }}")
        exts = {str(k).lower().lstrip("."): _number(ext_raw, k, 0.0, f"{path}.ttl_by_extension") for k in ext_raw}
        rules.append(CachePolicy(
            host=host.lower(), path_prefix=prefix, default_ttl_s=_number(t, "default_ttl_s", 0.0, path),
            negative_ttl_s=_number(t, "negative_ttl_s", 0.0, path), grace_s=_number(t, "grace_s", 0.0, path),
            ttl_by_extension=exts, query=query, drop_params=tuple(drop)))
    return tuple(rules)


def _regions(t: Mapping[str, Any], nodes: Mapping[str, NodeConfig]) -> dict[str, RegionConfig]:
    names = {n.region for n in nodes.values()}
    regions: dict[str, RegionConfig] = {}
    for name, body in t.items():
        path = f"regions.{name}"
        if not isinstance(body, Mapping):
            raise ConfigError(f"{path}: expected a table such as {{ parent = \"shield\" }}")
        _check_keys(body, {"parent"}, path)
        parent = _opt_str(body, "parent", path)
        if parent is not None and parent not in names:
            raise ConfigError(f"{path}.parent: no node is in region {parent!r}; name a region your nodes use")
        if parent == name:
            raise ConfigError(f"{path}.parent: a region cannot be its own parent")
        regions[name] = RegionConfig(name=name, parent=parent)
    for name in names:
        regions.setdefault(name, RegionConfig(name=name))
    for name in regions:  # no cycles: walk up at most len(regions) steps
        seen, current = set(), regions[name]
        while current.parent is not None:
            if current.name in seen:
                raise ConfigError(f"regions.{name}.parent: the parent chain loops; shields must end at a region "
                                  "without a parent")
            seen.add(current.name)
            current = regions[current.parent]
    return regions


def parse(data: Mapping[str, Any], node: str) -> EdgeConfig:
    """Validates a decoded TOML document and selects `node`."""
    _check_keys(data, _TOP, "config")
    nodes = _nodes(_table(data, "nodes", "nodes"))
    if node not in nodes:
        known = ", ".join(sorted(nodes)) or "none"
        raise ConfigError(f"nodes.{node}: no such node in the config (known nodes: {known}); pass --node NAME")
    pools = parse_pools(_table(data, "origins", "origins"), "origins")
    routes_raw = data.get("routes", [])
    if not isinstance(routes_raw, list):
        raise ConfigError("routes: expected an array of tables ([[routes]])")
    routes = parse_routes(routes_raw, "routes", pools)
    if not routes:
        raise ConfigError("routes: no route configured; add a [[routes]] table mapping a host to an origin pool")
    regions = _regions(_table(data, "regions", "regions"), nodes)
    cluster, peers = _cluster(_table(data, "cluster", "cluster"), nodes,
                              any(r.parent for r in regions.values()))
    return EdgeConfig(
        node=nodes[node], nodes=nodes, cluster=cluster, peers=peers, regions=regions,
        policies=_policies(data.get("policies", [])),
        cache=_cache(_table(data, "cache", "cache")),
        coalesce=_coalesce(_table(data, "coalesce", "coalesce")),
        limits=_limits(_table(data, "limits", "limits")),
        pools=pools, routes=routes,
        access_log=_bool(data, "access_log", True, "config"),
        demo=_demo(_table(data, "demo", "demo")) if "demo" in data else None,
        admin=parse_admin(_table(data, "admin", "admin")),
        purge_sync=parse_purge_sync(_table(data, "cluster", "cluster")),
    )


def load(path: Path | str, node: str) -> EdgeConfig:
    """Reads and validates the config file for one node."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found; pass --config with the path of config.toml") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax at that line") from exc
    return parse(data, node)


def quickstart(*, origin: str, listen: str, memory_bytes: int = 256 * MiB, disk_dir: str | None = None,
               disk_bytes: int = 2 * GiB, access_log: bool = True) -> EdgeConfig:
    """One node in front of one origin, forwarding every path and method."""
    host, port = parse_addr(listen, "--listen")
    node = NodeConfig(name="edge", host=host, port=port)
    pool = parse_pools({"default": {"servers": [origin]}}, "--origin")
    return EdgeConfig(
        node=node, nodes={"edge": node},
        cache=CacheConfig(memory_bytes=memory_bytes, disk_dir=disk_dir, disk_bytes=disk_bytes),
        pools=pool, routes=(RouteRule(host="*", path_prefix="/", pool="default"),),
        access_log=access_log,
    )

