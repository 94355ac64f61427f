"""Integration: two nodes that disagree about the ring still answer, without loops (issue 3).

Node a is started from a config listing a, b and c (c is never started: a keeps it in its
ring, stale membership); node b from a config listing only a and b, where a weighs 3 (so
some keys a thinks b owns, b thinks a owns). Same secret, same addresses. A request a
forwards to b carries the hop header, so b serves it itself (and the other way round); the
keys a gives to the dead c are filled by a from the origin. Every request must finish well
before a peer timeout would have ended a loop or a wait cycle, with the right bytes, and
each URL reaches the origin at most twice (once per node).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from origin.demo import synthetic
from tests.integration.cluster_harness import (
    Region,
    allocate,
    cache_detail,
    get,
    owner_of,
    write_cluster_config,
)
from tests.integration.harness import Proc, Reply, origin_count

SIZE = 8192
# c stays in a's ring: probes are rare and it takes many failures to drop a peer
CLUSTER = {"secret": "s3cret", "probe_interval_s": 30.0, "fail_after": 1000, "hot_min_hits": 1000,
           "peer_first_byte_timeout_s": 5.0}
A_VIEW = {"a": 1.0, "b": 1.0, "c": 1.0}
B_VIEW = {"a": 3.0, "b": 1.0}
BOUND_S = 3.0  # well below peer_first_byte_timeout_s: a wait cycle between a and b would show


@pytest.fixture
def views(origin: Proc, tmp_path: Path) -> Iterator[Region]:
    """Node a with the a,b,c view and node b with the a(weight 3),b view, both running."""
    a, b, c = allocate(["a", "b", "c"])
    a_conf = write_cluster_config(tmp_path / "a.toml", origin_url=origin.url, nodes=[a, b, c], cluster=CLUSTER)
    b_conf = write_cluster_config(tmp_path / "b.toml", origin_url=origin.url, nodes=[a, b], cluster=CLUSTER,
                                  weights={"a": B_VIEW["a"]})
    region = Region(tmp_path / "logs")
    try:
        region.start(a_conf, [a])
        region.start(b_conf, [b])
        yield region
    finally:
        region.stop()


def path_of(name: str) -> str:
    return f"/obj/{name}?size={SIZE}&cc=max-age=60"


def kinds(prefix: str, count: int) -> dict[str, list[str]]:
    """`count` object names per kind of disagreement, by the owners each view gives them."""
    found: dict[str, list[str]] = {"bounce": [], "to-dead-c": [], "agreed": []}
    i = 0
    while min(len(v) for v in found.values()) < count:
        name = f"{prefix}-{i}"
        i += 1
        in_a, in_b = owner_of(path_of(name), A_VIEW), owner_of(path_of(name), B_VIEW)
        kind = "to-dead-c" if in_a == "c" else "bounce" if in_a != in_b else "agreed"
        if len(found[kind]) < count:
            found[kind].append(name)
    return found


async def timed_get(s: aiohttp.ClientSession, base: str, name: str) -> tuple[Reply, float]:
    started = time.monotonic()
    reply = await get(s, base, path_of(name))
    return reply, time.monotonic() - started


class TestDisagreeingViews:
    async def test_both_nodes_answer_every_url_without_loops_when_their_rings_disagree(
            self, origin: Proc, views: Region, unique_name: str) -> None:
        names = kinds(unique_name, 8)
        everything = [n for group in names.values() for n in group]
        async with aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=30)) as s:
            # one at a time, a first: each forward happens alone
            first = {n: await timed_get(s, views.url("a"), n) for n in everything}
            second = {n: await timed_get(s, views.url("b"), n) for n in everything}
        for got in (first, second):
            for name, (r, elapsed) in got.items():
                assert r.status == 200 and r.body == synthetic.body(name, SIZE), name
                assert elapsed < BOUND_S, (name, elapsed, r.cache_status)
        for name in everything:
            assert origin_count(origin, path_of(name)) <= 2, name
        # a forwarded the bounce keys to b, which served them itself; c's keys a filled itself
        assert {cache_detail(first[n][0]) for n in names["bounce"]} == {"peer-b"}
        assert {cache_detail(first[n][0]) for n in names["to-dead-c"]} == {"origin-fallback"}

    # regression (issue 3): a peer's request joined the local fill that waited on that peer
    async def test_both_nodes_answer_without_a_wait_cycle_when_both_forward_the_same_key_at_once(
            self, origin: Proc, views: Region, unique_name: str) -> None:
        names = kinds(unique_name, 12)["bounce"]  # a thinks b owns them, b thinks a does
        # both nodes start their fill (to the other) before the other's forward arrives
        async with aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=30)) as s:
            got = await asyncio.gather(*(timed_get(s, views.url(node), n) for n in names for node in ("a", "b")))
        slow = [(r.headers.get("Cache-Status"), round(elapsed, 2)) for r, elapsed in got if elapsed >= BOUND_S]
        assert all(r.status == 200 for r, _ in got)
        assert slow == [], slow
        for name in names:
            assert origin_count(origin, path_of(name)) <= 2, name
