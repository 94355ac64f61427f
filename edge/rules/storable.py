"""May this response be stored by a shared cache? RFC 9111 §3 and §3.5, as a NoStoreReason.

Choices the edge makes inside what the RFC allows:
- Only GET fills the cache (a HEAD miss is filled with a GET upstream).
- No default TTL: without explicit freshness (max-age, s-maxage, Expires, public) a response
  is stored only if its status is heuristically cacheable AND it has a validator (ETag or
  Last-Modified); anything else would be stored but never reusable (NO_FRESHNESS).
- `private` with a field list (`private="Set-Cookie"`) is treated like unqualified private:
  stripping the named fields and storing the rest is allowed but easy to get wrong.
- A 206 from upstream is never stored: the edge always fetches whole objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from edge.rules.cache_control import Directives, request_directives
from edge.rules.outcome import NoStoreReason

__all__ = ["HEURISTIC_STATUSES", "UNDERSTOOD_STATUSES", "no_store_reason"]

# RFC 9110 §15.1: heuristically cacheable by default.
HEURISTIC_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})
# Final status codes whose caching requirements this cache understands (RFC 9111 §3, item 2).
# 304 is absent on purpose: it updates a stored response (§4.3.4), it is never one.
UNDERSTOOD_STATUSES = frozenset(
    {200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 307, 308}
    | set(range(400, 418))
    | {421, 422, 426, 428, 429, 431, 451}
    | set(range(500, 506))
)


def no_store_reason(
    *,
    method: str,
    status: int,
    request_headers: Mapping[str, str],
    response_headers: Iterable[tuple[str, str]],
    directives: Directives,
    authorization: bool,
    allow_set_cookie: bool = False,
    used_cdn_cc: bool = False,
) -> NoStoreReason | None:
    """Why a shared cache must not store this response, or None when it may (RFC 9111 §3)."""
    if method != "GET":
        return NoStoreReason.METHOD
    if status == 206:
        return NoStoreReason.PARTIAL
    if status not in UNDERSTOOD_STATUSES:
        return NoStoreReason.STATUS
    # §5.2.1.5: the request said no-store.
    if request_directives(request_headers).no_store:
        return NoStoreReason.REQUEST_NO_STORE
    # §5.2.2.3: must-understand overrides no-store when the status is understood (it is here).
    if directives.no_store and not directives.must_understand:
        return NoStoreReason.NO_STORE
    # §5.2.2.7: a shared cache never stores private responses.
    if directives.private:
        return NoStoreReason.PRIVATE
    # §3.5: credentials are only cacheable when the response explicitly allows it.
    if authorization and not (
        directives.public or directives.must_revalidate or directives.s_maxage is not None
    ):
        return NoStoreReason.AUTHORIZATION

    has_expires = has_validator = set_cookie = vary_star = False
    for name, value in response_headers:
        lname = name.lower()
        if lname == "expires":
            has_expires = True
        elif lname == "etag" or lname == "last-modified":
            has_validator = True
        elif lname == "set-cookie":
            set_cookie = True
        elif lname == "vary":
            vary_star = vary_star or any(v.strip() == "*" for v in value.split(","))

    # §4.1: Vary: * always fails to match, so storing it only wastes space.
    if vary_star:
        return NoStoreReason.VARY_STAR
    if set_cookie and not allow_set_cookie:
        return NoStoreReason.SET_COOKIE
    # §3, last item: explicit freshness, or heuristic freshness with something to validate.
    # RFC 9213 §2.2: Expires does not count when CDN-Cache-Control decided the policy.
    explicit = (
        directives.max_age is not None
        or directives.s_maxage is not None
        or directives.public
        or (has_expires and not used_cdn_cc)
    )
    if not explicit and not (status in HEURISTIC_STATUSES and has_validator):
        return NoStoreReason.NO_FRESHNESS
    return None
