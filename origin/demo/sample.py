"""The sample site the demo origin serves: a page, its assets, HLS, DASH and a large MP4.

Everything is generated locally from deterministic bytes (origin.demo.synthetic), so two runs
write identical files. Generation is idempotent: a file that already has the expected
size is left alone, which keeps its mtime and so its ETag stable across restarts. Each
file is written to a temporary name and renamed into place, so an interrupted run never
leaves a short file that a later run would accept.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

from origin.demo import synthetic

__all__ = ["BIG_MP4_BYTES", "DASH_SEGMENTS", "HLS_SEGMENTS", "TS_PACKETS_PER_SEGMENT", "generate"]

BIG_MP4_BYTES = 64 * 1024 * 1024
HLS_SEGMENTS = 10
TS_PACKET_BYTES = 188
TS_PACKETS_PER_SEGMENT = 1600  # 300,800 bytes per segment
DASH_SEGMENTS = 4
DASH_SEGMENT_PAYLOAD_BYTES = 200 * 1024
_PROGRESS_STEP_BYTES = 16 * 1024 * 1024

_INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>edgecache demo origin</title>
<link rel="stylesheet" href="/style.css">
<script src="/app.js" defer></script>
</head>
<body>
<h1><img src="/logo.png" alt="" width="16" height="16"> edgecache demo origin</h1>
<ul>
<li><a href="/video/hls/master.m3u8">HLS master playlist</a></li>
<li><a href="/video/dash/manifest.mpd">DASH manifest</a></li>
<li><a href="/video/big.mp4">large MP4 (64 MiB, for Range requests)</a></li>
<li><a href="/obj/example?size=4096&amp;cc=max-age%3D60">a synthetic object</a></li>
<li><a href="/echo/hello">request echo</a></li>
</ul>
</body>
</html>
"""

_STYLE_CSS = """body { font-family: sans-serif; margin: 2em; color: #222; }
h1 img { vertical-align: middle; }
a { color: #0645ad; }
"""

_APP_JS = """document.addEventListener("DOMContentLoaded", () => {
  const note = document.createElement("p");
  note.textContent = "served by the edgecache demo origin";
  document.body.appendChild(note);
});
"""


