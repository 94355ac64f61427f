"""Reads a region's DNS discovery keys (`[regions.NAME] discover*`) into cluster.discovery.DiscoveryConfig.

[regions.eu]
discover = "_peer._tcp.edgecache-peers.edgecache-eu.svc.cluster.local"
discover_record = "SRV"           # or "A" (A and AAAA records; then discover_port is needed)
discover_port = 9080              # the nodes' internal port, for A records
discover_interval_s = 10          # re-resolve this often
discover_timeout_s = 2            # one lookup
discover_nameservers = ["127.0.0.1:5353"]   # default: the system's resolv.conf
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cluster.discovery import DiscoveryConfig, RecordType
from edge.config.checks import choice, parse_addr
from edge.config.errors import ConfigError

__all__ = ["DISCOVERY_KEYS", "parse_discovery"]

DISCOVERY_KEYS = frozenset(
    {
        "discover",
        "discover_record",
        "discover_port",
        "discover_interval_s",
        "discover_timeout_s",
        "discover_nameservers",
    }
)


def _positive(body: Mapping[str, Any], key: str, default: float, path: str) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{path}.{key}: expected a number of seconds greater than 0, got {value!r}")
    return float(value)


def parse_discovery(body: Mapping[str, Any], region: str, path: str) -> DiscoveryConfig | None:
    """The region's discovery, or None when it has no `discover` key."""
    given = [key for key in DISCOVERY_KEYS if key in body]
    if "discover" not in body:
        if given:
            raise ConfigError(f"{path}.{sorted(given)[0]}: set discover (the DNS name) too, or remove it")
        return None
    name = body["discover"]
    if not isinstance(name, str) or not name or " " in name:
        raise ConfigError(
            f'{path}.discover: expected a DNS name such as "edgecache-peers.edge.svc.cluster.local"'
        )
    record = choice(body, "discover_record", RecordType.A, path, "record type")
    port = body.get("discover_port", 0)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        raise ConfigError(f"{path}.discover_port: expected a port number, got {port!r}")
    if record is RecordType.A and port == 0:
        raise ConfigError(f"{path}.discover_port: missing; A records carry no port, give the internal port")
    servers = body.get("discover_nameservers", [])
    if not isinstance(servers, list):
        raise ConfigError(f'{path}.discover_nameservers: expected a list such as ["10.96.0.10:53"]')
    nameservers = tuple(parse_addr(s, f"{path}.discover_nameservers[{i}]") for i, s in enumerate(servers))
    if len({p for _, p in nameservers}) > 1:
        raise ConfigError(f"{path}.discover_nameservers: every server must use the same port")
    interval = _positive(body, "discover_interval_s", 10.0, path)
    timeout = _positive(body, "discover_timeout_s", 2.0, path)
    if timeout > interval:
        raise ConfigError(f"{path}.discover_timeout_s: must be at most discover_interval_s ({interval:g})")
    return DiscoveryConfig(
        region=region,
        name=name,
        record=record,
        port=port,
        interval_s=interval,
        timeout_s=timeout,
        nameservers=nameservers,
    )
