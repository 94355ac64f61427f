"""Freshness lifetime, age, and the stale windows of a stored response (RFC 9111 §4.2, RFC 5861).

`compute_freshness` runs once when a response is stored (or refreshed by a 304) and fixes
the numbers EntryMeta keeps; `usability` and `can_serve_stale_on_error` run per request on
those numbers only. `updated_headers_from_304` merges a 304's fields into stored ones.

Choices, where the RFC leaves room:
- A qualified no-cache (`no-cache="Set-Cookie"`) is treated like unqualified no-cache:
  validate before every reuse.
- Age: the first value when it is a list (`_age_value` says why); an invalid Age is ignored.
- An Expires that is not an HTTP-date to the letter is "already expired" (§5.3, httpdate).
- must-revalidate and proxy-revalidate switch off both stale windows. s-maxage implies
  proxy-revalidate (§5.2.2.10), so it switches off stale-if-error; stale-while-revalidate
  is kept with s-maxage because the origin asked for it explicitly (`s-maxage=1,
  stale-while-revalidate=59` is the common CDN idiom), and the refresh still happens.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from edge.rules.cache_control import Directives
from edge.rules.httpdate import parse_delta_seconds, parse_http_date
from edge.rules.storable import HEURISTIC_STATUSES
from edge.store.entry import EntryMeta
from origin.hopbyhop import HOP_BY_HOP

__all__ = [
    "Freshness",
    "Usability",
    "can_serve_stale_on_error",
    "compute_freshness",
    "updated_headers_from_304",
    "usability",
]

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Freshness:
    """The freshness numbers of one response, as EntryMeta stores them."""

    lifetime_s: float  # freshness lifetime (§4.2.1) or heuristic lifetime (§4.2.2); 0 = stale
    initial_age_s: float  # corrected_initial_age (§4.2.3)
    swr_s: float  # stale-while-revalidate window after expiry; 0 when forbidden
    sie_s: float  # stale-if-error window after expiry; 0 when forbidden
    must_revalidate: bool  # must-revalidate / proxy-revalidate / s-maxage
    no_cache: bool  # validate before every reuse (§5.2.2.4)
    heuristic: bool  # lifetime came from Last-Modified, not from the origin's word


class Usability(enum.Enum):
    """What a stored response may be used for right now."""

    FRESH = "fresh"  # serve it
    STALE_WHILE_REVALIDATE = "stale-while-revalidate"  # serve it and refresh in the background
    MUST_VALIDATE = "must-validate"  # ask upstream first (conditional request)


def compute_freshness(
    *,
    status: int,
    response_headers: Iterable[tuple[str, str]],
    directives: Directives,
    used_cdn_cc: bool,
    request_time: float,
    response_time: float,
    heuristic_fraction: float = 0.1,
    heuristic_max_s: float = 86400.0,
) -> Freshness:
    """Computes lifetime, initial age and stale windows of a response just received."""
    date = expires = last_modified = age = None
    for name, value in response_headers:
        lname = name.lower()
        # §4.2.1: with several lines, the first occurrence is used.
        if lname == "date":
            date = value if date is None else date
        elif lname == "expires":
            expires = value if expires is None else expires
        elif lname == "last-modified":
            last_modified = value if last_modified is None else last_modified
        elif lname == "age":
            age = value if age is None else age

    # RFC 9110 §6.6.1: a missing or invalid Date is taken as the time the response arrived.
    parsed_date = parse_http_date(date)
    date_value = response_time if parsed_date is None else parsed_date

    heuristic = False
    lifetime: float = 0.0
    # §4.2.1: s-maxage (shared caches), then max-age, then Expires - Date.
    if directives.s_maxage is not None:
        lifetime = float(directives.s_maxage)
    elif directives.max_age is not None:
        lifetime = float(directives.max_age)
    elif expires is not None and not used_cdn_cc:
        # §5.3: an invalid Expires (e.g. "0") means already expired; RFC 9213 §2.2: Expires
        # is ignored when CDN-Cache-Control decided the policy.
        expires_value = parse_http_date(expires)
        lifetime = 0.0 if expires_value is None else max(0.0, expires_value - date_value)
    elif status in HEURISTIC_STATUSES or directives.public:
        # §4.2.2: a fraction of the time since Last-Modified, bounded.
        modified = parse_http_date(last_modified)
        if modified is not None and date_value > modified:
            lifetime = min((date_value - modified) * heuristic_fraction, heuristic_max_s)
            heuristic = True

    # §4.2.3: corrected_initial_age.
    age_value = _age_value(age)
    apparent_age = max(0.0, response_time - date_value)
    response_delay = max(0.0, response_time - request_time)
    corrected_age_value = (age_value or 0) + response_delay
    initial_age = max(apparent_age, corrected_age_value)

    # §5.2.2.2, §5.2.2.8, §5.2.2.10: revalidation required once stale.
    explicit_revalidate = directives.must_revalidate or directives.proxy_revalidate
    must_revalidate = explicit_revalidate or directives.s_maxage is not None
    no_cache = directives.no_cache
    swr = directives.stale_while_revalidate or 0
    sie = directives.stale_if_error or 0
    return Freshness(
        lifetime_s=lifetime,
        initial_age_s=initial_age,
        swr_s=0.0 if explicit_revalidate or no_cache else float(swr),
        sie_s=0.0 if must_revalidate or no_cache else float(sie),
        must_revalidate=must_revalidate,
        no_cache=no_cache,
        heuristic=heuristic,
    )


def _age_value(age: str | None) -> int | None:
    """The Age field's delta-seconds: its first member when it is a list (`7200, 0` -> 7200).

    RFC 9111 §5.1 defines Age as a single delta-seconds, so a list is invalid; it is read like
    several Age lines are (RFC 9110 §5.3: lines and commas are the same list), first value
    first, as §4.2.1 does for duplicates. A malformed first member (`abc`, `-5`, `1.5`) makes
    the field ignored. Never the last or the smallest member: a trailing `0` (appended by a
    careless hop) must not make an old response look new.
    """
    if age is None:
        return None
    return parse_delta_seconds(age.partition(",")[0])


def usability(meta: EntryMeta, now: float) -> Usability:
    """Whether a stored response is fresh, usable stale while revalidating, or must be validated."""
    # §5.2.2.4: no-cache means validate before every reuse, fresh or not.
    if meta.no_cache:
        return Usability.MUST_VALIDATE
    # §4.2: fresh while lifetime > age; ttl() is negative for soft-purged entries.
    if meta.ttl(now) > 0:
        return Usability.FRESH
    # RFC 5861 §3: within swr_s of expiry. A soft-purged entry that was still fresh counts as
    # just expired, so it keeps its window (swr_s is already 0 where revalidation is required).
    if meta.swr_s > 0 and _staleness(meta, now) <= meta.swr_s:
        return Usability.STALE_WHILE_REVALIDATE
    return Usability.MUST_VALIDATE


def can_serve_stale_on_error(meta: EntryMeta, now: float) -> bool:
    """Whether a stored response may stand in for a failed upstream fetch (RFC 5861 §4)."""
    # RFC 9111 §4.2.4: never against must-revalidate / proxy-revalidate / s-maxage / no-cache.
    if meta.must_revalidate or meta.no_cache or meta.sie_s <= 0:
        return False
    return _staleness(meta, now) <= meta.sie_s


def _staleness(meta: EntryMeta, now: float) -> float:
    """Seconds since the response expired by its lifetime (0 while within it)."""
    return max(0.0, meta.age(now) - meta.lifetime_s)


# RFC 9111 §3.2: never taken from a 304. Hop-by-hop fields are never stored (§3.1);
# Content-Length and Content-Range describe the stored body; Content-Encoding too (the
# stored bytes cannot change coding); Age is recomputed from EntryMeta; Set-Cookie in a 304
# is for one client, never for the cache.
_NOT_UPDATED = HOP_BY_HOP | {
    "content-length", "content-range", "content-encoding", "age", "set-cookie", "set-cookie2",
}  # fmt: skip


def updated_headers_from_304(stored: Headers, not_modified: Iterable[tuple[str, str]]) -> Headers:
    """Stored fields with each field the 304 carries replacing its namesakes (§3.2, §4.3.4)."""
    fresh = tuple(not_modified)
    excluded = set(_NOT_UPDATED)
    for name, value in fresh:
        if name.lower() == "connection":
            # RFC 9110 §7.6.1: fields named in Connection are hop-by-hop too.
            excluded.update(v.strip().lower() for v in value.split(","))
    updates: dict[str, list[tuple[str, str]]] = {}
    for name, value in fresh:
        lname = name.lower()
        if lname not in excluded:
            updates.setdefault(lname, []).append((name, value))
    if not updates:
        return stored
    # Replaced fields keep the position of their first stored line; new ones go at the end.
    merged: list[tuple[str, str]] = []
    for name, value in stored:
        lname = name.lower()
        if lname not in updates:
            merged.append((name, value))
        elif updates[lname]:
            merged.extend(updates[lname])
            updates[lname] = []
    for lines in updates.values():
        merged.extend(lines)
    return tuple(merged)
