"""Integration: a real node process in front of a demo origin that stops answering (/hang).

With `max_in_flight = 2` and `max_queue = 2` on the pool, six more distinct misses arrive
while two fetches hang and two wait: each gets 503 with Retry-After at once (no origin
request, no waiting), the queued ones stay queued, a cached hit is answered promptly, and a
stale copy allowed by stale-if-error is served instead of the 503. Ordering comes from
the node's own counters (/status on the admin listener), never from sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.conftest import next_loopback
from tests.integration.harness import Proc, Reply, fetch, free_port, origin_count
from tests.integration.test_staying_up import TOKEN, assert_no_traceback, start_node

pytestmark = pytest.mark.timeout(90)

QUEUE_WAIT_S = 60  # longer than the test: queued misses stay queued while it looks
HOT = "/obj/hot?cc=max-age%3D3600"
# stored already stale (Age 100 > max-age 1), usable on error for ten minutes
OLD = "/obj/old?cc=max-age%3D1,stale-if-error%3D600&age=100"


def write_config(tmp: Path, origin_url: str) -> Path:
    host = next_loopback()
    lines = [
        "access_log = false",
        "[nodes.edge1]",
        f'listen = "{host}:{free_port(host)}"',
        f'admin = "{host}:{free_port(host)}"',
        "[server]",
        "drain_timeout_s = 1",  # the hanging fills are not waited for at the end
        "[coalesce]",
        "head_timeout_s = 80",
        "[origins.demo]",
        f'servers = ["{origin_url}"]',
        "first_byte_timeout_s = 80",
        "total_timeout_s = 90",
        "max_in_flight = 2",
        "max_queue = 2",
        f"queue_timeout_s = {QUEUE_WAIT_S}",
        "[[routes]]",
        'host = "*"',
        'origin = "demo"',
        "[[admin.tokens]]",
        'name = "ops"',
        f'token = "{TOKEN}"',
        'hosts = ["*"]',
    ]
    path = tmp / "edge.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def node(tmp_path: Path, origin: Proc) -> Iterator[Proc]:
    proc = start_node(write_config(tmp_path, origin.url), tmp_path / "logs", stdout=None)
    try:
        yield proc
    finally:
        proc.stop()


class Pool:
    """The node's view of its origin pool, read from the admin /status."""

    def __init__(self, session: aiohttp.ClientSession, node: Proc) -> None:
        self.session, self.url = session, f"http://{node.extra['admin']}/status"
        self.last: dict[str, Any] = {}

    async def refresh(self) -> dict[str, Any]:
        async with self.session.get(self.url, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            self.last = dict((await r.json())["origins"][0])
        return self.last

    async def until(self, what: str, **expected: int) -> None:
        """Polls the node's counters (outside state) until they read `expected`; bounded."""
        deadline = time.monotonic() + 20
        while True:
            last = await self.refresh()
            if all(last[k] == v for k, v in expected.items()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not within 20s: {what}; pool is {last}")
            await asyncio.sleep(0.02)


async def test_misses_get_503_past_the_queue_while_hits_are_served(node: Proc, origin: Proc) -> None:
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        base = node.url
        assert (await fetch(session, base + HOT)).status == 200
        assert (await fetch(session, base + OLD)).status == 200
        assert "hit" in (await fetch(session, base + HOT)).cache_status
        hanging: list[asyncio.Task[Reply]] = []
        try:
            await saturate_and_check(session, Pool(session, node), base, origin, hanging)
        finally:
            for task in hanging:
                task.cancel()
            await asyncio.gather(*hanging, return_exceptions=True)
    assert_no_traceback(node)


async def saturate_and_check(
    session: aiohttp.ClientSession, pool: Pool, base: str, origin: Proc, hanging: list[asyncio.Task[Reply]]
) -> None:
    hanging += [asyncio.create_task(fetch(session, f"{base}/hang/f{i}")) for i in range(2)]
    await pool.until("two fetches hold the slots", in_flight=2)
    hanging += [asyncio.create_task(fetch(session, f"{base}/hang/q{i}")) for i in range(2)]
    await pool.until("two misses wait in the queue", in_flight=2, queued=2)

    started = time.monotonic()
    rejected = await asyncio.gather(*(fetch(session, f"{base}/hang/r{i}") for i in range(6)))
    rejected_s = time.monotonic() - started
    started = time.monotonic()
    hit = await fetch(session, base + HOT)
    hit_s = time.monotonic() - started
    stale = await fetch(session, base + OLD)

    assert [r.status for r in rejected] == [503] * 6
    assert {r.headers.get("Retry-After") for r in rejected} == {str(QUEUE_WAIT_S)}
    assert all(b"origin busy" in r.body for r in rejected), (rejected[0].headers, rejected[0].body)
    assert rejected_s < 5, f"turning six misses away took {rejected_s:.1f}s"
    assert hit.status == 200 and "hit" in hit.cache_status and hit_s < 2, (hit_s, hit.headers)
    assert stale.status == 200 and "stale-if-error" in stale.headers.get("Cache-Status", ""), stale.headers
    assert not any(t.done() for t in hanging)  # two still hanging at the origin, two still queued
    last = await pool.refresh()
    assert (last["in_flight"], last["queued"], last["saturated"]) == (2, 2, 7)
    counts = [origin_count(origin, f"/hang/{n}") for n in ("f0", "f1", "q0", "q1", "r0")]
    assert counts == [1, 1, 0, 0, 0]
