"""Reads a pool's origin overrides (`[origins.NAME]` rewrite keys) into an origin.config.OriginRewrite.

    origin_host = "bucket.s3-website.eu-west-1.amazonaws.com"   Host sent (and TLS SNI)
    tls_server_name = "origin.example.com"                      SNI when it differs from origin_host
    strip_path_prefix = "/static"                               removed from the client's path ...
    add_path_prefix = "/site-v2"                                ... then this put in front
    request_headers = { X-Origin-Verify = { value_file = "/run/secrets/verify" }, X-Env = "prod" }
    remove_response_headers = ["x-amz-request-id", "x-amz-id-2"]
    response_headers = { Cache-Control = "public, max-age=300" }

A request header's value is a string, or a table with one of value / value_file / value_env
(edge/config/secrets.py: a token belongs in a file or a variable). Names that frame or route
the message (Host, Content-Length, hop-by-hop fields) cannot be set or removed here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from edge.config.errors import ConfigError
from edge.config.secrets import read_secret, secret_keys
from origin.config import OriginRewrite
from origin.fieldnames import fold_name
from origin.hopbyhop import HOP_BY_HOP

__all__ = ["REWRITE_KEYS", "parse_rewrite"]

REWRITE_KEYS = frozenset(
    {
        "origin_host",
        "tls_server_name",
        "strip_path_prefix",
        "add_path_prefix",
        "request_headers",
        "remove_response_headers",
        "response_headers",
    }
)

_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 §5.1 field-name = token
_HOST_RE = re.compile(r"([a-z0-9_-]+(\.[a-z0-9_-]+)*\.?|\[[0-9a-f:.]+\])(:[0-9]{1,5})?")
# fields the client and server set themselves: framing, routing and connection management
_FIXED = HOP_BY_HOP | {"host", "content-length"}
_MAX_VALUE = 8 * 1024


def _host(table: Mapping[str, Any], key: str, path: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not _HOST_RE.fullmatch(value.lower()):
        raise ConfigError(
            f'{path}.{key}: expected a host name such as "bucket.s3-website.eu-west-1.amazonaws.com" '
            f"(a port is allowed), got {value!r}"
        )
    return value.lower()


def _prefix(table: Mapping[str, Any], key: str, path: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or value == "/"
        or value.endswith("/")
        or any(c in value for c in "?# \t\r\n")
    ):
        raise ConfigError(
            f'{path}.{key}: expected a path such as "/static": starting with "/", not ending with '
            f'"/", without ?, # or spaces; got {value!r}'
        )
    return value


def _name(name: object, path: str) -> str:
    if not isinstance(name, str) or not _TOKEN_RE.fullmatch(name):
        raise ConfigError(f"{path}: {name!r} is not a header name; fix the spelling")
    if fold_name(name) in _FIXED:
        raise ConfigError(f"{path}: {name} cannot be set or removed here (the client and origin manage it)")
    return name


def _plain_value(value: object, path: str) -> str:
    if not isinstance(value, str) or len(value) > _MAX_VALUE or any(c in value for c in "\r\n\0"):
        raise ConfigError(f"{path}: expected a header value: a string without line breaks, at most 8 KiB")
    return value


def _request_headers(table: Mapping[str, Any], path: str) -> tuple[tuple[str, str], ...]:
    raw = table.get("request_headers", {})
    if not isinstance(raw, Mapping):
        raise ConfigError(f'{path}.request_headers: expected a table such as {{ X-Env = "prod" }}')
    headers: list[tuple[str, str]] = []
    for name, body in raw.items():
        where = f"{path}.request_headers.{name}"
        _name(name, where)
        if isinstance(body, Mapping):
            for key in body:
                if key not in secret_keys("value"):
                    raise ConfigError(f"{where}.{key}: unknown key; use one of value, value_env, value_file")
            secret = read_secret(body, "value", where)
            if secret is None:
                raise ConfigError(f"{where}: give the value as value_file, value_env or value")
            value = secret[0]
            if len(value) > _MAX_VALUE or any(c in value for c in "\r\n\0"):
                raise ConfigError(f"{where}: the value has a line break or is over 8 KiB; fix the secret")
        else:
            value = _plain_value(body, where)
        headers.append((name, value))
    return tuple(headers)


def _response_headers(table: Mapping[str, Any], path: str) -> tuple[tuple[str, str], ...]:
    raw = table.get("response_headers", {})
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f'{path}.response_headers: expected a table such as {{ Cache-Control = "max-age=60" }}'
        )
    return tuple(
        (_name(name, f"{path}.response_headers.{name}"), _plain_value(v, f"{path}.response_headers.{name}"))
        for name, v in raw.items()
    )


def _removed(table: Mapping[str, Any], path: str) -> frozenset[str]:
    raw = table.get("remove_response_headers", [])
    where = f"{path}.remove_response_headers"
    if not isinstance(raw, list):
        raise ConfigError(f'{where}: expected a list of header names such as ["x-amz-request-id"]')
    return frozenset(fold_name(_name(name, f"{where}[{i}]")) for i, name in enumerate(raw))


def parse_rewrite(table: Mapping[str, Any], path: str) -> OriginRewrite:
    """The pool's overrides from its table at dotted `path` (keys not given: no change)."""
    host = _host(table, "origin_host", path)
    if host is not None and table.get("health_host") is not None:
        raise ConfigError(
            f"{path}.health_host: origin_host is the Host of every request to this pool, health "
            "probes included; remove health_host"
        )
    return OriginRewrite(
        host=host,
        tls_server_name=_host(table, "tls_server_name", path),
        strip_path_prefix=_prefix(table, "strip_path_prefix", path),
        add_path_prefix=_prefix(table, "add_path_prefix", path),
        request_headers=_request_headers(table, path),
        remove_response_headers=_removed(table, path),
        response_headers=_response_headers(table, path),
    )
