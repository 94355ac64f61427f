"""Timeouts along the chain: real node processes of one region in front of a slow demo origin.

A non-owner asks the key's owner, which asks the origin. The owner is told how long the asker
waits (`X-Edge-Deadline`, minus a margin) and answers within it, so a slow origin never
makes the asker give up on the owner and fetch the key itself: the origin sees one fetch per
key. With the default (derived) peer timeouts the asker outwaits the origin timeout, so a
slow but working origin is served; with a peer timeout set shorter than the origin's, the
client gets the owner's 504 at the deadline instead of a second origin fetch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.cluster_harness import (
    NodeAddr,
    Region,
    allocate,
    cache_detail,
    get,
    owner_of,
    peer_events,
    wait_until,
)
from tests.integration.harness import Proc, origin_count, write_config

pytestmark = pytest.mark.timeout(90)

FAST_PROBES = {"secret": "deadline-secret", "probe_interval_s": 0.2, "probe_timeout_s": 0.5, "fail_after": 3}


def start_region(
    tmp_path: Path, origin: Proc, cluster: dict[str, Any], first_byte_s: float
) -> tuple[Region, list[NodeAddr]]:
    nodes = allocate(["a", "b"])
    lines = ["[cluster]"] + [
        f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in cluster.items()
    ]
    lines += [""] + [n.toml() for n in nodes]
    config = write_config(
        tmp_path / "region.toml",
        origin_url=origin.url,
        nodes={},
        origin={"first_byte_timeout_s": first_byte_s},
        extra="\n".join(lines),
    )
    region = Region(tmp_path / "logs")
    region.start(config, nodes)
    return region, nodes


@pytest.fixture
def regions(tmp_path: Path) -> Iterator[list[Region]]:
    started: list[Region] = []
    try:
        yield started
    finally:
        for region in started:
            region.stop()


async def converged(region: Region, nodes: list[NodeAddr]) -> None:
    """Waits until no node has seen a peer go down (nodes start in parallel)."""

    def ok() -> bool:
        return all(
            all(state == "healthy" for _, state in peer_events(region.procs[n.name])[-1:]) for n in nodes
        )

    await wait_until(ok, 10, "membership settled")


def non_owner(path: str, nodes: list[NodeAddr]) -> NodeAddr:
    owner = owner_of(path, [n.name for n in nodes])
    return next(n for n in nodes if n.name != owner)


async def test_slow_origin_is_fetched_once_and_served_when_peer_timeouts_are_derived(
    tmp_path: Path, origin: Proc, regions: list[Region], unique_name: str
) -> None:
    # origin answers after 5.5 s, inside its 8 s first-byte timeout; the old fixed 5 s peer
    # timeout made the asker give up on the owner and fetch a second time
    region, nodes = start_region(tmp_path, origin, FAST_PROBES, first_byte_s=8.0)
    regions.append(region)
    await converged(region, nodes)
    path = f"/obj/{unique_name}?size=300&cc=max-age=60&delay=5.5"
    asker = non_owner(path, nodes)
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        started = time.monotonic()
        reply = await get(s, asker.url, path)
        elapsed = time.monotonic() - started
    assert reply.status == 200, reply.body
    assert cache_detail(reply) != "origin-fallback"
    assert 5.5 <= elapsed < 8.0
    assert origin_count(origin, path) == 1


async def test_owner_answers_504_at_askers_deadline_when_peer_timeout_is_shorter_than_origin(
    tmp_path: Path, origin: Proc, regions: list[Region], unique_name: str
) -> None:
    cluster = {**FAST_PROBES, "peer_first_byte_timeout_s": 1.2, "peer_deadline_margin_s": 0.4}
    region, nodes = start_region(tmp_path, origin, cluster, first_byte_s=10.0)
    regions.append(region)
    await converged(region, nodes)
    path = f"/obj/{unique_name}?size=300&cc=max-age=60&delay=3"
    asker = non_owner(path, nodes)
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        started = time.monotonic()
        reply = await get(s, asker.url, path)
        elapsed = time.monotonic() - started
    # the owner was told 0.8 s; its 504 arrives before the asker's own 1.2 s run out
    assert reply.status == 504, reply.body
    assert 0.8 <= elapsed < 1.2 + 0.5
    assert origin_count(origin, path) == 1  # the owner's; the asker never went to the origin
    owner = region.procs[owner_of(path, [n.name for n in nodes])]
    assert "deadline" in owner.log()


async def test_surrogate_control_reaches_the_asker_but_not_the_client_when_filled_via_owner(
    tmp_path: Path, origin: Proc, regions: list[Region], unique_name: str
) -> None:
    region, nodes = start_region(tmp_path, origin, FAST_PROBES, first_byte_s=5.0)
    regions.append(region)
    await converged(region, nodes)
    path = f"/obj/{unique_name}?size=300&cc=max-age=600&sc=no-store"
    asker = non_owner(path, nodes)
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        replies = [await get(s, asker.url, path) for _ in range(2)]
    assert [r.status for r in replies] == [200, 200]
    assert all(r.headers.get("Surrogate-Control") is None for r in replies)
    # neither node stored it: the asker saw the owner's Surrogate-Control: no-store too
    assert origin_count(origin, path) == 2
