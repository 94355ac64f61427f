"""Which error responses may be stored even when the origin gives them freshness — pure.

A 400, 413, 414 or 431 answers one request's own fault: an oversized header line, a
malformed field, a target too long for the origin's buffers. Storing it under the URL
lets one attacker's request decide what every later client gets (cache-poisoned denial of
service, issue 12), so these are never stored by default, whatever `max-age` they carry.
Nor is any 5xx: a failing origin's answer is not the resource. A `[[policies]]` rule can
list statuses it does store (`store_error_statuses`), for origins whose errors are stable.
"""

from __future__ import annotations

from collections.abc import Collection

from edge.rules.outcome import NoStoreReason

__all__ = ["REQUEST_ERROR_STATUSES", "error_store_reason", "is_never_stored_status"]

# RFC 9110 §15.5.1, §15.5.14, §15.5.15; RFC 6585 §5: errors caused by the request itself
REQUEST_ERROR_STATUSES = frozenset({400, 413, 414, 431})


def is_never_stored_status(status: int) -> bool:
    """True for the statuses this module refuses by default (what a policy may opt back in)."""
    return status in REQUEST_ERROR_STATUSES or 500 <= status <= 599


def error_store_reason(status: int, stored: Collection[int] = ()) -> NoStoreReason | None:
    """Why a response of `status` is not stored, or None; `stored` lists the policy's exceptions."""
    if status in stored:
        return None
    if status in REQUEST_ERROR_STATUSES:
        return NoStoreReason.REQUEST_ERROR
    if 500 <= status <= 599:
        return NoStoreReason.STATUS
    return None
