"""A soft purge of a sliced object costs one conditional request, not a refetch of every slice (issue 14).

The origin here answers If-None-Match with 304 while its object keeps its ETag, and records
every request (its Range and If-None-Match). After a soft purge the node revalidates the
object's record once; the slices it already holds belong to the version the origin just
confirmed (their ids carry the validators), so they are served again without a Range
request. When the object did change, the conditional request gets the new version and
nothing of the old one is ever served. A hard purge still refetches every slice
(tests/integration/test_slices.py::test_purged_slices_are_never_served_again).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from origin.demo import synthetic
from tests.integration.harness import fetch
from tests.integration.purge_harness import HOST as PURGE_HOST
from tests.integration.purge_harness import NodeSpec, PurgeCluster

pytestmark = pytest.mark.timeout(90)

MiB = 1024 * 1024
SIZE = 3 * MiB  # three 1 MiB slices


def slice_range(k: int) -> str:
    return f"bytes={k * MiB}-{(k + 1) * MiB - 1}"


class RevalidatingOrigin:
    """One object, /m/video, whose version (ETag) the test may change; 304 to a matching If-None-Match."""

    def __init__(self) -> None:
        self.version = 1
        self.seen: list[tuple[str | None, str | None]] = []  # (Range, If-None-Match) per request
        self._runner: web.AppRunner | None = None
        self.port = 0

    def body(self, version: int) -> bytes:
        return synthetic.body(f"soft-sliced-v{version}", SIZE)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> RevalidatingOrigin:
        app = web.Application()
        app.router.add_get("/m/video", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.Response:
        rng, inm = request.headers.get("Range"), request.headers.get("If-None-Match")
        self.seen.append((rng, inm))
        etag = f'"v{self.version}"'
        headers = {"ETag": etag, "Cache-Control": "max-age=600", "Accept-Ranges": "bytes"}
        if inm is not None and etag in [t.strip() for t in inm.split(",")]:
            return web.Response(status=304, headers=headers)
        body = self.body(self.version)
        if rng is None:
            return web.Response(body=body, headers=headers)
        first, _, last = rng.removeprefix("bytes=").partition("-")
        a, b = int(first), min(int(last), SIZE - 1)
        headers["Content-Range"] = f"bytes {a}-{b}/{SIZE}"
        return web.Response(status=206, body=body[a : b + 1], headers=headers)


@pytest.fixture
async def revalidating() -> AsyncIterator[RevalidatingOrigin]:
    made = await RevalidatingOrigin().start()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def node(tmp_path: Path, revalidating: RevalidatingOrigin) -> AsyncIterator[PurgeCluster]:
    cluster = PurgeCluster(tmp_path, revalidating, [NodeSpec("n1", "r1", disk=True)])  # type: ignore[arg-type]
    await cluster.start()
    try:
        yield cluster
    finally:
        await cluster.close()


async def stored_whole(node: PurgeCluster, origin: RevalidatingOrigin, client: aiohttp.ClientSession) -> None:
    whole = await node.get(client, "n1", "/m/video")
    assert whole.status == 200 and whole.body == origin.body(1)
    assert origin.seen == [(None, None), (slice_range(1), None), (slice_range(2), None)]
    assert "hit" in (await node.get(client, "n1", "/m/video")).cache_status
    status, _ = await node.purge(client, "n1", {"url": f"http://{PURGE_HOST}/m/video", "soft": True})
    assert status == 200
    origin.seen.clear()


async def test_soft_purged_sliced_object_is_revalidated_once_and_its_slices_served_again(
    node: PurgeCluster, revalidating: RevalidatingOrigin, client: aiohttp.ClientSession
) -> None:
    await stored_whole(node, revalidating, client)
    after = await node.get(client, "n1", "/m/video")
    assert after.status == 200 and after.body == revalidating.body(1)
    assert (after.cache_status.get("fwd"), after.cache_status.get("fwd-status")) == ("stale", "304")
    # one conditional request for the object's validators; no slice fetched again
    assert revalidating.seen == [(None, '"v1"')], revalidating.seen
    spec = node.specs["n1"]
    seek = await fetch(client, f"http://{spec.host}:{spec.port}/m/video",
                       headers={"Host": PURGE_HOST, "Range": f"bytes={2 * MiB + 5}-{2 * MiB + 104}"})
    assert seek.status == 206 and seek.body == revalidating.body(1)[2 * MiB + 5 : 2 * MiB + 105]
    assert "hit" in seek.cache_status and len(revalidating.seen) == 1, revalidating.seen


async def test_soft_purged_sliced_object_that_changed_is_served_new_never_mixed(
    node: PurgeCluster, revalidating: RevalidatingOrigin, client: aiohttp.ClientSession
) -> None:
    await stored_whole(node, revalidating, client)
    revalidating.version = 2
    after = await node.get(client, "n1", "/m/video")
    assert after.status == 200 and after.body == revalidating.body(2)
    assert revalidating.seen == [(None, '"v1"'), (slice_range(1), None), (slice_range(2), None)]
