"""Integration: kill -9 of an edge node while it writes many objects to its disk tier.

200 objects of 1 KiB to 2 MiB are requested at once from a node whose memory tier takes
nothing over 64 KiB, so every body is written to disk; the origin streams them at rates that
spread their ends over about three seconds. Once some responses have completed the node is
killed with SIGKILL, mid-write. Restarted on the same disk dir it must serve every object
either as a correct hit or as a correct miss: never a corrupt or truncated body.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass

import aiohttp

from origin.demo import synthetic
from tests.integration.conftest import EdgeFactory
from tests.integration.harness import Proc, origin_stats

KiB = 1024
MiB = 1024 * KiB
OBJECTS = 200
KILL_AFTER = 60  # completed responses before kill -9


@dataclass(frozen=True, slots=True)
class Obj:
    """One synthetic object: name, size and the origin's streaming rate."""

    name: str
    size: int
    rate: int  # bytes per second at the origin

    @property
    def path(self) -> str:
        return f"/obj/{self.name}?size={self.size}&rate={self.rate}&cc=max-age=3600"


@dataclass(frozen=True, slots=True)
class Served:
    """What the node answered for one object."""

    status: int
    declared: int | None
    body: bytes
    cache_status: str


def make_objects(seed: int) -> list[Obj]:
    """Sizes log-uniform in [1 KiB, 2 MiB]; each body takes 0.05-3 s at the origin."""
    rng = random.Random(seed)
    objects = []
    for i in range(OBJECTS):
        size = int(math.exp(rng.uniform(math.log(KiB), math.log(2 * MiB))))
        seconds = rng.uniform(0.05, 3.0)
        objects.append(Obj(f"crash-{seed}-{i}", size, max(1, int(size / seconds))))
    return objects


async def fetch(s: aiohttp.ClientSession, url: str) -> Served:
    """GET url and read the whole body (a cut body raises)."""
    async with s.get(url) as resp:
        body = await resp.read()
        return Served(resp.status, resp.content_length, body, resp.headers.get("Cache-Status", ""))


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=OBJECTS, force_close=True),
                                 auto_decompress=False, timeout=aiohttp.ClientTimeout(total=30))


def assert_whole(obj: Obj, served: Served) -> None:
    """A 200 whose framing and bytes are exactly the object's."""
    assert served.status == 200, (obj.name, served.status, served.cache_status)
    assert served.declared == len(served.body) == obj.size, (obj.name, served.declared, len(served.body))
    assert served.body == synthetic.body(obj.name, obj.size), f"{obj.name}: corrupt body"


async def load_and_kill(edge: Proc, objects: list[Obj]) -> list[tuple[Obj, Served]]:
    """Requests every object at once; kill -9s the node after KILL_AFTER complete responses."""
    completed: list[tuple[Obj, Served]] = []
    enough = asyncio.Event()

    async def one(s: aiohttp.ClientSession, obj: Obj) -> None:
        try:
            served = await fetch(s, edge.url + obj.path)
        except (TimeoutError, aiohttp.ClientError):
            return  # cut by the kill
        completed.append((obj, served))
        if len(completed) >= KILL_AFTER:
            enough.set()

    async with session() as s:
        tasks = [asyncio.create_task(one(s, obj)) for obj in objects]
        try:
            await enough.wait()
            edge.kill9()
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
    return completed


class TestKillDuringWrites:
    async def test_restarted_node_serves_only_whole_objects_when_killed_mid_write(
            self, origin: Proc, edge_factory: EdgeFactory) -> None:
        edge = edge_factory(disk=True, cache={"memory_max_object_bytes": 64 * KiB, "disk_admission": "all"})
        objects = make_objects(seed=9)
        before = await load_and_kill(edge, objects)
        assert KILL_AFTER <= len(before) < OBJECTS  # the kill came while fills were in flight
        for obj, served in before:
            assert_whole(obj, served)

        edge = edge_factory(config=edge.extra["config"])
        tmp = edge.extra["config"].parent / "cache-edge1" / "tmp"
        assert list(tmp.iterdir()) == []  # half-written files of the crash are gone
        async with session() as s:
            after = await asyncio.gather(*(fetch(s, edge.url + obj.path) for obj in objects))
            for obj, served in zip(objects, after, strict=True):
                assert_whole(obj, served)
            counts = origin_counts(origin, objects)
            hits = [obj for obj, served in zip(objects, after, strict=True) if is_hit(served)]
            assert 0 < len(hits) < OBJECTS, len(hits)  # some survived on disk, some were in flight
            assert all(counts[obj.path] == 1 for obj in hits)  # a hit is the object fetched before the kill
            again = await asyncio.gather(*(fetch(s, edge.url + obj.path) for obj in objects))
        for obj, served in zip(objects, again, strict=True):
            assert_whole(obj, served)
            # stored now; a request just after a fill's last byte may still join that finished fill
            assert is_hit(served) or "collapsed" in served.cache_status, (obj.name, served.cache_status)
        assert origin_counts(origin, objects) == counts


def is_hit(served: Served) -> bool:
    return served.cache_status.startswith("edgecache; hit")


def origin_counts(origin: Proc, objects: list[Obj]) -> dict[str, int]:
    """The demo origin's request count per object."""
    paths = origin_stats(origin)["paths"]
    return {obj.path: int(paths.get(obj.path, 0)) for obj in objects}
