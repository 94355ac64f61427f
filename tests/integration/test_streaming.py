"""HLS/DASH awareness through a real edge process (issue 14).

A scripted origin answers the way streaming origins often do: Last-Modified and a media
type, no Cache-Control. The edge must give live playlists a lifetime of half their target
duration, VOD playlists a long one, segments a day, and turn many players polling a live
playlist into about one origin request per lifetime.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.integration.conftest import EdgeFactory
from tests.integration.harness import Proc, ScriptedOrigin, fetch, http_date

pytestmark = pytest.mark.timeout(60)

HLS = "application/vnd.apple.mpegurl"


def live_playlist(target_duration: int) -> bytes:
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target_duration}",
        "#EXT-X-MEDIA-SEQUENCE:7",
    ]
    for n in range(7, 10):
        lines += [f"#EXTINF:{target_duration}.0,", f"seg{n}.ts"]
    return ("\n".join(lines) + "\n").encode()


def vod_playlist() -> bytes:
    return live_playlist(6).replace(b"seg9.ts\n", b"seg9.ts\n#EXT-X-ENDLIST\n")


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedOrigin]:
    origin = await ScriptedOrigin().start()
    try:
        yield origin
    finally:
        await origin.close()


@pytest.fixture
def edge_for(edge_factory: EdgeFactory, scripted: ScriptedOrigin) -> Proc:
    return edge_factory(origin_url=scripted.url)


def ttl_of(reply_cache_status: dict[str, str]) -> int:
    return int(reply_cache_status["ttl"])


async def test_live_playlist_lives_half_its_target_duration(
    edge_for: Proc, scripted: ScriptedOrigin, client: aiohttp.ClientSession
) -> None:
    # a day-old Last-Modified: the RFC heuristic alone would keep it for hours
    old = http_date(time.time() - 86400)
    for path in ("/live/index.m3u8", "/live/by-type"):  # recognised by extension, or by type
        scripted.script(path, [("Content-Type", HLS), ("Last-Modified", old)], live_playlist(10))
        first = await fetch(client, edge_for.url + path)
        assert first.status == 200 and first.body == live_playlist(10)
        second = await fetch(client, edge_for.url + path)
        assert "hit" in second.cache_status, (path, second.cache_status)
        assert 3 <= ttl_of(second.cache_status) <= 5, (path, second.cache_status)  # half of 10 s


async def test_vod_playlist_and_segments_live_long(
    edge_for: Proc, scripted: ScriptedOrigin, client: aiohttp.ClientSession
) -> None:
    recent = http_date(time.time() - 600)  # heuristic alone: one minute
    scripted.script("/vod/index.m3u8", [("Content-Type", HLS), ("Last-Modified", recent)], vod_playlist())
    scripted.script("/vod/seg7.ts", [("Content-Type", "video/mp2t")], b"\x47" * 188 * 10)
    for path, low, high in (("/vod/index.m3u8", 3000, 3600), ("/vod/seg7.ts", 80000, 86400)):
        await fetch(client, edge_for.url + path)
        again = await fetch(client, edge_for.url + path)
        assert "hit" in again.cache_status, (path, again.cache_status)
        assert low <= ttl_of(again.cache_status) <= high, (path, again.cache_status)
        assert scripted.counts[path] == 1


async def test_players_polling_a_live_playlist_cost_one_request_per_lifetime(
    edge_for: Proc, scripted: ScriptedOrigin, client: aiohttp.ClientSession
) -> None:
    old = http_date(time.time() - 86400)
    scripted.script("/live/poll.m3u8", [("Content-Type", HLS), ("Last-Modified", old)], live_playlist(1))
    url = edge_for.url + "/live/poll.m3u8"
    cold = await asyncio.gather(*(fetch(client, url) for _ in range(50)))
    assert all(r.status == 200 and r.body == live_playlist(1) for r in cold)
    assert scripted.counts["/live/poll.m3u8"] == 1  # coalesced

    async def player() -> None:
        for _ in range(15):
            reply = await fetch(client, url)
            assert reply.status == 200 and reply.body == live_playlist(1)
            await asyncio.sleep(0.1)

    began = time.monotonic()
    await asyncio.gather(*(player() for _ in range(50)))
    elapsed = time.monotonic() - began
    # 750 polls over `elapsed` seconds; the playlist lives 0.5 s: about elapsed / 0.5 refreshes
    refreshes = scripted.counts["/live/poll.m3u8"] - 1
    assert refreshes <= elapsed / 0.5 + 2, (refreshes, elapsed)


async def test_demo_live_stream_playlist_and_segment(
    edge: Proc, origin: Proc, client: aiohttp.ClientSession
) -> None:
    first = await fetch(client, edge.url + "/live/index.m3u8")
    assert first.status == 200 and first.body.startswith(b"#EXTM3U")
    again = await fetch(client, edge.url + "/live/index.m3u8")
    if "hit" in again.cache_status:  # unless the stream rolled in between (then it was refetched)
        assert ttl_of(again.cache_status) <= 1  # half of the demo's 2 s target duration
    segment = first.body.decode().strip().splitlines()[-1]
    for _ in range(2):
        seg = await fetch(client, edge.url + "/live/" + segment)
        assert seg.status == 200 and len(seg.body) % 188 == 0
    assert "hit" in seg.cache_status and ttl_of(seg.cache_status) > 80000
