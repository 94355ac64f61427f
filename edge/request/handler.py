"""The request path, top to bottom: recv → lookup → hit | stale | miss | pass → deliver.

`try_fast` answers a fresh memory hit synchronously from the parser callback with a
prebuilt response: no task, no await. Everything else goes through `handle`, one method
per branch below it. Upstream failures are mapped to an HTTP status in one place
(`error_status`): timeouts 504, everything else 502.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping

from xxhash import xxh3_128_digest

from cluster.internal_paths import is_internal_target
from edge.fill.coalesce import Coalescer, Fill, FillFailed, FillOutcome, JoinResult
from edge.fill.producer import VARY_MARKER_STATUS, Filler, FillInfo, FillPlan, replay_headers
from edge.peering.routing import PeerRouting
from edge.purge.invalidate import Invalidator, Verdict
from edge.request.deliver import FastHeads, deliver_fill, deliver_hit
from edge.request.forward import upstream_request
from edge.request.key import CacheKey, make_key
from edge.rules.accept_encoding import normalise_accept_encoding, normalise_raw_accept_encoding
from edge.rules.freshness import Usability, can_serve_stale_on_error, usability
from edge.rules.host import is_normal_host, normalise_host
from edge.rules.outcome import CacheOutcome, cache_status, reason_detail
from edge.rules.site_policy import CachePolicy, PolicySet, normalise_target
from edge.server.accesslog import AccessLog
from edge.server.request import Request
from edge.server.writer import ClientGone, Writer
from edge.store.base import Hit, RemoveReason, Store
from edge.store.entry import EntryMeta
from edge.store.tiered import TieredStore
from origin.errors import ConnectError, UpstreamError, UpstreamTimeout
from origin.routes import Router
from origin.upstream import Upstream

__all__ = ["Handler", "error_status"]

log = logging.getLogger("edge.request.handler")


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

    def __init__(
        self,
        *,
        store: TieredStore,
        coalescer: Coalescer,
        filler: Filler,
        router: Router,
        upstreams: Mapping[str, Upstream],
        allowlists: Mapping[str, tuple[str, ...] | None],
        access_log: AccessLog | None,
        routing: PeerRouting | None = None,
        policies: PolicySet | None = None,
        purges: Invalidator | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._memory = store.memory
        self._memory_peek = store.memory.peek
        self._coalescer = coalescer
        self._filler = filler
        self._router = router
        self._upstreams = upstreams
        self._allowlists = allowlists
        self._log = access_log
        self._clock = clock
        self._fast = FastHeads()
        self._routing = routing  # None: a lone node; else the region's ring, peers and hot copies
        self._policies = policies or PolicySet()
        self._purges = purges if purges is not None else Invalidator(())  # pending purge rules, trust

    # -- hot path ---------------------------------------------------------------------------
    def try_fast(
        self, head_only: bool, host: bytes, target: bytes, raw_headers: list[tuple[bytes, bytes]], peer: str
    ) -> bytes | tuple[bytes, bytes] | None:
        """A fresh memory hit for a plain GET/HEAD, as prebuilt bytes; else None (slow path)."""
        if self._policies.rewrites and b"?" in target:
            return None  # the key uses a normalised target: let the slow path compute it
        if not is_normal_host(host):
            return None  # an invalid Host (400) or one the slow path rewrites to its normal form
        now = self._clock()
        if now > self._purges.fast_until:
            return None  # purge rules pending or purge lag exceeded: the slow path checks each hit
        # peek, and count the hit only once it is served here: a declined request is looked up
        # (and counted) again by the slow path
        store_id = xxh3_128_digest(b"http://" + host.lower() + target)
        hit = self._memory_peek(store_id)
        if hit is None:
            return None
        meta = hit.meta
        if meta.status == VARY_MARKER_STATUS:
            # select the variant from the raw fields, as CacheKey.variant does on the slow path
            store_id = (
                CacheKey(store_id, "", "", "").variant(meta.vary, _FirstFields(raw_headers, meta.vary)).id
            )
            hit = self._memory_peek(store_id)
            if hit is None:
                return None
            meta = hit.meta
        response = self._fast.get(meta, hit.body, now, head_only)
        if response is None:
            return None
        self._memory.record_hit(store_id)
        if self._log is not None:
            self._log.write_fast(
                peer, "HEAD" if head_only else "GET", host, target, meta.status, len(hit.body)
            )
        return response

    # -- slow path ----------------------------------------------------------------------------
    async def handle(self, request: Request, writer: Writer, *, from_peer: bool = False) -> None:
        """Answers one request (anything try_fast declined); `from_peer` marks a peer's request."""
        started = time.monotonic()
        outcome = "error"
        try:
            outcome = await self._recv(request, writer, from_peer)
        except ClientGone:
            outcome = "client-gone"
            writer.abort()
        except (UpstreamError, FillFailed) as exc:
            status, reason = error_status(exc)
            log.warning("%s %s%s → %d: %s", request.method, request.host, request.target, status, exc)
            if writer.started:
                writer.abort()  # the body broke midway: truncate visibly
            else:
                await writer.send_simple(
                    status,
                    reason,
                    headers=[
                        (
                            "Cache-Status",
                            cache_status(
                                CacheOutcome.ERROR,
                                ttl=None,
                                stored=False,
                                fwd_status=None,
                                collapsed=False,
                                detail=type(exc).__name__,
                            ),
                        )
                    ],
                )
        finally:
            if self._log is not None:
                self._log.write(
                    request, writer.status, outcome, writer.bytes_sent, time.monotonic() - started
                )

    async def _recv(self, request: Request, writer: Writer, from_peer: bool) -> str:
        host = request.host
        if not host or len(request.headers.getall("host", ())) != 1:
            await writer.send_simple(
                400, "exactly one Host header is required; send the site's host name", close=True
            )
            return "bad-request"
        normal_host = normalise_host(host)  # issue 12: a Host never carries a path, query or escape
        if normal_host is None:
            await writer.send_simple(
                400, "Host must be a host name or address with an optional port", close=True
            )
            return "bad-request"
        host = normal_host
        request.headers["Host"] = host  # the origin and peers see the host the key names
        ae = ",".join(request.headers.getall("accept-encoding", ())) or None  # issue 12: br, gzip or identity
        request.headers["Accept-Encoding"] = normalise_accept_encoding(ae)  # before it can enter a Vary key
        if not request.target.startswith("/"):
            await writer.send_simple(
                400, "request target must be an absolute path such as /index.html", close=True
            )
            return "bad-request"
        if is_internal_target(request.target):  # issue 12: cluster endpoints never from the public port
            await writer.send_simple(404, "no such resource; /_edge/ is reserved for the edge's own use")
            return "not-found"
        route = self._router.match(host, request.target)
        if route is None:
            await writer.send_simple(404, f"no route for host {host!r}; add a [[routes]] entry for it")
            return "no-route"
        policy = self._policies.match(host, request.target)
        target = normalise_target(request.target, policy)
        ctx = _Ctx(
            request,
            writer,
            self._upstreams[route.pool],
            self._allowlists.get(route.pool),
            make_key("http", host, target),
            from_peer,
            policy,
        )
        if request.method not in ("GET", "HEAD"):
            return await self._pass(ctx, fwd="method", invalidate=True)
        return await self._lookup(ctx, attempt=0)

    async def _find(self, ctx: _Ctx) -> tuple[Hit | None, bytes, Store]:
        """Looks the key up (main store, then hot copies), following a Vary marker."""
        key = ctx.key
        stores: tuple[Store, ...] = (
            (self._store,) if self._routing is None else (self._store, self._routing.hot)
        )
        for store in stores:
            hit = await store.lookup(key.id)
            if hit is None:
                continue
            if hit.meta.status == VARY_MARKER_STATUS:
                variant = key.variant(hit.meta.vary, ctx.request.headers)
                await hit.close()
                return await store.lookup(variant.id), variant.id, store
            return hit, key.id, store
        return None, key.id, self._store

    async def _lookup(self, ctx: _Ctx, *, attempt: int, revalidated: bool = False) -> str:
        hit, store_id, store = await self._find(ctx)
        verdict = Verdict.VALID
        if hit is not None:
            # the lazy purge check (ban list): a hard purge makes it absent
            verdict = self._purges.check(hit.meta, self._clock())
            if verdict is Verdict.PURGED:
                await hit.close()
                await store.remove(store_id, RemoveReason.PURGE)
                hit = None
        if hit is None:
            return await self._miss(ctx, store_id, None, None, attempt)
        try:
            now = self._clock()
            if revalidated:
                # just validated by a 304 (also covers no-cache entries, stale again at once)
                await self._send_hit(ctx, hit, CacheOutcome.REVALIDATED, now, fwd_status=304)
                return "revalidated"
            if verdict is Verdict.UNTRUSTED:
                use = Usability.MUST_VALIDATE  # purges may have been missed: ask upstream first
            else:  # a soft purge makes it stale; stale-while-revalidate still applies
                use = usability(
                    hit.meta.replace(invalidated=True) if verdict is Verdict.SOFT else hit.meta, now
                )
            if use is Usability.FRESH:
                await self._send_hit(ctx, hit, CacheOutcome.HIT, now)
                return "hit"
            if use is Usability.STALE_WHILE_REVALIDATE:
                self._start_fill(ctx, store_id, hit.meta, store).release()
                await self._send_hit(ctx, hit, CacheOutcome.STALE_HIT, now, detail="stale-while-revalidate")
                return "stale"
            return await self._miss(ctx, store_id, hit, store, attempt)
        finally:
            await hit.close()

    async def _send_hit(
        self,
        ctx: _Ctx,
        hit: Hit,
        outcome: CacheOutcome,
        now: float,
        *,
        detail: str | None = None,
        fwd_status: int | None = None,
    ) -> None:
        meta = hit.meta
        trailer = [
            ("Age", str(int(meta.age(now)))),
            (
                "Cache-Status",
                cache_status(
                    outcome,
                    ttl=meta.ttl(now),
                    stored=None,
                    fwd_status=fwd_status,
                    collapsed=False,
                    detail=detail,
                ),
            ),
        ]
        await deliver_hit(ctx.request, ctx.writer, hit, trailer)

    def _start_fill(
        self, ctx: _Ctx, store_id: bytes, stale: EntryMeta | None, stale_store: Store | None
    ) -> JoinResult:
        """Joins (or starts) the fill for this key; the caller releases the result."""
        request = ctx.request
        authorization = "authorization" in request.headers
        fill_id = store_id + (b"|auth" if authorization else b"")
        upstream_req = upstream_request(
            request,
            method="GET",
            fill=True,
            allowlist=ctx.allowlist,
            client_ip=ctx.client_ip,
            target=ctx.key.target,
        )
        routing = self._routing
        owner = None if ctx.from_peer or routing is None else routing.owner(ctx.key.id)
        parent = routing.parent_owner(ctx.key.id) if owner is None and routing is not None else None
        plan = FillPlan(
            upstream=ctx.upstream,
            request=upstream_req,
            key=ctx.key,
            client_headers=request.headers.copy(),
            authorization=authorization,
            stale=stale,
            store=stale_store or self._store,
            policy=ctx.policy,
        )
        peer = owner or parent
        if routing is not None and peer is not None:
            # a peer fills: the region's owner (which coalesces for the region) or, when we own
            # the key, the shield region's node (going up never loops: regions form a tree)
            if owner is not None and stale_store is None:
                # the owner keeps the key; we keep a copy only of keys requested often here
                plan = dataclasses.replace(plan, store=routing.hot if routing.is_hot(ctx.key.id) else None)
            plan = dataclasses.replace(
                plan,
                upstream=routing.peer(peer),
                fallback=ctx.upstream,
                fallback_store=self._store,
                on_fallback=functools.partial(self._peer_failed, peer),
                source=f"peer-{peer}" if owner is not None else f"shield-{peer}",
            )

        async def producer(fill: Fill) -> None:
            await self._filler.run(fill, plan)

        if owner is not None:
            # A fill that asks a peer gets its own id: a request arriving FROM a peer must never
            # join it. Otherwise two nodes with crossed ring views wait on each other: a's fill
            # asks b, b's fill asks a, and each peer request joins the fill waiting on it.
            fill_id += b"|via-peer"
        return self._coalescer.join(fill_id, producer)

    def _peer_failed(self, name: str, exc: UpstreamError) -> None:
        log.warning("peer %s failed (%s); filling from the origin", name, exc)
        # only a refused or failed connection says the peer is gone; a slow answer does not
        if self._routing is not None and isinstance(exc, ConnectError):
            self._routing.peer_failed(name)

    async def _miss(
        self, ctx: _Ctx, store_id: bytes, stale: Hit | None, stale_store: Store | None, attempt: int
    ) -> str:
        with self._start_fill(
            ctx, store_id, stale.meta if stale is not None else None, stale_store
        ) as joined:
            return await self._read_fill(ctx, stale, attempt, joined)

    async def _read_fill(self, ctx: _Ctx, stale: Hit | None, attempt: int, joined: JoinResult) -> str:
        fill, leader = joined.fill, joined.leader
        if joined.passed or fill is None:
            return await self._pass(ctx, fwd="uri-miss", invalidate=False, detail="hit-for-pass")
        try:
            head = await fill.head(leader=leader)
        except FillFailed as exc:
            if exc.outcome is FillOutcome.UNCACHEABLE:
                return await self._pass(ctx, fwd="uri-miss", invalidate=False, detail="uncacheable")
            return await self._stale_or_raise(ctx, stale, exc)
        info = head.extra if isinstance(head.extra, FillInfo) else FillInfo(meta=None, reason=None)
        if not leader and info.meta is not None and not self._purges.admits(info.meta):
            # joined a fill that began before a matching purge: its bytes are the purged version
            return await self._pass(ctx, fwd="uri-miss", invalidate=False, detail="purged-fill")
        if head.status >= 500 and stale is not None and self._stale_ok(ctx, stale.meta, self._clock()):
            return await self._stale_or_raise(ctx, stale, None)
        if head.status == 304:
            # a revalidation refreshed the stored entry: serve it from the store
            if attempt < 2:
                return await self._lookup(ctx, attempt=attempt + 1, revalidated=True)
            raise UpstreamError("revalidated entry vanished from the store twice; retry")
        if info.vary and not leader:
            mine = ctx.key.variant(info.vary, ctx.request.headers).id
            if mine != info.variant_id:
                if attempt < 1:
                    return await self._lookup(ctx, attempt=attempt + 1)
                return await self._pass(ctx, fwd="vary-miss", invalidate=False, detail="vary-mismatch")
        now = self._clock()
        age = info.initial_age_s + max(0.0, now - (info.meta.response_time if info.meta else now))
        outcome = CacheOutcome.MISS if stale is None else CacheOutcome.EXPIRED
        detail = reason_detail(info.reason) if info.reason is not None else info.source
        ttl = info.meta.ttl(now) if info.meta is not None else None
        trailer = [
            ("Age", str(int(age))),
            (
                "Cache-Status",
                cache_status(
                    outcome,
                    ttl=ttl,
                    stored=info.stored,
                    fwd_status=head.status,
                    collapsed=not leader,
                    detail=detail,
                ),
            ),
        ]
        await deliver_fill(
            ctx.request,
            ctx.writer,
            fill,
            status=head.status,
            headers=head.headers,
            length=head.length,
            meta=info.meta,
            trailer=trailer,
        )
        return "miss" if leader else "collapsed"

    def _stale_ok(self, ctx: _Ctx, meta: EntryMeta, now: float) -> bool:
        """RFC 5861 stale-if-error, or the policy's grace (never against must-revalidate).

        Never while the node distrusts its cache (purges may have been missed) or for an entry
        a purge removed: a purged version must not come back because the origin is down.
        """
        if self._purges.check(meta, now) not in (Verdict.VALID, Verdict.SOFT):
            return False
        if can_serve_stale_on_error(meta, now):
            return True
        grace = ctx.policy.grace_s
        return grace > 0 and not meta.must_revalidate and not meta.no_cache and -meta.ttl(now) <= grace

    async def _stale_or_raise(self, ctx: _Ctx, stale: Hit | None, exc: BaseException | None) -> str:
        """RFC 5861 stale-if-error: serve the stale entry when upstream failed, if allowed."""
        now = self._clock()
        if stale is not None and self._stale_ok(ctx, stale.meta, now):
            await self._send_hit(ctx, stale, CacheOutcome.STALE_ERROR, now, detail="stale-if-error")
            return "stale-error"
        if exc is not None:
            raise exc
        raise UpstreamError("upstream answered with an error")

    async def _pass(self, ctx: _Ctx, *, fwd: str, invalidate: bool, detail: str | None = None) -> str:
        """Forwards the request as is and streams the answer back; nothing is stored."""
        request, writer = ctx.request, ctx.writer
        response = await ctx.upstream.fetch(
            upstream_request(
                request, fill=False, allowlist=ctx.allowlist, client_ip=ctx.client_ip, target=ctx.key.target
            )
        )
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
            await self._invalidate(ctx.key, response.header("location"), response.header("content-location"))
        return "pass"

    async def _invalidate(self, key: CacheKey, *related: str | None) -> None:
        """RFC 9111 §4.4: an unsafe method's success invalidates the URI (and same-host related ones)."""
        ids = [key.id]
        for target in related:
            if target and target.startswith("/"):
                ids.append(make_key("http", key.host, target).id)
        stores: tuple[Store, ...] = (
            (self._store,) if self._routing is None else (self._store, self._routing.hot)
        )
        for store_id in ids:
            self._fast.drop(store_id)
            for store in stores:
                await store.remove(store_id, RemoveReason.PURGE)


