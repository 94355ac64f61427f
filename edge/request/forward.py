"""Builds the request sent upstream from a client request: what reaches the origin.

Default (transparent): every end-to-end header the client sent, minus hop-by-hop headers
(and any header the client named in Connection), minus the headers the edge owns or that
change routing and identity (X-Forwarded-*, Forwarded, X-Original-URL, ...). A route can
narrow this to an explicit allowlist. The edge then sets X-Forwarded-For and Via itself,
after the Connection-named headers are removed, so a client cannot strip them. For cache
fills the client's own validators and Range are dropped too: the edge fetches the whole
object and asks its own conditional questions. GET and HEAD bodies are never forwarded.
"""

from __future__ import annotations

from collections.abc import Iterable

from edge.server.request import Request
from origin.fieldnames import fold_name
from origin.hopbyhop import HOP_BY_HOP
from origin.upstream import UpstreamRequest

__all__ = ["EDGE_OWNED", "FILL_STRIPPED", "upstream_request"]

# Headers a client must not be able to set on the origin request (routing and identity).
EDGE_OWNED = frozenset(
    {
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-server",
        "x-forwarded-scheme",
        "x-forwarded-ssl",
        "forwarded",
        "x-original-url",
        "x-rewrite-url",
        "x-original-host",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-real-ip",
        "x-host",
        "via",
        "host",
        "content-length",
        "expect",
        "x-edge-hop",
        "x-edge-secret",
        "x-edge-deadline",
    }
)

# A fill fetches the whole object unconditionally (the edge answers these itself).
FILL_STRIPPED = frozenset(
    {
        "range",
        "if-range",
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
    }
)

VIA = "1.1 edgecache"


def _connection_named(request: Request) -> set[str]:
    named: set[str] = set()
    for value in request.headers.getall("connection", ()):
        named.update(fold_name(token.strip()) for token in value.split(",") if token.strip())
    return named


def upstream_request(
    request: Request,
    *,
    method: str | None = None,
    fill: bool,
    allowlist: Iterable[str] | None = None,
    extra: Iterable[tuple[str, str]] = (),
    client_ip: str | None = None,
    target: str | None = None,
) -> UpstreamRequest:
    """The origin request for `request`; `fill` marks a cache fill (whole object, GET).

    `target` replaces the client's target when a cache policy normalised the query string:
    the origin gets exactly what the key holds.
    """
    method = method or request.method
    dropped = _connection_named(request)
    allowed = None if allowlist is None else {fold_name(name) for name in allowlist}
    headers: list[tuple[str, str]] = []
    for name, value in request.headers.items():
        lname = fold_name(name)  # issue 12: X_Forwarded_Host is X-Forwarded-Host to many origins
        if lname in HOP_BY_HOP or lname in EDGE_OWNED or lname in dropped:
            continue
        if fill and lname in FILL_STRIPPED:
            continue
        if allowed is not None and lname not in allowed:
            continue
        headers.append((name, value))
    headers.extend(extra)
    client_ip = request.peer if client_ip is None else client_ip
    if client_ip:
        headers.append(("X-Forwarded-For", client_ip))
    client_via = request.headers.get("via")
    headers.append(("Via", f"{client_via}, {VIA}" if client_via else VIA))
    body = request.body if method not in ("GET", "HEAD") else None
    return UpstreamRequest(
        method=method,
        host=request.headers.get("host", ""),
        target=target or request.target,
        headers=tuple(headers),
        body=body,
    )
