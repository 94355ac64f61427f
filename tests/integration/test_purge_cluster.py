"""Purge across real processes in two regions: every node, hammered URLs, kill -9, a cut-off node (issue 5)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from cluster.ring import Ring
from edge.rules.key import make_key
from tests.integration.purge_harness import HOST, NodeSpec, PurgeCluster, VersionedOrigin, wait_for

pytestmark = pytest.mark.timeout(120)

NODES = (("n1", "r1"), ("n2", "r1"), ("n3", "r2"), ("n4", "r2"))


def owned_by(node: str, region_nodes: tuple[str, ...], stem: str) -> str:
    """A /v/ name whose key the given node owns in its region's ring."""
    ring = Ring({n: 1.0 for n in region_nodes})
    for i in range(1000):
        name = f"{stem}{i}"
        if ring.owner(make_key("http", HOST, f"/v/{name}").id) == node:
            return name
    raise AssertionError("no name found")


async def _cluster(tmp_path: Path, origin: VersionedOrigin, **kw: object) -> PurgeCluster:
    specs = [NodeSpec(name, region, disk=True) for name, region in NODES]
    return await PurgeCluster(tmp_path, origin, specs, **kw).start()  # type: ignore[arg-type]


class TestReach:
    async def test_purge_sent_to_one_node_is_applied_on_every_node_of_both_regions(
        self, tmp_path: Path, vorigin: VersionedOrigin, session: aiohttp.ClientSession
    ) -> None:
        cluster = await _cluster(tmp_path, vorigin)
        try:
            for name, _ in NODES:
                await cluster.get(session, name, "/v/a")
            vorigin.versions["a"] = 2  # a deploy: the caches still hold version 1
            assert all([(await cluster.get(session, n, "/v/a")).body == vorigin.body("a", 1) for n, _ in NODES])
            status, answer = await cluster.purge(session, "n1", {"url": f"http://{HOST}/v/a"})
            assert status == 200 and sorted(answer["acked"]) == ["n1", "n2", "n3", "n4"] and answer["pending"] == []
            for name, _ in NODES:
                assert (await cluster.get(session, name, "/v/a")).body == vorigin.body("a", 2), name
                assert (await cluster.status(session, name))["cursor"] == {"n1": 1}
        finally:
            await cluster.close()

    async def test_no_old_body_is_served_after_ack_when_clients_hammer_through_the_purge(
        self, tmp_path: Path, vorigin: VersionedOrigin, session: aiohttp.ClientSession
    ) -> None:
        cluster = await _cluster(tmp_path, vorigin)
        seen: list[tuple[float, bytes]] = []
        stop = asyncio.Event()

        async def hammer(offset: int) -> None:
            i = offset
            while not stop.is_set():
                started = time.monotonic()
                reply = await cluster.get(session, NODES[i % len(NODES)][0], "/v/h")
                seen.append((started, reply.body))
                i += 1

        try:
            clients = [asyncio.create_task(hammer(k)) for k in range(8)]
            await wait_for(lambda: _true(len(seen) > 200), "warm-up requests")
            vorigin.versions["h"] = 2
            status, _ = await cluster.purge(session, "n3", {"prefix": f"http://{HOST}/v/h"})
            acked_at = time.monotonic()
            assert status == 200
            await wait_for(lambda: _true(sum(1 for t, _ in seen if t > acked_at) > 400), "requests after the ack")
            stop.set()
            await asyncio.gather(*clients)
        finally:
            stop.set()
            await cluster.close()
        old = vorigin.body("h", 1)
        assert any(body == old for _, body in seen)  # the cache served version 1 before the purge
        late = [body for started, body in seen if started > acked_at]
        assert late and all(body == vorigin.body("h", 2) for body in late)


async def _true(value: bool) -> bool:
    return value


class TestKilledNode:
    async def test_node_killed_during_purge_never_serves_purged_version_after_restart(
        self, tmp_path: Path, vorigin: VersionedOrigin, session: aiohttp.ClientSession
    ) -> None:
        cluster = await _cluster(tmp_path, vorigin)
        during, down = owned_by("n4", ("n3", "n4"), "k"), owned_by("n4", ("n3", "n4"), "d")
        try:
            for name in (during, down):
                await cluster.get(session, "n4", f"/v/{name}")
                assert "hit" in (await cluster.get(session, "n4", f"/v/{name}")).cache_status
                vorigin.versions[name] = 2
            purge = asyncio.create_task(cluster.purge(session, "n1", {"url": f"http://{HOST}/v/{during}"}))
            await asyncio.to_thread(cluster.procs["n4"].kill9)
            status, answer = await purge
            assert status in (200, 202) and "n1" in answer["acked"]
            status, answer = await cluster.purge(session, "n2", {"all": HOST})  # made while n4 is down
            assert status == 202 and answer["pending"] == ["n4"]
            await cluster.start_node("n4")
            for name in (during, down):
                assert (await cluster.get(session, "n4", f"/v/{name}")).body == vorigin.body(name, 2), name
            state = await cluster.status(session, "n4")
            assert state["cursor"] == {"n1": 1, "n2": 1} and state["trusted"]  # caught up before serving
        finally:
            await cluster.close()


class TestCutOffNode:
    async def test_cut_off_node_revalidates_every_hit_past_max_lag_then_catches_up(
        self, tmp_path: Path, vorigin: VersionedOrigin, session: aiohttp.ClientSession
    ) -> None:
        cluster = await _cluster(tmp_path, vorigin, faulty=("n4",))
        purged, kept = owned_by("n4", ("n3", "n4"), "p"), owned_by("n4", ("n3", "n4"), "q")
        try:
            for name in (purged, kept):
                await cluster.get(session, "n4", f"/v/{name}")
            cluster.cut("n4")
            vorigin.versions[purged] = 2
            status, answer = await cluster.purge(session, "n1", {"url": f"http://{HOST}/v/{purged}"})
            assert status == 202 and answer["pending"] == ["n4"]

            async def distrusted() -> bool:
                return not (await cluster.status(session, "n4"))["trusted"]

            await wait_for(distrusted, "n4 to stop trusting its cache", timeout_s=cluster.max_lag_s + 5)
            before = vorigin.count(kept, conditional=True)
            reply = await cluster.get(session, "n4", f"/v/{kept}")
            assert reply.body == vorigin.body(kept) and reply.cache_status.get("fwd-status") == "304"
            assert vorigin.count(kept, conditional=True) == before + 1  # a stored object was revalidated
            assert (await cluster.get(session, "n4", f"/v/{purged}")).body == vorigin.body(purged, 2)

            cluster.cut("n4", heal=True)

            async def caught_up() -> bool:
                state = await cluster.status(session, "n4")
                return bool(state["trusted"]) and state["cursor"].get("n1") == 1

            await wait_for(caught_up, "n4 to catch up")
            assert (await cluster.get(session, "n4", f"/v/{purged}")).body == vorigin.body(purged, 2)
            hit = await cluster.get(session, "n4", f"/v/{kept}")
            assert "hit" in hit.cache_status and vorigin.count(kept, conditional=True) == before + 1
        finally:
            await cluster.close()
