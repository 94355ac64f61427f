"""TLS on the public listener (`[tls]`, `[[tls.certificates]]`, `[nodes.NAME] tls`).

A node with `tls = "host:port"` also listens for HTTPS there, in front of the same cache as
its plain listener. Each `[[tls.certificates]]` names the host names it serves (exact, or
`*.example.com` for one label) and its PEM files; the client's SNI name picks the
certificate, and the first one answers clients that send no name or an unknown one. Paths
are taken as written (relative ones from the node's working directory) and must exist when
the config is loaded; whether they hold a matching certificate and key is checked when the
node starts (edge.server.tls).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge.config.checks import check_keys
from edge.config.errors import ConfigError

__all__ = ["TlsCertificate", "TlsConfig", "parse_tls"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsCertificate:
    """One certificate and the host names it serves."""

    hosts: tuple[str, ...]  # lower-case names; "*.example.com" matches one label below it
    cert_file: Path  # PEM: the certificate, then its intermediates
    key_file: Path  # PEM: its private key (unencrypted)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    """`[tls]`: certificates for the nodes' HTTPS listeners."""

    certificates: tuple[TlsCertificate, ...] = ()  # the first is the default
    min_version: Literal["1.2", "1.3"] = "1.2"  # oldest protocol version accepted
    handshake_timeout_s: float = 10.0  # a client must finish the handshake within this


def _hosts(raw: object, path: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(h, str) and h for h in raw):
        raise ConfigError(f'{path}: expected a non-empty list of host names such as ["example.com"]')
    hosts = []
    for i, host in enumerate(raw):
        name = host.lower().rstrip(".")
        bare = name[2:] if name.startswith("*.") else name
        if not bare or any(c in bare for c in "*/:@ ") or ("." not in bare and bare != "localhost"):
            raise ConfigError(f"{path}[{i}]: {host!r} is not a host name or *.domain wildcard")
        hosts.append(name)
    return tuple(hosts)


def _file(body: Mapping[str, Any], key: str, path: str) -> Path:
    raw = body.get(key)
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f"{path}.{key}: missing; give the path of a PEM file")
    file = Path(raw)
    if not file.is_file():
        raise ConfigError(f"{path}.{key}: {raw} is not a readable file; fix the path")
    return file


def parse_tls(t: Mapping[str, Any]) -> TlsConfig:
    """Reads `[tls]`; every certificate names its hosts and both PEM files."""
    check_keys(t, {"certificates", "min_version", "handshake_timeout_s"}, "tls")
    raw = t.get("certificates", [])
    if not isinstance(raw, list):
        raise ConfigError("tls.certificates: expected an array of tables ([[tls.certificates]])")
    certs = []
    for i, body in enumerate(raw):
        path = f"tls.certificates[{i}]"
        if not isinstance(body, Mapping):
            raise ConfigError(f"{path}: expected a table with hosts, cert_file and key_file")
        check_keys(body, {"hosts", "cert_file", "key_file"}, path)
        certs.append(
            TlsCertificate(
                hosts=_hosts(body.get("hosts"), f"{path}.hosts"),
                cert_file=_file(body, "cert_file", path),
                key_file=_file(body, "key_file", path),
            )
        )
    version = t.get("min_version", "1.2")
    if version not in ("1.2", "1.3"):
        raise ConfigError(f'tls.min_version: expected "1.2" or "1.3", got {version!r}')
    timeout = t.get("handshake_timeout_s", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigError(f"tls.handshake_timeout_s: expected a number of seconds > 0, got {timeout!r}")
    return TlsConfig(
        certificates=tuple(certs),
        min_version="1.3" if version == "1.3" else "1.2",
        handshake_timeout_s=float(timeout),
    )
