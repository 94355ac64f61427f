"""The request path, top to bottom: recv → lookup → hit | stale | miss | pass → deliver.

`try_fast` answers a fresh memory hit synchronously from the parser callback with a
prebuilt response: no task, no await. Everything else goes through `handle`, one method
per branch below it. Upstream failures are mapped to an HTTP status in one place
(`error_status`): timeouts 504, everything else 502.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import xxhash

from edge.accesslog import AccessLog
from edge.deliver import FastHeads, deliver_fill, deliver_hit
from edge.entry import EntryMeta
from edge.fill import VARY_MARKER_STATUS, Filler, FillInfo, replay_headers
from edge.forward import upstream_request
from edge.key import CacheKey, make_key
from edge.outcome import CacheOutcome, cache_status, reason_detail
from edge.rules.freshness import Usability, can_serve_stale_on_error, usability
from edge.server.request import Request
from edge.server.writer import ClientGone, Writer
from edge.store.base import Hit, RemoveReason
from edge.store.tiered import TieredStore
from origin.coalesce import Coalescer, Fill, FillFailed, FillOutcome, JoinResult
from origin.errors import UpstreamError, UpstreamTimeout
from origin.routes import Router
from origin.upstream import Upstream

__all__ = ["Handler", "error_status"]

log = logging.getLogger("edge.handler")


def error_status(exc: BaseException) -> tuple[int, str]:
    """The one mapping of upstream failures to an HTTP status and a one-line reason."""
    if isinstance(exc, FillFailed):
        if exc.outcome in (FillOutcome.WAIT_TIMEOUT, FillOutcome.FILL_TIMEOUT):
            return 504, "origin did not answer in time; retry later"
        if exc.__cause__ is not None:
            return error_status(exc.__cause__)
        return 502, f"origin fetch failed ({exc.outcome.name.lower() if exc.outcome else 'unknown'})"
    if isinstance(exc, UpstreamTimeout):
        return 504, "origin did not answer in time; retry later"
    if isinstance(exc, UpstreamError):
        return 502, f"origin failed: {exc}"
    return 502, "upstream failure"


class Handler:
    """Answers client requests from the store, a fill, or upstream."""

    def __init__(self, *, store: TieredStore, coalescer: Coalescer, filler: Filler, router: Router,
                 upstreams: Mapping[str, Upstream], allowlists: Mapping[str, tuple[str, ...] | None],
                 access_log: AccessLog | None, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._memory = store.memory
        self._coalescer = coalescer
        self._filler = filler
        self._router = router
        self._upstreams = upstreams
        self._allowlists = allowlists
        self._log = access_log
        self._clock = clock
        self._fast = FastHeads()

    # -- hot path ---------------------------------------------------------------------------
    def try_fast(self, request: Request) -> bytes | tuple[bytes, bytes] | None:
        """A fresh memory hit without Range or validators, as prebuilt bytes; else None."""
        method = request.method
        if (method != "GET" and method != "HEAD") or not request.plain or not request.keep_alive \
                or request.version != "1.1":
            return None
        host = request.raw_host
        if not host:
            return None
        url = "http://" + host.lower() + request.target
        hit = self._memory.get(xxhash.xxh3_128_digest(url.encode("utf-8", "surrogateescape")))
        if hit is None:
            return None
        meta = hit.meta
        if meta.status == VARY_MARKER_STATUS:
            variant = make_key("http", host, request.target).variant(meta.vary, request.headers)
            hit = self._memory.get(variant.id)
            if hit is None:
                return None
            meta = hit.meta
        now = self._clock()
        body = hit.body_bytes()
        if body is None or meta.no_cache or meta.invalidated or meta.lifetime_s <= meta.age(now):
            return None
        response = self._fast.get(meta, body, now, method == "HEAD")
        if self._log is not None:
            self._log.write(request, meta.status, "hit", len(body), 0.0)
        return response

    # -- slow path ----------------------------------------------------------------------------
    async def handle(self, request: Request, writer: Writer) -> None:
        """Answers one request (anything try_fast declined)."""
        started = time.monotonic()
        outcome = "error"
        try:
            outcome = await self._recv(request, writer)
        except ClientGone:
            outcome = "client-gone"
            writer.abort()
        except (UpstreamError, FillFailed) as exc:
            status, reason = error_status(exc)
            log.warning("%s %s%s → %d: %s", request.method, request.host, request.target, status, exc)
            if writer.started:
                writer.abort()  # the body broke midway: truncate visibly
            else:
                await writer.send_simple(status, reason, headers=[
                    ("Cache-Status", cache_status(CacheOutcome.ERROR, ttl=None, stored=False, fwd_status=None,
                                                  collapsed=False, detail=type(exc).__name__))])
        finally:
            if self._log is not None:
                self._log.write(request, writer.status, outcome, writer.bytes_sent, time.monotonic() - started)

    async def _recv(self, request: Request, writer: Writer) -> str:
        host = request.host
        if not host or len(request.headers.getall("host", ())) != 1:
            await writer.send_simple(400, "exactly one Host header is required; send the site's host name")
            return "bad-request"
        if not request.target.startswith("/"):
            await writer.send_simple(400, "request target must be an absolute path such as /index.html")
            return "bad-request"
        route = self._router.match(host, request.target)
        if route is None:
            await writer.send_simple(404, f"no route for host {host!r}; add a [[routes]] entry for it")
            return "no-route"
        upstream = self._upstreams[route.pool]
        allowlist = self._allowlists.get(route.pool)
        key = make_key("http", host, request.target)
        if request.method not in ("GET", "HEAD"):
            return await self._pass(request, writer, upstream, allowlist, key, fwd="method", invalidate=True)
        return await self._lookup(request, writer, upstream, allowlist, key, attempt=0)

    async def _find(self, key: CacheKey, request: Request) -> tuple[Hit | None, bytes]:
        """Looks the key up, following a Vary marker to the request's variant."""
        hit = await self._store.lookup(key.id)
        if hit is not None and hit.meta.status == VARY_MARKER_STATUS:
            variant = key.variant(hit.meta.vary, request.headers)
            await hit.close()
            return await self._store.lookup(variant.id), variant.id
        return hit, key.id

    async def _lookup(self, request: Request, writer: Writer, upstream: Upstream,
                      allowlist: tuple[str, ...] | None, key: CacheKey, *, attempt: int,
                      revalidated: bool = False) -> str:
        hit, store_id = await self._find(key, request)
        if hit is None:
            return await self._miss(request, writer, upstream, allowlist, key, store_id, None, attempt)
        try:
            now = self._clock()
            use = usability(hit.meta, now)
            if revalidated:
                # just validated by a 304 (also covers no-cache entries, stale again at once)
                await self._send_hit(request, writer, hit, CacheOutcome.REVALIDATED, now, fwd_status=304)
                return "revalidated"
            if use is Usability.FRESH:
                await self._send_hit(request, writer, hit, CacheOutcome.HIT, now)
                return "hit"
            if use is Usability.STALE_WHILE_REVALIDATE:
                self._start_fill(request, upstream, allowlist, key, store_id, hit.meta).release()
                await self._send_hit(request, writer, hit, CacheOutcome.STALE_HIT, now, detail="stale-while-revalidate")
                return "stale"
            return await self._miss(request, writer, upstream, allowlist, key, store_id, hit, attempt)
        finally:
            await hit.close()

    async def _send_hit(self, request: Request, writer: Writer, hit: Hit, outcome: CacheOutcome, now: float, *,
                        detail: str | None = None, fwd_status: int | None = None) -> None:
        meta = hit.meta
        trailer = [("Age", str(int(meta.age(now)))),
                   ("Cache-Status", cache_status(outcome, ttl=meta.ttl(now), stored=None, fwd_status=fwd_status,
                                                 collapsed=False, detail=detail))]
        await deliver_hit(request, writer, hit, trailer)

    def _start_fill(self, request: Request, upstream: Upstream, allowlist: tuple[str, ...] | None,
                    key: CacheKey, store_id: bytes, stale: EntryMeta | None) -> JoinResult:
        """Joins (or starts) the fill for this key; the caller releases the result."""
        authorization = "authorization" in request.headers
        fill_id = store_id + (b"|auth" if authorization else b"")
        upstream_req = upstream_request(request, method="GET", fill=True, allowlist=allowlist)
        client_headers = request.headers.copy()

        async def producer(fill: Fill) -> None:
            await self._filler.run(fill, upstream=upstream, request=upstream_req, key=key,
                                   client_headers=client_headers, authorization=authorization, stale=stale)

        return self._coalescer.join(fill_id, producer)

    async def _miss(self, request: Request, writer: Writer, upstream: Upstream, allowlist: tuple[str, ...] | None,
                    key: CacheKey, store_id: bytes, stale: Hit | None, attempt: int) -> str:
        with self._start_fill(request, upstream, allowlist, key, store_id,
                              stale.meta if stale is not None else None) as joined:
            return await self._read_fill(request, writer, upstream, allowlist, key, stale, attempt, joined)

    async def _read_fill(self, request: Request, writer: Writer, upstream: Upstream,
                         allowlist: tuple[str, ...] | None, key: CacheKey, stale: Hit | None, attempt: int,
                         joined: JoinResult) -> str:
        fill, leader = joined.fill, joined.leader
        if joined.passed or fill is None:
            return await self._pass(request, writer, upstream, allowlist, key, fwd="uri-miss", invalidate=False,
                                    detail="hit-for-pass")
        try:
            head = await fill.head(leader=leader)
        except FillFailed as exc:
            if exc.outcome is FillOutcome.UNCACHEABLE:
                return await self._pass(request, writer, upstream, allowlist, key, fwd="uri-miss",
                                        invalidate=False, detail="uncacheable")
            return await self._stale_or_raise(request, writer, stale, exc)
        info = head.extra if isinstance(head.extra, FillInfo) else FillInfo(meta=None, reason=None)
        if head.status >= 500 and stale is not None and can_serve_stale_on_error(stale.meta, self._clock()):
            return await self._stale_or_raise(request, writer, stale, None)
        if head.status == 304:
            # a revalidation refreshed the stored entry: serve it from the store
            if attempt < 2:
                return await self._lookup(request, writer, upstream, allowlist, key, attempt=attempt + 1,
                                          revalidated=True)
            raise UpstreamError("revalidated entry vanished from the store twice; retry")
        if info.vary and not leader:
            mine = key.variant(info.vary, request.headers).id
            if mine != info.variant_id:
                if attempt < 1:
                    return await self._lookup(request, writer, upstream, allowlist, key, attempt=attempt + 1)
                return await self._pass(request, writer, upstream, allowlist, key, fwd="vary-miss",
                                        invalidate=False, detail="vary-mismatch")
        now = self._clock()
        age = info.initial_age_s + max(0.0, now - (info.meta.response_time if info.meta else now))
        outcome = CacheOutcome.MISS if stale is None else CacheOutcome.EXPIRED
        detail = reason_detail(info.reason) if info.reason is not None else None
        ttl = info.meta.ttl(now) if info.meta is not None else None
        trailer = [("Age", str(int(age))),
                   ("Cache-Status", cache_status(outcome, ttl=ttl, stored=info.meta is not None,
                                                 fwd_status=head.status, collapsed=not leader, detail=detail))]
        await deliver_fill(request, writer, fill, status=head.status, headers=head.headers, length=head.length,
                           meta=info.meta, trailer=trailer)
        return "miss" if leader else "collapsed"

    async def _stale_or_raise(self, request: Request, writer: Writer, stale: Hit | None,
                              exc: BaseException | None) -> str:
        """RFC 5861 stale-if-error: serve the stale entry when upstream failed, if allowed."""
        now = self._clock()
        if stale is not None and can_serve_stale_on_error(stale.meta, now):
            await self._send_hit(request, writer, stale, CacheOutcome.STALE_ERROR, now, detail="stale-if-error")
            return "stale-error"
        if exc is not None:
            raise exc
        raise UpstreamError("upstream answered with an error")

    async def _pass(self, request: Request, writer: Writer, upstream: Upstream, allowlist: tuple[str, ...] | None,
                    key: CacheKey, *, fwd: str, invalidate: bool, detail: str | None = None) -> str:
        """Forwards the request as is and streams the answer back; nothing is stored."""
        response = await upstream.fetch(upstream_request(request, fill=False, allowlist=allowlist))
        try:
            fields = list(replay_headers(response.headers))
            age = response.header("age")
            if age is not None:
                fields.append(("Age", age))
            status_value = f"edgecache; fwd={fwd}; fwd-status={response.status}"
            if detail:
                status_value += f"; detail={detail}"
            fields.append(("Cache-Status", status_value))
            length_s = response.header("content-length")
            length = int(length_s) if length_s and length_s.isdigit() else None
            writer.start(response.status, fields, length)
            if request.method != "HEAD":
                async for chunk in response.body:
                    await writer.write(chunk)
            writer.finish()
        finally:
            response.close()
        if invalidate and response.status < 400:
            await self._invalidate(key, response.header("location"), response.header("content-location"))
        return "pass"

    async def _invalidate(self, key: CacheKey, *related: str | None) -> None:
        """RFC 9111 §4.4: an unsafe method's success invalidates the URI (and same-host related ones)."""
        ids = [key.id]
        for target in related:
            if target and target.startswith("/"):
                ids.append(make_key("http", key.host, target).id)
        for store_id in ids:
            self._fast.drop(store_id)
            await self._store.remove(store_id, RemoveReason.PURGE)