class _FirstFields(Mapping[str, str]):
    """The first value of each wanted field among raw (bytes) header fields, as CIMultiDict.get gives."""

    __slots__ = ("_values",)

    def __init__(self, raw_headers: list[tuple[bytes, bytes]], wanted: tuple[str, ...]) -> None:
        self._values: dict[str, str] = {}
        for name, value in raw_headers:
            lname = name.lower().decode("latin-1")
            if lname in wanted and lname not in self._values:
                self._values[lname] = value.decode("latin-1")
        if "accept-encoding" in wanted:  # the slow path keys on the normalised value (issue 12)
            self._values["accept-encoding"] = normalise_raw_accept_encoding(raw_headers)

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class _Ctx:
    """One request's state on the slow path."""

    __slots__ = ("allowlist", "from_peer", "key", "policy", "request", "upstream", "writer")

    def __init__(
        self,
        request: Request,
        writer: Writer,
        upstream: Upstream,
        allowlist: tuple[str, ...] | None,
        key: CacheKey,
        from_peer: bool,
        policy: CachePolicy,
    ) -> None:
        self.request = request
        self.writer = writer
        self.upstream = upstream  # the route's origin pool
        self.allowlist = allowlist  # request fields forwarded upstream; None = transparent default
        self.key = key
        self.from_peer = from_peer  # came through the internal listener: never forwarded to a peer
        self.policy = policy  # what to do where the origin is silent

    @property
    def client_ip(self) -> str:
        """The client's address for X-Forwarded-For (a peer already set it to the client's)."""
        request = self.request
        return request.headers.get("x-forwarded-for", request.peer) if self.from_peer else request.peer
