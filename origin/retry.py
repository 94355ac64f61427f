"""Retry policy of a pool: which methods may be retried, why a try was not, and the budget.

`RetryBudget` caps retries pool-wide so an outage never multiplies the load on the origins by
more than `budget_ratio`; `NoRetryReason` names every "no" origin/pool.py gives a retry.
"""

from __future__ import annotations

from enum import Enum

from origin.config import RetryConfig
from origin.errors import ConnectError, UpstreamError

__all__ = ["IDEMPOTENT_METHODS", "NoRetryReason", "RetryBudget", "retry_denied"]

# RFC 9110 §9.2.2: requests whose intended effect is the same however often they are sent.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class NoRetryReason(Enum):
    """Why a failed try was not tried again (the last error is raised, or the backup asked)."""

    NOT_RETRYABLE = "not_retryable"  # the error says another try cannot help
    NOT_IDEMPOTENT = "not_idempotent"  # POST/PATCH/... reached the origin: it may have acted
    ATTEMPTS_USED = "attempts_used"  # retry.attempts tries made
    NO_OTHER_SERVER = "no_other_server"  # every available server was tried already
    DEADLINE = "deadline"  # the request's total timeout has run out
    BUDGET_EXHAUSTED = "budget_exhausted"  # the pool-wide retry budget is spent


class RetryBudget:
    """Caps retries at about `budget_ratio` of requests — pure bookkeeping, no clock.

    A token bucket: each request deposits `budget_ratio` tokens, each retry spends one, and
    the bucket holds at most `budget_burst` (it starts full). So over any stretch of N
    requests, retries <= budget_burst + budget_ratio x N; the cap makes the allowance a
    sliding one, so a long quiet spell cannot bank a retry storm.
    """

    __slots__ = ("_burst", "_ratio", "_tokens")

    def __init__(self, config: RetryConfig) -> None:
        self._ratio = config.budget_ratio
        self._burst = config.budget_burst
        self._tokens = config.budget_burst

    @property
    def tokens(self) -> float:
        """Retries currently allowed."""
        return self._tokens

    def record_request(self) -> None:
        """Deposits one request's share of retries."""
        self._tokens = min(self._burst, self._tokens + self._ratio)

    def try_spend(self) -> bool:
        """Takes one retry from the budget; False when none is left."""
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


def retry_denied(
    exc: UpstreamError, method: str, tries: int, config: RetryConfig, time_left: float
) -> NoRetryReason | None:
    """Why failed try number `tries` may not be retried, or None (the budget is asked later)."""
    if not exc.retryable:
        return NoRetryReason.NOT_RETRYABLE
    # A refused connection never carried the request, so even POST may go elsewhere.
    if method.upper() not in IDEMPOTENT_METHODS and not isinstance(exc, ConnectError):
        return NoRetryReason.NOT_IDEMPOTENT
    if tries >= config.attempts:
        return NoRetryReason.ATTEMPTS_USED
    if time_left <= 0:
        return NoRetryReason.DEADLINE
    return None
