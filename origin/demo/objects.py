"""Synthetic objects: GET /obj/<name>?size=&cc=&..., a response shaped by its query.

Every header a cache reacts to can be asked for (Cache-Control, Surrogate-Control, ETag, Last-Modified,
Expires, Age, Vary, Set-Cookie, Surrogate-Key, the status), and so can the failures a
cache must survive: a slow head (`delay`), a slow body (`rate`), no Content-Length
(`chunked`), and a connection cut after N body bytes (`fail_at`). Bodies come from
origin.demo.synthetic, so a test can compute what the edge must serve; `version` changes the
bytes and the validators, simulating an origin update. Delays end early when the server
closes, so closing never waits for a slow response.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

import xxhash
from aiohttp import web

from origin.demo import synthetic
from origin.demo.httprules import (
    Precondition,
    RangeKind,
    Validators,
    evaluate_preconditions,
    http_date,
    parse_http_date,
    select_range,
)
from origin.demo.misc import echo_response
from origin.demo.static import content_type_for

__all__ = ["AUTO_LAST_MODIFIED_BASE", "ObjParams", "SyntheticObjects", "parse_params"]

MAX_SIZE_BYTES = 16 * 1024**3
SMALL_BODY_BYTES = 1024 * 1024  # at most this is built in memory and sent in one write
AUTO_LAST_MODIFIED_BASE = 1_700_000_000  # 2023-11-14T22:13:20Z: `lm=auto` for version ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjParams:
    """The query of one /obj/ request, validated."""

    name: str
    size: int = 1024
    version: str = ""
    status: int = 200
    cache_control: str | None = None
    surrogate_control: str | None = None
    etag: str | None = None
    last_modified: int | None = None  # whole seconds since the epoch
    expires_in_s: float | None = None
    age: int | None = None
    vary: str | None = None
    cookie: bool = False
    tags: tuple[str, ...] = ()
    delay_s: float = 0.0
    rate_bytes_per_s: int | None = None
    chunked: bool = False
    fail_at: int | None = None


def _auto_last_modified(version: str) -> int:
    # Numeric versions give later dates for larger numbers, so an update never looks older.
    if version.isdigit():
        return AUTO_LAST_MODIFIED_BASE + int(version) * 86400
    if version == "":
        return AUTO_LAST_MODIFIED_BASE
    return AUTO_LAST_MODIFIED_BASE + (1 + xxhash.xxh32_intdigest(version.encode()) % 100_000) * 60


def _int(query: Mapping[str, str], key: str, low: int, high: int) -> int | None:
    if key not in query:
        return None
    value = int(query[key])  # ValueError -> 400
    if not low <= value <= high:
        raise ValueError(f"{key} must be in {low}..{high}")
    return value


def _float(query: Mapping[str, str], key: str) -> float | None:
    if key not in query:
        return None
    value = float(query[key])
    if not 0 <= value < 86400:
        raise ValueError(f"{key} must be in [0, 86400)")
    return value


def parse_params(name: str, query: Mapping[str, str]) -> ObjParams:
    """Validates the query; raises ValueError naming the bad parameter."""
    size = _int(query, "size", 0, MAX_SIZE_BYTES)
    version = query.get("version", "")
    size = 1024 if size is None else size
    etag = query.get("etag")
    if etag == "auto":
        etag = synthetic.auto_etag(name, size, version)
    elif etag is not None and not (etag.startswith('"') or etag.startswith('W/"')):
        etag = f'"{etag}"'
    lm_value = query.get("lm")
    last_modified: int | None = None
    if lm_value == "auto":
        last_modified = _auto_last_modified(version)
    elif lm_value is not None:
        last_modified = parse_http_date(lm_value)
        if last_modified is None:
            raise ValueError("lm must be an HTTP-date or 'auto'")
    tags = tuple(t for t in query.get("tags", "").split(",") if t)
    return ObjParams(
        name=name,
        size=size,
        version=version,
        status=_int(query, "status", 200, 599) or 200,
        cache_control=query.get("cc"),
        surrogate_control=query.get("sc"),
        etag=etag,
        last_modified=last_modified,
        expires_in_s=_float(query, "expires"),
        age=_int(query, "age", 0, 2**31),
        vary=query.get("vary"),
        cookie=query.get("cookie") == "1",
        tags=tags,
        delay_s=_float(query, "delay") or 0.0,
        rate_bytes_per_s=_int(query, "rate", 1, 2**40),
        chunked=query.get("chunked") == "1",
        fail_at=_int(query, "fail_at", 0, MAX_SIZE_BYTES),
    )


def _headers(p: ObjParams, now: float) -> dict[str, str]:
    # typed by the name's extension, as a file server would (the edge checks they agree)
    headers = {"Content-Type": content_type_for(p.name)}
    if p.cache_control is not None:
        headers["Cache-Control"] = p.cache_control
    if p.surrogate_control is not None:
        headers["Surrogate-Control"] = p.surrogate_control
    if p.etag is not None:
        headers["ETag"] = p.etag
    if p.last_modified is not None:
        headers["Last-Modified"] = http_date(p.last_modified)
    if p.expires_in_s is not None:
        headers["Expires"] = http_date(now + p.expires_in_s)
    if p.age is not None:
        headers["Age"] = str(p.age)
    if p.vary is not None:
        headers["Vary"] = p.vary
    if p.cookie:
        headers["Set-Cookie"] = f"obj={p.name}; Path=/"
    if p.tags:
        headers["Surrogate-Key"] = " ".join(p.tags)
    if p.status == 200 and not p.chunked:
        headers["Accept-Ranges"] = "bytes"
    return headers


class SyntheticObjects:
    """The /obj/ handler; `closing` is set when the server closes and cuts every wait short."""

    def __init__(self, closing: asyncio.Event) -> None:
        self._closing = closing

    async def _pause(self, seconds: float) -> bool:
        """Sleeps; False when the server began closing first."""
        if self._closing.is_set():
            return False
        try:
            async with asyncio.timeout(seconds):
                await self._closing.wait()
        except TimeoutError:
            return True
        return False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serves one synthetic object as its query describes; other methods are echoed."""
        if request.method not in ("GET", "HEAD"):
            return await echo_response(request, request.query.get("cc"))
        try:
            p = parse_params(request.match_info["name"], request.query)
        except ValueError as exc:
            return web.Response(status=400, text=f"bad query: {exc}\n")
        if p.delay_s and not await self._pause(p.delay_s):
            return _drop(request)
        headers = _headers(p, time.time())
        status, start, end = p.status, 0, p.size
        if p.status == 200:
            validators = Validators(p.etag, p.last_modified)
            decision = evaluate_preconditions(request.method, request.headers, validators)
            if decision is Precondition.NOT_MODIFIED:
                headers.pop("Content-Type")
                return web.Response(status=304, headers=headers)
            if decision is Precondition.FAILED:
                return web.Response(status=412, headers=headers)
            rng = select_range(request.method, request.headers, validators, p.size)
            if rng.kind is RangeKind.UNSATISFIABLE:
                headers["Content-Range"] = rng.content_range
                return web.Response(status=416, headers=headers)
            if rng.kind is RangeKind.PARTIAL:
                status, start, end = 206, rng.start, rng.end
                headers["Content-Range"] = rng.content_range
        # RFC 9110 §6.4.1: 204 and 304 never carry content.
        if status in (204, 304):
            headers.pop("Content-Type")
            return web.Response(status=status, headers=headers)
        simple = p.rate_bytes_per_s is None and not p.chunked and p.fail_at is None
        if simple and end - start <= SMALL_BODY_BYTES:
            data = b"".join(synthetic.iter_body(p.name, p.size, p.version, start=start, end=end))
            return web.Response(status=status, body=data, headers=headers)
        return await self._stream(request, p, status, headers, start, end)

    async def _stream(
        self,
        request: web.Request,
        p: ObjParams,
        status: int,
        headers: dict[str, str],
        start: int,
        end: int,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(status=status, headers=headers)
        if p.chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = end - start
        await resp.prepare(request)
        if request.method == "HEAD":
            await resp.write_eof()
            return resp
        chunk = synthetic.BLOCK_BYTES
        if p.rate_bytes_per_s is not None:
            chunk = max(1, min(chunk, p.rate_bytes_per_s // 10))  # about ten writes a second
        sent = 0
        for piece in synthetic.iter_body(p.name, p.size, p.version, chunk, start=start, end=end):
            if p.fail_at is not None and sent + len(piece) >= p.fail_at:
                await resp.write(piece[: p.fail_at - sent])
                return _drop(request, resp)
            await resp.write(piece)
            sent += len(piece)
            rate = p.rate_bytes_per_s
            if rate is not None and sent < end - start and not await self._pause(len(piece) / rate):
                return _drop(request, resp)
        if p.fail_at is not None:  # at or past the end: no end of message (chunked: no last-chunk)
            return _drop(request, resp)
        await resp.write_eof()
        return resp


def _drop(request: web.Request, resp: web.StreamResponse | None = None) -> web.StreamResponse:
    """Closes the connection after flushing what was written; the body stays incomplete."""
    if request.transport is not None:
        request.transport.close()
    return resp if resp is not None else web.Response(status=503)
