"""Server health: the passive/active state machine of one server, and the active checker.

`ServerHealth` is pure (no clock: `now` is passed in). A server is taken out of rotation by
  - passive checks: `passive.failures` failed tries in a row on real requests; it comes back
    after `passive.cooldown_s` when the pool has no active checks (and the next failure takes
    it out again), or else only when the active checks bring it back;
  - active checks: `unhealthy_after` failed probes in a row; `healthy_after` good probes in a
    row bring it back (whoever took it out).
Without active checks, a good response on a real request also ends a passive cool-down: it
can only happen in panic mode (origin/pool.py), when every server of the pool is down and the
pool tries them anyway, and it proves the server answers again.

`HealthChecker` is the active part: one task per pool (started by `OriginPool.start()`,
cancelled by `OriginPool.close()`) that probes every server concurrently each interval, each
probe bounded by `timeout_s`, and reports each verdict to the pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from origin.config import HealthCheckConfig, PassiveHealthConfig
from origin.errors import UpstreamError
from origin.upstream import Upstream, UpstreamRequest

__all__ = [
    "HealthChange",
    "HealthChecker",
    "PoolStatus",
    "ProbeTarget",
    "ServerHealth",
    "ServerStatus",
]

log = logging.getLogger("origin.health")

# A probe reads at most this much of the health endpoint's body, then closes the connection.
_MAX_PROBE_BODY_BYTES = 64 * 1024
CLOSE_TIMEOUT_S = 5.0  # close() waits this long for the cancelled checker task


class HealthChange(Enum):
    """What a recorded result did to the server's place in rotation."""

    MARKED_DOWN = "marked_down"
    MARKED_UP = "marked_up"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStatus:
    """A snapshot of one server, for operators and tests."""

    url: str
    available: bool  # may be picked now
    healthy: bool  # not taken out by active checks (or by passive ones when checks run)
    in_flight: int  # tries sent to it whose response has not ended
    consecutive_failures: int  # failed tries on real requests since the last good one
    down_until: float  # monotonic clock; passive cool-down end, 0.0 when never marked down
    last_error: str  # the latest failed try or probe, "" if none


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolStatus:
    """A snapshot of one origin pool, for operators and tests."""

    name: str
    balance: str
    backup: str | None  # the backup pool's name
    servers: tuple[ServerStatus, ...]  # in config order
    requests: int  # requests this pool's servers were asked to serve
    retries: int
    retry_tokens: float  # retries the budget allows right now
    backup_uses: int  # requests handed to the backup pool
    panics: int  # tries sent to a server marked down because every server was down
    in_flight: int = 0  # fetches holding an admission slot (origin/admission.py)
    queued: int = 0  # fetches waiting for a slot
    saturated: int = 0  # fetches turned away with PoolSaturated (queue full or wait too long)


