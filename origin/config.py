"""Origin configuration: pools of servers, their balancing, health checks, timeouts, retry
policy and backup pool, and routing rules.

The values are frozen dataclasses. `parse_pools` and `parse_routes` turn the TOML-decoded
`[origins.*]` tables and `[[routes]]` array into them, strictly: an unknown key, a value of
the wrong type, a bad URL, an unknown pool name or a cycle of backup pools raises ConfigError
naming the dotted key, what is wrong, and what to do. edge/config.py calls them and reuses
ConfigError.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

__all__ = [
    "Balance",
    "ConfigError",
    "HealthCheckConfig",
    "OriginPoolConfig",
    "PassiveHealthConfig",
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

    @property
    def netloc(self) -> str:
        """The "host:port" of the URL: the Host that health checks send by default."""
        return urlsplit(self.url).netloc


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
    # retries allowed before requests have paid for them; the cap on saved-up retries
    budget_burst: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")
        if self.budget_ratio < 0 or self.budget_burst < 0:
            raise ValueError("budget_ratio and budget_burst must be >= 0")


# How a pool spreads requests over its available servers (origin/balance.py).
Balance = Literal["round_robin", "least_outstanding"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheckConfig:
    """Active checks: GET `path` on every server each `interval_s`; 2xx/3xx is a success."""

    path: str | None = None  # origin-form target, e.g. "/healthz"; None = no active checks
    host: str | None = None  # Host header of the probe; None = the server's "host:port"
    interval_s: float = 5.0  # a round of probes starts this often
    timeout_s: float = 2.0  # one probe, connect to end of body; at most interval_s
    healthy_after: int = 2  # consecutive successes that bring a down server back
    unhealthy_after: int = 3  # consecutive failures that take a server out

    def __post_init__(self) -> None:
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError("path must start with '/'")
        if not 0 < self.timeout_s <= self.interval_s:
            raise ValueError("timeout_s must be > 0 and <= interval_s")
        if self.healthy_after < 1 or self.unhealthy_after < 1:
            raise ValueError("healthy_after and unhealthy_after must be >= 1")

    @property
    def enabled(self) -> bool:
        """Whether active checks run at all."""
        return self.path is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class PassiveHealthConfig:
    """Passive checks: real requests that fail in a row take a server out."""

    # consecutive failed tries (connect error, timeout, malformed head) that mark a server
    # down; 0 = passive checks off
    failures: int = 3
    # without active checks: how long a server marked down is skipped; with active checks it
    # stays down until `healthy_after` probes in a row succeed
    cooldown_s: float = 10.0
    on_5xx: bool = False  # a 5xx response head also counts as a failure

    def __post_init__(self) -> None:
        if self.failures < 0 or self.cooldown_s < 0:
            raise ValueError("failures and cooldown_s must be >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginPoolConfig:
    """A named group of interchangeable origin servers."""

    name: str
    servers: tuple[ServerConfig, ...]  # at least one
    balance: Balance = "round_robin"
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)  # per fetch from one server
    retry: RetryConfig = field(default_factory=RetryConfig)
    forward_headers: tuple[str, ...] | None = None  # lower-case allowlist; None = transparent
    health: HealthCheckConfig = field(default_factory=HealthCheckConfig)
    passive: PassiveHealthConfig = field(default_factory=PassiveHealthConfig)
    # another pool's name: serves when every server here is down or refused the connection
    backup: str | None = None

    def __post_init__(self) -> None:
        if not self.servers:
            raise ValueError("a pool needs at least one server")
        if self.balance not in get_args(Balance):
            raise ValueError(f"balance must be one of {get_args(Balance)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRule:
    """Requests whose host and path match go to `pool` (see origin.routes.Router for matching)."""

    # "*" (any host), "*.example.com" (any subdomain) or an exact host; lower-case, no port
    host: str = "*"
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
_HEALTH_KEYS = frozenset(
    {"health_path", "health_host", "health_interval_s", "health_timeout_s"}
    | {"healthy_after", "unhealthy_after"}
)
_PASSIVE_KEYS = frozenset({"passive_failures", "passive_cooldown_s", "passive_5xx"})
_POOL_KEYS = frozenset(
    {"servers", "retries", "retry_budget_ratio", "retry_budget_burst", "forward_headers"}
    | {"balance", "backup"}
    | _HEALTH_KEYS
    | _PASSIVE_KEYS
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


def _parse_balance(table: Mapping[str, Any], path: str) -> Balance:
    value = table.get("balance", "round_robin")
    for choice in get_args(Balance):
        if value == choice:
            return choice  # type: ignore[no-any-return]
    choices = " or ".join(f'"{c}"' for c in get_args(Balance))
    raise ConfigError(f"{path}.balance: unknown balancing {value!r}; use {choices}")


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
        balance=_parse_balance(table, path),
        timeouts=timeouts,
        retry=retry,
        forward_headers=_parse_forward_headers(table, path),
        health=_parse_health(table, path),
        passive=_parse_passive(table, path),
        backup=_optional_string(table, "backup", path, "fallback"),
    )


def _check_backups(pools: Mapping[str, OriginPoolConfig], path: str) -> None:
    """Every backup names another pool, and following backups never comes back round."""
    for name, pool in pools.items():
        if pool.backup is None:
            continue
        if pool.backup not in pools:
            known = ", ".join(sorted(n for n in pools if n != name)) or "none defined"
            raise ConfigError(
                f"{path}.{name}.backup: unknown pool {pool.backup!r}; use one of: {known}"
            )
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
            raise ConfigError(
                f"{path}.{name}: bad pool name; use letters, digits, '-' and '_' only"
            )
        pools[name] = _parse_pool(name, value, f"{path}.{name}")
    _check_backups(pools, path)
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
