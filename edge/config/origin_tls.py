"""Reads a pool's certificate checks (`[origins.NAME]` TLS keys) into an origin.config.OriginTls.

    tls_ca_file = "/etc/edgecache/origin-ca.pem"   trust only these PEM CAs (default: the system store)
    tls_verify = false                              no certificate checks at all (logged at start)

https servers are verified by default: the chain against the trusted CAs, and the host name
against the server URL's host (or the pool's `tls_server_name` / `origin_host`). Both keys
need at least one https:// server in the pool; `tls_verify = false` with a CA file is refused
as a contradiction. The CA file is read here once, so one without a usable certificate is a
config error naming the key, not a failure at the first fetch.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge.config.errors import ConfigError
from origin.config import OriginTls, ServerConfig

__all__ = ["TLS_KEYS", "parse_origin_tls"]

TLS_KEYS = frozenset({"tls_ca_file", "tls_verify"})


def _ca_file(table: Mapping[str, Any], path: str) -> str | None:
    raw = table.get("tls_ca_file")
    if raw is None:
        return None
    key = f"{path}.tls_ca_file"
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f"{key}: expected the path of a PEM file of CA certificates, got {raw!r}")
    if not Path(raw).is_file():
        raise ConfigError(f"{key}: {raw} is not a readable file; fix the path")
    try:
        ssl.create_default_context(cafile=raw)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{key}: {raw} holds no usable PEM CA certificate ({exc}); give a PEM bundle"
        ) from exc
    return raw


def parse_origin_tls(table: Mapping[str, Any], path: str, servers: tuple[ServerConfig, ...]) -> OriginTls:
    """The pool's certificate checks; verified against the system store when no key is given."""
    verify = table.get("tls_verify", True)
    if not isinstance(verify, bool):
        raise ConfigError(
            f"{path}.tls_verify: expected true or false, got {verify!r}; leave it out to verify"
        )
    ca_file = _ca_file(table, path)
    given = [key for key in sorted(TLS_KEYS) if key in table]
    if given and not any(server.base.startswith("https:") for server in servers):
        raise ConfigError(f"{path}.{given[0]}: the pool has no https:// server; remove it or use https")
    if not verify and ca_file is not None:
        raise ConfigError(
            f"{path}.tls_verify: false turns off the check tls_ca_file is for; remove one of them"
        )
    return OriginTls(verify=verify, ca_file=ca_file)
