"""ServerHealth transitions (pure) and HealthChecker rounds against fakes and a real socket."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from origin.client import OriginClient
from origin.config import HealthCheckConfig, PassiveHealthConfig, ServerConfig, TimeoutConfig
from origin.errors import ConnectError
from origin.health import HealthChange, HealthChecker, ProbeTarget, ServerHealth
from tests.fakes import FakeClock, FakeUpstream
from tests.origin.servers import OK_EMPTY, RawServer, closed_port, respond

pytestmark = pytest.mark.timeout(10)

ACTIVE = HealthCheckConfig(path="/health", healthy_after=2, unhealthy_after=3)
NO_ACTIVE = HealthCheckConfig()


class TestPassive:
    def test_failures_mark_down_for_cooldown_when_no_active_checks(self) -> None:
        health = ServerHealth(PassiveHealthConfig(failures=2, cooldown_s=10.0), NO_ACTIVE)
        assert health.record_failure("refused", 100.0) is None
        assert health.record_failure("refused", 100.0) is HealthChange.MARKED_DOWN
        assert not health.available(109.9) and health.available(110.0)
        assert health.last_error == "refused"

    def test_one_failure_marks_down_again_when_cooldown_ended_without_success(self) -> None:
        health = ServerHealth(PassiveHealthConfig(failures=3, cooldown_s=10.0), NO_ACTIVE)
        for _ in range(3):
            health.record_failure("timeout", 0.0)
        assert health.record_failure("timeout", 10.0) is HealthChange.MARKED_DOWN
        assert not health.available(15.0)

    def test_success_resets_streak_when_it_comes_between_failures(self) -> None:
        health = ServerHealth(PassiveHealthConfig(failures=2), NO_ACTIVE)
        health.record_failure("refused", 0.0)
        health.record_success()
        assert health.record_failure("refused", 0.0) is None and health.available(0.0)

    def test_success_ends_cooldown_when_no_active_checks(self) -> None:
        health = ServerHealth(PassiveHealthConfig(failures=1, cooldown_s=10.0), NO_ACTIVE)
        health.record_failure("reset", 0.0)
        assert not health.available(1.0)
        assert health.record_success() is HealthChange.MARKED_UP  # a panic-mode try got a head
        assert health.available(1.0) and health.record_success() is None

    def test_success_leaves_server_down_when_active_checks_decide(self) -> None:
        health = ServerHealth(PassiveHealthConfig(failures=1), ACTIVE)
        health.record_failure("reset", 0.0)
        assert health.record_success() is None and not health.available(1.0)

    def test_failures_never_mark_down_when_passive_checks_are_off(self) -> None:
        health = ServerHealth(PassiveHealthConfig(failures=0), NO_ACTIVE)
        for _ in range(100):
            assert health.record_failure("refused", 0.0) is None
        assert health.available(0.0) and health.failures == 100

    def test_failures_mark_down_until_probes_pass_when_active_checks_run(self) -> None:
        health = ServerHealth(PassiveHealthConfig(failures=1, cooldown_s=1.0), ACTIVE)
        assert health.record_failure("refused", 0.0) is HealthChange.MARKED_DOWN
        assert not health.available(1000.0)
        assert health.record_probe(None) is None
        assert health.record_probe(None) is HealthChange.MARKED_UP
        assert health.available(1000.0) and health.failures == 0


class TestActive:
    def test_probes_mark_down_when_unhealthy_after_fail_in_a_row(self) -> None:
        health = ServerHealth(PassiveHealthConfig(), ACTIVE)
        assert [health.record_probe("status 500") for _ in range(3)] == [
            None,
            None,
            HealthChange.MARKED_DOWN,
        ]
        assert not health.available(0.0) and health.last_error == "status 500"

    def test_good_probe_breaks_failure_streak_when_it_comes_between(self) -> None:
        health = ServerHealth(PassiveHealthConfig(), ACTIVE)
        health.record_probe("x")
        health.record_probe("x")
        health.record_probe(None)
        health.record_probe("x")
        assert health.healthy

    def test_failed_probe_restarts_recovery_when_it_comes_between_good_ones(self) -> None:
        health = ServerHealth(PassiveHealthConfig(), ACTIVE)
        for _ in range(3):
            health.record_probe("x")
        assert [health.record_probe(e) for e in (None, "x", None)] == [None, None, None]
        assert health.record_probe(None) is HealthChange.MARKED_UP


def checker(
    config: HealthCheckConfig, *servers: FakeUpstream
) -> tuple[HealthChecker, list[tuple[int, str | None]]]:
    reports: list[tuple[int, str | None]] = []
    targets = [ProbeTarget(s, "origin.test") for s in servers]
    return HealthChecker(config, targets, lambda i, e: reports.append((i, e))), reports


class TestChecker:
    async def test_check_once_reports_each_server_when_statuses_differ(self) -> None:
        ok, moved, broken = FakeUpstream(), FakeUpstream(status=302), FakeUpstream(status=503)
        down = FakeUpstream(error=ConnectError("refused"))
        check, reports = checker(ACTIVE, ok, moved, broken, down)
        await check.check_once()
        assert reports == [
            (0, None),
            (1, None),
            (2, "health check: status 503"),
            (3, "health check: refused"),
        ]
        assert (ok.requests[0].host, ok.requests[0].target, check.rounds) == (
            "origin.test",
            "/health",
            1,
        )

    async def test_check_once_reports_timeout_when_server_never_answers(self) -> None:
        hung = FakeUpstream(gated=True)
        config = HealthCheckConfig(path="/h", timeout_s=0.05, interval_s=1.0)
        check, reports = checker(config, hung)
        await check.check_once()
        assert reports == [(0, "health check: no answer within 0.05s")]

    async def test_checker_runs_rounds_every_interval_when_started(self) -> None:
        clock = FakeClock()
        asked: list[float] = []
        wake = asyncio.Queue[None]()
        sleeping = asyncio.Event()

        async def sleep(seconds: float) -> None:
            asked.append(seconds)
            sleeping.set()
            await wake.get()

        server = FakeUpstream()
        reports: list[tuple[int, str | None]] = []
        check = HealthChecker(
            HealthCheckConfig(path="/h", interval_s=5.0, timeout_s=1.0),
            [ProbeTarget(server, "h")],
            lambda i, e: reports.append((i, e)),
            clock=clock,
            sleep=sleep,
        )
        check.start()
        try:
            await sleeping.wait()
            sleeping.clear()
            wake.put_nowait(None)
            await sleeping.wait()
        finally:
            await check.close()
        assert (check.rounds, server.calls, asked) == (2, 2, [5.0, 5.0])
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "health-check"]

    def test_checker_refuses_config_when_no_path_is_set(self) -> None:
        with pytest.raises(ValueError, match="path"):
            HealthChecker(HealthCheckConfig(), [], lambda i, e: None)


class TestCheckerOverSockets:
    async def test_probe_passes_and_fails_when_server_answers_or_refuses(
        self, session: aiohttp.ClientSession
    ) -> None:
        timeouts = TimeoutConfig(connect_s=1.0)
        refused = ServerConfig(url=f"http://127.0.0.1:{closed_port()}")
        async with RawServer(respond(OK_EMPTY)) as good:
            server = ServerConfig(url=good.url)
            targets = [
                ProbeTarget(OriginClient(s, timeouts, session), s.netloc) for s in (server, refused)
            ]
            reports: list[tuple[int, str | None]] = []
            check = HealthChecker(ACTIVE, targets, lambda i, e: reports.append((i, e)))
            await check.check_once()
        assert reports[0] == (0, None)
        assert reports[1][0] == 1 and "cannot connect" in str(reports[1][1])
        assert good.heads[0].startswith(b"GET /health HTTP/1.1\r\n")
        assert f"Host: {server.netloc}".encode() in good.heads[0]
