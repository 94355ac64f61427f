"""Conditional requests against a stored response: 304, 412 or go on (RFC 9110 §13).

`evaluate_preconditions` applies If-Match, If-Unmodified-Since, If-None-Match and
If-Modified-Since in the §13.2.2 order to the stored validators. The entity-tag helpers
here (list parsing, strong and weak comparison, §8.8.3) are shared with ranges (If-Range).
A malformed entity-tag member is skipped; a malformed date makes its condition ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edge.rules.httpdate import parse_http_date

__all__ = [
    "ETag",
    "evaluate_preconditions",
    "parse_etag",
    "parse_etag_list",
    "strong_match",
    "weak_match",
]


@dataclass(frozen=True, slots=True)
class ETag:
    """One entity-tag: its opaque-tag (quotes included) and whether it is weak."""

    opaque: str
    weak: bool


def parse_etag(value: str | None) -> ETag | None:
    """Parses one entity-tag (`"x"` or `W/"x"`); None when absent or malformed."""
    if value is None:
        return None
    tags, star = parse_etag_list(value)
    return tags[0] if len(tags) == 1 and not star else None


def parse_etag_list(value: str) -> tuple[list[ETag], bool]:
    """Parses `If-Match` / `If-None-Match`: the entity-tags, and whether the value is `*`."""
    if value.strip() == "*":
        return [], True
    tags: list[ETag] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch in " \t,":
            i += 1
            continue
        weak = value.startswith("W/", i)
        start = i + 2 if weak else i
        end = value.find('"', start + 1) if start < n and value[start] == '"' else -1
        if end < 0:
            # Malformed member: skip to the next comma (etagc may hold commas only when quoted).
            comma = value.find(",", i)
            i = n if comma < 0 else comma + 1
            continue
        tags.append(ETag(value[start : end + 1], weak))
        i = end + 1
    return tags, False


def strong_match(a: ETag, b: ETag) -> bool:
    """§8.8.3.2 strong comparison: both strong and the same opaque-tag."""
    return not a.weak and not b.weak and a.opaque == b.opaque


def weak_match(a: ETag, b: ETag) -> bool:
    """§8.8.3.2 weak comparison: the same opaque-tag, weakness ignored."""
    return a.opaque == b.opaque


def evaluate_preconditions(
    *,
    method: str,
    request_headers: Mapping[str, str],
    etag: str | None,
    last_modified: str | None,
) -> int | None:
    """The 304 or 412 the preconditions call for, or None to serve normally (§13.2.2)."""
    # Step 1: If-Match, strong comparison; `*` matches the representation we hold.
    if_match = request_headers.get("If-Match")
    if if_match is not None:
        tags, star = parse_etag_list(if_match)
        current = parse_etag(etag)
        if not star and (current is None or not any(strong_match(t, current) for t in tags)):
            return 412
    else:
        # Step 2: If-Unmodified-Since, only without If-Match; unknown dates are ignored.
        ius = parse_http_date(request_headers.get("If-Unmodified-Since"))
        if ius is not None:
            modified = parse_http_date(last_modified)
            if modified is not None and modified > ius:
                return 412
    # Step 3: If-None-Match, weak comparison.
    if_none_match = request_headers.get("If-None-Match")
    if if_none_match is not None:
        # Fast path: the client echoes the very ETag we hold (the usual revalidation).
        matched = etag is not None and if_none_match == etag
        if not matched:
            tags, star = parse_etag_list(if_none_match)
            current = parse_etag(etag)
            matched = star or (current is not None and any(weak_match(t, current) for t in tags))
        if matched:
            return 304 if method in ("GET", "HEAD") else 412
        return None
    # Step 4: If-Modified-Since, only for GET/HEAD and only without If-None-Match.
    if method in ("GET", "HEAD"):
        ims = parse_http_date(request_headers.get("If-Modified-Since"))
        if ims is not None:
            modified = parse_http_date(last_modified)
            if modified is not None and modified <= ims:
                return 304
    return None