class ServerHealth:
    """Passive and active health of one server; pure, `now` is passed in."""

    __slots__ = (
        "_active",
        "_passive",
        "down_until",
        "failures",
        "healthy",
        "last_error",
        "probe_failures",
        "probe_successes",
    )

    def __init__(self, passive: PassiveHealthConfig, active: HealthCheckConfig) -> None:
        self._passive = passive
        self._active = active
        self.healthy = True  # False: out until good probes bring it back
        self.down_until = 0.0  # passive cool-down (no active checks): skipped while now < this
        self.failures = 0  # consecutive failed tries on real requests
        self.probe_successes = 0  # consecutive good probes
        self.probe_failures = 0  # consecutive failed probes
        self.last_error = ""  # the latest failure of a request or probe, for operators

    def available(self, now: float) -> bool:
        """Whether the server may be picked at `now`."""
        return self.healthy and now >= self.down_until

    def record_success(self) -> HealthChange | None:
        """A try got its response head: the failure streak ends (and a passive cool-down)."""
        self.failures = 0
        if self.down_until and not self._active.enabled:
            self.down_until = 0.0
            return HealthChange.MARKED_UP
        return None

    def record_failure(self, error: str, now: float) -> HealthChange | None:
        """Counts a failed try; the `passive.failures`-th in a row takes the server out."""
        self.failures += 1
        self.last_error = error
        threshold = self._passive.failures
        if threshold == 0 or self.failures < threshold or not self.available(now):
            return None
        if self._active.enabled:
            self.healthy = False
            self.probe_successes = 0  # it needs `healthy_after` fresh good probes
        else:
            self.down_until = now + self._passive.cooldown_s
        return HealthChange.MARKED_DOWN

    def record_probe(self, error: str | None) -> HealthChange | None:
        """Counts one active probe (`error` None = it passed) and flips health at a threshold."""
        if error is None:
            self.probe_successes += 1
            self.probe_failures = 0
            if not self.healthy and self.probe_successes >= self._active.healthy_after:
                self.healthy = True
                self.failures = 0
                self.down_until = 0.0
                return HealthChange.MARKED_UP
            return None
        self.probe_failures += 1
        self.probe_successes = 0
        self.last_error = error
        if self.healthy and self.probe_failures >= self._active.unhealthy_after:
            self.healthy = False
            return HealthChange.MARKED_DOWN
        return None


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One server to probe: how to reach it and the Host header to send."""

    upstream: Upstream
    host: str


class HealthChecker:
    """Probes a pool's servers every `interval_s`; owned by the pool (start, close)."""

    __slots__ = ("_clock", "_config", "_report", "_sleep", "_targets", "_task", "rounds")

    def __init__(
        self,
        config: HealthCheckConfig,
        targets: Sequence[ProbeTarget],
        report: Callable[[int, str | None], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if config.path is None:
            raise ValueError("active health checks need a path")
        self._config = config
        self._targets = tuple(targets)
        self._report = report  # called with (server index, None | why the probe failed)
        self._clock = clock
        self._sleep = sleep  # injected so tests step rounds with Events instead of sleeping
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0  # completed rounds of probes

    def start(self) -> None:
        """Starts the checker task (first round at once); call from a running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="health-check")
            self._task.add_done_callback(_log_crash)

    async def close(self) -> None:
        """Cancels the checker task and waits (bounded) for it to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=CLOSE_TIMEOUT_S)

    async def check_once(self) -> None:
        """Probes every server once, concurrently, and reports each result."""
        results = await asyncio.gather(*(self._probe(t) for t in self._targets))
        for index, error in enumerate(results):
            self._report(index, error)
        self.rounds += 1

    async def _run(self) -> None:
        interval = self._config.interval_s
        while True:
            started = self._clock()
            await self.check_once()
            # A round starts every interval; one that ran long is followed at once.
            await self._sleep(max(0.0, interval - (self._clock() - started)))

    async def _probe(self, target: ProbeTarget) -> str | None:
        """None when the server answered 2xx/3xx within the timeout, else why not."""
        assert self._config.path is not None
        request = UpstreamRequest(method="GET", host=target.host, target=self._config.path)
        try:
            async with asyncio.timeout(self._config.timeout_s):
                response = await target.upstream.fetch(request)
                try:
                    read = 0
                    async for chunk in response.body:
                        read += len(chunk)
                        if read > _MAX_PROBE_BODY_BYTES:
                            break
                finally:
                    response.close()
        except TimeoutError:
            return f"health check: no answer within {self._config.timeout_s}s"
        except UpstreamError as exc:
            return f"health check: {exc}"
        # RFC 9110 §15.3, §15.4: 2xx and 3xx count as healthy.
        if 200 <= response.status < 400:
            return None
        return f"health check: status {response.status}"


def _log_crash(task: asyncio.Task[None]) -> None:
    """Logs a checker that ended by a bug rather than by close()."""
    if not task.cancelled() and task.exception() is not None:
        log.error("health checker stopped", exc_info=task.exception())
