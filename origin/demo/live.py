"""A live-like HLS stream for `make run` and the streaming tests: a playlist that rolls.

    GET /live/index.m3u8        the last WINDOW segments; a new one every SEGMENT_S seconds
    GET /live/seg<N>.ts         segment N (188-byte MPEG-TS packets of synthetic bytes); 404
                                for segments not yet produced

Both answer the way many streaming origins do: Content-Type and Last-Modified, no
Cache-Control, so the edge's streaming defaults decide their lifetimes (edge.rules.streaming).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from origin.demo import synthetic
from origin.demo.httprules import http_date

__all__ = ["SEGMENT_S", "WINDOW", "LiveStream"]

SEGMENT_S = 2  # #EXT-X-TARGETDURATION
WINDOW = 5  # segments listed in the playlist
_PACKETS = 200  # per segment
_TS_PACKET = 188


class LiveStream:
    """Serves the rolling playlist and its segments from a clock."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def _current(self) -> int:
        return int(self._clock() // SEGMENT_S)

    async def playlist(self, _: web.Request) -> web.Response:
        """The live playlist: no #EXT-X-ENDLIST, the newest segment last."""
        last = self._current()
        first = max(0, last - WINDOW + 1)
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{SEGMENT_S}",
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
        ]
        for n in range(first, last + 1):
            lines += [f"#EXTINF:{SEGMENT_S}.000,", f"seg{n}.ts"]
        headers = {
            "Content-Type": "application/vnd.apple.mpegurl",
            "Last-Modified": http_date(last * SEGMENT_S),
        }
        return web.Response(body=("\n".join(lines) + "\n").encode(), headers=headers)

    async def segment(self, request: web.Request) -> web.Response:
        """Segment N once it exists: the same bytes every time it is asked for."""
        n = int(request.match_info["n"])
        if n > self._current():
            return web.Response(status=404, text="segment not produced yet\n")
        payload = synthetic.body(f"live-seg{n}", _PACKETS * (_TS_PACKET - 1))
        packets = b"".join(
            b"\x47" + payload[i * (_TS_PACKET - 1) : (i + 1) * (_TS_PACKET - 1)] for i in range(_PACKETS)
        )
        headers = {"Content-Type": "video/mp2t", "Last-Modified": http_date(n * SEGMENT_S)}
        return web.Response(body=packets, headers=headers)
