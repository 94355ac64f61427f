"""Large objects through a real edge process: slices, cold seeks, partial objects (issue 14).

The demo origin serves /obj/<name>?size=&rate=&etag=auto with byte ranges and records every
request it gets, so each test asserts how many requests reached it and which byte ranges they
asked for. Bodies are compared byte for byte with origin.demo.synthetic. The default slice
size is 1 MiB.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from origin.demo import synthetic
from tests.integration.conftest import EdgeFactory
from tests.integration.harness import (
    Proc,
    ScriptedOrigin,
    fetch,
    origin_count,
    origin_requests,
    origin_stats,
)
from tests.integration.purge_harness import HOST as PURGE_HOST
from tests.integration.purge_harness import NodeSpec, PurgeCluster

pytestmark = pytest.mark.timeout(90)

MiB = 1024 * 1024


def target_for(name: str, size: int, rate: int | None = None) -> str:
    extra = "" if rate is None else f"&rate={rate}"
    return f"/obj/{name}?size={size}&cc=max-age=600&etag=auto{extra}"


def part(name: str, size: int, start: int, end: int) -> bytes:
    return b"".join(synthetic.iter_body(name, size, start=start, end=end))


def ranges_seen(origin: Proc, target: str) -> list[str | None]:
    """The Range field of every recorded request for target (None: a whole-object GET)."""
    out = []
    for record in origin_requests(origin, target):
        values = [v for n, v in record["headers"] if n.lower() == "range"]
        out.append(values[0] if values else None)
    return out


def slice_range(k: int, size: int = MiB) -> str:
    return f"bytes={k * size}-{(k + 1) * size - 1}"


async def test_cold_seek_into_the_tail_costs_one_slice(
    edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
) -> None:
    size = 64 * MiB
    target = target_for(unique_name, size, rate=4_000_000)  # the whole file would take 16.8 s
    start = size - MiB + 1000
    began = time.monotonic()
    reply = await fetch(client, edge.url + target, headers={"Range": f"bytes={start}-{start + 9999}"})
    elapsed = time.monotonic() - began
    assert reply.status == 206, (reply.status, reply.headers)
    assert reply.headers["Content-Range"] == f"bytes {start}-{start + 9999}/{size}"
    assert reply.body == part(unique_name, size, start, start + 10000)
    assert elapsed < 8.0, f"a cold seek took {elapsed:.1f}s: more than a slice was waited for"
    # one Range request for the one slice the seek needs (read-ahead may start the next ones
    # only after the client's range ended: this range ends inside the last slice)
    assert ranges_seen(origin, target) == [slice_range(63)]
    # the slice is kept: the same seek again costs the origin nothing
    again = await fetch(client, edge.url + target, headers={"Range": f"bytes={start}-{start + 99}"})
    assert again.status == 206 and again.body == part(unique_name, size, start, start + 100)
    assert origin_count(origin, target) == 1


async def test_full_get_is_stored_as_slices_and_served_whole(
    edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
) -> None:
    size = 5 * MiB + 12345
    target = target_for(unique_name, size)
    body = synthetic.body(unique_name, size)
    first = await fetch(client, edge.url + target)
    assert first.status == 200 and first.body == body
    # slice 0 from the whole GET, the rest as one Range request per slice
    assert ranges_seen(origin, target) == [None] + [slice_range(k) for k in range(1, 5)] + [
        f"bytes={5 * MiB}-{size - 1}"
    ]
    second = await fetch(client, edge.url + target)
    assert second.status == 200 and second.body == body
    assert "hit" in second.cache_status
    tail = await fetch(client, edge.url + target, headers={"Range": "bytes=-100"})
    assert tail.status == 206 and tail.body == body[-100:]
    assert origin_count(origin, target) == 6


async def test_client_that_leaves_stops_the_fill_at_a_slice_boundary(
    edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
) -> None:
    size = 64 * MiB
    target = target_for(unique_name, size, rate=8_000_000)
    async with client.get(edge.url + target) as resp:
        assert resp.status == 200
        got = 0
        while got < MiB:
            chunk = await resp.content.read(64 * 1024)
            assert chunk
            got += len(chunk)
        resp.close()  # the player leaves after 1 MiB
    # At 8 MB/s the origin could send 16 more slices in this window; the fill must stop.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert origin_count(origin, target) <= 3, ranges_seen(origin, target)
        await asyncio.sleep(0.1)
    seen = ranges_seen(origin, target)
    assert seen[0] is None and len(seen) <= 3, seen  # the whole GET, then at most two slices
    # the partial object completes itself as a client asks for the rest
    whole = await fetch(
        client, edge.url + target_for(unique_name, size, rate=8_000_000), headers={"Range": "bytes=0-99"}
    )
    assert whole.status == 206 and whole.body == part(unique_name, size, 0, 100)
    assert origin_count(origin, target) == len(seen)  # slice 0 was kept


async def test_fill_longer_than_the_origin_total_timeout_completes(
    edge_factory: EdgeFactory, origin: Proc, client: aiohttp.ClientSession, unique_name: str
) -> None:
    edge = edge_factory(origin_opts={"total_timeout_s": 2.0})
    size = 6 * MiB
    target = target_for(unique_name, size, rate=2_000_000)  # about 3.1 s in all, 0.5 s a slice
    reply = await fetch(client, edge.url + target)
    assert reply.status == 200 and reply.body == synthetic.body(unique_name, size)
    again = await fetch(client, edge.url + target)
    assert again.status == 200 and "hit" in again.cache_status
    assert origin_count(origin, target) == 6


async def test_restart_with_a_partial_object_serves_present_slices_and_fetches_the_rest(
    edge_factory: EdgeFactory, origin: Proc, client: aiohttp.ClientSession, unique_name: str
) -> None:
    edge = edge_factory(disk=True)
    size = 4 * MiB
    target = target_for(unique_name, size)
    seek = await fetch(client, edge.url + target, headers={"Range": f"bytes={2 * MiB}-{2 * MiB + 9}"})
    assert seek.status == 206 and seek.body == part(unique_name, size, 2 * MiB, 2 * MiB + 10)
    assert ranges_seen(origin, target)[:1] == [slice_range(2)]
    before = origin_count(origin, target)
    edge.stop()
    edge = edge_factory(config=edge.extra["config"])
    reply = await fetch(client, edge.url + target)
    assert reply.status == 200 and reply.body == synthetic.body(unique_name, size)
    after = ranges_seen(origin, target)[before:]
    # the stored slice came from the disk; only the missing ones were asked for, by range
    assert sorted(after, key=str) == sorted([slice_range(k) for k in (0, 1, 3)]), after


class ChangingOrigin:
    """An origin whose object changes version (same length, new ETag) when the test says so."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.version = 1
        self.ranges: list[str | None] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    def body(self, version: int) -> bytes:
        return synthetic.body(f"changing-v{version}", self.size)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> ChangingOrigin:
        app = web.Application()
        app.router.add_get("/m/{name}", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.Response:
        rng = request.headers.get("Range")
        self.ranges.append(rng)
        headers = {"ETag": f'"v{self.version}"', "Cache-Control": "max-age=600", "Accept-Ranges": "bytes"}
        body = self.body(self.version)
        if rng is None:
            return web.Response(body=body, headers=headers)
        first, _, last = rng.removeprefix("bytes=").partition("-")
        a, b = int(first), min(int(last), self.size - 1)
        headers["Content-Range"] = f"bytes {a}-{b}/{self.size}"
        return web.Response(status=206, body=body[a : b + 1], headers=headers)


@pytest.fixture
async def changing() -> AsyncIterator[ChangingOrigin]:
    made = await ChangingOrigin(3 * MiB).start()
    try:
        yield made
    finally:
        await made.close()


async def test_object_changed_between_slices_is_never_served_mixed(
    edge_factory: EdgeFactory, changing: ChangingOrigin, client: aiohttp.ClientSession
) -> None:
    edge = edge_factory(origin_url=changing.url)
    url = edge.url + "/m/video"
    seek = await fetch(client, url, headers={"Range": f"bytes={2 * MiB}-{2 * MiB + 99}"})
    assert seek.status == 206 and seek.body == changing.body(1)[2 * MiB : 2 * MiB + 100]
    changing.version = 2  # the file is replaced at the origin; the edge holds slice 2 of v1
    mixed = await fetch(client, url)
    assert mixed.status == 502, (mixed.status, mixed.headers)  # slice 0 of v2 does not fit v1
    fresh = await fetch(client, url)
    assert fresh.status == 200 and fresh.body == changing.body(2)  # refetched whole, all v2
    assert changing.ranges[:2] == [slice_range(2), slice_range(0)] and changing.ranges[2] is None


async def test_origin_that_ignores_range_is_streamed_and_kept(
    edge_factory: EdgeFactory, client: aiohttp.ClientSession
) -> None:
    size = 3 * MiB + 7
    body = synthetic.body("ignores-range", size)
    scripted = await ScriptedOrigin().start()
    try:
        # it claims Accept-Ranges but answers every request with the whole 200
        fields = [("ETag", '"one"'), ("Cache-Control", "max-age=600"), ("Accept-Ranges", "bytes")]
        scripted.script("/big.bin", fields, body)
        edge = edge_factory(origin_url=scripted.url)
        seek = await fetch(client, edge.url + "/big.bin", headers={"Range": f"bytes={2 * MiB}-{2 * MiB + 9}"})
        assert seek.status == 206 and seek.body == body[2 * MiB : 2 * MiB + 10]
        whole = await fetch(client, edge.url + "/big.bin")
        assert whole.status == 200 and whole.body == body
        again = await fetch(client, edge.url + "/big.bin")
        assert again.status == 200 and again.body == body and "hit" in again.cache_status
        assert scripted.counts["/big.bin"] <= 4, scripted.counts
    finally:
        await scripted.close()


async def test_many_cold_seeks_to_one_slice_cost_one_origin_request(
    edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
) -> None:
    size = 16 * MiB
    target = target_for(unique_name, size, rate=8_000_000)
    start = 9 * MiB + 5
    replies = await asyncio.gather(
        *(
            fetch(client, edge.url + target, headers={"Range": f"bytes={start}-{start + 999}"})
            for _ in range(20)
        )
    )
    expected = part(unique_name, size, start, start + 1000)
    assert all(r.status == 206 and r.body == expected for r in replies)
    assert ranges_seen(origin, target) == [slice_range(9)]
    assert origin_stats(origin)["paths"][target] == 1


async def test_purged_slices_are_never_served_again(
    tmp_path: Path, changing: ChangingOrigin, client: aiohttp.ClientSession
) -> None:
    node = PurgeCluster(tmp_path, changing, [NodeSpec("n1", "r1", disk=True)])  # type: ignore[arg-type]
    await node.start()
    try:
        whole = await node.get(client, "n1", "/m/video")
        assert whole.status == 200 and whole.body == changing.body(1)
        assert changing.ranges == [None, slice_range(1), slice_range(2)]
        status, _ = await node.purge(client, "n1", {"url": f"http://{PURGE_HOST}/m/video"})
        assert status == 200
        # same version at the origin: the slices still stored under its ids must not be reused
        after = await node.get(client, "n1", "/m/video")
        assert after.status == 200 and after.body == changing.body(1)
        again = changing.ranges[3:]
        assert again[0] is None and sorted(r for r in again if r is not None) == [
            slice_range(1),
            slice_range(2),
        ]
    finally:
        await node.close()
