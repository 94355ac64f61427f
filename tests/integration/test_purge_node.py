"""Purge on one real node: refusals purge nothing, soft purge revalidates, a racing fill is not stored (issue 5)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.harness import ROOT
from tests.integration.purge_harness import (
    DEMO_TOKEN,
    HOST,
    TOKEN,
    NodeSpec,
    PurgeCluster,
    VersionedOrigin,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def node(tmp_path: Path, vorigin: VersionedOrigin) -> AsyncIterator[PurgeCluster]:
    cluster = PurgeCluster(tmp_path, vorigin, [NodeSpec("n1", "r1", disk=True)], rate_per_s=0.2, burst=3)
    try:
        yield await cluster.start()
    finally:
        await cluster.close()


class TestRefusals:
    async def test_refused_purges_change_nothing_and_node_keeps_serving(
        self, node: PurgeCluster, vorigin: VersionedOrigin, session: aiohttp.ClientSession
    ) -> None:
        await node.get(session, "n1", "/v/keep")
        url = f"http://{HOST}/v/keep"
        cases = [({"url": url}, "wrong-token-0123456789", 401),
                 ({"url": url}, DEMO_TOKEN, 403),  # a token for other.test only
                 (b"{not json", TOKEN, 400),
                 ({"url": url, "color": "red"}, TOKEN, 400),
                 ({"url": "ftp://x/y"}, TOKEN, 400)]
        for body, token, expected in cases:
            status, answer = await node.purge(session, "n1", body, token=token)
            assert status == expected and answer["error"], (body, answer)
        # burst 3 at 0.2/s: the 400s above spent the bucket, the next one is 429
        status, answer = await node.purge(session, "n1", {"url": url})
        assert status == 429 and "rate limit" in answer["error"]
        reply = await node.get(session, "n1", "/v/keep")
        assert reply.status == 200 and "hit" in reply.cache_status and reply.body == vorigin.body("keep")
        assert vorigin.count("keep") == 1
        assert (await node.status(session, "n1"))["generation"] == 0


class TestSoftPurge:
    async def test_soft_purge_revalidates_and_serves_304_refreshed_object(
        self, node: PurgeCluster, vorigin: VersionedOrigin, session: aiohttp.ClientSession
    ) -> None:
        await node.get(session, "n1", "/v/soft")
        assert "hit" in (await node.get(session, "n1", "/v/soft")).cache_status
        status, answer = await node.purge(session, "n1", {"url": f"http://{HOST}/v/soft", "soft": True})
        assert status == 200 and answer["acked"] == ["n1"]
        reply = await node.get(session, "n1", "/v/soft")
        assert reply.body == vorigin.body("soft") and reply.cache_status.get("fwd-status") == "304"
        assert vorigin.requests[-1] == ("soft", '"soft-v1"')  # a conditional request
        assert "hit" in (await node.get(session, "n1", "/v/soft")).cache_status  # refreshed: fresh again
        assert vorigin.count("soft") == 2

    async def test_tag_purge_removes_tagged_objects_only(
        self, node: PurgeCluster, vorigin: VersionedOrigin, session: aiohttp.ClientSession
    ) -> None:
        vorigin.tags.update({"t1": "blue red", "t2": "red"})
        for name in ("t1", "t2", "t3"):
            await node.get(session, "n1", f"/v/{name}")
        status, _ = await node.purge(session, "n1", {"tag": "blue", "host": HOST})
        assert status == 200
        for name in ("t1", "t2", "t3"):
            await node.get(session, "n1", f"/v/{name}")
        assert [vorigin.count(n) for n in ("t1", "t2", "t3")] == [2, 1, 1]


class TestFillRace:
    async def test_fill_racing_a_purge_is_not_stored_but_its_client_gets_it(
        self, node: PurgeCluster, vorigin: VersionedOrigin, session: aiohttp.ClientSession
    ) -> None:
        vorigin.gates["race"] = asyncio.Event()
        started = vorigin.started.setdefault("race", asyncio.Event())
        first = asyncio.create_task(node.get(session, "n1", "/v/race"))
        await started.wait()  # the fill has its head and first bytes
        status, _ = await node.purge(session, "n1", {"url": f"http://{HOST}/v/race"})
        assert status == 200
        vorigin.versions["race"] = 2
        vorigin.gates["race"].set()
        assert (await first).body == vorigin.body("race", 1)
        reply = await node.get(session, "n1", "/v/race")
        assert reply.body == vorigin.body("race", 2) and vorigin.count("race") == 2


class TestCli:
    async def test_cli_purge_exits_0_when_acked_and_2_when_refused(self, node: PurgeCluster) -> None:
        admin = node.specs["n1"].admin_url
        base = [sys.executable, "-m", "edge", "purge", "--admin", admin, "--all", HOST]
        ok = await asyncio.to_thread(subprocess.run, [*base, "--token", TOKEN], capture_output=True, text=True,
                                     cwd=ROOT, timeout=30)
        assert ok.returncode == 0 and "acknowledged by n1" in ok.stdout, ok.stderr
        bad = await asyncio.to_thread(subprocess.run, [*base, "--token", "nope-nope-nope-nope"], capture_output=True,
                                      text=True, cwd=ROOT, timeout=30)
        assert bad.returncode == 2 and "401" in bad.stderr


async def test_status_shows_purge_state_store_and_origin_pools_when_token_is_valid(
        node: PurgeCluster, session: aiohttp.ClientSession) -> None:
    status = await node.status(session, "n1")
    assert status["node"] == "n1"
    assert "generation" in status or "cursor" in status
    assert set(status["store"]) >= {"entries", "bytes", "hits", "misses"}
    [pool] = status["origins"]
    assert pool["servers"] and pool["servers"][0]["available"] is True
    assert status["peers"] == []  # a lone node has no peers to report
