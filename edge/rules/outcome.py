"""Named outcomes of a request (CacheOutcome, NoStoreReason) and the Cache-Status header.

Every "no" the edge says about storing has a NoStoreReason; every request ends in one
CacheOutcome, from lookup to the access log (`log_name`). `cache_status` is the one place
that renders an outcome as an RFC 9211 Cache-Status member for this cache (`edgecache`), a
Structured Fields item with parameters (RFC 8941), for hits, misses, passes and errors alike:

    edgecache; hit; ttl=42
    edgecache; fwd=uri-miss; stored
    edgecache; fwd=stale; fwd-status=304; ttl=60
    edgecache; hit; ttl=-3; detail=stale-while-revalidate

In a cluster each node names itself (`edgecache-n1`), and a node that forwarded a request to
the key's owner puts the owner's member first (RFC 9211 §2: the cache nearest the origin
first), so a hit served through a peer reads

    edgecache-n2; hit; ttl=42, edgecache-n1; fwd=uri-miss; fwd-status=200; detail=peer-n2

A stale-while-revalidate hit is a `hit` with a negative ttl: RFC 9211 §2.1 defines `hit` as
"not forwarded", which is true of the client's request; the background refresh is another
request. A stale-if-error answer went forward, so it is `fwd=stale` with the failing status.
"""

from __future__ import annotations

import math
import re
from enum import Enum

__all__ = [
    "CACHE_NAME",
    "CacheOutcome",
    "Fwd",
    "NoStoreReason",
    "cache_name",
    "cache_status",
    "is_hit_member",
    "reason_detail",
    "with_upstream",
]

CACHE_NAME = "edgecache"


class NoStoreReason(Enum):
    """Why a response was not stored (RFC 9111 §3, plus the edge's own limits)."""

    METHOD = "method"  # not GET
    STATUS = "status"  # not final, not understood, or a 304
    NO_STORE = "no-store"  # response no-store (§5.2.2.5)
    PRIVATE = "private"  # response private, qualified or not (§5.2.2.7)
    AUTHORIZATION = "authorization"  # request had credentials, response did not allow it (§3.5)
    SET_COOKIE = "set-cookie"  # response sets a cookie and the route does not allow storing it
    VARY_STAR = "vary-star"  # Vary: * never matches a later request (§4.1)
    NO_FRESHNESS = "no-freshness"  # no explicit or heuristic freshness, or nothing to validate
    REQUEST_NO_STORE = "request-no-store"  # request no-store (§5.2.1.5)
    TOO_LARGE = "too-large"  # body exceeds the store's per-object limit
    PARTIAL = "partial"  # 206 from upstream: the edge stores whole objects only
    UPSTREAM_ERROR = "upstream-error"  # the fetch failed before a response head arrived
    INCOMPLETE = "incomplete"  # the body ended early or failed mid-stream
    PURGED = "purged"  # a matching purge arrived while the fill was in flight
    BYPASS = "bypass"  # the route is configured not to cache
    # issue 12: what the edge refuses to keep on a lifetime of its own (edge.rules.deception)
    CREDENTIALS = "credentials"  # request had Cookie/Authorization, origin did not say shareable
    AMBIGUOUS_PATH = "ambiguous-path"  # `;`, encoded separators or dot segments: type unknowable
    UNKNOWN_EXTENSION = "unknown-extension"  # no media types known for the path's extension
    TYPE_MISMATCH = "type-mismatch"  # Content-Type disagrees with the path's extension
    REQUEST_ERROR = "request-error"  # 400/413/414/431: one request's fault, never the URL's answer


class CacheOutcome(Enum):
    """How one request was answered."""

    HIT = "hit"  # fresh stored response
    STALE_HIT = "stale-hit"  # stale response served while revalidating (RFC 5861 §3)
    STALE_ERROR = "stale-error"  # stale response served because upstream failed (RFC 5861 §4)
    MISS = "miss"  # fetched from upstream (stored or not: see `stored`)
    PEER_HIT = "peer-hit"  # the region's owner of the key answered from its cache (no origin fetch)
    REVALIDATED = "revalidated"  # stored response validated by a 304 and served
    EXPIRED = "expired"  # stored response was stale; validation brought a new full response
    PASS = "pass"  # the request cannot use a cache (e.g. POST)
    BYPASS = "bypass"  # configuration said not to use the cache
    COLLAPSED = "collapsed"  # waited on another request's fill and streamed from it
    ERROR = "error"  # nothing to serve: upstream failed and no usable stale copy
    CLIENT_GONE = "client-gone"  # the client left before the answer was sent
    BAD_REQUEST = "bad-request"  # refused before any lookup (400): no Cache-Status
    NO_ROUTE = "no-route"  # no route for the host (404): no Cache-Status
    NOT_FOUND = "not-found"  # a reserved path (/_edge/ on the public port, 404): no Cache-Status

    @property
    def log_name(self) -> str:
        """The name the access log writes (a refetch of an expired entry is logged as a miss)."""
        return _LOG_NAME.get(self, self.value)


