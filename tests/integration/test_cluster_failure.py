"""Integration: a node of a 3-node region dies (kill -9) under load and comes back (issue 3).

Nodes probe each other every 0.2 s and drop a peer after 3 failed probes, so a dead node
leaves the survivors' rings within `fail_after * probe_interval_s + probe_timeout_s`
(0.8 s). Throughout, a steady load of requests for many URLs goes to the two survivors;
every one must succeed with the right bytes (from the origin as a fallback while the dead
node is still in the ring, then from the key's new owner). The restarted node rejoins after
`recover_after` good probes and owns its keys again.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from origin.demo import synthetic
from tests.integration.cluster_harness import (
    Region,
    allocate,
    cache_detail,
    get,
    owner_of,
    peer_events,
    wait_until,
    write_cluster_config,
)
from tests.integration.harness import Proc

NODES = ("a", "b", "c")
SURVIVORS = ("a", "b")
SIZE = 4096
PROBE_TIMEOUT_S = 0.2
CLUSTER = {"secret": "s3cret", "probe_interval_s": 0.2, "probe_timeout_s": PROBE_TIMEOUT_S, "fail_after": 3,
           "recover_after": 2, "peer_connect_timeout_s": 0.5, "hot_min_hits": 1000}
LEAVE_WITHIN_S = 3 * 0.2 + 0.2  # ClusterConfig.leave_within_s for CLUSTER
SLACK_S = 4.0  # scheduling on a loaded 2-core machine: the bound asserted is LEAVE_WITHIN_S + SLACK_S
LOAD_URLS = 60
STEP_REQUESTS = 150  # the load runs at least this many requests in each phase


@dataclass(frozen=True, slots=True)
class Outcome:
    """One load request: where it went, what came back."""

    node: str
    path: str
    status: int
    body_ok: bool
    cache_status: str
    error: str | None = None


class Load:
    """Workers sending GETs for LOAD_URLS objects round-robin to the survivors until stopped."""

    def __init__(self, region: Region, prefix: str, session: aiohttp.ClientSession) -> None:
        self.region = region
        self.session = session
        self.names = [f"{prefix}-{i}" for i in range(LOAD_URLS)]
        self.outcomes: list[Outcome] = []
        self.stop = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Event]] = []

    def reached(self, count: int) -> asyncio.Event:
        """An event set once `count` more requests than now have finished."""
        event = asyncio.Event()
        self._waiters.append((len(self.outcomes) + count, event))
        return event

    async def worker(self, start: int) -> None:
        for i in itertools.count(start, 7):
            if self.stop.is_set() or len(self.outcomes) > 50 * STEP_REQUESTS:
                return
            node, name = SURVIVORS[i % 2], self.names[i % LOAD_URLS]
            path = f"/obj/{name}?size={SIZE}&cc=max-age=60"
            try:
                r = await get(self.session, self.region.url(node), path)
                outcome = Outcome(node, path, r.status, r.body == synthetic.body(name, SIZE),
                                  r.headers.get("Cache-Status", ""))
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome = Outcome(node, path, 0, False, "", repr(exc))
            self.outcomes.append(outcome)
            for target, event in self._waiters:
                if len(self.outcomes) >= target:
                    event.set()


async def probe_owned_by(region: Region, owner: str, prefix: str, counter: itertools.count[int]) -> dict[str, str | None]:
    """GETs a fresh cold URL that `owner` owns in the full ring at each survivor; their Cache-Status details."""
    while True:
        name = f"{prefix}-probe-{next(counter)}"
        path = f"/obj/{name}?size=1024&cc=max-age=60"
        if owner_of(path, NODES) == owner:
            break
    details: dict[str, str | None] = {}
    async with aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=10)) as s:
        for node in SURVIVORS:
            r = await get(s, region.url(node), path)
            assert r.status == 200 and r.body == synthetic.body(name, 1024), (node, r.status)
            details[node] = cache_detail(r)
    return details


async def settled(region: Region) -> None:
    """Waits out start-up: probes started before every listener was up end within probe_timeout_s,
    and any peer they marked down comes back after recover_after good probes."""
    await asyncio.sleep(PROBE_TIMEOUT_S)
    await wait_until(lambda: all(dict(peer_events(p)).get(peer, "healthy") == "healthy"
                                 for p in region.procs.values() for peer in NODES), 5,
                     "every node sees every peer healthy")


class TestNodeFailure:
    async def test_peer_leaves_every_ring_within_leave_interval_when_killed_without_traffic(
            self, origin: Proc, tmp_path: Path) -> None:
        nodes = allocate(NODES)
        config = write_cluster_config(tmp_path / "region.toml", origin_url=origin.url, nodes=nodes, cluster=CLUSTER)
        region = Region(tmp_path / "logs")
        try:
            region.start(config, nodes)
            await settled(region)
            region.kill9("c")
            killed_at = time.monotonic()
            # no request fails over to the origin here: only the probes notice the death
            await wait_until(lambda: all(("c", "down") in peer_events(region.procs[n]) for n in SURVIVORS),
                             LEAVE_WITHIN_S + SLACK_S, "a and b log c as down")
            left_after = time.monotonic() - killed_at
        finally:
            region.stop()
        assert left_after < LEAVE_WITHIN_S + 0.5, left_after

    async def test_survivors_answer_every_request_and_take_over_keys_when_a_node_is_killed_and_restarted(
            self, origin: Proc, tmp_path: Path, unique_name: str) -> None:
        nodes = allocate(NODES)
        config = write_cluster_config(tmp_path / "region.toml", origin_url=origin.url, nodes=nodes, cluster=CLUSTER)
        region = Region(tmp_path / "logs")
        probes = itertools.count()
        try:
            region.start(config, nodes)
            await settled(region)
            before = await probe_owned_by(region, "c", unique_name, probes)
            assert before == {"a": "peer-c", "b": "peer-c"}
            connector = aiohttp.TCPConnector(limit=16)
            async with aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                             timeout=aiohttp.ClientTimeout(total=10)) as s:
                load = Load(region, unique_name, s)
                workers = [asyncio.create_task(load.worker(w)) for w in range(8)]
                try:
                    await load.reached(STEP_REQUESTS).wait()
                    region.kill9("c")
                    killed_at = time.monotonic()
                    # the survivors drop c: its keys are filled by a survivor, not the origin as a fallback
                    while True:
                        details = await probe_owned_by(region, "c", unique_name, probes)
                        if not set(details.values()) & {"origin-fallback", "peer-c"}:
                            break
                        assert time.monotonic() - killed_at < LEAVE_WITHIN_S + SLACK_S, details
                    left_after = time.monotonic() - killed_at
                    assert set(details.values()) <= {None, "peer-a", "peer-b"}
                    await load.reached(STEP_REQUESTS).wait()
                    await asyncio.to_thread(region.restart, "c")
                    restarted_at = time.monotonic()
                    # c rejoins: its keys are fetched through it again by both survivors
                    while (details := await probe_owned_by(region, "c", unique_name, probes)) != before:
                        assert time.monotonic() - restarted_at < 2 * LEAVE_WITHIN_S + SLACK_S, details
                    await load.reached(STEP_REQUESTS).wait()
                finally:
                    load.stop.set()
                    await asyncio.gather(*workers)
        finally:
            region.stop()
        failed = [o for o in load.outcomes if o.status != 200 or not o.body_ok]
        assert failed == [], failed[:5]
        assert len(load.outcomes) >= 3 * STEP_REQUESTS
        assert left_after < LEAVE_WITHIN_S + SLACK_S
        # the load went through c before it died and after it came back
        served_by = {o.cache_status.rpartition("detail=")[2] for o in load.outcomes if "detail=" in o.cache_status}
        assert "peer-c" in served_by
