"""Integration: a 3-node region of real processes on their own loopback addresses (issue 3).

One region (nodes a, b, c, each on its own 127.0.0.x with a public and an internal
listener) serves every test of this module; each test uses its own object names. The
region is one cache: the origin sees one request per cold object however the clients
spread over the nodes; the internal listener refuses anyone without the cluster secret;
a key hammered at a non-owner is kept there too, within the hot share of its memory.
The owner of a key is what the nodes compute (cluster.ring over the node names), and each
test checks it against the `detail=peer-<owner>` the non-owners report in Cache-Status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from cluster.peer import HOP_HEADER, SECRET_HEADER
from origin.demo import synthetic
from tests.integration.cluster_harness import (
    Region,
    access_lines,
    allocate,
    cache_detail,
    get,
    owner_of,
    wait_until,
    write_cluster_config,
)
from tests.integration.harness import Proc, Reply, origin_count

KiB = 1024
NODES = ("a", "b", "c")
SECRET = "s3cret"
HOT_MIN_HITS = 5
# Probes every 2 s and 3 failures to leave: the nodes start within a second of each other,
# so no node drops a peer that is still starting (failure handling is test_cluster_failure's).
CLUSTER = {"secret": SECRET, "probe_interval_s": 2.0, "probe_timeout_s": 1.0, "fail_after": 3,
           "hot_min_hits": HOT_MIN_HITS, "hot_share": 0.125}
CACHE = {"memory_bytes": "4MiB"}  # hot store of each node: 4 MiB * 0.125 = 512 KiB


@pytest.fixture(scope="module")
def region(origin: Proc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Region]:
    """Nodes a, b, c of one region in front of the module's origin."""
    tmp: Path = tmp_path_factory.mktemp("region")
    nodes = allocate(NODES)
    config = write_cluster_config(tmp / "region.toml", origin_url=origin.url, nodes=nodes, cluster=CLUSTER,
                                  cache=CACHE)
    region = Region(tmp / "logs")
    try:
        region.start(config, nodes)
        yield region
    finally:
        region.stop()


