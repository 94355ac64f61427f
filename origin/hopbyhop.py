"""Hop-by-hop header removal: what a proxy must not forward, in either direction — pure.

A proxy drops the connection-specific fields (RFC 9110 §7.6.1) plus the classic hop-by-hop
set from RFC 2616 §13.5.1 that servers and clients still send (Keep-Alive,
Proxy-Connection, ...), and every field the `Connection` header names.

`HOP_BY_HOP` is the one list of them: the origin client, the edge's forwarded requests, the
fields a cache replays and those a 304 may not update all start from it.
"""

from __future__ import annotations

from collections.abc import Iterable

from origin.fieldnames import fold_name

__all__ = ["HOP_BY_HOP", "connection_options", "strip_hop_by_hop"]

Headers = tuple[tuple[str, str], ...]

# Lower-case names; compare with fold_name(name) (`_` read as `-`).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)


def connection_options(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The lower-case field names listed in every Connection header (RFC 9110 §7.6.1)."""
    names: set[str] = set()
    for name, value in headers:
        if fold_name(name) == "connection":
            names.update(fold_name(token.strip()) for token in value.split(","))
    names.discard("")
    return frozenset(names)


def strip_hop_by_hop(headers: Iterable[tuple[str, str]]) -> Headers:
    """Drops hop-by-hop fields and those the Connection header names; keeps order and duplicates."""
    fields = tuple(headers)
    # RFC 9110 §7.6.1: a proxy removes every field named in Connection, then Connection itself.
    drop = HOP_BY_HOP | connection_options(fields)
    return tuple((name, value) for name, value in fields if fold_name(name) not in drop)
