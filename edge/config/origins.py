"""Reads the `[origins.*]` and `[[routes]]` tables of config.toml into origin.config values.

Strict: unknown keys, wrong types, bad URLs, unknown or cyclic backup pools raise
ConfigError naming the dotted key and saying what to do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from edge.config.checks import choice
from edge.config.errors import ConfigError
from edge.config.origin_rewrite import REWRITE_KEYS, parse_rewrite
from edge.config.origin_tls import TLS_KEYS, parse_origin_tls
from origin.config import (
    AdmissionConfig,
    Balance,
    HealthCheckConfig,
    OriginPoolConfig,
    PassiveHealthConfig,
    RetryConfig,
    RouteRule,
    ServerConfig,
    TimeoutConfig,
    url_problem,
)

__all__ = ["parse_pools", "parse_routes"]

_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 §5.1 field-name = token
_HOST_RE = re.compile(r"(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\]|\*")

_TIMEOUT_KEYS = {
    "connect_timeout_s": "connect_s",
    "first_byte_timeout_s": "first_byte_s",
    "total_timeout_s": "total_s",
    "idle_timeout_s": "idle_s",
}
_HEALTH_KEYS = frozenset(
    {"health_path", "health_host", "health_interval_s", "health_timeout_s"}
    | {"healthy_after", "unhealthy_after"}
)
_PASSIVE_KEYS = frozenset({"passive_failures", "passive_cooldown_s", "passive_5xx"})
_POOL_KEYS = frozenset(
    {"servers", "retries", "retry_budget_ratio", "retry_budget_burst", "forward_headers"}
    | {"balance", "backup"}
    | {"max_in_flight", "max_queue", "queue_timeout_s"}
    | _HEALTH_KEYS
    | _PASSIVE_KEYS
    | _TIMEOUT_KEYS.keys()
    | REWRITE_KEYS
    | TLS_KEYS
)
_ROUTE_KEYS = frozenset({"host", "path_prefix", "origin"})


def _check_keys(table: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{path}.{key}: unknown key; use one of {', '.join(sorted(allowed))}")


def _table(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a table, got {type(value).__name__}; write [{path}]")
    return value


def _number(table: Mapping[str, Any], key: str, path: str, default: float, *, positive: bool) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path}.{key}: expected a number of seconds, got {value!r}; write e.g. {default}")
    if value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"{path}.{key}: {value!r} is out of range; it must be {bound}")
    return float(value)


def _integer(table: Mapping[str, Any], key: str, path: str, default: int, *, minimum: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path}.{key}: expected an integer, got {value!r}; write e.g. {default}")
    if value < minimum:
        raise ConfigError(f"{path}.{key}: {value!r} is out of range; it must be >= {minimum}")
    return value


def _boolean(table: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{path}.{key}: expected true or false, got {value!r}; write {default}")
    return value


def _optional_string(table: Mapping[str, Any], key: str, path: str, example: str) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f'{path}.{key}: expected a string, got {value!r}; write e.g. "{example}"')
    return value


def _string_list(value: object, path: str) -> list[str]:
    if not isinstance(value, list):
        raise ConfigError(f'{path}: expected a list of strings, got {value!r}; write ["..."]')
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ConfigError(f"{path}[{i}]: expected a string, got {item!r}; quote it")
    return value


def _parse_servers(table: Mapping[str, Any], path: str) -> tuple[ServerConfig, ...]:
    if "servers" not in table:
        raise ConfigError(f'{path}.servers: missing; list the origin URLs, e.g. ["http://127.0.0.1:8000"]')
    urls = _string_list(table["servers"], f"{path}.servers")
    if not urls:
        raise ConfigError(f"{path}.servers: empty; list at least one origin URL")
    servers: list[ServerConfig] = []
    for i, url in enumerate(urls):
        problem = url_problem(url)
        if problem is not None:
            raise ConfigError(f"{path}.servers[{i}]: {problem}")
        if url.rstrip("/") in (s.base for s in servers):
            raise ConfigError(f"{path}.servers[{i}]: {url!r} is listed twice; remove the duplicate")
        servers.append(ServerConfig(url=url))
    return tuple(servers)


def _parse_forward_headers(table: Mapping[str, Any], path: str) -> tuple[str, ...] | None:
    if "forward_headers" not in table:
        return None
    names = _string_list(table["forward_headers"], f"{path}.forward_headers")
    for i, name in enumerate(names):
        if not _TOKEN_RE.fullmatch(name):
            raise ConfigError(f"{path}.forward_headers[{i}]: {name!r} is not a header name; fix the spelling")
    return tuple(dict.fromkeys(name.lower() for name in names))


def _parse_health(table: Mapping[str, Any], path: str) -> HealthCheckConfig:
    d = HealthCheckConfig()
    health_path = _optional_string(table, "health_path", path, "/healthz")
    if health_path is not None and (
        not health_path.startswith("/") or any(ord(c) <= 0x20 or c == "#" for c in health_path)
    ):
        raise ConfigError(
            f"{path}.health_path: {health_path!r} is not a request target; "
            'write a path such as "/healthz" (no spaces or #)'
        )
    interval = _number(table, "health_interval_s", path, d.interval_s, positive=True)
    timeout = _number(table, "health_timeout_s", path, d.timeout_s, positive=True)
    if timeout > interval:
        raise ConfigError(
            f"{path}.health_timeout_s: {timeout} exceeds health_interval_s {interval}; "
            "make the probe timeout at most the interval"
        )
    return HealthCheckConfig(
        path=health_path,
        host=_optional_string(table, "health_host", path, "www.example.com"),
        interval_s=interval,
        timeout_s=timeout,
        healthy_after=_integer(table, "healthy_after", path, d.healthy_after, minimum=1),
        unhealthy_after=_integer(table, "unhealthy_after", path, d.unhealthy_after, minimum=1),
    )


def _parse_passive(table: Mapping[str, Any], path: str) -> PassiveHealthConfig:
    d = PassiveHealthConfig()
    return PassiveHealthConfig(
        failures=_integer(table, "passive_failures", path, d.failures, minimum=0),
        cooldown_s=_number(table, "passive_cooldown_s", path, d.cooldown_s, positive=False),
        on_5xx=_boolean(table, "passive_5xx", path, d.on_5xx),
    )


def _parse_admission(table: Mapping[str, Any], path: str) -> AdmissionConfig:
    d = AdmissionConfig()
    return AdmissionConfig(
        max_in_flight=_integer(table, "max_in_flight", path, d.max_in_flight, minimum=1),
        max_queue=_integer(table, "max_queue", path, d.max_queue, minimum=0),
        queue_timeout_s=_number(table, "queue_timeout_s", path, d.queue_timeout_s, positive=True),
    )


def _parse_pool(name: str, value: object, path: str) -> OriginPoolConfig:
    table = _table(value, path)
    _check_keys(table, _POOL_KEYS, path)
    servers = _parse_servers(table, path)
    defaults = TimeoutConfig()
    timeouts = TimeoutConfig(
        **{
            field_name: _number(table, key, path, getattr(defaults, field_name), positive=True)
            for key, field_name in _TIMEOUT_KEYS.items()
        }
    )
    retry_defaults = RetryConfig()
    retry = RetryConfig(
        attempts=1 + _integer(table, "retries", path, retry_defaults.attempts - 1, minimum=0),
        budget_ratio=_number(table, "retry_budget_ratio", path, retry_defaults.budget_ratio, positive=False),
        budget_burst=_number(table, "retry_budget_burst", path, retry_defaults.budget_burst, positive=False),
    )
    return OriginPoolConfig(
        name=name,
        servers=servers,
        balance=choice(table, "balance", Balance.ROUND_ROBIN, path, "balancing"),
        timeouts=timeouts,
        retry=retry,
        forward_headers=_parse_forward_headers(table, path),
        health=_parse_health(table, path),
        passive=_parse_passive(table, path),
        backup=_optional_string(table, "backup", path, "fallback"),
        rewrite=parse_rewrite(table, path),
        admission=_parse_admission(table, path),
        tls=parse_origin_tls(table, path, servers),
    )


def _check_backups(pools: Mapping[str, OriginPoolConfig], path: str) -> None:
    """Every backup names another pool, and following backups never comes back round."""
    for name, pool in pools.items():
        if pool.backup is None:
            continue
        if pool.backup not in pools:
            known = ", ".join(sorted(n for n in pools if n != name)) or "none defined"
            raise ConfigError(f"{path}.{name}.backup: unknown pool {pool.backup!r}; use one of: {known}")
        chain = [name]
        current: str | None = pool.backup
        while current is not None:
            if current in chain:
                cycle = " -> ".join([*chain, current])
                raise ConfigError(
                    f"{path}.{name}.backup: backup pools form a cycle ({cycle}); "
                    "remove one of the backup keys"
                )
            chain.append(current)
            current = pools[current].backup


def parse_pools(data: Mapping[str, Any], path: str) -> dict[str, OriginPoolConfig]:
    """Validates the decoded `[origins.<name>]` tables found at `path` and builds the pools."""
    pools: dict[str, OriginPoolConfig] = {}
    for name, value in _table(data, path).items():
        if not _NAME_RE.fullmatch(name):
            raise ConfigError(f"{path}.{name}: bad pool name; use letters, digits, '-' and '_' only")
        pools[name] = _parse_pool(name, value, f"{path}.{name}")
    _check_backups(pools, path)
    return pools


def _parse_host(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f'{path}: expected a string, got {value!r}; write "*" or "example.com"')
    host = value.lower().rstrip(".") if value != "*" else value
    if not _HOST_RE.fullmatch(host):
        raise ConfigError(
            f'{path}: {value!r} is not a host pattern; use "*", "*.example.com" or an exact host without port'
        )
    return host


def _parse_prefix(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f'{path}: expected a string, got {value!r}; write e.g. "/api/"')
    if not value.startswith("/") or any(c in value for c in "?# \t\r\n"):
        raise ConfigError(
            f'{path}: {value!r} is not a path prefix; start it with "/" and leave out ?, # and spaces'
        )
    return value


def parse_routes(data: object, path: str, pools: Mapping[str, OriginPoolConfig]) -> tuple[RouteRule, ...]:
    """Validates the decoded `[[routes]]` array found at `path` against the known pools."""
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected an array of tables, got {type(data).__name__}; write [[{path}]]")
    rules = []
    for i, value in enumerate(data):
        item_path = f"{path}[{i}]"
        table = _table(value, item_path)
        _check_keys(table, _ROUTE_KEYS, item_path)
        if "origin" not in table:
            raise ConfigError(f"{item_path}.origin: missing; name the [origins.<name>] pool to use")
        pool = table["origin"]
        if not isinstance(pool, str) or pool not in pools:
            known = ", ".join(sorted(pools)) or "none defined"
            raise ConfigError(f"{item_path}.origin: unknown pool {pool!r}; use one of: {known}")
        rules.append(
            RouteRule(
                host=_parse_host(table.get("host", "*"), f"{item_path}.host"),
                path_prefix=_parse_prefix(table.get("path_prefix", "/"), f"{item_path}.path_prefix"),
                pool=pool,
            )
        )
    return tuple(rules)