def session(limit: int = 100) -> aiohttp.ClientSession:
    """A client with `limit` parallel connections, bodies as sent, a bound on every request."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, force_close=True),
                                 auto_decompress=False, timeout=aiohttp.ClientTimeout(total=30))


def is_hit(reply: Reply) -> bool:
    return "hit" in reply.cache_status


def owned_by_other(prefix: str, size: int, count: int, *, not_owner: str) -> list[tuple[str, str, str]]:
    """`count` (name, path, owner) triples for objects named prefix-i that `not_owner` does not own."""
    found: list[tuple[str, str, str]] = []
    i = 0
    while len(found) < count:
        name = f"{prefix}-{i}"
        path = f"/obj/{name}?size={size}&cc=max-age=60"
        owner = owner_of(path, NODES)
        if owner != not_owner:
            found.append((name, path, owner))
        i += 1
    return found


class TestRegionCoalescing:
    async def test_region_sends_one_origin_request_when_300_clients_ask_cold_across_3_nodes(
            self, origin: Proc, region: Region, unique_name: str) -> None:
        size = 64 * KiB
        path = f"/obj/{unique_name}?size={size}&cc=max-age=60&delay=0.5"
        owner = owner_of(path, NODES)
        async with session(limit=300) as s:
            replies = await asyncio.gather(*(get(s, region.url(NODES[i % 3]), path) for i in range(300)))
        expected = synthetic.body(unique_name, size)
        assert origin_count(origin, path) == 1
        assert [r.status for r in replies] == [200] * 300
        assert all(r.body == expected for r in replies)
        # the owner filled from the origin; the other two asked the owner
        for i, r in enumerate(replies):
            assert cache_detail(r) == (None if NODES[i % 3] == owner else f"peer-{owner}"), (i, r.cache_status)


class TestPeerSecret:
    async def test_internal_listener_answers_403_and_touches_no_cache_when_secret_missing_or_wrong(
            self, origin: Proc, region: Region, unique_name: str) -> None:
        path = f"/obj/{unique_name}?size=1024&cc=max-age=60"
        owner = owner_of(path, NODES)
        internal = region.addrs[owner].internal_url
        refused = [{}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: SECRET.upper()}, {SECRET_HEADER: ""},
                   {HOP_HEADER: "b"}, {HOP_HEADER: "b", SECRET_HEADER: SECRET + "x"}]
        async with session() as s:
            for headers in refused:
                r = await get(s, internal, path, headers=headers)
                assert r.status == 403, headers
                assert b"secret" in r.body
            health = await get(s, internal, "/_edge/health")
            assert health.status == 403
            assert origin_count(origin, path) == 0
            # nothing was stored or filled: the owner's first public request is still a miss
            first = await get(s, region.url(owner), path)
        assert first.status == 200 and first.body == synthetic.body(unique_name, 1024)
        assert "fwd" in first.cache_status and not is_hit(first), first.cache_status
        assert origin_count(origin, path) == 1

    async def test_internal_listener_serves_locally_when_request_carries_secret_and_hop(
            self, origin: Proc, region: Region, unique_name: str) -> None:
        path = f"/obj/{unique_name}?size=2048&cc=max-age=60"
        owner = owner_of(path, NODES)
        other = next(n for n in NODES if n != owner)
        async with session() as s:
            health = await get(s, region.addrs[other].internal_url, "/_edge/health",
                               headers={SECRET_HEADER: SECRET})
            # a peer's request at a node that does not own the key: served there, never forwarded
            r = await get(s, region.addrs[other].internal_url, path, headers={SECRET_HEADER: SECRET, HOP_HEADER: owner})
        assert health.status == 200
        assert r.status == 200 and r.body == synthetic.body(unique_name, 2048)
        assert cache_detail(r) is None, r.cache_status
        assert access_lines(region.procs[owner], path) == []
        assert origin_count(origin, path) == 1


class TestHotKeys:
    async def test_non_owner_serves_key_locally_when_hammered_past_hot_min_hits(
            self, region: Region, unique_name: str) -> None:
        (name, path, owner), = owned_by_other(unique_name, 4 * KiB, 1, not_owner="a")
        expected = synthetic.body(name, 4 * KiB)
        replies: list[Reply] = []
        async with session() as s:
            while not (replies and is_hit(replies[-1])):
                assert len(replies) < 2 * HOT_MIN_HITS + 3, [r.cache_status for r in replies]
                replies.append(await get(s, region.url("a"), path))
            forwarded = [r for r in replies if not is_hit(r) and "collapsed" not in r.cache_status]
            assert cache_detail(replies[0]) == f"peer-{owner}"
            # kept only once the key was hot: the first HOT_MIN_HITS requests all went to the owner
            assert len(forwarded) >= HOT_MIN_HITS
            owner_proc = region.procs[owner]
            await wait_until(lambda: len(access_lines(owner_proc, path)) == len(forwarded), 5,
                             f"owner {owner} logs {len(forwarded)} requests for {path}")
            more = [await get(s, region.url("a"), path) for _ in range(3 * HOT_MIN_HITS)]
        assert all(r.status == 200 and r.body == expected for r in replies + more)
        assert all(is_hit(r) for r in more), [r.cache_status for r in more]
        # served at the non-owner: the owner saw none of them
        assert len(access_lines(owner_proc, path)) == len(forwarded)

    async def test_non_owner_keeps_at_most_two_200KiB_hot_keys_when_hot_share_is_512KiB(
            self, region: Region, unique_name: str) -> None:
        size = 200 * KiB  # + 1 KiB overhead each: two fit in 512 KiB, three do not
        keys = owned_by_other(unique_name, size, 5, not_owner="a")
        async with session() as s:
            for name, path, owner in keys:
                expected = synthetic.body(name, size)
                for attempt in range(2 * HOT_MIN_HITS + 3):
                    r = await get(s, region.url("a"), path)
                    assert r.status == 200 and r.body == expected
                    if attempt == 0:
                        assert cache_detail(r) == f"peer-{owner}"
                    if is_hit(r):
                        break
                else:
                    raise AssertionError(f"hot key {path} was never served locally at a")
            # one pass over the five: at most the two the hot store holds are local hits
            sweep = [await get(s, region.url("a"), path) for _, path, _ in keys]
        assert all(r.status == 200 and r.body == synthetic.body(name, size) for (name, _, _), r in zip(keys, sweep))
        hits = [path for (_, path, _), r in zip(keys, sweep) if is_hit(r)]
        assert len(hits) <= 2, hits
