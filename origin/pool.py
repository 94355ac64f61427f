"""OriginPool: an Upstream over a pool's servers, with round-robin, failover and a retry budget.

One fetch picks the next available server round-robin. If it fails before the response
head arrived with a retryable error and the method is idempotent, the request is tried
again on the next server (preferring servers not yet tried), up to `retry.attempts` tries
in all and only while the pool-wide retry budget allows. Once a head has arrived the
response is returned as it is, 5xx included: nothing is retried after that point.

Passive health: `down_after_failures` consecutive connect failures mark a server down for
`down_cooldown_s`; after that it is tried again (one more failure marks it down again).
Active health checks (origin/health.py, later) report through `OriginPool.set_healthy`.

Note: aiohttp itself resends an idempotent request once when its connection drops before
the head (RFC 9112 §9.3.1, meant for stale keep-alive connections). That resend happens
inside one try here and is not counted against the retry budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import aiohttp

from origin.client import OriginClient
from origin.config import OriginPoolConfig, RetryConfig
from origin.errors import ConnectError, NoServerAvailable, UpstreamError
from origin.upstream import UpstreamRequest, UpstreamResponse

__all__ = [
    "IDEMPOTENT_METHODS",
    "NoRetryReason",
    "OriginPool",
    "RetryBudget",
    "ServerHealth",
    "ServerStatus",
]

# RFC 9110 §9.2.2: requests whose intended effect is the same however often they are sent.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class NoRetryReason(Enum):
    """Why a failed fetch was not tried again (the last error is raised)."""

    NOT_RETRYABLE = "not_retryable"  # the error says another try cannot help
    NOT_IDEMPOTENT = "not_idempotent"  # POST/PATCH/...: the origin may have acted on it
    ATTEMPTS_USED = "attempts_used"  # retry.attempts tries made
    BUDGET_EXHAUSTED = "budget_exhausted"  # the pool-wide retry budget is spent
    NO_SERVER = "no_server"  # every server is marked down


class RetryBudget:
    """Caps retries at about `budget_ratio` of requests — pure bookkeeping, no clock.

    A token bucket: each request deposits `budget_ratio` tokens, each retry spends one, and
    the bucket holds at most `budget_burst` (it starts full). Over any stretch where the
    bucket neither empties nor fills, retries <= budget_ratio x requests; the cap makes the
    allowance a sliding one, so a long quiet spell cannot bank a retry storm.
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStatus:
    """A snapshot of one server's health, for status pages and tests."""

    url: str
    available: bool  # may be picked now
    consecutive_failures: int  # connect failures since the last success
    down_until: float  # monotonic clock; 0.0 when not marked down by failures
    healthy: bool  # the active health check's verdict (True until a checker says otherwise)


class ServerHealth:
    """Passive (and, through `healthy`, active) health of one server; pure, `now` is passed in."""

    __slots__ = ("_cooldown_s", "_threshold", "down_until", "failures", "healthy")

    def __init__(self, threshold: int, cooldown_s: float) -> None:
        self._threshold = threshold
        self._cooldown_s = cooldown_s
        self.failures = 0  # consecutive connect failures
        self.down_until = 0.0  # skipped while now < down_until
        self.healthy = True  # set by an active checker; False takes the server out

    def available(self, now: float) -> bool:
        """Whether the server may be picked at `now`."""
        return self.healthy and now >= self.down_until

    def record_success(self) -> None:
        """A connection was opened: the failure streak ends."""
        self.failures = 0
        self.down_until = 0.0

    def record_connect_failure(self, now: float) -> None:
        """Counts a connect failure; the threshold-th in a row marks the server down."""
        self.failures += 1
        if self.failures >= self._threshold:
            self.down_until = now + self._cooldown_s


class OriginPool:
    """Fetches from one of a pool's servers; an Upstream."""

    __slots__ = (
        "_budget",
        "_clients",
        "_clock",
        "_config",
        "_health",
        "_next",
        "no_retries",
        "retries",
    )

    def __init__(
        self,
        config: OriginPoolConfig,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._clients = tuple(OriginClient(s, config.timeouts, session) for s in config.servers)
        self._health = tuple(
            ServerHealth(config.down_after_failures, config.down_cooldown_s) for _ in config.servers
        )
        self._budget = RetryBudget(config.retry)
        self._clock = clock  # monotonic seconds; injected so tests control cool-downs
        self._next = 0  # round-robin cursor
        self.retries = 0  # retries made, for metrics
        self.no_retries: dict[NoRetryReason, int] = {
            r: 0 for r in NoRetryReason
        }  # counted per reason

    @property
    def name(self) -> str:
        """The pool's name from config."""
        return self._config.name

    @property
    def budget(self) -> RetryBudget:
        """The pool-wide retry budget."""
        return self._budget

    def status(self) -> tuple[ServerStatus, ...]:
        """The health of every server, in config order."""
        now = self._clock()
        return tuple(
            ServerStatus(
                url=c.server.base,
                available=h.available(now),
                consecutive_failures=h.failures,
                down_until=h.down_until,
                healthy=h.healthy,
            )
            for c, h in zip(self._clients, self._health)
        )

    def set_healthy(self, url: str, healthy: bool) -> None:
        """The seam for active health checks: takes a server out of (or back into) rotation."""
        for client, health in zip(self._clients, self._health):
            if client.server.base == url.rstrip("/"):
                health.healthy = healthy
                return
        raise KeyError(url)

    def _pick(self, tried: set[int]) -> int | None:
        """The next available server round-robin, preferring untried ones; None if all are down."""
        now = self._clock()
        n = len(self._clients)
        fallback = None
        for step in range(n):
            i = (self._next + step) % n
            if not self._health[i].available(now):
                continue
            if i not in tried:
                self._next = (i + 1) % n
                return i
            if fallback is None:
                fallback = i
        if fallback is not None:
            self._next = (fallback + 1) % n
        return fallback

    def _no_retry(self, reason: NoRetryReason, exc: UpstreamError) -> UpstreamError:
        self.no_retries[reason] += 1
        return exc

    async def fetch(self, request: UpstreamRequest) -> UpstreamResponse:
        """Sends the request to a server, failing over before the head; raises the last error."""
        self._budget.record_request()
        idempotent = request.method.upper() in IDEMPOTENT_METHODS
        tried: set[int] = set()
        attempt = 0
        while True:
            index = self._pick(tried)
            if index is None:
                raise NoServerAvailable(f"pool {self.name!r}: every server is down")
            attempt += 1
            tried.add(index)
            try:
                response = await self._clients[index].fetch(request)
            except UpstreamError as exc:
                if isinstance(exc, ConnectError):
                    self._health[index].record_connect_failure(self._clock())
                reason = self._retry_denied(exc, idempotent, attempt)
                if reason is not None:
                    raise self._no_retry(reason, exc)
                self.retries += 1
                continue
            self._health[index].record_success()
            return response

    def _retry_denied(
        self, exc: UpstreamError, idempotent: bool, attempt: int
    ) -> NoRetryReason | None:
        """Why failed try number `attempt` may not be retried, or None to retry (spends budget)."""
        if not exc.retryable:
            return NoRetryReason.NOT_RETRYABLE
        if not idempotent:
            return NoRetryReason.NOT_IDEMPOTENT
        if attempt >= self._config.retry.attempts:
            return NoRetryReason.ATTEMPTS_USED
        if not any(h.available(self._clock()) for h in self._health):
            return NoRetryReason.NO_SERVER
        if not self._budget.try_spend():
            return NoRetryReason.BUDGET_EXHAUSTED
        return None
