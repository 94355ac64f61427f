"""OriginPool against servers on 127.0.0.1: round-robin, failover, retries, budget, health."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from origin.client import make_session
from origin.config import OriginPoolConfig, RetryConfig, ServerConfig, TimeoutConfig
from origin.errors import ConnectError, NoServerAvailable, ProtocolError
from origin.pool import NoRetryReason, OriginPool, RetryBudget
from origin.upstream import UpstreamRequest
from tests.origin.test_client import (
    OK_EMPTY,
    RawServer,
    closed_port,
    read_all,
    respond,
    respond_then_stall,
)

pytestmark = pytest.mark.timeout(10)

# A head aiohttp cannot parse: a retryable ProtocolError that aiohttp itself never retries
# (it silently retries dropped connections of idempotent requests once, RFC 9112 §9.3.1).
GARBAGE = b"garbage\r\n\r\n"


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(method: str = "GET") -> UpstreamRequest:
    return UpstreamRequest(method=method, host="example.test", target="/x")


def pool_config(*urls: str, retries: int = 1, **kw: object) -> OriginPoolConfig:
    retry = kw.pop("retry", RetryConfig(attempts=retries + 1))
    return OriginPoolConfig(
        name="web",
        servers=tuple(ServerConfig(url=u) for u in urls),
        retry=retry,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session() as s:
        yield s


class TestFailover:
    async def test_fetch_fails_over_to_second_server_when_first_refuses(
        self, session: aiohttp.ClientSession
    ) -> None:
        refused = f"http://127.0.0.1:{closed_port()}"
        async with RawServer(respond(OK_EMPTY)) as good:
            pool = OriginPool(pool_config(refused, good.url), session)
            response = await pool.fetch(request())
            await read_all(response)
        assert (response.status, response.upstream) == (200, good.url)
        assert pool.retries == 1 and pool.status()[0].consecutive_failures == 1

    async def test_fetch_fails_over_when_first_server_times_out_before_head(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with (
            RawServer(respond_then_stall(b"")) as stalled,
            RawServer(respond(OK_EMPTY)) as good,
        ):
            config = pool_config(stalled.url, good.url, timeouts=TimeoutConfig(first_byte_s=0.2))
            response = await OriginPool(config, session).fetch(request())
            await read_all(response)
        assert response.upstream == good.url and stalled.connections == 1

    async def test_fetch_alternates_servers_when_all_are_healthy(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with RawServer(respond(OK_EMPTY)) as a, RawServer(respond(OK_EMPTY)) as b:
            pool = OriginPool(pool_config(a.url, b.url), session)
            upstreams = [(await pool.fetch(request())).upstream for _ in range(4)]
        assert upstreams == [a.url, b.url, a.url, b.url]

    async def test_fetch_returns_error_status_when_head_arrived(
        self, session: aiohttp.ClientSession
    ) -> None:
        raw = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
        async with RawServer(respond(raw)) as a, RawServer(respond(OK_EMPTY)) as b:
            response = await OriginPool(pool_config(a.url, b.url, retries=3), session).fetch(
                request()
            )
            await read_all(response)
        assert (response.status, a.connections, b.connections) == (503, 1, 0)


class TestRetries:
    async def test_fetch_does_not_retry_when_method_is_post(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with RawServer(respond(GARBAGE)) as a, RawServer(respond(OK_EMPTY)) as b:
            pool = OriginPool(pool_config(a.url, b.url, retries=3), session)
            with pytest.raises(ProtocolError):
                await pool.fetch(request("POST"))
        assert (a.connections, b.connections) == (1, 0)
        assert pool.no_retries[NoRetryReason.NOT_IDEMPOTENT] == 1

    async def test_fetch_raises_last_error_when_attempts_are_used(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with RawServer(respond(GARBAGE)) as server:
            pool = OriginPool(pool_config(server.url, retries=2), session)
            with pytest.raises(ProtocolError):
                await pool.fetch(request("DELETE"))
        assert server.connections == 3 and pool.retries == 2
        assert pool.no_retries[NoRetryReason.ATTEMPTS_USED] == 1

    async def test_fetch_stops_retrying_when_budget_is_spent(
        self, session: aiohttp.ClientSession
    ) -> None:
        retry = RetryConfig(attempts=3, budget_ratio=0.0, budget_burst=1.0)
        async with RawServer(respond(GARBAGE)) as server:
            pool = OriginPool(pool_config(server.url, retry=retry), session)
            for _ in range(2):
                with pytest.raises(ProtocolError):
                    await pool.fetch(request())
        # first request: 1 try + the one budgeted retry; second: no budget left
        assert server.connections == 3 and pool.retries == 1
        assert pool.no_retries[NoRetryReason.BUDGET_EXHAUSTED] == 2


class TestRetryBudget:
    def test_budget_allows_ratio_of_requests_when_burst_is_spent(self) -> None:
        budget = RetryBudget(RetryConfig(budget_ratio=0.25, budget_burst=1.0))
        assert budget.try_spend() and not budget.try_spend()
        allowed = 0
        for _ in range(100):
            budget.record_request()
            allowed += budget.try_spend()
        assert allowed == 25

    def test_budget_caps_saved_tokens_when_requests_succeed_for_long(self) -> None:
        budget = RetryBudget(RetryConfig(budget_ratio=0.5, budget_burst=2.0))
        for _ in range(1000):
            budget.record_request()
        assert budget.tokens == 2.0


class TestPassiveHealth:
    async def test_fetch_skips_server_when_marked_down_after_connect_failures(
        self, session: aiohttp.ClientSession
    ) -> None:
        clock = FakeClock()
        refused = f"http://127.0.0.1:{closed_port()}"
        config = pool_config(refused, retries=0, down_after_failures=3, down_cooldown_s=5.0)
        pool = OriginPool(config, session, clock=clock)
        for _ in range(3):
            with pytest.raises(ConnectError):
                await pool.fetch(request())
        assert not pool.status()[0].available
        with pytest.raises(NoServerAvailable):
            await pool.fetch(request())
        clock.now += 5.0
        assert pool.status()[0].available
        with pytest.raises(ConnectError):
            await pool.fetch(request())
        assert not pool.status()[0].available  # one more failure after the cool-down: down again

    async def test_fetch_sends_all_to_healthy_server_when_other_is_marked_down(
        self, session: aiohttp.ClientSession
    ) -> None:
        refused = f"http://127.0.0.1:{closed_port()}"
        async with RawServer(respond(OK_EMPTY)) as good:
            pool = OriginPool(pool_config(refused, good.url, down_after_failures=1), session)
            upstreams = [(await pool.fetch(request())).upstream for _ in range(3)]
        assert upstreams == [good.url] * 3 and pool.retries == 1

    async def test_fetch_avoids_server_when_active_check_says_unhealthy(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with RawServer(respond(OK_EMPTY)) as a, RawServer(respond(OK_EMPTY)) as b:
            pool = OriginPool(pool_config(a.url, b.url), session)
            pool.set_healthy(a.url, False)
            upstreams = [(await pool.fetch(request())).upstream for _ in range(2)]
            pool.set_healthy(b.url, False)
            with pytest.raises(NoServerAvailable):
                await pool.fetch(request())
        assert upstreams == [b.url, b.url] and a.connections == 0
