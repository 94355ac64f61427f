"""Integration: the disk tier of a real edge node process, across restarts and damaged files.

Objects larger than memory_max_object_bytes live on disk only, so their hits come from
object files (the sendfile path). A restart (SIGTERM, start again on the same config)
rebuilds the index from those files; a file truncated or with a flipped body byte while the
node was down is dropped and fetched again, never served; leftovers in tmp/ are removed.
Object files are found by the cache key id, as edge/store/diskfile.py names them.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp

from edge.request.key import make_key
from origin.demo import synthetic
from tests.integration.conftest import EdgeFactory
from tests.integration.harness import Proc, origin_stats

KiB = 1024
MiB = 1024 * KiB
# every object below goes to disk only, on its first fill (no second-hit admission)
SMALL_MEMORY = {"memory_max_object_bytes": 64 * KiB, "disk_admission": "all"}
SIZES = (200 * KiB, 1536 * KiB, 300 * KiB + 7, 900 * KiB)


def target(name: str, size: int) -> str:
    """The request target of one synthetic object, fresh for an hour."""
    return f"/obj/{name}?size={size}&cc=max-age=3600"


async def get(edge: Proc, path: str,
              headers: dict[str, str] | None = None) -> tuple[int, str, bytes, dict[str, str]]:
    """GET path on the node: status, Cache-Status, body, headers (Content-Length checked)."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(auto_decompress=False, timeout=timeout) as s, \
            s.get(edge.url + path, headers=headers) as resp:
        body = await resp.read()
        assert resp.content_length == len(body)
        return resp.status, resp.headers.get("Cache-Status", ""), body, dict(resp.headers)


def is_hit(cache_status: str) -> bool:
    return cache_status.startswith("edgecache; hit")


def disk_dir(edge: Proc) -> Path:
    """The node's disk tier directory (the factory puts it in tmp_path as cache-<node>)."""
    return Path(edge.extra["config"]).parent / "cache-edge1"


def object_file(edge: Proc, path: str) -> Path:
    """objects/<xx>/<hex> of the object the node stores for `path`."""
    hex_id = make_key("http", f"{edge.host}:{edge.port}", path).hex
    return disk_dir(edge) / "objects" / hex_id[:2] / hex_id


def count(origin: Proc, path: str) -> int:
    return int(origin_stats(origin)["paths"].get(path, 0))


def restart(edge_factory: EdgeFactory, edge: Proc) -> Proc:
    """SIGTERM, then the same config started again (same address, same disk dir)."""
    edge.stop()
    return edge_factory(config=edge.extra["config"])


async def fill(edge: Proc, names: list[tuple[str, int]]) -> None:
    """Requests each object (a miss that stores it), then again until it is a stored hit.

    The last byte reaches the client a moment before the store commit (fsync, rename) is
    done; until then a request joins the finished fill ("collapsed") rather than hitting.
    """
    for name, size in names:
        expected = synthetic.body(name, size)
        status, cache_status, body, _ = await get(edge, target(name, size))
        assert status == 200 and "stored" in cache_status, cache_status
        assert body == expected
        for _ in range(100):
            status, cache_status, body, _ = await get(edge, target(name, size))
            assert status == 200 and body == expected
            if is_hit(cache_status):
                break
            assert "collapsed" in cache_status, cache_status
        else:
            raise AssertionError(f"{name} never became a hit")


async def filled_node(edge_factory: EdgeFactory,
                      prefix: str) -> tuple[Proc, list[tuple[str, int]]]:
    """A node whose disk tier holds one object of each of SIZES, named <prefix>-<i>."""
    edge = edge_factory(disk=True, cache=SMALL_MEMORY)
    objects = [(f"{prefix}-{i}", size) for i, size in enumerate(SIZES)]
    await fill(edge, objects)
    return edge, objects


async def assert_hits_once_fetched(edge: Proc, origin: Proc, objects: list[tuple[str, int]]) -> None:
    """Each object is a hit with its exact body, and reached the origin only once."""
    for name, size in objects:
        status, cache_status, body, _ = await get(edge, target(name, size))
        assert status == 200 and is_hit(cache_status), cache_status
        assert body == synthetic.body(name, size)
        assert count(origin, target(name, size)) == 1


class TestDiskHits:
    async def test_disk_tier_serves_exact_hits_when_objects_exceed_memory_limit(
            self, origin: Proc, edge_factory: EdgeFactory) -> None:
        edge, objects = await filled_node(edge_factory, "disk-hit")
        assert all(object_file(edge, target(name, size)).is_file() for name, size in objects)
        await assert_hits_once_fetched(edge, origin, objects)

    async def test_disk_tier_serves_ranges_when_hit_is_on_disk(
            self, origin: Proc, edge_factory: EdgeFactory) -> None:
        edge = edge_factory(disk=True, cache=SMALL_MEMORY)
        name, size = "disk-range", 1536 * KiB
        path = target(name, size)
        await fill(edge, [(name, size)])
        expected = synthetic.body(name, size)
        cases = {"bytes=100000-150000": (100000, 150001), "bytes=-500": (size - 500, size),
                 f"bytes={size - 10}-": (size - 10, size), "bytes=0-0": (0, 1)}
        for spec, (start, end) in cases.items():
            status, cache_status, body, headers = await get(edge, path, {"Range": spec})
            assert status == 206 and is_hit(cache_status), (spec, cache_status)
            assert headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}"
            assert body == expected[start:end], spec
        status, _, body, headers = await get(edge, path, {"Range": f"bytes={size}-"})
        assert status == 416 and headers["Content-Range"] == f"bytes */{size}" and body == b""
        assert count(origin, path) == 1


