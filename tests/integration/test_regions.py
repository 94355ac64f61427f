"""Several regions: an edge region whose owners fill from a shield region (issue 4).

Real node processes, each on its own 127.0.0.x, in front of the module's demo origin.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from origin.demo.synthetic import body as synthetic_body
from tests.integration.cluster_harness import (
    NodeAddr, Region, allocate, cache_detail, get, owner_of, peer_events, wait_until)
from tests.integration.harness import Proc, origin_count, write_config

CLUSTER = {"secret": "regions-secret", "probe_interval_s": 0.2, "probe_timeout_s": 0.3, "fail_after": 2,
           "peer_connect_timeout_s": 0.5, "peer_first_byte_timeout_s": 1.5}

POLICY = """
[regions.edge]
parent = "shield"

[[policies]]
host = "*"
path_prefix = "/obj/"
negative_ttl_s = 30
drop_params = ["utm_*"]
ttl_by_extension = { m3u8 = 2, ts = 3600 }

[[policies]]
host = "*"
path_prefix = "/status/"
negative_ttl_s = 30
"""


def _config(path: Path, origin_url: str, nodes: list[NodeAddr]) -> Path:
    lines = ["[cluster]"] + [f"{k} = {v!r}".replace("'", '"') for k, v in CLUSTER.items()] + [""]
    lines += [n.toml() for n in nodes]
    return write_config(path, origin_url=origin_url, nodes={}, extra="\n".join(lines) + POLICY)


@pytest.fixture
def deployment(tmp_path: Path, origin: Proc) -> Iterator[tuple[Region, list[NodeAddr], list[NodeAddr]]]:
    """An edge region of 3 nodes whose parent is a shield region of 2 nodes."""
    edge = allocate(["e1", "e2", "e3"], region="edge")
    shield = allocate(["s1", "s2"], region="shield")
    config = _config(tmp_path / "regions.toml", origin.url, edge + shield)
    region = Region(tmp_path / "logs")
    try:
        region.start(config, edge + shield)
        # nodes start in parallel: a probe may have found a peer not yet listening; wait until
        # every node's latest word on every peer is "healthy" (membership has converged)
        asyncio.run(wait_until(lambda: all(_converged(region.procs[n.name]) for n in edge + shield), 15,
                               "every node sees every peer healthy"))
        yield region, edge, shield
    finally:
        region.stop()


def _converged(proc: Proc) -> bool:
    last: dict[str, str] = {}
    for peer, state in peer_events(proc):
        last[peer] = state
    return all(state == "healthy" for state in last.values())


async def test_cold_storm_over_every_node_reaches_origin_once_per_object_when_shielded(
        deployment: tuple[Region, list[NodeAddr], list[NodeAddr]], origin: Proc, unique_name: str) -> None:
    region, edge, shield = deployment
    paths = [f"/obj/{unique_name}-{i}?size={20000 + i}&cc=max-age=60&delay=0.3" for i in range(8)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=400), auto_decompress=False) as s:
        jobs = [get(s, n.url, p) for p in paths for n in edge + shield for _ in range(4)]
        replies = await asyncio.gather(*jobs)
    for i, reply in enumerate(replies):
        size = 20000 + (i // (len(edge + shield) * 4))
        assert reply.status == 200
        assert reply.body == synthetic_body(f"{unique_name}-{i // (len(edge + shield) * 4)}", size)
    for p in paths:
        assert origin_count(origin, p) == 1, p


async def test_edge_region_owner_fills_from_shield_when_shield_is_up(
        deployment: tuple[Region, list[NodeAddr], list[NodeAddr]], origin: Proc, unique_name: str) -> None:
    region, edge, shield = deployment
    path = f"/obj/{unique_name}?size=3000&cc=max-age=60"
    owner = owner_of(path, [n.name for n in edge])
    others = [n for n in edge if n.name != owner]
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        first = await get(s, region.url(owner), path)
        details = [cache_detail(await get(s, n.url, path)) for n in others]
    # the region's owner filled from the shield region's owner; the others asked the owner
    shield_owner = owner_of(path, [n.name for n in shield])
    assert cache_detail(first) == f"shield-{shield_owner}"
    assert details == [f"peer-{owner}"] * len(others)
    assert origin_count(origin, path) == 1


async def test_edge_region_goes_to_origin_when_shield_region_is_down(
        deployment: tuple[Region, list[NodeAddr], list[NodeAddr]], origin: Proc, unique_name: str) -> None:
    region, edge, shield = deployment
    for node in shield:
        region.kill9(node.name)
    path = f"/obj/{unique_name}?size=4000&cc=max-age=60"
    started = time.monotonic()
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        replies = [await get(s, n.url, path) for n in edge]
    assert time.monotonic() - started < 10
    assert all(r.status == 200 and r.body == synthetic_body(unique_name, 4000) for r in replies)
    assert origin_count(origin, path) >= 1


async def test_edge_region_skips_hung_shield_after_timeout_when_shield_stops_answering(
        deployment: tuple[Region, list[NodeAddr], list[NodeAddr]], origin: Proc, unique_name: str) -> None:
    region, edge, shield = deployment
    pids = [region.procs[n.name].popen.pid for n in shield]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # accepts at the kernel, never answers: a hung shield
    try:
        path = f"/obj/{unique_name}?size=5000&cc=max-age=60"
        started = time.monotonic()
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            reply = await get(s, edge[0].url, path)
        elapsed = time.monotonic() - started
        assert reply.status == 200 and reply.body == synthetic_body(unique_name, 5000)
        assert elapsed < 8, f"a hung shield held the request {elapsed:.1f}s"
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


class TestPolicies:
    async def test_utm_params_are_dropped_from_key_and_origin_url_when_policy_drops_them(
            self, deployment: tuple[Region, list[NodeAddr], list[NodeAddr]], origin: Proc, unique_name: str) -> None:
        region, edge, shield = deployment
        base = f"/obj/{unique_name}?size=100&cc=max-age=60"
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            first = await get(s, edge[0].url, base + "&utm_source=a")
            second = await get(s, edge[0].url, base + "&utm_source=b&utm_medium=c")
        assert first.body == second.body == synthetic_body(unique_name, 100)
        assert origin_count(origin, base) == 1
        assert origin_count(origin, base + "&utm_source=a") == 0

    async def test_playlist_gets_profile_ttl_when_origin_is_silent(
            self, deployment: tuple[Region, list[NodeAddr], list[NodeAddr]], origin: Proc, unique_name: str) -> None:
        region, edge, shield = deployment
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            playlist = await get(s, edge[0].url, f"/obj/{unique_name}.m3u8?size=50&etag=auto")
            segment = await get(s, edge[0].url, f"/obj/{unique_name}.ts?size=50&etag=auto")
        # (a non-owner passes the owner's freshness on, so the ttl holds wherever it is asked)
        assert 0 <= int(playlist.cache_status["ttl"]) <= 2
        assert 3500 <= int(segment.cache_status["ttl"]) <= 3600

    async def test_origin_ttl_wins_when_origin_sends_freshness(
            self, deployment: tuple[Region, list[NodeAddr], list[NodeAddr]], origin: Proc, unique_name: str) -> None:
        region, edge, shield = deployment
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            reply = await get(s, edge[0].url, f"/obj/{unique_name}.m3u8?size=50&cc=max-age=100")
        assert 95 <= int(reply.cache_status["ttl"]) <= 100

    async def test_404_is_cached_for_negative_ttl_when_origin_is_silent(
            self, deployment: tuple[Region, list[NodeAddr], list[NodeAddr]], origin: Proc, unique_name: str) -> None:
        region, edge, shield = deployment
        path = f"/status/404?n={unique_name}"
        owner = region.url(owner_of(path, [n.name for n in edge]))
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            first = await get(s, owner, path)
            second = await get(s, owner, path)
        assert first.status == second.status == 404
        assert "hit" in second.cache_status and 25 <= int(second.cache_status["ttl"]) <= 30
        assert origin_count(origin, path) == 1

    async def test_server_error_is_never_cached_when_origin_says_it_may_be(
            self, deployment: tuple[Region, list[NodeAddr], list[NodeAddr]], origin: Proc, unique_name: str) -> None:
        region, edge, shield = deployment
        path = f"/status/500?n={unique_name}&cc=max-age=600"
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            for _ in range(2):
                assert (await get(s, edge[0].url, path)).status == 500
        assert origin_count(origin, path) == 2

