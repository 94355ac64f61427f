"""Configuration of purging: the admin API (`[admin]`, `[[admin.tokens]]`) and purge sync (`[cluster]`).

edge/config/deployment.py calls `parse_admin` with the `[admin]` table and `parse_purge_sync` with the
`[cluster]` table; both raise ConfigError naming the dotted key. Tokens are secrets: they
never appear in an error message or a log line, only their names do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.config.errors import ConfigError
from edge.config.secrets import SecretSource, read_secret, secret_keys

__all__ = [
    "PURGE_SYNC_KEYS",
    "AdminConfig",
    "AdminToken",
    "PurgeSyncConfig",
    "parse_admin",
    "parse_purge_sync",
]

PURGE_SYNC_KEYS = frozenset({"purge_sync_interval_s", "max_purge_lag_s"})  # the [cluster] keys read here


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminToken:
    """One bearer token of the admin API (`[[admin.tokens]]`)."""

    name: str  # who: named in the purge log instead of the secret
    token: str = field(repr=False)  # the bearer secret, compared in constant time
    hosts: tuple[str, ...]  # hosts it may purge; "*" = every host


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminConfig:
    """The admin API (`[admin]`); it listens on `[nodes.NAME] admin` only."""

    purge_timeout_s: float = 5.0  # how long POST /purge waits for every node's acknowledgement (then 202)
    rate_per_s: float = 10.0  # purges each token may make per second, sustained
    burst: int = 20  # ... and in one burst
    tokens: tuple[AdminToken, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeSyncConfig:
    """Catch-up and the purge-lag watchdog (`[cluster]` keys)."""

    sync_interval_s: float = (
        1.0  # `purge_sync_interval_s`: how often each node asks its peers for missed purges
    )
    max_lag_s: float = 10.0  # `max_purge_lag_s`: without a sync for this long, every hit is revalidated


def _positive(table: Mapping[str, Any], key: str, default: float, path: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{path}.{key}: expected a number greater than 0, got {value!r}")
    return float(value)


def _token(raw: object, index: int) -> AdminToken:
    path = f"admin.tokens[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a table with name, token and hosts")
    allowed = {"name", "hosts", *secret_keys("token")}
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{path}.{key}: unknown key; allowed keys are {', '.join(sorted(allowed))}")
    name, hosts = raw.get("name"), raw.get("hosts")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{path}.name: missing; name the token (it is logged with every purge)")
    secret = read_secret(raw, "token", path)
    if secret is None:
        raise ConfigError(f"{path}.token_file: missing; give the token as token_file, token_env or token")
    token, source = secret
    if len(token) < 16:
        spelling = "token" if source is SecretSource.INLINE else f"token_{source.value}"
        raise ConfigError(f"{path}.{spelling}: expected a secret string of at least 16 characters")
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise ConfigError(f'{path}.hosts: expected a non-empty list of host names, or ["*"] for every host')
    return AdminToken(name=name, token=token, hosts=tuple(h.lower() for h in hosts))


def parse_admin(table: Mapping[str, Any]) -> AdminConfig:
    """Validates `[admin]` and its `[[admin.tokens]]`."""
    allowed = {"purge_timeout_s", "rate_per_s", "burst", "tokens"}
    for key in table:
        if key not in allowed:
            raise ConfigError(f"admin.{key}: unknown key; allowed keys are {', '.join(sorted(allowed))}")
    d = AdminConfig()
    burst = table.get("burst", d.burst)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ConfigError(f"admin.burst: expected an integer >= 1, got {burst!r}")
    raw_tokens = table.get("tokens", [])
    if not isinstance(raw_tokens, list):
        raise ConfigError("admin.tokens: expected an array of tables ([[admin.tokens]])")
    tokens = tuple(_token(raw, i) for i, raw in enumerate(raw_tokens))
    names = [t.name for t in tokens]
    if len(set(names)) != len(names):
        raise ConfigError("admin.tokens: two tokens share a name; give each its own")
    if len({t.token for t in tokens}) != len(tokens):
        raise ConfigError("admin.tokens: two tokens share a secret; give each its own")
    return AdminConfig(
        purge_timeout_s=_positive(table, "purge_timeout_s", d.purge_timeout_s, "admin"),
        rate_per_s=_positive(table, "rate_per_s", d.rate_per_s, "admin"),
        burst=burst,
        tokens=tokens,
    )


def parse_purge_sync(cluster: Mapping[str, Any]) -> PurgeSyncConfig:
    """Reads purge_sync_interval_s and max_purge_lag_s from `[cluster]`."""
    d = PurgeSyncConfig()
    interval = _positive(cluster, "purge_sync_interval_s", d.sync_interval_s, "cluster")
    lag = _positive(cluster, "max_purge_lag_s", d.max_lag_s, "cluster")
    if lag <= interval:
        raise ConfigError(
            f"cluster.max_purge_lag_s: must be longer than purge_sync_interval_s ({interval:g}), "
            f"or every node distrusts its cache between two syncs"
        )
    return PurgeSyncConfig(sync_interval_s=interval, max_lag_s=lag)