class TestRestart:
    async def test_disk_tier_keeps_objects_when_node_restarts(
            self, origin: Proc, edge_factory: EdgeFactory) -> None:
        edge, objects = await filled_node(edge_factory, "disk-keep")
        edge = restart(edge_factory, edge)
        await assert_hits_once_fetched(edge, origin, objects)

    async def test_disk_tier_refetches_objects_when_files_were_damaged_while_down(
            self, origin: Proc, edge_factory: EdgeFactory) -> None:
        edge, objects = await filled_node(edge_factory, "disk-damage")
        edge.stop()
        truncated, flipped = (object_file(edge, target(*objects[0])), object_file(edge, target(*objects[1])))
        os.truncate(truncated, truncated.stat().st_size - 1000)
        flip_byte(flipped, flipped.stat().st_size - objects[1][1] // 2)  # the middle of the body
        edge = edge_factory(config=edge.extra["config"])
        results = await asyncio.gather(*(get(edge, target(name, size)) for name, size in objects))
        for (name, size), (status, cache_status, body, _) in zip(objects, results, strict=True):
            assert status == 200
            assert body == synthetic.body(name, size)
        damaged, intact = results[:2], results[2:]
        assert all("fwd=miss" in r[1] for r in damaged), [r[1] for r in damaged]
        assert all(is_hit(r[1]) for r in intact), [r[1] for r in intact]
        assert [count(origin, target(*o)) for o in objects] == [2, 2, 1, 1]
        for name, size in objects[:2]:  # stored again, whole
            status, cache_status, body, _ = await get(edge, target(name, size))
            assert status == 200 and is_hit(cache_status) and body == synthetic.body(name, size)

    async def test_disk_tier_removes_own_tmp_leftovers_and_keeps_foreign_files_when_node_starts(
            self, origin: Proc, edge_factory: EdgeFactory) -> None:
        # issue 10: the node deletes only files it names itself (32 hex digits under tmp/)
        edge = edge_factory(disk=True, cache=SMALL_MEMORY)
        await fill(edge, [("disk-tmp", 200 * KiB)])
        edge.stop()
        tmp = disk_dir(edge) / "tmp"
        leftover = tmp / "0123456789abcdef0123456789abcdef"
        foreign = [tmp / "half-written", disk_dir(edge) / "objects" / "notes.txt"]
        for path in [leftover, *foreign]:
            path.write_bytes(b"EDGC" + os.urandom(5000))
        edge = edge_factory(config=edge.extra["config"])
        assert not leftover.exists()
        assert all(path.exists() for path in foreign)
        assert "left 2 entries the node did not write in place" in edge.log(), edge.log()
        status, cache_status, body, _ = await get(edge, target("disk-tmp", 200 * KiB))
        assert status == 200 and is_hit(cache_status) and body == synthetic.body("disk-tmp", 200 * KiB)


def flip_byte(path: Path, offset: int) -> None:
    """Inverts one byte of a file in place."""
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))





class TestSecondHitAdmission:
    async def test_disk_tier_writes_object_on_second_miss_when_disk_is_full(
            self, origin: Proc, edge_factory: EdgeFactory) -> None:
        # the default admission (second_hit) on a 1 MiB disk that four 300 KiB objects overflow
        edge = edge_factory(disk=True, cache={"memory_max_object_bytes": 64 * KiB, "disk_bytes": MiB})
        fillers = [(f"filler{i}", 300 * KiB) for i in range(4)]
        await fill(edge, fillers)  # written on first miss while the disk had room; then it evicts
        assert not all(object_file(edge, target(name, size)).exists() for name, size in fillers)
        path = target("admit", 256 * KiB)
        first = await get(edge, path)
        assert not is_hit(first[1]), first[1]  # too big for RAM, and a first miss is not written
        for _ in range(100):  # until a request starts a fill of its own (not joining the first)
            second = await get(edge, path)
            if "collapsed" not in second[1]:
                break
        assert not is_hit(second[1]), second[1]  # nothing was stored: the second request misses too
        for _ in range(100):
            third = await get(edge, path)
            if is_hit(third[1]):
                break
        assert is_hit(third[1]), third[1]
        assert first[2] == second[2] == third[2] == synthetic.body("admit", 256 * KiB)
        assert object_file(edge, path).exists() and count(origin, path) == 2  # the second miss was written
