"""Request checks before any lookup: one Host in normal form, an origin-form target, no reserved
path — pure. Each refusal names its status, its one-line reason and whether the connection
closes; `admit` also puts the Host and Accept-Encoding the key will use into the request.
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.internal_paths import is_internal_target
from edge.rules.accept_encoding import normalise_accept_encoding
from edge.rules.host import normalise_host
from edge.rules.outcome import CacheOutcome
from edge.server.request import Request

__all__ = ["Refusal", "admit"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is answered before any lookup."""

    status: int
    reason: str
    outcome: CacheOutcome
    close: bool = True


def admit(request: Request) -> Refusal | str:
    """The request's host in normal form, or why it is refused.

    On success the request's Host is that normal form (the origin and peers see the host the
    key names) and its Accept-Encoding is folded to br, gzip or identity before it can enter
    a Vary key (issue 12).
    """
    host = request.host
    if not host or len(request.headers.getall("host", ())) != 1:
        return Refusal(400, "exactly one Host header is required; send the site's host name", _BAD)
    normal = normalise_host(host)  # issue 12: a Host never carries a path, query or escape
    if normal is None:
        return Refusal(400, "Host must be a host name or address with an optional port", _BAD)
    request.headers["Host"] = normal
    accept = ",".join(request.headers.getall("accept-encoding", ())) or None
    request.headers["Accept-Encoding"] = normalise_accept_encoding(accept)
    if not request.target.startswith("/"):
        return Refusal(400, "request target must be an absolute path such as /index.html", _BAD)
    if is_internal_target(request.target):  # issue 12: cluster endpoints never from the public port
        return Refusal(
            404, "no such resource; /_edge/ is reserved for the edge's own use", CacheOutcome.NOT_FOUND, False
        )
    return normal


_BAD = CacheOutcome.BAD_REQUEST
