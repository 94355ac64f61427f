"""The one mapping of upstream failures to an HTTP status: timeouts 504, a saturated origin
pool 503 with Retry-After, everything else 502. The handler answers with it when no stale
copy may be served instead.
"""

from __future__ import annotations

from edge.fill.coalesce import FillFailed, FillOutcome
from origin.errors import PoolSaturated, UpstreamError, UpstreamTimeout

__all__ = ["error_status", "retry_after"]


def error_status(exc: BaseException) -> tuple[int, str]:
    """The one mapping of upstream failures to an HTTP status and a one-line reason."""
    if isinstance(exc, FillFailed):
        if exc.outcome in (FillOutcome.WAIT_TIMEOUT, FillOutcome.FILL_TIMEOUT):
            return 504, "origin did not answer in time; retry later"
        if exc.__cause__ is not None:
            return error_status(exc.__cause__)
        return 502, f"origin fetch failed ({exc.outcome.name.lower() if exc.outcome else 'unknown'})"
    if isinstance(exc, UpstreamTimeout):
        return 504, "origin did not answer in time; retry later"
    if isinstance(exc, PoolSaturated):
        return 503, f"origin busy: too many fetches in progress; retry after {exc.retry_after_s}s"
    if isinstance(exc, UpstreamError):
        return 502, f"origin failed: {exc}"
    return 502, "upstream failure"


def retry_after(exc: BaseException | None) -> list[tuple[str, str]]:
    """A Retry-After field for an error that says when to come back (PoolSaturated), else none."""
    while exc is not None and not isinstance(exc, PoolSaturated):
        exc = exc.__cause__ if isinstance(exc, FillFailed) else None
    return [("Retry-After", str(exc.retry_after_s))] if exc is not None else []
