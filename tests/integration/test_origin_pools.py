"""Integration: origin pools of real demo-origin processes behind a real edge process.

One origin of two killed: traffic moves to the survivor within the health-check interval and
only requests in flight on the dead one may fail; the whole primary pool down: the backup
pool serves; every origin down: 502 at once; a hung pool: 504 within the total timeout, and
the retry budget caps what the outage costs the origins (counted on each demo's /__stats);
health never blacks out a pool: the only origin, marked down after three resets in a row or
by failing probes, still gets (and answers) the next requests (panic mode).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.conftest import next_loopback
from tests.integration.harness import (
    Proc,
    _spawn,
    free_port,
    origin_stats,
    start_edge,
    start_origin,
)

pytestmark = pytest.mark.timeout(90)

CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=30)
HEALTH = {  # fast active checks so a test sees them act
    "health_path": "/status/200",
    "health_interval_s": 0.5,
    "health_timeout_s": 0.5,
    "unhealthy_after": 2,
    "healthy_after": 2,
}


class Deployment:
    """Demo origins and one edge node, all stopped by the fixture's finally."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[Proc] = []

    def origin(self) -> Proc:
        proc = start_origin(self.tmp_path / "logs")
        self.procs.append(proc)
        return proc

    def restart(self, origin: Proc) -> Proc:
        """A new demo origin on the dead one's address (harness.start_origin picks a new port)."""
        args = ["-m", "origin.demo", "--listen", f"{origin.host}:{origin.port}"]
        proc = _spawn(
            f"{origin.name}-again", args, origin.host, origin.port, self.tmp_path / "logs"
        )
        self.procs.append(proc)
        return proc

    def edge(self, pools: dict[str, dict[str, Any]]) -> Proc:
        """An edge whose first pool serves every path; `pools` maps name -> [origins.NAME] keys."""
        host = next_loopback()
        lines = ["access_log = false", "", "[nodes.edge1]", f'listen = "{host}:{free_port(host)}"']
        for name, keys in pools.items():
            lines += ["", f"[origins.{name}]"]
            lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
        first = next(iter(pools))
        lines += ["", "[[routes]]", 'host = "*"', 'path_prefix = "/"', f'origin = "{first}"', ""]
        config = self.tmp_path / "edge.toml"
        config.write_text("\n".join(lines))
        proc = start_edge(config, "edge1", self.tmp_path / "logs")
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path)
    try:
        yield deployment
    finally:
        deployment.stop()


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=100, force_close=True), timeout=CLIENT_TIMEOUT
    )


async def get(client: aiohttp.ClientSession, url: str) -> tuple[int, float]:
    """GETs url and reads the body; (status, seconds taken), status 0 on a transport error."""
    started = time.monotonic()
    try:
        async with client.get(url) as resp:
            await resp.read()
            return resp.status, time.monotonic() - started
    except aiohttp.ClientError:
        return 0, time.monotonic() - started


def count(origin: Proc, prefix: str) -> int:
    """Requests the demo origin received for targets starting with `prefix`."""
    paths: dict[str, int] = origin_stats(origin)["paths"]
    return sum(n for path, n in paths.items() if path.startswith(prefix))


class TestKilledServer:
    async def test_traffic_moves_to_survivor_when_one_origin_is_killed(
        self, deploy: Deployment
    ) -> None:
        a, b = deploy.origin(), deploy.origin()
        edge = deploy.edge({"primary": {"servers": [a.url, b.url], "retries": 1, **HEALTH}})
        concurrency = 4
        statuses: list[int] = []
        stop = asyncio.Event()
        progress = asyncio.Event()  # set after every answer
        counter = iter(range(10**6))

        async def load(client: aiohttp.ClientSession) -> None:
            while not stop.is_set():
                status, _ = await get(client, f"{edge.url}/echo/kill/{next(counter)}")
                statuses.append(status)
                progress.set()

        async def answers(total: int) -> None:
            while len(statuses) < total:
                progress.clear()
                await progress.wait()

        async with session() as client:
            workers = [asyncio.create_task(load(client)) for _ in range(concurrency)]
            try:
                await answers(40)
                assert count(a, "/echo/kill/") > 0 and count(b, "/echo/kill/") > 0
                before = len(statuses)
                await asyncio.to_thread(a.kill9)
                killed_at = time.monotonic()
                # Active checks: unhealthy_after x interval (+ one probe timeout) at most;
                # the edge's log is polled, being another process's output.
                limit = 2 * 0.5 + 0.5 + 1.0
                while f"server {a.url} marked down" not in edge.log():
                    assert time.monotonic() - killed_at < limit, edge.log()
                    await answers(len(statuses) + 1)
                marked = len(statuses)
                await answers(marked + 40)  # the survivor carries the load on its own
            finally:
                stop.set()
                await asyncio.gather(*workers)
        after = statuses[before:]
        errors = [s for s in after if s != 200]
        assert all(s == 200 for s in statuses[:before])
        # Only requests in flight on the killed origin may fail: at most one per client.
        assert len(errors) <= concurrency, errors
        assert all(s == 200 for s in statuses[marked:]), statuses[marked:]
        assert count(b, "/echo/kill/") >= len(after) - len(errors)

    async def test_health_checks_take_idle_server_out_and_back_when_it_dies_and_returns(
        self, deploy: Deployment
    ) -> None:
        a, b = deploy.origin(), deploy.origin()
        edge = deploy.edge({"primary": {"servers": [a.url, b.url], **HEALTH}})
        a.kill9()  # no client traffic at all: only the probes can notice
        await wait_for_log(edge, f"server {a.url} marked down by health checks", 2 * 0.5 + 1.5)
        deploy.restart(a)
        await wait_for_log(edge, f"server {a.url} back in rotation by health checks", 2 * 0.5 + 1.5)
        async with session() as client:
            results = [await get(client, f"{edge.url}/echo/back/{i}") for i in range(4)]
        assert [status for status, _ in results] == [200] * 4
        # Round robin again: the revived process (same address as `a`) takes every other one.
        assert count(a, "/echo/back/") == 2 and count(b, "/echo/back/") == 2