# Where the access log has always used another word than the outcome's value.
_LOG_NAME: dict[CacheOutcome, str] = {CacheOutcome.STALE_HIT: "stale", CacheOutcome.EXPIRED: "miss"}


class Fwd(Enum):
    """RFC 9211 §2.2 `fwd` values: why the request went forward."""

    BYPASS = "bypass"
    METHOD = "method"
    URI_MISS = "uri-miss"
    VARY_MISS = "vary-miss"
    MISS = "miss"
    REQUEST = "request"
    STALE = "stale"
    PARTIAL = "partial"


# hit (RFC 9211 §2.1) or the default fwd reason (§2.2) per outcome; None = a hit. The
# outcomes of requests the cache never looked at (bad request, no route, client gone) have none.
_FWD: dict[CacheOutcome, Fwd | None] = {
    CacheOutcome.HIT: None,
    CacheOutcome.STALE_HIT: None,
    CacheOutcome.STALE_ERROR: Fwd.STALE,
    CacheOutcome.MISS: Fwd.MISS,
    CacheOutcome.PEER_HIT: Fwd.URI_MISS,
    CacheOutcome.REVALIDATED: Fwd.STALE,
    CacheOutcome.EXPIRED: Fwd.STALE,
    CacheOutcome.PASS: Fwd.METHOD,
    CacheOutcome.BYPASS: Fwd.BYPASS,
    CacheOutcome.COLLAPSED: Fwd.MISS,
    CacheOutcome.ERROR: Fwd.MISS,
}
_DEFAULT_DETAIL = {
    CacheOutcome.STALE_HIT: "stale-while-revalidate",
    CacheOutcome.STALE_ERROR: "stale-if-error",
}
# RFC 8941 §3.3.4 sf-token.
_SF_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")


def cache_name(node: str | None) -> str:
    """This cache's member name: `edgecache`, or `edgecache-<node>` for a node of a cluster."""
    if node is None:
        return CACHE_NAME
    name = f"{CACHE_NAME}-{node}"
    return name if _SF_TOKEN.fullmatch(name) else CACHE_NAME + "-" + re.sub(r"[^A-Za-z0-9_.-]", "_", node)


def with_upstream(upstream: str | None, own: str) -> str:
    """RFC 9211 §2: the upstream caches' members (nearest the origin first), then this cache's."""
    return own if not upstream else f"{upstream}, {own}"


def is_hit_member(value: str | None) -> bool:
    """True when the last member of a Cache-Status value is a fresh `hit` (the upstream served it)."""
    if not value:
        return False
    last = value.rpartition(",")[2]
    params = [p.strip() for p in last.split(";")]
    return "hit" in params[1:] and not any(p.startswith("ttl=-") for p in params)


def reason_detail(reason: NoStoreReason) -> str:
    """The kebab-case token naming a NoStoreReason in Cache-Status `detail` and logs."""
    return reason.value


def cache_status(
    outcome: CacheOutcome,
    *,
    ttl: float | None = None,
    stored: bool | None = None,
    fwd_status: int | None = None,
    collapsed: bool = False,
    detail: str | None = None,
    fwd: Fwd | None = None,
    name: str = CACHE_NAME,
) -> str:
    """Renders one RFC 9211 Cache-Status member; `fwd` overrides the outcome's default reason."""
    if outcome not in _FWD:
        raise ValueError(f"{outcome.name} answers carry no Cache-Status")
    parts = [name]
    reason = _FWD[outcome] if fwd is None else fwd
    if reason is None:
        parts.append("hit")
    else:
        parts.append("fwd=" + reason.value)
        if fwd_status is not None:
            parts.append(f"fwd-status={int(fwd_status)}")
    # §2.4: ttl is an integer and negative once stale; flooring keeps 0.4 s past expiry stale.
    if ttl is not None and math.isfinite(ttl):
        parts.append(f"ttl={math.floor(ttl)}")
    if stored:
        parts.append("stored")
    if collapsed or outcome is CacheOutcome.COLLAPSED:
        parts.append("collapsed")
    if detail is None:
        detail = _DEFAULT_DETAIL.get(outcome)
    if detail is not None:
        parts.append("detail=" + _sf_token_or_string(detail))
    return "; ".join(parts)


def _sf_token_or_string(value: str) -> str:
    """Serialises `value` as an sf-token when it is one, else as an sf-string (§2.8: either)."""
    if _SF_TOKEN.fullmatch(value):
        return value
    # sf-string holds printable ASCII only; anything else is replaced rather than dropped.
    safe = "".join(ch if " " <= ch <= "~" else "?" for ch in value)
    return '"' + safe.replace("\\", "\\\\").replace('"', '\\"') + '"'
