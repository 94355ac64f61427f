"""RequestContext: one request's facts on the slow path, fixed once the route is known.

`Served` is the one mutable part: the branches note where the answer came from (the tier
and the upstream), which the access log and the metrics read when the request ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.rules.key import CacheKey
from edge.rules.site_policy import CachePolicy
from edge.server.request import Request
from edge.server.writer import Writer
from origin.upstream import Upstream

__all__ = ["RequestContext", "Served"]


class Served:
    """Where one request's answer came from; written by the branch that answers it."""

    __slots__ = ("route", "tier", "upstream")

    def __init__(self) -> None:
        self.route = ""  # the route's origin pool ("" before a route matched)
        self.tier: str | None = None  # memory, disk, hot, peer or origin (edge.metrics.counts.TIERS)
        self.upstream = ""  # the origin server's URL or "peer:<name>" that sent the body


@dataclass(frozen=True, slots=True)
class RequestContext:
    """One request's state on the slow path."""

    request: Request
    writer: Writer
    upstream: Upstream  # the route's origin pool
    allowlist: tuple[str, ...] | None  # request fields forwarded upstream; None = transparent default
    key: CacheKey
    from_peer: bool  # came through the internal listener: never forwarded to a peer
    policy: CachePolicy  # what to do where the origin is silent
    served: Served  # where the answer came from (filled in as the request is answered)

    @property
    def client_ip(self) -> str:
        """The client's address for X-Forwarded-For (a peer already set it to the client's)."""
        request = self.request
        return request.headers.get("x-forwarded-for", request.peer) if self.from_peer else request.peer
