"""The public listener's timeouts and caps (`[server]`).

Every timeout closes the connection and is counted per reason (see edge.server.connections).
A timeout that fires before any response byte was sent answers 408 first (504 for the
request bound, whose cause is a slow answer, not a slow client); an idle keep-alive
connection is closed without a response, as nginx and Varnish do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from edge.config.checks import check_keys, number
from edge.config.errors import ConfigError

__all__ = ["ServerConfig", "parse_server", "parse_workers"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """Timeouts and caps of the client listener (`[server]`); times in seconds."""

    # total time from a request's first byte to the end of its head (nginx client_header_timeout,
    # Varnish timeout_req); a request body must also begin within it
    head_timeout_s: float = 10.0
    # a connection with no request in progress (new, or kept alive between requests) is closed
    # after this (nginx keepalive_timeout, Varnish timeout_idle)
    idle_timeout_s: float = 30.0
    # longest gap between two pieces of a request body (nginx client_body_timeout)
    body_timeout_s: float = 30.0
    # a request body must average at least this many bytes/s; every byte received buys
    # 1/rate seconds on top of body_timeout_s (Apache mod_reqtimeout MinRate); 0 = no minimum
    body_min_rate: float = 1024.0
    # the client accepts no response byte for this long (nginx send_timeout, Varnish idle_send_timeout)
    send_timeout_s: float = 60.0
    # request head complete → response finished, for answers that are not streamed
    # (a body sent in one piece); streamed bodies (disk, fills) rely on send_timeout_s
    # (Varnish send_timeout bounds the whole send; nginx has no equivalent)
    request_timeout_s: float = 300.0
    # open client connections; beyond it the oldest idle one is closed or the new one refused.
    # 0 = derived from the descriptor limit (see edge.server.connections.default_max_connections)
    max_connections: int = 0
    # open connections per client address; 0 = no cap (many users share a NAT address)
    max_connections_per_ip: int = 0
    # access-log lines waiting for the writer thread; beyond it lines are dropped and counted
    access_log_buffer_lines: int = 10_000
    # SIGTERM/SIGINT: the longest a graceful stop lets in-flight requests and fills run
    # (announce period included); what is still running then is cut off (edge.server.lifecycle)
    drain_timeout_s: float = 30.0
    # after SIGTERM, readiness and peer health answer 503 this long while the listeners still
    # serve, so load balancers and peers stop sending first; None = derived: the time peers
    # need to take the node out of their ring (cluster leave_within_s), 0 without peers
    drain_announce_s: float | None = None
    # the public listener's readiness endpoint (the one /_edge/ path it answers)
    ready_path: str = "/_edge/ready"
    # "json" (one JSON object a line) or "combined" (the Apache/nginx combined format plus
    # cache=, upstream= and us= fields)
    access_log_format: Literal["json", "combined"] = "json"
    # worker processes sharing one cache on this machine (docs/workers.md): "auto" = one per
    # core, or a whole number >= 1; None (not set) = $EDGECACHE_WORKERS, else "auto". --workers wins
    workers: int | Literal["auto"] | None = None


_POSITIVE = ("head_timeout_s", "idle_timeout_s", "body_timeout_s", "send_timeout_s", "request_timeout_s")


def _count(t: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = t.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"server.{key}: expected a whole number >= {minimum}, got {value!r}")
    return value


def parse_server(t: Mapping[str, Any]) -> ServerConfig:
    """Reads `[server]`; every timeout must be positive (a zero timeout would close everything)."""
    d = ServerConfig()
    check_keys(t, set(ServerConfig.__dataclass_fields__), "server")
    times = {key: number(t, key, getattr(d, key), "server") for key in _POSITIVE}
    for key, value in times.items():
        if value <= 0:
            raise ConfigError(f"server.{key}: must be greater than 0 seconds; remove it for the default")
    return ServerConfig(
        **times,
        body_min_rate=number(t, "body_min_rate", d.body_min_rate, "server"),
        max_connections=_count(t, "max_connections", d.max_connections, 0),
        max_connections_per_ip=_count(t, "max_connections_per_ip", d.max_connections_per_ip, 0),
        access_log_buffer_lines=_count(t, "access_log_buffer_lines", d.access_log_buffer_lines, 1),
        drain_timeout_s=number(t, "drain_timeout_s", d.drain_timeout_s, "server"),
        drain_announce_s=number(t, "drain_announce_s", 0.0, "server") if "drain_announce_s" in t else None,
        ready_path=_path(t, "ready_path", d.ready_path),
        access_log_format=_log_format(t.get("access_log_format", d.access_log_format)),
        workers=parse_workers(t["workers"], "server.workers") if "workers" in t else None,
    )


def _path(t: Mapping[str, Any], key: str, default: str) -> str:
    value = t.get(key, default)
    if not isinstance(value, str) or not value.startswith("/") or "?" in value or " " in value:
        raise ConfigError(f'server.{key}: expected a path such as "/_edge/ready", got {value!r}')
    return value


def _log_format(value: object) -> Literal["json", "combined"]:
    if value == "json":
        return "json"
    if value == "combined":
        return "combined"
    raise ConfigError(f'server.access_log_format: expected "json" or "combined", got {value!r}')


def parse_workers(value: object, where: str) -> int | Literal["auto"]:
    """`workers`: "auto" or a whole number >= 1 (a digit string too, for flags and the environment)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
        raise ConfigError(f'{where}: expected "auto" or a whole number from 1 to 1024, got {value!r}')
    return value