async def wait_for_log(proc: Proc, text: str, within_s: float) -> None:
    """Polls another process's log (nothing to await on) until `text` shows up."""
    deadline = time.monotonic() + within_s
    while text not in proc.log():
        assert time.monotonic() < deadline, f"no {text!r} within {within_s}s:\n{proc.log()}"
        await asyncio.sleep(0.05)


class TestBackupPool:
    async def test_backup_pool_serves_when_whole_primary_pool_is_down(
        self, deploy: Deployment
    ) -> None:
        a, b, spare = deploy.origin(), deploy.origin(), deploy.origin()
        edge = deploy.edge(
            {
                "primary": {"servers": [a.url, b.url], "backup": "spare", **HEALTH},
                "spare": {"servers": [spare.url]},
            }
        )
        async with session() as client:
            assert (await get(client, f"{edge.url}/echo/backup/before"))[0] == 200
            assert count(spare, "/echo/backup/") == 0
            a.kill9()
            b.kill9()
            results = [await get(client, f"{edge.url}/echo/backup/{i}") for i in range(10)]
        assert [status for status, _ in results] == [200] * 10
        assert count(spare, "/echo/backup/") == 10


class TestEverythingDown:
    async def test_edge_answers_502_quickly_when_every_origin_refuses(
        self, deploy: Deployment
    ) -> None:
        dead = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
        edge = deploy.edge(
            {
                "primary": {"servers": dead[:2], "backup": "spare", "connect_timeout_s": 1.0},
                "spare": {"servers": dead[2:], "connect_timeout_s": 1.0},
            }
        )
        async with session() as client:
            results = [await get(client, f"{edge.url}/echo/down/{i}") for i in range(5)]
        assert [status for status, _ in results] == [502] * 5
        assert max(elapsed for _, elapsed in results) < 1.0

    async def test_hung_pool_gives_504_within_total_timeout_and_budget_caps_retries(
        self, deploy: Deployment
    ) -> None:
        a, b = deploy.origin(), deploy.origin()
        pool = {
            "servers": [a.url, b.url],
            "first_byte_timeout_s": 1.0,
            "total_timeout_s": 1.2,  # a retry gets only the 0.2 s left
            "retries": 1,
            "retry_budget_ratio": 0.2,
            "retry_budget_burst": 2,
            "passive_failures": 0,  # keep both in rotation: this measures the budget alone
        }
        edge = deploy.edge({"primary": pool})
        clients = 20
        async with session() as client:
            results = await asyncio.gather(
                *(get(client, f"{edge.url}/hang/budget-{i}") for i in range(clients))
            )
        assert [status for status, _ in results] == [504] * clients
        elapsed = [seconds for _, seconds in results]
        assert min(elapsed) >= 1.0 and max(elapsed) < 1.2 + 0.6, elapsed
        sent = count(a, "/hang/budget-") + count(b, "/hang/budget-")
        # Every client retried would be 40; the budget allows burst + ratio x requests.
        assert clients <= sent <= clients + 2 + 0.2 * clients, sent


class TestPanicMode:
    async def test_only_origin_still_serves_when_three_resets_in_a_row_marked_it_down(
        self, deploy: Deployment
    ) -> None:
        only = deploy.origin()
        # default passive health: 3 failed tries in a row take a server out for 10 s
        edge = deploy.edge({"primary": {"servers": [only.url]}})
        async with session() as client:
            resets = [await get(client, f"{edge.url}/reset/{i}") for i in range(3)]
            assert [status for status, _ in resets] == [502] * 3
            # the node's log is written by a thread (edge/app/stderr_log.py): the line may
            # trail the third answer by a moment
            marked = f"server {only.url} marked down after 3 failed tries"
            deadline = time.monotonic() + 5.0
            while marked not in edge.log() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert marked in edge.log()
            good = [await get(client, f"{edge.url}/echo/after-resets/{i}") for i in range(3)]
        assert [status for status, _ in good] == [200] * 3
        assert count(only, "/echo/after-resets/") == 3
        assert "panic mode" in edge.log()

    async def test_requests_reach_only_origin_when_health_checks_fail_on_probe_path(
        self, deploy: Deployment
    ) -> None:
        only = deploy.origin()
        probes = {**HEALTH, "health_path": "/status/503", "unhealthy_after": 1}
        edge = deploy.edge({"primary": {"servers": [only.url], **probes}})
        await wait_for_log(edge, f"server {only.url} marked down by health checks", 0.5 + 1.5)
        async with session() as client:
            results = [await get(client, f"{edge.url}/echo/probes-fail/{i}") for i in range(3)]
        assert [status for status, _ in results] == [200] * 3
        assert count(only, "/echo/probes-fail/") == 3
