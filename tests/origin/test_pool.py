"""OriginPool: failover, retries on another server, budget, deadline, balancing, health, backup.

Socket tests use scripted servers on 127.0.0.1; the rest use counting FakeUpstreams per
server (through `client_factory`) and a FakeClock for health cool-downs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp
import pytest

from origin.config import (
    Balance,
    HealthCheckConfig,
    OriginPoolConfig,
    PassiveHealthConfig,
    RetryConfig,
    ServerConfig,
    TimeoutConfig,
)
from origin.deadline import head_deadline_at
from origin.errors import (
    BodyError,
    DeadlineExceeded,
    BodyTimeout,
    ConnectError,
    ProtocolError,
    UpstreamError,
    UpstreamTimeout,
)
from origin.pool import NoRetryReason, OriginPool, RetryBudget, build_pools
from origin.upstream import UpstreamRequest, UpstreamResponse
from tests.fakes import FakeClock, FakeUpstream
from tests.origin.servers import (
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
NO_PASSIVE = PassiveHealthConfig(failures=0)


def request(method: str = "GET") -> UpstreamRequest:
    return UpstreamRequest(method=method, host="example.test", target="/x")


def pool_config(*urls: str, retries: int = 1, name: str = "web", **kw: object) -> OriginPoolConfig:
    retry = kw.pop("retry", RetryConfig(attempts=retries + 1))
    return OriginPoolConfig(
        name=name,
        servers=tuple(ServerConfig(url=u) for u in urls),
        retry=retry,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def urls(count: int, first_port: int = 9001) -> list[str]:
    """Server URLs for pools of fakes (never connected to)."""
    return [f"http://127.0.0.1:{first_port + i}" for i in range(count)]


def fake_pool(
    fakes: Sequence[FakeUpstream],
    *,
    clock: FakeClock | None = None,
    backup: OriginPool | None = None,
    name: str = "web",
    first_port: int = 9001,
    **kw: object,
) -> OriginPool:
    """A pool whose i-th server is fakes[i]."""
    config = pool_config(*urls(len(fakes), first_port), name=name, **kw)  # type: ignore[arg-type]
    by_url = {s.base: f for s, f in zip(config.servers, fakes)}
    return OriginPool(
        config,
        None,
        backup=backup,
        clock=clock or FakeClock(),
        client_factory=lambda server: by_url[server.base],
    )


def failing(error: UpstreamError) -> FakeUpstream:
    return FakeUpstream(error=error)


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
        assert pool.retries == 1 and pool.status().servers[0].consecutive_failures == 1

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

    async def test_fetch_retries_post_on_another_server_when_connection_was_refused(self) -> None:
        a, b = failing(ConnectError("refused")), FakeUpstream(b"ok")
        response = await fake_pool([a, b]).fetch(request("POST"))
        assert (response.upstream, a.calls, b.calls) == ("fake", 1, 1)

    async def test_fetch_never_retries_same_server_when_pool_has_one(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with RawServer(respond(GARBAGE)) as server:
            pool = OriginPool(pool_config(server.url, retries=2), session)
            with pytest.raises(ProtocolError):
                await pool.fetch(request("DELETE"))
        assert server.connections == 1 and pool.retries == 0
        assert pool.no_retries[NoRetryReason.NO_OTHER_SERVER] == 1

    async def test_fetch_tries_each_server_once_when_all_fail(self) -> None:
        fakes = [failing(ProtocolError("garbage")) for _ in range(3)]
        pool = fake_pool(fakes, retries=5, passive=NO_PASSIVE)
        with pytest.raises(ProtocolError):
            await pool.fetch(request())
        assert [f.calls for f in fakes] == [1, 1, 1]
        assert pool.no_retries[NoRetryReason.NO_OTHER_SERVER] == 1

    async def test_fetch_raises_last_error_when_attempts_are_used(self) -> None:
        fakes = [failing(ProtocolError("garbage")) for _ in range(3)]
        pool = fake_pool(fakes, retries=1, passive=NO_PASSIVE)
        with pytest.raises(ProtocolError):
            await pool.fetch(request())
        assert [f.calls for f in fakes] == [1, 1, 0] and pool.retries == 1
        assert pool.no_retries[NoRetryReason.ATTEMPTS_USED] == 1

    async def test_fetch_stops_retrying_when_budget_is_spent(
        self, session: aiohttp.ClientSession
    ) -> None:
        retry = RetryConfig(attempts=3, budget_ratio=0.0, budget_burst=1.0)
        async with RawServer(respond(GARBAGE)) as a, RawServer(respond(GARBAGE)) as b:
            pool = OriginPool(pool_config(a.url, b.url, retry=retry), session)
            for _ in range(2):
                with pytest.raises(ProtocolError):
                    await pool.fetch(request())
        # first request: 1 try + the one budgeted retry; second: no budget left
        assert a.connections + b.connections == 3 and pool.retries == 1
        assert pool.no_retries[NoRetryReason.BUDGET_EXHAUSTED] == 1


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

    async def test_outage_sends_at_most_budgeted_retries_when_every_server_times_out(
        self,
    ) -> None:
        fakes = [failing(UpstreamTimeout("no head")) for _ in range(3)]
        retry = RetryConfig(attempts=3, budget_ratio=0.1, budget_burst=5.0)
        pool = fake_pool(fakes, retry=retry, passive=NO_PASSIVE)
        requests = 1000
        for _ in range(requests):
            with pytest.raises(UpstreamTimeout):
                await pool.fetch(request())
        sent = sum(f.calls for f in fakes)
        # Without the budget an outage would triple the load (3 attempts): 3000 tries.
        assert requests + 0.1 * requests <= sent <= requests + 5.0 + 0.1 * requests
        assert pool.retries == sent - requests


class TestDeadline:
    async def test_retry_is_cut_off_at_total_timeout_when_it_starts_late(self) -> None:
        hung = FakeUpstream(gated=True)  # never answers
        first = failing(UpstreamTimeout("first-byte timeout"))
        pool = fake_pool([first, hung], timeouts=TimeoutConfig(total_s=0.05))
        with pytest.raises(UpstreamTimeout, match="total timeout"):
            await pool.fetch(request())
        assert (first.calls, hung.calls) == (1, 1)
        assert pool.status().servers[1].in_flight == 0

    async def test_fetch_does_not_retry_when_total_timeout_is_spent(self) -> None:
        hung, spare = FakeUpstream(gated=True), FakeUpstream()
        pool = fake_pool([hung, spare], timeouts=TimeoutConfig(total_s=0.05))
        with pytest.raises(UpstreamTimeout):
            await pool.fetch(request())
        assert spare.calls == 0 and pool.no_retries[NoRetryReason.DEADLINE] == 1

    async def test_retried_body_times_out_at_total_deadline_when_it_stalls(self) -> None:
        stalling = FakeUpstream(b"body", gated=True)
        stalling.release_head()  # the head arrives, the body never does
        pool = fake_pool(
            [failing(UpstreamTimeout("first")), stalling], timeouts=TimeoutConfig(total_s=0.1)
        )
        response = await pool.fetch(request())
        with pytest.raises(BodyTimeout):
            await read_all(response)
        assert stalling.closed == 1 and pool.status().servers[1].in_flight == 0


async def take(pool: OriginPool) -> UpstreamResponse:
    """Fetches and keeps the response open (its try stays in flight)."""
    return await pool.fetch(request())


class TestBalancing:
    async def test_least_outstanding_picks_idle_server_when_other_is_busy(self) -> None:
        a, b = FakeUpstream(b"a", name="a"), FakeUpstream(b"b", name="b")
        pool = fake_pool([a, b], balance=Balance.LEAST_OUTSTANDING)
        first, second = await take(pool), await take(pool)
        second.close()  # b is idle again, a still streams
        picks = [(await take(pool)).upstream for _ in range(2)]
        assert (first.upstream, second.upstream, picks) == ("a", "b", ["b", "a"])
        assert [s.in_flight for s in pool.status().servers] == [2, 1]

    async def test_round_robin_ignores_busy_server_when_balance_is_round_robin(self) -> None:
        a, b = FakeUpstream(b"a", name="a"), FakeUpstream(b"b", name="b")
        pool = fake_pool([a, b], balance=Balance.ROUND_ROBIN)
        await take(pool)
        (await take(pool)).close()
        assert (await take(pool)).upstream == "a"

    async def test_in_flight_drops_when_body_ends_or_fails(self) -> None:
        ok, broken = FakeUpstream(b"data", name="ok"), FakeUpstream(b"data", fail_at=2)
        pool = fake_pool([ok, broken])
        responses = [await take(pool), await take(pool)]
        assert [s.in_flight for s in pool.status().servers] == [1, 1]
        assert await read_all(responses[0]) == b"data"
        with pytest.raises(BodyError):
            await read_all(responses[1])
        responses[1].close()  # closing after the end must not release twice
        assert [s.in_flight for s in pool.status().servers] == [0, 0]


class TestPassiveHealth:
    async def test_fetch_skips_server_when_marked_down_after_connect_failures(
        self, session: aiohttp.ClientSession
    ) -> None:
        clock = FakeClock()
        refused = f"http://127.0.0.1:{closed_port()}"
        passive = PassiveHealthConfig(failures=3, cooldown_s=5.0)
        pool = OriginPool(pool_config(refused, retries=0, passive=passive), session, clock=clock)
        for _ in range(3):
            with pytest.raises(ConnectError):
                await pool.fetch(request())
        assert not pool.status().servers[0].available
        assert "cannot connect" in pool.status().servers[0].last_error
        # the only server is down: panic mode still tries it (and the cool-down is not extended)
        with pytest.raises(ConnectError):
            await pool.fetch(request())
        assert pool.status().panics == 1 and pool.status().servers[0].down_until == clock.now + 5.0
        clock.advance(5.0)
        assert pool.status().servers[0].available
        with pytest.raises(ConnectError):
            await pool.fetch(request())
        assert not pool.status().servers[0].available  # one more failure after the cool-down

    async def test_fetch_sends_all_to_healthy_server_when_other_is_marked_down(
        self, session: aiohttp.ClientSession
    ) -> None:
        refused = f"http://127.0.0.1:{closed_port()}"
        async with RawServer(respond(OK_EMPTY)) as good:
            passive = PassiveHealthConfig(failures=1)
            pool = OriginPool(pool_config(refused, good.url, passive=passive), session)
            upstreams = [(await pool.fetch(request())).upstream for _ in range(3)]
        assert upstreams == [good.url] * 3 and pool.retries == 1

    async def test_server_stays_down_past_cooldown_when_active_checks_run(self) -> None:
        clock = FakeClock()
        bad, good = failing(ConnectError("refused")), FakeUpstream(b"ok")
        health = HealthCheckConfig(path="/health", healthy_after=2)
        passive = PassiveHealthConfig(failures=1, cooldown_s=1.0)
        pool = fake_pool([bad, good], clock=clock, health=health, passive=passive)
        await take(pool)
        clock.advance(60.0)
        assert not pool.status().servers[0].available
        bad.error = None  # it recovers: probes now pass
        assert pool.checker is not None
        await pool.checker.check_once()
        assert not pool.status().servers[0].available  # one good probe of two
        await pool.checker.check_once()
        assert pool.status().servers[0].available and bad.requests[-1].target == "/health"

    async def test_5xx_counts_as_failure_when_passive_5xx_is_on(self) -> None:
        sick, good = FakeUpstream(status=503, name="sick"), FakeUpstream(name="good")
        pool = fake_pool([sick, good], passive=PassiveHealthConfig(failures=1, on_5xx=True))
        answered = [(await take(pool)).upstream for _ in range(3)]
        assert answered == ["sick", "good", "good"]
        assert pool.status().servers[0].last_error == "status 503"

    async def test_fetch_avoids_server_when_active_check_says_unhealthy(self) -> None:
        a, b = FakeUpstream(name="a"), FakeUpstream(name="b")
        pool = fake_pool([a, b], health=HealthCheckConfig(path="/h", unhealthy_after=2))
        a.status = 500
        assert pool.checker is not None
        for _ in range(2):
            await pool.checker.check_once()
        a.status = 200
        upstreams = [(await take(pool)).upstream for _ in range(2)]
        assert upstreams == ["b", "b"] and not pool.status().servers[0].healthy
        pool.set_healthy(pool.status().servers[1].url, False)
        # every server is out: panic mode tries the one that never failed a probe
        assert (await take(pool)).upstream == "b" and pool.status().panics == 1


class TestAskerDeadline:
    async def test_head_wait_ends_at_asker_deadline_without_retry_or_health_verdict(self) -> None:
        slow, other = FakeUpstream(gated=True, name="slow"), FakeUpstream(gated=True, name="other")
        pool = fake_pool([slow, other], retries=1, passive=PassiveHealthConfig(failures=1))
        with head_deadline_at(asyncio.get_running_loop().time() + 0.2), pytest.raises(DeadlineExceeded):
            await take(pool)
        assert (slow.calls, other.calls) == (1, 0)  # no retry: the asker has stopped waiting
        assert pool.no_retries[NoRetryReason.NOT_RETRYABLE] == 1
        assert all(s.available and s.consecutive_failures == 0 for s in pool.status().servers)

    async def test_pool_total_timeout_still_applies_when_asker_deadline_is_later(self) -> None:
        slow = FakeUpstream(gated=True)
        timeouts = TimeoutConfig(first_byte_s=0.2, total_s=0.2)
        pool = fake_pool([slow], timeouts=timeouts, passive=NO_PASSIVE)
        with head_deadline_at(asyncio.get_running_loop().time() + 30.0), pytest.raises(UpstreamTimeout) as info:
            await take(pool)
        assert info.value.retryable and not isinstance(info.value, DeadlineExceeded)


class TestPanicMode:
    async def test_only_server_serves_next_good_request_when_three_resets_marked_it_down(self) -> None:
        clock = FakeClock()
        only = failing(ProtocolError("connection reset"))
        pool = fake_pool([only], clock=clock, passive=PassiveHealthConfig(failures=3, cooldown_s=10.0))
        for _ in range(3):
            with pytest.raises(ProtocolError):
                await take(pool)
        assert not pool.status().servers[0].available
        only.error = None  # the origin answers again, well inside the cool-down
        assert (await take(pool)).upstream == "fake"
        status = pool.status()
        assert only.calls == 4 and status.panics == 1
        assert status.servers[0].available  # the good answer ended the cool-down
        await take(pool)
        assert pool.status().panics == 1  # back to normal picks

    async def test_panic_tries_least_recently_failed_server_first_when_all_are_down(self) -> None:
        a, b, c = (failing(ConnectError("refused")) for _ in range(3))
        pool = fake_pool([a, b, c], retries=0, passive=PassiveHealthConfig(failures=1))
        for _ in range(3):  # a, b, c fail in that order: each is marked down
            with pytest.raises(ConnectError):
                await take(pool)
        assert [s.available for s in pool.status().servers] == [False] * 3
        with pytest.raises(ConnectError):
            await take(pool)  # a failed longest ago
        with pytest.raises(ConnectError):
            await take(pool)  # then b (a failed again just now)
        assert [f.calls for f in (a, b, c)] == [2, 2, 1] and pool.status().panics == 2

    async def test_panic_retries_on_another_down_server_when_first_panic_try_fails(self) -> None:
        bad, good = failing(ConnectError("refused")), FakeUpstream(name="good")
        pool = fake_pool([bad, good], retries=1)
        for server in pool.status().servers:
            pool.set_healthy(server.url, False)
        assert (await take(pool)).upstream == "good"
        assert [bad.calls, good.calls] == [1, 1] and pool.status().panics == 2

    async def test_active_checks_keep_server_out_but_requests_reach_it_when_all_fail_probes(self) -> None:
        only = FakeUpstream(name="only")
        pool = fake_pool([only], health=HealthCheckConfig(path="/h", unhealthy_after=1, healthy_after=1))
        only.status = 503
        assert pool.checker is not None
        await pool.checker.check_once()
        assert not pool.status().servers[0].healthy
        only.status = 200  # the probe path fails but real pages are fine: the site stays up
        assert (await take(pool)).status == 200
        assert not pool.status().servers[0].healthy  # only probes bring it back
        await pool.checker.check_once()
        assert pool.status().servers[0].healthy

    async def test_no_panic_when_one_server_is_up_but_already_tried(self) -> None:
        down, up = FakeUpstream(name="down"), failing(ConnectError("refused"))
        pool = fake_pool([down, up], retries=1, passive=NO_PASSIVE)
        pool.set_healthy(pool.status().servers[0].url, False)
        with pytest.raises(ConnectError):
            await take(pool)
        assert down.calls == 0 and pool.no_retries[NoRetryReason.NO_OTHER_SERVER] == 1
        assert pool.status().panics == 0


class TestBackup:
    async def test_backup_serves_when_every_try_failed_to_connect(self) -> None:
        spare = FakeUpstream(b"spare", name="spare")
        backup = fake_pool([spare], name="spare", first_port=9101)
        dead = [failing(ConnectError("refused")) for _ in range(2)]
        pool = fake_pool(dead, backup=backup, passive=NO_PASSIVE)
        response = await pool.fetch(request())
        assert await read_all(response) == b"spare"
        assert [f.calls for f in dead] == [1, 1] and pool.backup_uses == 1

    async def test_backup_serves_without_touching_primary_when_all_are_down(self) -> None:
        spare = FakeUpstream(name="spare")
        primary = [FakeUpstream(), FakeUpstream()]
        pool = fake_pool(primary, backup=fake_pool([spare], name="spare", first_port=9101))
        for server in pool.status().servers:
            pool.set_healthy(server.url, False)
        assert (await take(pool)).upstream == "spare"
        assert [f.calls for f in primary] == [0, 0] and pool.status().requests == 0

    async def test_backup_is_not_used_when_primary_timed_out(self) -> None:
        spare = FakeUpstream(name="spare")
        pool = fake_pool(
            [failing(UpstreamTimeout("slow"))], backup=fake_pool([spare], first_port=9101)
        )
        with pytest.raises(UpstreamTimeout):
            await take(pool)
        assert spare.calls == 0 and pool.backup_uses == 0

    async def test_build_pools_wires_backup_chain_when_config_names_it(
        self, session: aiohttp.ClientSession
    ) -> None:
        configs = {
            "web": pool_config(*urls(1), name="web", backup="second"),
            "second": pool_config(*urls(1, 9101), name="second", backup="third"),
            "third": pool_config(*urls(1, 9201), name="third"),
        }
        pools = build_pools(configs, session)
        assert list(pools) == ["web", "second", "third"]
        assert [p.status().backup for p in pools.values()] == ["second", "third", None]


class TestLifecycle:
    async def test_start_runs_health_checks_until_close_when_health_path_is_set(self) -> None:
        server = FakeUpstream()
        pool = fake_pool([server], health=HealthCheckConfig(path="/h", interval_s=60.0))
        pool.start()
        try:
            await server.fetched.wait()
        finally:
            await pool.close()
        assert server.calls == 1 and server.requests[0].target == "/h"
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "health-check"]

    async def test_start_and_close_do_nothing_when_health_checks_are_off(self) -> None:
        pool = fake_pool([FakeUpstream()])
        pool.start()
        await pool.close()
        assert pool.checker is None
