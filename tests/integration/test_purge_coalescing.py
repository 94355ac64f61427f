"""Coalescing survives purges: requests after a purge share one new fill (issue 11).

Real node processes in front of `VersionedOrigin`, whose gates hold a body mid-way, so the
test decides when a fill ends. Before issue 11, a request that joined a fill begun before a
matching purge was sent to the origin on its own ("purged-fill" pass), and in a cluster
every fill from a peer within the purge window (about 16 s by default) counted as begun
before any purge, so for that long every concurrent request for a purged URL (for a host
or prefix purge: every URL of the host) went to the origin by itself. The node's /status
`fills.waiting` tells when every client waits on a fill, so no step is ordered by sleeping.
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

FOLLOWERS = 5


def owned_by(node: str, nodes: tuple[str, ...], stem: str) -> str:
    """A /v/ name whose key `node` owns in a ring of `nodes`."""
    ring = Ring({n: 1.0 for n in nodes})
    for i in range(1000):
        if ring.owner(make_key("http", HOST, f"/v/{stem}{i}").id) == node:
            return f"{stem}{i}"
    raise AssertionError("no name found")


async def waiting(cluster: PurgeCluster, session: aiohttp.ClientSession, node: str, count: int) -> None:
    async def check() -> bool:
        return int((await cluster.status(session, node))["fills"]["waiting"]) >= count

    await wait_for(check, f"{count} requests waiting on fills at {node}")


async def peers_healthy(cluster: PurgeCluster, session: aiohttp.ClientSession, node: str) -> None:
    """Waits until `node` sees every peer healthy, so they are in its ring.

    A node starts before its peers are up, marks them down, and takes them back only after
    good probes: until then it fills every key from the origin itself, and a peer that joins
    its ring mid-fill gets a fill of its own for the same key (a second origin request).
    """

    async def check() -> bool:
        peers = (await cluster.status(session, node))["peers"]
        return bool(peers) and all(peer["healthy"] for peer in peers)

    await wait_for(check, f"every peer healthy at {node}")


async def purge(
    cluster: PurgeCluster, session: aiohttp.ClientSession, node: str, body: dict[str, str]
) -> tuple[int, dict[str, object]]:
    """Purges, retrying while the node answers 503 (still catching up with its peers at start)."""
    deadline = time.monotonic() + 15
    while True:
        status, answer = await cluster.purge(session, node, body)
        if status != 503 or time.monotonic() > deadline:
            return status, answer
        await asyncio.sleep(0.1)


async def started(origin: VersionedOrigin, name: str) -> None:
    event = origin.started.setdefault(name, asyncio.Event())
    async with asyncio.timeout(15):
        await event.wait()
    event.clear()


@pytest.mark.parametrize("kind", ["url", "prefix", "host"])
async def test_requests_after_purge_share_one_new_fill_when_old_fill_began_before_it(
    kind: str, tmp_path: Path, vorigin: VersionedOrigin, session: aiohttp.ClientSession
) -> None:
    cluster = await PurgeCluster(tmp_path, vorigin, [NodeSpec("n1", "r1")]).start()
    try:
        name = f"old-{kind}"
        vorigin.gates[name] = asyncio.Event()
        first = asyncio.create_task(cluster.get(session, "n1", f"/v/{name}"))
        await started(vorigin, name)  # the fill's head is out, its body held
        body = {"url": {"url": f"http://{HOST}/v/{name}"}, "prefix": {"prefix": f"http://{HOST}/v/"},
                "host": {"all": HOST}}[kind]
        status, answer = await purge(cluster, session, "n1", body)
        assert status == 200, answer
        vorigin.versions[name] = 2
        late = [asyncio.create_task(cluster.get(session, "n1", f"/v/{name}")) for _ in range(FOLLOWERS)]
        await waiting(cluster, session, "n1", FOLLOWERS)  # all on the one new fill
        assert vorigin.count(name) == 2
        vorigin.gates[name].set()
        assert (await first).body == vorigin.body(name, 1)  # asked before the purge
        for reply in await asyncio.gather(*late):
            assert reply.status == 200 and reply.body == vorigin.body(name, 2), reply.headers
        assert vorigin.count(name) == 2, vorigin.requests
    finally:
        await cluster.close()


@pytest.mark.parametrize("kind", ["url", "host"])
async def test_fill_from_owner_after_purge_is_shared_when_within_peer_window(
    kind: str, tmp_path: Path, vorigin: VersionedOrigin, session: aiohttp.ClientSession
) -> None:
    nodes = ("a", "b")
    specs = [NodeSpec(n, "r1") for n in nodes]
    cluster = await PurgeCluster(tmp_path, vorigin, specs, max_lag_s=10.0).start()
    try:
        for node in nodes:
            await peers_healthy(cluster, session, node)
        name = owned_by("b", nodes, f"peer-{kind}-")
        path = f"/v/{name}"
        first = await cluster.get(session, "a", path)
        assert first.body == vorigin.body(name, 1)
        assert first.cache_status.get("detail") == "peer-b", first.headers  # b filled and stores it
        body = {"url": {"url": f"http://{HOST}{path}"}, "host": {"all": HOST}}[kind]
        status, answer = await purge(cluster, session, "a", body)
        assert status == 200 and sorted(answer["acked"]) == ["a", "b"], answer
        vorigin.versions[name] = 2
        vorigin.gates[name] = asyncio.Event()
        asked = time.monotonic()
        replies = [asyncio.create_task(cluster.get(session, "a", path))]
        await started(vorigin, name)  # a's fill asks b, whose fill streams the new version
        replies += [asyncio.create_task(cluster.get(session, "a", path)) for _ in range(FOLLOWERS)]
        await waiting(cluster, session, "a", FOLLOWERS + 1)
        vorigin.gates[name].set()
        for reply in await asyncio.gather(*replies):
            assert reply.status == 200 and reply.body == vorigin.body(name, 2), reply.headers
            assert reply.cache_status.get("detail") == "peer-b", reply.headers  # the fill asked b
        # well inside the 12.3 s peer window (max lag 10 s + sync 0.3 s + ack wait 2 s)
        assert time.monotonic() - asked < 10
        assert vorigin.count(name) == 2, vorigin.requests  # the first fill and one after the purge
    finally:
        await cluster.close()
