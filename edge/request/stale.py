"""Stale-if-error after the head: a replacement body that breaks must not cost the stale copy.

A request that holds a stale copy it may serve on error (RFC 5861 §4, or the policy's
grace) has not sent anything yet when the fill's head arrives. If it streamed the new body
at once and the origin then cut it short or stalled (a truncated body, a reset mid-body, an
idle timeout), the client would get a truncated response although a good copy was at hand.
So a small replacement (a known length up to `WAIT_FOR_BODY_MAX_BYTES`) is read to its end
from the fill's spool first, and only a whole body is sent; a larger or unknown-length one
streams as usual, since waiting for it would delay the first byte by its whole download.
Each wait is bounded by the fill's idle timeout (edge.fill.inflight). `stale_ok` says whether
a stale copy may be served on error at all.
"""

from __future__ import annotations

from typing import Any

from edge.fill.inflight import Fill, FillFailed
from edge.purge.invalidate import Invalidator, Verdict
from edge.rules.freshness import can_serve_stale_on_error
from edge.rules.site_policy import CachePolicy
from edge.store.entry import EntryMeta

__all__ = ["WAIT_FOR_BODY_MAX_BYTES", "stale_ok", "whole_body"]

WAIT_FOR_BODY_MAX_BYTES = 1024 * 1024  # replacements up to this size arrive whole before sending


async def whole_body(fill: Fill[Any], length: int | None) -> bool:
    """False when the fill's body failed before its end; True when whole or not waited for."""
    if length is None or length > WAIT_FOR_BODY_MAX_BYTES:
        return True
    try:
        async for _ in fill.body():
            pass  # the bytes stay in the spool for delivery; only the outcome matters here
    except FillFailed:
        return False
    return True


def stale_ok(purges: Invalidator, policy: CachePolicy, meta: EntryMeta, now: float) -> bool:
    """RFC 5861 stale-if-error, or the policy's grace (never against must-revalidate).

    Never while the node distrusts its cache (purges may have been missed) or for an entry
    a purge removed: a purged version must not come back because the origin is down.
    """
    if purges.check(meta, now) not in (Verdict.VALID, Verdict.SOFT):
        return False
    if can_serve_stale_on_error(meta, now):
        return True
    grace = policy.grace_s
    return grace > 0 and not meta.must_revalidate and not meta.no_cache and -meta.ttl(now) <= grace
