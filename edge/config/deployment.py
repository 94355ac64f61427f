"""Loads config.toml into frozen dataclasses for one node, validating every key once.

`load(path, node)` reads the deployment and picks the named node's part (`load_all(path)`:
every node's part, for check-config and `make run`); `quickstart(...)` builds the same
structure from command-line flags (one node in front of one origin, as `varnishd -b` does).
Unknown keys, wrong types and bad values raise ConfigError naming the dotted key and saying
what to do. Sizes accept integers (bytes) or strings such as "256MiB", "2GiB", "64KiB".

Each section is validated next to the dataclass it builds: `[cache]`/`[coalesce]` in
cache.py, `[nodes]`/`[regions]`/`[cluster]` in topology.py, `[admin]` and the purge keys in
purge.py, `[origins]`/`[[routes]]` in origins.py, `[server]` in server.py, `[limits]` in
limits.py; here the top level, `[demo]` and `[[policies]]`. Types owned by other packages
(origin/config.py, cluster/config.py, edge.rules' CachePolicy) are built here but never
import this reader.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.config import ClusterConfig, PeerConfig
from edge.config.cache import CacheConfig, CoalesceConfig, Eviction, parse_cache, parse_coalesce
from edge.config.checks import (
    GiB,
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
from edge.config.limits import Limits, parse_limits
from edge.config.media import POLICY_MEDIA_KEYS, parse_policy_media
from edge.config.origins import parse_pools, parse_routes
from edge.config.purge import (
    AdminConfig,
    PurgeSyncConfig,
    parse_admin,
    parse_purge_sync,
)
from edge.config.server import ServerConfig, parse_server
from edge.config.tls import TlsConfig, parse_tls
from edge.config.topology import NodeConfig, RegionConfig, parse_cluster, parse_nodes, parse_regions
from edge.rules.error_storage import is_never_stored_status
from edge.rules.site_policy import CachePolicy
from origin.config import OriginPoolConfig, RouteRule

__all__ = [
    "CacheConfig",
    "CoalesceConfig",
    "ConfigError",
    "DemoConfig",
    "EdgeConfig",
    "Eviction",
    "NodeConfig",
    "RegionConfig",
    "load",
    "load_all",
    "parse_addr",
    "parse_size",
    "quickstart",
    "read",
]


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
    server: ServerConfig = field(default_factory=ServerConfig)  # [server]: timeouts, connection caps
    pools: Mapping[str, OriginPoolConfig] = field(default_factory=dict)
    routes: tuple[RouteRule, ...] = ()
    access_log: bool = True  # one JSON line per request on stdout
    access_log_file: str | None = None  # write those lines to this file instead (SIGUSR1 reopens it)
    demo: DemoConfig | None = None
    policies: tuple[CachePolicy, ...] = ()  # [[policies]]: first match applies
    regions: Mapping[str, RegionConfig] = field(default_factory=dict)  # [regions.NAME]
    cluster: ClusterConfig | None = None  # None: a lone node, no peers
    peers: tuple[PeerConfig, ...] = ()  # every node with an internal listener, this one included
    admin: AdminConfig = field(default_factory=AdminConfig)  # [admin]: purge API, tokens
    purge_sync: PurgeSyncConfig = field(default_factory=PurgeSyncConfig)  # [cluster] purge catch-up, lag
    tls: TlsConfig = field(default_factory=TlsConfig)  # [tls]: certificates for nodes' HTTPS listeners

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


def _demo(t: Mapping[str, Any]) -> DemoConfig:
    check_keys(t, {"listen", "root"}, "demo")
    host, port = parse_addr(t.get("listen", "127.0.0.1:8000"), "demo.listen")
    root = opt_str(t, "root", "demo") or DemoConfig().root
    return DemoConfig(host=host, port=port, root=root)


_TOP = {
    "cache",
    "coalesce",
    "limits",
    "server",
    "nodes",
    "origins",
    "routes",
    "demo",
    "access_log",
    "access_log_file",
    "cluster",
    "admin",
    "policies",
    "regions",
    "tls",
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
    "store_error_statuses",
    *POLICY_MEDIA_KEYS,  # issue 14: slices and streaming (edge/config/media.py)
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
        errors = t.get("store_error_statuses", [])
        if not isinstance(errors, list) or not all(
            isinstance(e, int) and not isinstance(e, bool) and is_never_stored_status(e) for e in errors
        ):
            raise ConfigError(
                f"{path}.store_error_statuses: expected a list of statuses among 400, 413, 414, 431 and "
                "500-599, such as [503]"
            )
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
                store_error_statuses=tuple(errors),
                **parse_policy_media(t, path),
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
    if cluster is not None:  # peer timeouts not set: derived so each hop outwaits the next
        cluster = cluster.chained(pools, {r.name: r.parent for r in regions.values()})
    return EdgeConfig(
        node=nodes[node],
        nodes=nodes,
        cluster=cluster,
        peers=peers,
        regions=regions,
        policies=_policies(data.get("policies", [])),
        cache=parse_cache(table(data, "cache", "cache")),
        coalesce=parse_coalesce(table(data, "coalesce", "coalesce")),
        limits=parse_limits(table(data, "limits", "limits")),
        server=parse_server(table(data, "server", "server")),
        pools=pools,
        routes=routes,
        access_log=boolean(data, "access_log", True, "config"),
        access_log_file=opt_str(data, "access_log_file", "config") or None,
        demo=_demo(table(data, "demo", "demo")) if "demo" in data else None,
        admin=parse_admin(table(data, "admin", "admin")),
        purge_sync=parse_purge_sync(table(data, "cluster", "cluster")),
        tls=_tls(table(data, "tls", "tls"), nodes[node]),
    )


def _tls(t: Mapping[str, Any], node: NodeConfig) -> TlsConfig:
    tls = parse_tls(t)
    if node.tls_host is not None and not tls.certificates:
        raise ConfigError(
            f"nodes.{node.name}.tls: an HTTPS listener needs a certificate; add a [[tls.certificates]] table"
        )
    return tls


def read(path: Path | str) -> Mapping[str, Any]:
    """Reads and decodes the config file; every way it can fail is a ConfigError saying what to do."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found; pass --config with the path of config.toml") from exc
    except IsADirectoryError as exc:
        raise ConfigError(
            f"{path}: is a directory; pass --config with the path of the file itself, such as "
            f"{Path(path) / 'config.toml'}"
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read it ({exc.strerror or exc}); make it readable by this user"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text; pass --config with the path of config.toml") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax at that line") from exc


def load(path: Path | str, node: str) -> EdgeConfig:
    """Reads and validates the config file for one node."""
    return parse(read(path), node)


def load_all(path: Path | str) -> dict[str, EdgeConfig]:
    """Reads and validates the config file for every node, in file order (check-config, make run)."""
    data = read(path)
    names = list(table(data, "nodes", "nodes"))
    if not names:
        raise ConfigError('nodes: no node configured; add a [nodes.NAME] table with listen = "host:port"')
    return {name: parse(data, name) for name in names}


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
