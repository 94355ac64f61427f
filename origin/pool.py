"""OriginPool: an Upstream over a pool's servers: balancing, health, retries, backup pool.

One fetch asks the Balancer (round robin or least outstanding) for an available server. A
try that fails before the response head with a retryable error is retried on ANOTHER
server: for idempotent methods, or for any method when the connection was never opened;
at most `retry.attempts` tries in all, only while the request's total timeout has time left
(a retry's head and body are cut off at that deadline) and while the pool-wide RetryBudget
allows, so an outage never multiplies the load by more than `budget_ratio`. Once a head
has arrived the response is returned as it is, 5xx included.

Failed tries feed passive health and good probes feed active health (origin/health.py).
The backup pool serves when every server here is out of rotation, or when every try of a
request failed to connect; it keeps its own budget and health. A pool without a backup whose
servers are ALL out of rotation is in panic mode: it tries them anyway, least recently failed
first (origin/balance.py `panic_pick`), so health checks never leave it nothing to try; a
panic try that succeeds ends a passive cool-down (with active checks, the probes decide).

A request that brings a head deadline (origin/deadline.py: the node that asked us stops
waiting then) has every try's head cut off at it too; that cut raises DeadlineExceeded, which
is neither retried nor counted against the server.

A fetch holds an admission slot (origin/admission.py) from its first try to its body's end.

Note: aiohttp itself resends an idempotent request once when its connection drops before
the head (RFC 9112 §9.3.1, meant for stale keep-alive connections). That resend happens
inside one try here and is not counted against the retry budget.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

import aiohttp

from origin.admission import FetchGate
from origin.balance import Balancer, panic_pick, released_at_end
from origin.client import OriginClient
from origin.config import OriginPoolConfig, ServerConfig
from origin.deadline import head_deadline
from origin.errors import (
    ConnectError,
    DeadlineExceeded,
    NoServerAvailable,
    UpstreamError,
    UpstreamTimeout,
)
from origin.health import (
    HealthChange,
    HealthChecker,
    PoolStatus,
    ProbeTarget,
    ServerHealth,
    ServerStatus,
)
from origin.retry import IDEMPOTENT_METHODS, NoRetryReason, RetryBudget, retry_denied
from origin.tls import client_context
from origin.upstream import Upstream, UpstreamRequest, UpstreamResponse

__all__ = [
    "IDEMPOTENT_METHODS",
    "NoRetryReason",
    "OriginPool",
    "PoolStatus",
    "RetryBudget",
    "ServerStatus",
    "build_pools",
]

log = logging.getLogger("origin.pool")

ClientFactory = Callable[[ServerConfig], Upstream]


class OriginPool:
    """Fetches from one of a pool's servers, else from its backup pool; an Upstream."""

    __slots__ = (
        "_backup",
        "_balancer",
        "_budget",
        "_checker",
        "_clients",
        "_clock",
        "_config",
        "_failure_seq",
        "_gate",
        "_health",
        "_in_flight",
        "_last_failed",
        "_panicking",
        "backup_uses",
        "no_retries",
        "panics",
        "requests",
        "retries",
    )

    def __init__(
        self,
        config: OriginPoolConfig,
        session: aiohttp.ClientSession | None,
        *,
        backup: OriginPool | None = None,
        clock: Callable[[], float] = time.monotonic,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self._config = config
        if client_factory is None:
            if session is None:
                raise ValueError("an OriginPool needs a session or a client_factory")
            shared, tls = session, client_context(config)  # verified by default (origin/tls.py)

            def client_factory(server: ServerConfig) -> OriginClient:
                return OriginClient(server, config.timeouts, shared, config.rewrite, tls)

        self._clients = tuple(client_factory(s) for s in config.servers)
        self._health = tuple(ServerHealth(config.passive, config.health) for _ in config.servers)
        self._in_flight = [0] * len(config.servers)  # tries from head request to body end
        # failure order for panic mode: _last_failed[i] is the sequence number of server i's
        # latest failed try or probe (0 = never failed); _failure_seq counts them pool-wide
        self._last_failed = [0] * len(config.servers)
        self._failure_seq = 0
        self._panicking = False  # the latest pick was a panic pick (logged on each flip)
        self._balancer = Balancer(config.balance)
        self._budget = RetryBudget(config.retry)
        self._gate = FetchGate(config.admission, config.name)
        self._backup = backup
        self._clock = clock  # monotonic seconds for health; injected so tests move time
        self._checker: HealthChecker | None = None
        if config.health.enabled:
            targets = [
                ProbeTarget(client, config.health.host or server.netloc)
                for client, server in zip(self._clients, config.servers, strict=False)
            ]
            self._checker = HealthChecker(config.health, targets, self._record_probe, clock=clock)
        self.requests = 0  # requests this pool's servers were asked to serve
        self.retries = 0  # retries made
        self.backup_uses = 0  # requests handed to the backup pool
        self.panics = 0  # tries sent to a down server because every server was down
        self.no_retries: dict[NoRetryReason, int] = {r: 0 for r in NoRetryReason}

    @property
    def name(self) -> str:
        """The pool's name from config."""
        return self._config.name

    @property
    def budget(self) -> RetryBudget:
        """The pool-wide retry budget."""
        return self._budget

    @property
    def gate(self) -> FetchGate:
        """The pool's admission slots and queue."""
        return self._gate

    @property
    def checker(self) -> HealthChecker | None:
        """The active health checker, when the pool has a health_path."""
        return self._checker

    def start(self) -> None:
        """Starts active health checks (if configured); call from a running loop."""
        if self._checker is not None:
            self._checker.start()

    async def close(self) -> None:
        """Stops active health checks; the session is closed by its owner."""
        if self._checker is not None:
            await self._checker.close()

    def status(self) -> PoolStatus:
        """A snapshot of the pool and every server's health, for operators and tests."""
        now = self._clock()
        servers = tuple(
            ServerStatus(
                url=server.base,
                available=h.available(now),
                healthy=h.healthy,
                in_flight=n,
                consecutive_failures=h.failures,
                down_until=h.down_until,
                last_error=h.last_error,
            )
            for server, h, n in zip(self._config.servers, self._health, self._in_flight, strict=False)
        )
        return PoolStatus(
            name=self.name,
            balance=self._config.balance,
            backup=self._backup.name if self._backup is not None else None,
            servers=servers,
            requests=self.requests,
            retries=self.retries,
            retry_tokens=self._budget.tokens,
            backup_uses=self.backup_uses,
            panics=self.panics,
            in_flight=self._gate.in_flight,
            queued=self._gate.queued,
            saturated=self._gate.rejected + self._gate.queue_timeouts,
        )

    def set_healthy(self, url: str, healthy: bool) -> None:
        """Takes a server out of (or back into) rotation by hand, as the probes would."""
        for server, health in zip(self._config.servers, self._health, strict=False):
            if server.base == url.rstrip("/"):
                health.healthy = healthy
                return
        raise KeyError(url)

    async def fetch(self, request: UpstreamRequest) -> UpstreamResponse:
        """Sends the request to a server, retrying and failing over before the head."""
        if self._backup is not None and not self._any_available():
            return await self._to_backup(request, "every server is down")
        failures: list[UpstreamError] = []
        try:
            return await self._fetch_here(request, failures)
        except UpstreamError as exc:
            unreachable = isinstance(exc, NoServerAvailable) or (
                bool(failures) and all(isinstance(f, ConnectError) for f in failures)
            )
            if self._backup is None or not unreachable:
                raise
            return await self._to_backup(request, f"every try failed to connect ({exc})")

    async def _to_backup(self, request: UpstreamRequest, why: str) -> UpstreamResponse:
        assert self._backup is not None
        self.backup_uses += 1
        log.debug("pool %s: %s; asking backup pool %s", self.name, why, self._backup.name)
        return await self._backup.fetch(request)

    async def _fetch_here(self, request: UpstreamRequest, failures: list[UpstreamError]) -> UpstreamResponse:
        """Holds an admission slot for the tries and the body (PoolSaturated without one)."""
        await self._gate.acquire()
        try:
            response = await self._tries(request, failures)
        except BaseException:
            self._gate.release()
            raise
        return released_at_end(response, self._gate.release)

    async def _tries(self, request: UpstreamRequest, failures: list[UpstreamError]) -> UpstreamResponse:
        """Tries this pool's servers; raises the last error (appended to `failures` too)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.timeouts.total_s  # the whole request's limit
        asked = head_deadline()  # the asking node's limit for the head, if it sent one
        head_by = deadline if asked is None else min(deadline, asked)
        tried = [False] * len(self._clients)
        index = self._pick(tried)
        if index is None:
            raise NoServerAvailable(f"pool {self.name!r}: every server is down")
        self.requests += 1
        self._budget.record_request()
        while True:
            tried[index] = True
            try:
                return await self._try(index, request, head_by, deadline, retry=bool(failures))
            except UpstreamError as exc:
                failures.append(exc)
                time_left = head_by - loop.time()
                reason = retry_denied(exc, request.method, len(failures), self._config.retry, time_left)
                next_index = self._pick(tried) if reason is None else None
                if reason is None and next_index is None:
                    reason = NoRetryReason.NO_OTHER_SERVER
                if reason is None and not self._budget.try_spend():
                    reason = NoRetryReason.BUDGET_EXHAUSTED
                if reason is not None:
                    self.no_retries[reason] += 1
                    raise
                assert next_index is not None
                index = next_index
                self.retries += 1

    async def _try(
        self, index: int, request: UpstreamRequest, head_by: float, deadline: float, *, retry: bool
    ) -> UpstreamResponse:
        """One try on one server, its head cut off at `head_by` (the request's own total
        `deadline`, or the asking node's earlier one); feeds passive health."""
        self._in_flight[index] += 1

        def release() -> None:  # InFlightBody calls it once; the except clauses below instead
            self._in_flight[index] -= 1

        try:
            try:
                async with asyncio.timeout_at(head_by):
                    response = await self._clients[index].fetch(request)
            except TimeoutError as exc:
                # Only the request's own deadlines: the client translates its phase timeouts.
                if head_by < deadline:  # the asker's: not retryable, says nothing of the server
                    raise DeadlineExceeded(
                        f"{request.method} {self._config.servers[index].base}: the asking "
                        "node's deadline passed before the head",
                        upstream=self._config.servers[index].base,
                    ) from exc
                raise UpstreamTimeout(
                    f"{request.method} {self._config.servers[index].base}: total timeout "
                    f"{self._config.timeouts.total_s}s spent before the head",
                    upstream=self._config.servers[index].base,
                ) from exc
        except UpstreamError as exc:
            release()
            if exc.retryable:
                self._record_failure(index, str(exc))
            raise
        except BaseException:
            release()
            raise
        if self._config.passive.on_5xx and response.status >= 500:
            self._record_failure(index, f"status {response.status}")
        else:
            self._log_change(index, self._health[index].record_success(), "after a good response")
        # A first try's body already ends at the client's own total deadline (the same instant).
        return released_at_end(response, release, deadline if retry else None)

    def _pick(self, tried: list[bool]) -> int | None:
        """The server for the next try among available untried ones, or None.

        When no server at all is available (panic mode), an untried one anyway: the least
        recently failed. Some server available but all of those tried: None (no retry on a
        server that is down while another is up).
        """
        now = self._clock()
        available = [h.available(now) for h in self._health]
        eligible = [a and not t for a, t in zip(available, tried, strict=False)]
        index = self._balancer.pick(eligible, self._in_flight)
        panic = index is None and not any(available)
        if panic:
            index = panic_pick(tried, self._last_failed)
            if index is not None:
                self.panics += 1
        if panic != self._panicking:
            self._panicking = panic
            if panic:
                log.warning("pool %s: every server is down; trying them anyway (panic mode)", self.name)
            else:
                log.info("pool %s: a server is available again; panic mode over", self.name)
        return index

    def _any_available(self) -> bool:
        now = self._clock()
        return any(h.available(now) for h in self._health)

    def _record_failure(self, index: int, error: str) -> None:
        self._stamp_failure(index)
        change = self._health[index].record_failure(error, self._clock())
        self._log_change(index, change, f"after {self._health[index].failures} failed tries")

    def _stamp_failure(self, index: int) -> None:
        self._failure_seq += 1
        self._last_failed[index] = self._failure_seq

    def _record_probe(self, index: int, error: str | None) -> None:
        if error is not None:
            self._stamp_failure(index)
        self._log_change(index, self._health[index].record_probe(error), "by health checks")

    def _log_change(self, index: int, change: HealthChange | None, how: str) -> None:
        url = self._config.servers[index].base
        if change is HealthChange.MARKED_DOWN:
            last = self._health[index].last_error
            log.warning("pool %s: server %s marked down %s: %s", self.name, url, how, last)
        elif change is HealthChange.MARKED_UP:
            log.info("pool %s: server %s back in rotation %s", self.name, url, how)


def build_pools(
    configs: Mapping[str, OriginPoolConfig],
    session: aiohttp.ClientSession,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, OriginPool]:
    """Builds every pool, each wired to its backup pool; call start()/close() on each."""
    pools: dict[str, OriginPool] = {}

    def build(name: str, chain: tuple[str, ...]) -> OriginPool:
        if name in chain:
            raise ValueError(f"backup pools form a cycle: {' -> '.join((*chain, name))}")
        if name not in pools:
            config = configs[name]
            backup = build(config.backup, (*chain, name)) if config.backup is not None else None
            pools[name] = OriginPool(config, session, backup=backup, clock=clock)
        return pools[name]

    for name in configs:
        build(name, ())
    return {name: pools[name] for name in configs}
