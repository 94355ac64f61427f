"""A soft-purged hot copy revalidated through its owner within the purge peer window.

Two nodes of one region; b owns the key, a keeps a hot copy (hot_min_hits = 1). After a
soft purge both copies are stale. a's next request revalidates its copy through b: b
revalidates with the origin (304) and answers a 304. A fill from a peer counts as begun
before every purge of the last `peer_window_s`, so a does not refresh its stored copy with
that 304 (the peer may have answered from bytes it held before the purge reached it). Its
request must still be answered with the copy the 304 validated; it used to look the key up
again twice and answer 502 "revalidated entry vanished from the store twice".
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from cluster.ring import Ring
from edge.request.key import make_key
from tests.integration.purge_harness import HOST, NodeSpec, PurgeCluster, VersionedOrigin, wait_for

pytestmark = pytest.mark.timeout(90)


def owned_by(node: str, nodes: tuple[str, ...], stem: str) -> str:
    """A /v/ name whose key `node` owns in a ring of `nodes`."""
    ring = Ring({n: 1.0 for n in nodes})
    for i in range(1000):
        if ring.owner(make_key("http", HOST, f"/v/{stem}{i}").id) == node:
            return f"{stem}{i}"
    raise AssertionError("no name found")


async def test_soft_purged_hot_copy_validated_by_owner_304_is_served_as_revalidated(
    tmp_path: Path, vorigin: VersionedOrigin, session: aiohttp.ClientSession
) -> None:
    nodes = ("a", "b")
    cluster = PurgeCluster(tmp_path, vorigin, [NodeSpec(n, "r1") for n in nodes], max_lag_s=10.0,
                           cluster_extra={"hot_min_hits": 1})
    try:
        await cluster.start()

        async def b_healthy_at_a() -> bool:
            return any(p["name"] == "b" and p["healthy"] for p in (await cluster.status(session, "a"))["peers"])

        await wait_for(b_healthy_at_a, "a to see b healthy")  # else a fills from the origin itself
        name = owned_by("b", nodes, "hot-")
        path = f"/v/{name}"
        first = await cluster.get(session, "a", path)
        assert first.status == 200 and first.cache_status.get("detail") == "peer-b", first.headers
        hit = await cluster.get(session, "a", path)  # a kept a hot copy
        assert hit.status == 200 and "hit" in hit.cache_status, hit.headers
        deadline = time.monotonic() + 15
        while True:  # a node refuses purges (503) until it has caught up with its peers once
            status, answer = await cluster.purge(session, "a", {"url": f"http://{HOST}{path}", "soft": True})
            if status != 503 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert status == 200 and sorted(answer["acked"]) == ["a", "b"], answer
        asked = time.monotonic()
        reply = await cluster.get(session, "a", path)
        assert reply.status == 200, (reply.status, reply.body[:200], reply.headers)
        assert reply.body == vorigin.body(name), reply.headers
        assert reply.cache_status.get("fwd-status") == "304", reply.headers
        # well inside the 12.3 s peer window (max lag 10 s + sync 0.3 s + ack wait 2 s)
        assert time.monotonic() - asked < 10
        assert vorigin.count(name) == 2 and vorigin.count(name, conditional=True) == 1, vorigin.requests
    finally:
        await cluster.close()
