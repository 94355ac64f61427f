"""Static files for the demo origin: GET/HEAD under one root, with validators and ranges.

aiohttp's FileResponse is not used because it compares If-Range as a date only (an ETag
in If-Range is ignored and the range is served anyway), compares If-Modified-Since with
sub-second mtimes (a client echoing Last-Modified never gets its 304) and silently serves
`.gz` siblings. This handler keeps RFC 9110 semantics: strong ETags, second-precision
Last-Modified, one byte range, and Cache-Control chosen by the file's extension. One
executor call opens and stats the file; the body goes out with `loop.sendfile`.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

from aiohttp import web

from origin.demo.httprules import (
    Precondition,
    RangeKind,
    Validators,
    evaluate_preconditions,
    http_date,
    select_range,
)

__all__ = ["StaticFiles", "cache_control_for", "content_type_for", "file_etag"]

_READ_BYTES = 256 * 1024  # chunk size when sendfile is not available
_IN_MEMORY_BYTES = 1024 * 1024  # files up to this size are read whole in the executor call

# Cache-Control by extension: live manifests churn, media segments never change.
_CACHE_RULES: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({".m3u8", ".mpd"}), "max-age=2"),
    (frozenset({".ts", ".m4s", ".mp4"}), "max-age=86400"),
    (
        frozenset({".css", ".js", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".avif"}),
        "max-age=3600",
    ),
    (frozenset({".html", ".htm"}), "max-age=60"),
)

_MEDIA_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}


def cache_control_for(path: str) -> str | None:
    """The Cache-Control value the demo origin sends for a file name, or None."""
    suffix = os.path.splitext(path)[1].lower()
    for suffixes, value in _CACHE_RULES:
        if suffix in suffixes:
            return value
    return None


def content_type_for(path: str) -> str:
    """The Content-Type for a file name, by extension."""
    suffix = os.path.splitext(path)[1].lower()
    known = _MEDIA_TYPES.get(suffix)
    if known is not None:
        return known
    guessed = mimetypes.guess_type(path)[0]
    return guessed or "application/octet-stream"


def file_etag(st: os.stat_result) -> str:
    """A strong ETag from size and mtime: changes whenever the file is rewritten."""
    return f'"{st.st_size:x}-{st.st_mtime_ns:x}"'


@dataclass(frozen=True, slots=True)
class _Opened:
    path: Path  # the file actually opened (index.html for a directory)
    st: os.stat_result
    data: bytes | None  # the whole file when small; then `file` is None
    file: BinaryIO | None  # open for sendfile when large; the handler closes it


def _open_regular(path: Path) -> _Opened | None:
    """Opens a regular file, stats the descriptor and reads it if small; None if none."""
    target = path / "index.html" if path.is_dir() else path
    try:
        fobj = open(target, "rb")  # noqa: SIM115 - closed here or by the handler
    except OSError:
        return None
    st = os.fstat(fobj.fileno())
    if not stat.S_ISREG(st.st_mode) or st.st_size <= _IN_MEMORY_BYTES:
        with fobj:
            return _Opened(target, st, fobj.read(), None) if stat.S_ISREG(st.st_mode) else None
    return _Opened(target, st, None, fobj)


class StaticFiles:
    """Serves files under `root`; any target naming `..`, encoded or not, is a 404."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def locate(self, raw_path: str) -> Path | None:
        """Maps a raw request target to a path under root, or None if it could escape."""
        path = raw_path.split("?", 1)[0]
        parts: list[str] = []
        for segment in path.split("/"):
            name = unquote(segment, errors="strict") if "%" in segment else segment
            if name in ("", "."):
                continue
            if name == ".." or "/" in name or "\\" in name or "\x00" in name:
                return None
            parts.append(name)
        candidate = self._root.joinpath(*parts).resolve()
        # A symlink inside root may still point outside it.
        if candidate != self._root and not candidate.is_relative_to(self._root):
            return None
        return candidate

    def _find_and_open(self, raw_path: str) -> _Opened | None:
        """All the blocking work of one request: resolve, open, stat, maybe read."""
        try:
            path = self.locate(raw_path)
        except UnicodeDecodeError:
            return None
        return None if path is None else _open_regular(path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET/HEAD for one file with ETag, Last-Modified, conditionals and one Range."""
        loop = asyncio.get_running_loop()
        opened = await loop.run_in_executor(None, self._find_and_open, request.raw_path)
        if opened is None:
            return web.Response(status=404, text="not found\n")
        try:
            return await self._send(request, opened)
        finally:
            if opened.file is not None:
                await loop.run_in_executor(None, opened.file.close)

    async def _send(self, request: web.Request, opened: _Opened) -> web.StreamResponse:
        st, name = opened.st, opened.path.name
        validators = Validators(file_etag(st), int(st.st_mtime))
        headers = {
            "ETag": validators.etag or "",
            "Last-Modified": http_date(st.st_mtime),
            "Accept-Ranges": "bytes",
        }
        cc = cache_control_for(name)
        if cc is not None:
            headers["Cache-Control"] = cc
        decision = evaluate_preconditions(request.method, request.headers, validators)
        # RFC 9110 §15.4.5: a 304 carries the validators and Cache-Control a 200 would.
        if decision is Precondition.NOT_MODIFIED:
            return web.Response(status=304, headers=headers)
        if decision is Precondition.FAILED:
            return web.Response(status=412, headers=headers)
        rng = select_range(request.method, request.headers, validators, st.st_size)
        if rng.kind is RangeKind.UNSATISFIABLE:
            headers["Content-Range"] = rng.content_range
            return web.Response(status=416, headers=headers)
        headers["Content-Type"] = content_type_for(name)
        status = 200
        if rng.kind is RangeKind.PARTIAL:
            status = 206
            headers["Content-Range"] = rng.content_range
        if opened.data is not None:
            body = opened.data[rng.start : rng.end]
            return web.Response(status=status, headers=headers, body=body)
        assert opened.file is not None  # large files stay open for sendfile
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = rng.end - rng.start
        await resp.prepare(request)
        if request.method != "HEAD" and rng.end > rng.start:
            await _send_span(request, resp, opened.file, rng.start, rng.end - rng.start)
        await resp.write_eof()
        return resp


async def _send_span(
    request: web.Request, resp: web.StreamResponse, fobj: BinaryIO, offset: int, count: int
) -> None:
    loop = asyncio.get_running_loop()
    transport = request.transport
    if transport is not None:
        try:
            await loop.sendfile(transport, fobj, offset, count, fallback=False)
            return
        except (NotImplementedError, asyncio.SendfileNotAvailableError):
            pass  # no native sendfile on this loop/transport: copy through the executor
    fobj.seek(offset)
    while count > 0:
        chunk = await loop.run_in_executor(None, fobj.read, min(_READ_BYTES, count))
        if not chunk:
            raise ConnectionResetError("file shrank while being sent")
        await resp.write(chunk)
        count -= len(chunk)
