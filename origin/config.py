"""Origin configuration: pools of servers, their timeouts and retry policy, and routing rules.

The values are frozen dataclasses. `parse_pools` and `parse_routes` turn the TOML-decoded
`[origins.*]` tables and `[[routes]]` array into them, strictly: an unknown key, a value of
the wrong type, a bad URL or an unknown pool name raises ConfigError naming the dotted key,
what is wrong, and what to do. edge/config.py calls them and reuses ConfigError.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ConfigError",
    "OriginPoolConfig",
    "RetryConfig",
    "RouteRule",
    "ServerConfig",
    "TimeoutConfig",
    "parse_pools",
    "parse_routes",
]


class ConfigError(ValueError):
    """The configuration is invalid; the message starts with the dotted path of the bad key."""


def _url_problem(url: str) -> str | None:
    """Says what is wrong with a server base URL, or None when it is "http(s)://host[:port][/]"."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        return f"{url!r} is not a URL ({exc}); write it as http://host:port"
    if parts.scheme not in ("http", "https"):
        return f"{url!r} has scheme {parts.scheme!r}; use http:// or https://"
    if not parts.hostname:
        return f"{url!r} has no host; write it as http://host:port"
    if parts.username is not None or parts.password is not None:
        return f"{url!r} carries credentials; remove the user:password@ part"
    if parts.path not in ("", "/") or parts.query or parts.fragment or url.endswith(("?", "#")):
        return f"{url!r} has a path, query or fragment; give only scheme://host:port"
    if port == 0:
        return f"{url!r} has port 0; give the port the origin listens on"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """One origin server, by its base URL "http://host:port" (no path)."""

    url: str  # "http://host:port" or "https://host:port"; a single trailing "/" is allowed

    def __post_init__(self) -> None:
        problem = _url_problem(self.url)
        if problem is not None:
            raise ValueError(problem)

    @property
    def base(self) -> str:
        """The URL without a trailing "/", ready to have a raw target appended."""
        return self.url.rstrip("/")


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutConfig:
    """Per-phase limits for one fetch from one server, in seconds."""

    connect_s: float = 2.0  # to open the TCP (and TLS) connection
    # from the start of the fetch (waiting for a pooled connection and connecting included)
    # until the whole response head arrived
    first_byte_s: float = 10.0
    total_s: float = 60.0  # from the start of the fetch until the last body byte
    idle_s: float = 10.0  # longest gap between two body chunks

    def __post_init__(self) -> None:
        for name in ("connect_s", "first_byte_s", "total_s", "idle_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryConfig:
    """How often an idempotent request is tried, and the budget that caps retries pool-wide."""

    attempts: int = 2  # total tries for an idempotent request (1 = never retry)
    budget_ratio: float = 0.2  # retries may be at most this fraction of requests
    budget_burst: float = (
        10.0  # retries allowed before requests have paid for them; the cap on saved-up retries
    )

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")
        if self.budget_ratio < 0 or self.budget_burst < 0:
            raise ValueError("budget_ratio and budget_burst must be >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginPoolConfig:
    """A named group of interchangeable origin servers."""

    name: str
    servers: tuple[ServerConfig, ...]  # tried round-robin; at least one
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)  # per fetch from one server
    retry: RetryConfig = field(default_factory=RetryConfig)
    forward_headers: tuple[str, ...] | None = (
        None  # lower-case allowlist; None = transparent default
    )
    down_after_failures: int = 3  # consecutive connect failures that mark a server down
    down_cooldown_s: float = (
        5.0  # how long a server marked down is skipped before it is tried again
    )

    def __post_init__(self) -> None:
        if not self.servers:
            raise ValueError("a pool needs at least one server")
        if self.down_after_failures < 1 or self.down_cooldown_s < 0:
            raise ValueError("down_after_failures must be >= 1 and down_cooldown_s >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRule:
    """Requests whose host and path match go to `pool` (see origin.routes.Router for matching)."""

    host: str = (
        "*"  # "*" (any host), "*.example.com" (any subdomain) or an exact host; lower-case, no port
    )
    path_prefix: str = "/"  # plain string prefix of the raw path; "/" matches every request
    pool: str  # name of an [origins.<name>] pool


# --- parsing the TOML shape ----------------------------------------------------------------

_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 §5.1 field-name = token
_HOST_RE = re.compile(r"(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\]|\*")

_TIMEOUT_KEYS = {
    "connect_timeout_s": "connect_s",
    "first_byte_timeout_s": "first_byte_s",
    "total_timeout_s": "total_s",
    "idle_timeout_s": "idle_s",
}
_POOL_KEYS = frozenset(
    {"servers", "retries", "retry_budget_ratio", "retry_budget_burst", "forward_headers"}
    | {"down_after_failures", "down_cooldown_s"}
    | _TIMEOUT_KEYS.keys()
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


def _number(
    table: Mapping[str, Any], key: str, path: str, default: float, *, positive: bool
) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(
            f"{path}.{key}: expected a number of seconds, got {value!r}; write e.g. {default}"
        )
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


def _string_list(value: object, path: str) -> list[str]:
    if not isinstance(value, list):
        raise ConfigError(f'{path}: expected a list of strings, got {value!r}; write ["..."]')
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ConfigError(f"{path}[{i}]: expected a string, got {item!r}; quote it")
    return value


def _parse_servers(table: Mapping[str, Any], path: str) -> tuple[ServerConfig, ...]:
    if "servers" not in table:
        raise ConfigError(
            f'{path}.servers: missing; list the origin URLs, e.g. ["http://127.0.0.1:8000"]'
        )
    urls = _string_list(table["servers"], f"{path}.servers")
    if not urls:
        raise ConfigError(f"{path}.servers: empty; list at least one origin URL")
    servers: list[ServerConfig] = []
    for i, url in enumerate(urls):
        problem = _url_problem(url)
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
            raise ConfigError(
                f"{path}.forward_headers[{i}]: {name!r} is not a header name; fix the spelling"
            )
    return tuple(dict.fromkeys(name.lower() for name in names))


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
        budget_ratio=_number(
            table, "retry_budget_ratio", path, retry_defaults.budget_ratio, positive=False
        ),
        budget_burst=_number(
            table, "retry_budget_burst", path, retry_defaults.budget_burst, positive=False
        ),
    )
    return OriginPoolConfig(
        name=name,
        servers=servers,
        timeouts=timeouts,
        retry=retry,
        forward_headers=_parse_forward_headers(table, path),
        down_after_failures=_integer(table, "down_after_failures", path, 3, minimum=1),
        down_cooldown_s=_number(table, "down_cooldown_s", path, 5.0, positive=False),
    )


def parse_pools(data: Mapping[str, Any], path: str) -> dict[str, OriginPoolConfig]:
    """Validates the decoded `[origins.<name>]` tables found at `path` and builds the pools."""
    pools: dict[str, OriginPoolConfig] = {}
    for name, value in _table(data, path).items():
        if not _NAME_RE.fullmatch(name):
            raise ConfigError(
                f"{path}.{name}: bad pool name; use letters, digits, '-' and '_' only"
            )
        pools[name] = _parse_pool(name, value, f"{path}.{name}")
    return pools


def _parse_host(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f'{path}: expected a string, got {value!r}; write "*" or "example.com"')
    host = value.lower().rstrip(".") if value != "*" else value
    if not _HOST_RE.fullmatch(host):
        raise ConfigError(
            f"{path}: {value!r} is not a host pattern; "
            'use "*", "*.example.com" or an exact host without port'
        )
    return host


def _parse_prefix(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f'{path}: expected a string, got {value!r}; write e.g. "/api/"')
    if not value.startswith("/") or any(c in value for c in "?# \t\r\n"):
        raise ConfigError(
            f"{path}: {value!r} is not a path prefix; "
            'start it with "/" and leave out ?, # and spaces'
        )
    return value


def parse_routes(
    data: object, path: str, pools: Mapping[str, OriginPoolConfig]
) -> tuple[RouteRule, ...]:
    """Validates the decoded `[[routes]]` array found at `path` against the known pools."""
    if not isinstance(data, list):
        raise ConfigError(
            f"{path}: expected an array of tables, got {type(data).__name__}; write [[{path}]]"
        )
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
                path_prefix=_parse_prefix(
                    table.get("path_prefix", "/"), f"{item_path}.path_prefix"
                ),
                pool=pool,
            )
        )
    return tuple(rules)