def _png(width: int = 16, height: int = 16) -> bytes:
    """A valid RGB PNG with a diagonal gradient."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 16 % 256, y * 16 % 256, 200)) for x in range(width))
        for y in range(height)
    )
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = chunk(b"IDAT", zlib.compress(rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def _ts_segment(index: int) -> bytes:
    """MPEG-TS-shaped bytes: 188-byte packets, each starting with the 0x47 sync byte."""
    payload_bytes = TS_PACKET_BYTES - 4
    payload = synthetic.body(f"hls/seg{index:05d}", payload_bytes * TS_PACKETS_PER_SEGMENT)
    pid = 0x100
    packets = []
    for n in range(TS_PACKETS_PER_SEGMENT):
        start_flag = 0x40 if n == 0 else 0x00
        header = bytes((0x47, start_flag | (pid >> 8), pid & 0xFF, 0x10 | (n & 0x0F)))
        packets.append(header + payload[n * payload_bytes : (n + 1) * payload_bytes])
    return b"".join(packets)


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _ftyp() -> bytes:
    return _box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41")


def _master_m3u8() -> str:
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720,CODECS="avc1.64001f,mp4a.40.2"\n'
        "720p/index.m3u8\n"
    )


def _media_m3u8() -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:4", "#EXT-X-MEDIA-SEQUENCE:0"]
    for i in range(HLS_SEGMENTS):
        lines += ["#EXTINF:4.000,", f"seg{i:05d}.ts"]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _manifest_mpd() -> str:
    seconds = DASH_SEGMENTS * 4
    return f"""<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT{seconds}S"
     minBufferTime="PT2S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">
  <Period id="0">
    <AdaptationSet mimeType="video/mp4" segmentAlignment="true">
      <Representation id="720p" bandwidth="2800000" width="1280" height="720" codecs="avc1.64001f">
        <SegmentTemplate timescale="1000" duration="4000" startNumber="1"
                         initialization="init.mp4" media="seg$Number%05d$.m4s"/>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"""


def _m4s_segment(number: int) -> bytes:
    styp = _box(b"styp", b"msdh" + struct.pack(">I", 0) + b"msdhmsix")
    mdat = _box(b"mdat", synthetic.body(f"dash/seg{number:05d}", DASH_SEGMENT_PAYLOAD_BYTES))
    return styp + mdat


def _big_mp4_chunks(log: Callable[[str], None]) -> Iterable[bytes]:
    """An `ftyp` box then one 64-bit `mdat` box filling the file to exactly BIG_MP4_BYTES."""
    head = _ftyp()
    mdat_header_bytes = 16  # size 1 + type + 64-bit largesize
    payload_bytes = BIG_MP4_BYTES - len(head) - mdat_header_bytes
    log(f"writing video/big.mp4 ({BIG_MP4_BYTES // (1024 * 1024)} MiB)")
    largesize = struct.pack(">Q", mdat_header_bytes + payload_bytes)
    yield head + struct.pack(">I", 1) + b"mdat" + largesize
    written = len(head) + mdat_header_bytes
    next_report = _PROGRESS_STEP_BYTES
    for piece in synthetic.iter_body("video/big.mp4", payload_bytes, chunk=1024 * 1024):
        yield piece
        written += len(piece)
        if written >= next_report or written == BIG_MP4_BYTES:
            log(f"  video/big.mp4: {written >> 20} / {BIG_MP4_BYTES >> 20} MiB")
            next_report += _PROGRESS_STEP_BYTES


def _write(root: Path, rel: str, size: int, make: Callable[[], Iterable[bytes]]) -> bool:
    """Writes root/rel atomically unless it already has `size` bytes; True if written."""
    path = root / rel
    try:
        if path.stat().st_size == size:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.writelines(make())
    os.replace(tmp, path)
    return True


def _small(data: bytes) -> Callable[[], Iterable[bytes]]:
    return lambda: (data,)


def _small_lazy(make: Callable[[int], bytes], arg: int) -> Callable[[], Iterable[bytes]]:
    return lambda: (make(arg),)


def generate(root: Path, *, log: Callable[[str], None] = print) -> None:
    """Writes the sample site under `root` (no network); files already complete are kept."""
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {
        "index.html": _INDEX_HTML.encode(),
        "style.css": _STYLE_CSS.encode(),
        "app.js": _APP_JS.encode(),
        "logo.png": _png(),
        "video/hls/master.m3u8": _master_m3u8().encode(),
        "video/hls/720p/index.m3u8": _media_m3u8().encode(),
        "video/dash/manifest.mpd": _manifest_mpd().encode(),
        "video/dash/init.mp4": _ftyp() + _box(b"moov", b""),
    }
    written = 0
    for rel, data in files.items():
        # Small files are compared by content, so an edited template is rewritten.
        path = root / rel
        if path.exists() and path.read_bytes() != data:
            path.unlink()
        written += _write(root, rel, len(data), _small(data))
    ts_bytes = TS_PACKET_BYTES * TS_PACKETS_PER_SEGMENT
    for i in range(HLS_SEGMENTS):
        rel = f"video/hls/720p/seg{i:05d}.ts"
        written += _write(root, rel, ts_bytes, _small_lazy(_ts_segment, i))
    m4s_bytes = len(_m4s_segment(1))
    for n in range(1, DASH_SEGMENTS + 1):
        rel = f"video/dash/seg{n:05d}.m4s"
        written += _write(root, rel, m4s_bytes, _small_lazy(_m4s_segment, n))
    written += _write(root, "video/big.mp4", BIG_MP4_BYTES, lambda: _big_mp4_chunks(log))
    log(f"sample site in {root}: {written} file(s) written")
