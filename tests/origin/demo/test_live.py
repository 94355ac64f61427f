"""The demo origin's live-like HLS stream: a playlist that rolls with its clock (in process)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from origin.demo.live import SEGMENT_S, WINDOW, LiveStream


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_playlist_rolls_and_segments_exist_once_listed() -> None:
    clock = Clock(1000.0)
    live = LiveStream(clock)
    first = await live.playlist(make_mocked_request("GET", "/live/index.m3u8"))
    text = first.text or ""
    assert "#EXT-X-ENDLIST" not in text and f"#EXT-X-TARGETDURATION:{SEGMENT_S}" in text
    newest = int(1000 // SEGMENT_S)
    assert text.rstrip().endswith(f"seg{newest}.ts") and text.count(".ts") == WINDOW
    assert "Cache-Control" not in first.headers and "Last-Modified" in first.headers
    clock.now += SEGMENT_S
    rolled = (await live.playlist(make_mocked_request("GET", "/live/index.m3u8"))).text or ""
    assert rolled.rstrip().endswith(f"seg{newest + 1}.ts")

    def seg(n: int) -> web.Request:
        return make_mocked_request("GET", f"/live/seg{n}.ts", match_info={"n": str(n)})

    made = await live.segment(seg(newest))
    assert made.status == 200 and made.body is not None
    body = bytes(made.body)  # type: ignore[arg-type]
    assert len(body) % 188 == 0 and body[::188] == b"\x47" * (len(body) // 188)
    assert (await live.segment(seg(newest + 2))).status == 404


@pytest.mark.parametrize("n", [0, 3])
async def test_segments_are_the_same_bytes_every_time(n: int) -> None:
    live = LiveStream(Clock(100.0))
    req = make_mocked_request("GET", f"/live/seg{n}.ts", match_info={"n": str(n)})
    assert (await live.segment(req)).body == (await live.segment(req)).body
