"""Loads config.toml into frozen dataclasses for one node, validating every key once.

`load(path, node)` reads the deployment and picks the named node's part; `quickstart(...)`
builds the same structure from command-line flags (one node in front of one origin, as
`varnishd -b` does). Unknown keys, wrong types and bad values raise ConfigError naming
the dotted key and saying what to do. Sizes accept integers (bytes) or strings such as
"256MiB", "2GiB", "64KiB".
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cluster.config import ClusterConfig, PeerConfig
from edge.config.checks import (
    GiB,
    KiB,
    MiB,
    boolean,
    check_keys,
    number,
    opt_str,
    parse_addr,
    parse_size,
    table,
)
from edge.config.errors import ConfigError
from edge.config.origins import parse_pools, parse_routes
from edge.config.purge import (
    AdminConfig,
    PurgeSyncConfig,
    parse_admin,
    parse_purge_sync,
)
from edge.config.topology import NodeConfig, RegionConfig, parse_cluster, parse_nodes, parse_regions
from edge.rules.site_policy import CachePolicy
from edge.server.protocol import Limits
from origin.config import OriginPoolConfig, RouteRule

__all__ = [
    "CacheConfig",
    "CoalesceConfig",
    "ConfigError",
    "DemoConfig",
    "EdgeConfig",
    "NodeConfig",
    "RegionConfig",
    "load",
    "parse_addr",
    "parse_size",
    "quickstart",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfig:
    """Stores and HTTP caching knobs (`[cache]`)."""

    memory_bytes: int = 256 * MiB  # memory tier budget
    memory_max_object_bytes: int | None = None  # larger bodies live on disk only; None: memory_object_cap
    disk_dir: str | None = None  # disk tier directory ("{node}" is replaced); None = memory only
    disk_bytes: int = 2 * GiB  # disk tier budget
    disk_max_object_bytes: int = 1 * GiB  # larger bodies are served but not stored
    policy: Literal["gdsf", "s3fifo", "lru"] = "gdsf"  # memory tier policy; disk: s3fifo (lru if "lru")
    disk_admission: Literal["all", "second_hit"] = "second_hit"  # which fills are written to disk
    disk_admission_window: int = 0  # second_hit: misses a first miss is remembered; 0 = adaptive
    heuristic_fraction: float = 0.1  # RFC 9111 §4.2.2: share of (Date - Last-Modified)
    heuristic_max_s: float = 86400.0  # upper bound of a heuristic lifetime
    allow_set_cookie: bool = False  # store responses carrying Set-Cookie (never by default)

    def memory_object_cap(self, *, has_disk: bool) -> int:
        """The largest body the memory tier takes: memory_max_object_bytes, else by tiering.

        With a disk tier, 64 KiB: bench/hitratio measured it best for object hits (larger
        bodies cost RAM that many small objects would use better, and are sent from disk).
        Without one, RAM is the only place an object can be cached, so 8 MiB.
        """
        if self.memory_max_object_bytes is not None:
            return self.memory_max_object_bytes
        return 64 * KiB if has_disk else 8 * MiB


@dataclass(frozen=True, slots=True, kw_only=True)
class CoalesceConfig:
    """Request coalescing (`[coalesce]`)."""

    head_timeout_s: float = 30.0  # how long a request waits for a fill's response head (then 504)
    idle_timeout_s: float = 30.0  # longest gap between body chunks a reader waits (then abort)
    pass_memo_s: float = 10.0  # how long an unshareable response stops coalescing for its key
    spool_memory_bytes: int = 8 * MiB  # fill bytes kept in memory before spilling to a file


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoConfig:
    """The demo origin `make run` starts (`[demo]`)."""

    host: str = "127.0.0.1"
    port: int = 8000
    root: str = ".cache-demo/site"  # the generated sample site


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


def _cache(t: Mapping[str, Any]) -> CacheConfig:
    d = CacheConfig()
    check_keys(t, set(CacheConfig.__dataclass_fields__), "cache")
    policy = t.get("policy", d.policy)
    if policy not in ("gdsf", "s3fifo", "lru"):
        raise ConfigError(f'cache.policy: expected "gdsf", "s3fifo" or "lru", got {policy!r}')
    admission = t.get("disk_admission", d.disk_admission)
    if admission not in ("all", "second_hit"):
        raise ConfigError(f'cache.disk_admission: expected "all" or "second_hit", got {admission!r}')
    window = t.get("disk_admission_window", d.disk_admission_window)
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ConfigError(
            f"cache.disk_admission_window: expected a number of misses, 0 = auto; got {window!r}"
        )
    return CacheConfig(
        memory_bytes=parse_size(t.get("memory_bytes", d.memory_bytes), "cache.memory_bytes"),
        memory_max_object_bytes=None
        if t.get("memory_max_object_bytes") is None
        else parse_size(t["memory_max_object_bytes"], "cache.memory_max_object_bytes"),
        disk_dir=opt_str(t, "disk_dir", "cache"),
        disk_bytes=parse_size(t.get("disk_bytes", d.disk_bytes), "cache.disk_bytes"),
        disk_max_object_bytes=parse_size(
            t.get("disk_max_object_bytes", d.disk_max_object_bytes), "cache.disk_max_object_bytes"
        ),
        policy=policy,
        disk_admission=admission,
        disk_admission_window=window,
        heuristic_fraction=number(t, "heuristic_fraction", d.heuristic_fraction, "cache"),
        heuristic_max_s=number(t, "heuristic_max_s", d.heuristic_max_s, "cache"),
        allow_set_cookie=boolean(t, "allow_set_cookie", d.allow_set_cookie, "cache"),
    )


def _coalesce(t: Mapping[str, Any]) -> CoalesceConfig:
    d = CoalesceConfig()
    check_keys(t, set(CoalesceConfig.__dataclass_fields__), "coalesce")
    return CoalesceConfig(
        head_timeout_s=number(t, "head_timeout_s", d.head_timeout_s, "coalesce"),
        idle_timeout_s=number(t, "idle_timeout_s", d.idle_timeout_s, "coalesce"),
        pass_memo_s=number(t, "pass_memo_s", d.pass_memo_s, "coalesce"),
        spool_memory_bytes=parse_size(
            t.get("spool_memory_bytes", d.spool_memory_bytes), "coalesce.spool_memory_bytes"
        ),
    )


def _limits(t: Mapping[str, Any]) -> Limits:
    d = Limits()
    check_keys(t, set(Limits.__dataclass_fields__), "limits")
    return Limits(
        **{k: parse_size(t.get(k, getattr(d, k)), f"limits.{k}") for k in Limits.__dataclass_fields__}
    )


def _demo(t: Mapping[str, Any]) -> DemoConfig:
    check_keys(t, {"listen", "root"}, "demo")
    host, port = parse_addr(t.get("listen", "127.0.0.1:8000"), "demo.listen")
    root = opt_str(t, "root", "demo") or DemoConfig().root
    return DemoConfig(host=host, port=port, root=root)


_TOP = {
    "cache",
    "coalesce",
    "limits",
    "nodes",
    "origins",
    "routes",
    "demo",
    "access_log",
    "cluster",
    "admin",
    "policies",
    "regions",
}

_POLICY_KEYS = {
    "host",
    "path_prefix",
    "default_ttl_s",
    "negative_ttl_s",
    "grace_s",
    "ttl_by_extension",
    "query",
    "drop_params",
}


def _policies(raw: object) -> tuple[CachePolicy, ...]:
    if not isinstance(raw, list):
        raise ConfigError("policies: expected an array of tables ([[policies]])")
    rules = []
    for i, t in enumerate(raw):
        path = f"policies[{i}]"
        if not isinstance(t, Mapping):
            raise ConfigError(f"{path}: expected a table")
        check_keys(t, _POLICY_KEYS, path)
        host = t.get("host", "*")
        prefix = t.get("path_prefix", "/")
        if not isinstance(host, str) or not host or not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ConfigError(f'{path}: host must be a name or "*" and path_prefix must start with "/"')
        query = t.get("query", "keep")
        if query not in ("keep", "sort", "drop"):
            raise ConfigError(f'{path}.query: expected "keep", "sort" or "drop", got {query!r}')
        drop = t.get("drop_params", [])
        if not isinstance(drop, list) or not all(isinstance(d, str) and d for d in drop):
            raise ConfigError(
                f'{path}.drop_params: expected a list of parameter names or patterns like "utm_*"'
            )
        ext_raw = t.get("ttl_by_extension", {})
        if not isinstance(ext_raw, Mapping):
            raise ConfigError(f"{path}.ttl_by_extension: expected a table such as {{ m3u8 = 2, ts = 86400 }}")
        exts = {
            str(k).lower().lstrip("."): number(ext_raw, k, 0.0, f"{path}.ttl_by_extension") for k in ext_raw
        }
        rules.append(
            CachePolicy(
                host=host.lower(),
                path_prefix=prefix,
                default_ttl_s=number(t, "default_ttl_s", 0.0, path),
                negative_ttl_s=number(t, "negative_ttl_s", 0.0, path),
                grace_s=number(t, "grace_s", 0.0, path),
                ttl_by_extension=exts,
                query=query,
                drop_params=tuple(drop),
            )
        )
    return tuple(rules)


def parse(data: Mapping[str, Any], node: str) -> EdgeConfig:
    """Validates a decoded TOML document and selects `node`."""
    check_keys(data, _TOP, "config")
    nodes = parse_nodes(table(data, "nodes", "nodes"))
    if node not in nodes:
        known = ", ".join(sorted(nodes)) or "none"
        raise ConfigError(
            f"nodes.{node}: no such node in the config (known nodes: {known}); pass --node NAME"
        )
    pools = parse_pools(table(data, "origins", "origins"), "origins")
    routes_raw = data.get("routes", [])
    if not isinstance(routes_raw, list):
        raise ConfigError("routes: expected an array of tables ([[routes]])")
    routes = parse_routes(routes_raw, "routes", pools)
    if not routes:
        raise ConfigError(
            "routes: no route configured; add a [[routes]] table mapping a host to an origin pool"
        )
    regions = parse_regions(table(data, "regions", "regions"), nodes)
    cluster, peers = parse_cluster(
        table(data, "cluster", "cluster"), nodes, any(r.parent for r in regions.values())
    )
    return EdgeConfig(
        node=nodes[node],
        nodes=nodes,
        cluster=cluster,
        peers=peers,
        regions=regions,
        policies=_policies(data.get("policies", [])),
        cache=_cache(table(data, "cache", "cache")),
        coalesce=_coalesce(table(data, "coalesce", "coalesce")),
        limits=_limits(table(data, "limits", "limits")),
        pools=pools,
        routes=routes,
        access_log=boolean(data, "access_log", True, "config"),
        demo=_demo(table(data, "demo", "demo")) if "demo" in data else None,
        admin=parse_admin(table(data, "admin", "admin")),
        purge_sync=parse_purge_sync(table(data, "cluster", "cluster")),
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


def quickstart(
    *,
    origin: str,
    listen: str,
    memory_bytes: int = 256 * MiB,
    disk_dir: str | None = None,
    disk_bytes: int = 2 * GiB,
    access_log: bool = True,
    cache: CacheConfig | None = None,
) -> EdgeConfig:
    """One node in front of one origin, forwarding every path and method."""
    host, port = parse_addr(listen, "--listen")
    node = NodeConfig(name="edge", host=host, port=port)
    pool = parse_pools({"default": {"servers": [origin]}}, "--origin")
    return EdgeConfig(
        node=node,
        nodes={"edge": node},
        cache=dataclasses.replace(
            cache or CacheConfig(), memory_bytes=memory_bytes, disk_dir=disk_dir, disk_bytes=disk_bytes
        ),
        pools=pool,
        routes=(RouteRule(host="*", path_prefix="/", pool="default"),),
        access_log=access_log,
    )
