"""The request path, top to bottom: recv → lookup → hit | stale | miss | pass → deliver.

`try_fast` (edge.request.fast) answers a fresh memory hit synchronously from the parser
callback. Everything else goes through `handle`, one method per branch below it; the pass
branch is edge.request.passthrough. The decisions are pure and live beside it: where a miss
is filled from (edge.fill.route), whether its answer is kept (edge.fill.keep, run by the
producer), when the miss path looks the key up again (edge.request.restart). Every request
ends in one CacheOutcome, which names it in Cache-Status and in the access log. Upstream
failures are mapped to an HTTP status in one place (`error_status`): timeouts 504, a saturated
origin pool 503 with Retry-After (`retry_after`), else 502.
A request holding a stale copy it may serve on error (stale-if-error, grace) gets that copy
for every failure kind instead (issue 11): errors before the head, 5xx heads (memoised as
pass or not), and small replacement bodies that break (edge.request.stale).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from edge.fill.coalesce import Coalescer, FillFailed, FillOutcome, JoinResult
from edge.fill.keep import VARY_MARKER_STATUS
from edge.fill.producer import Filler, FillInfo
from edge.fill.route import FillStore
from edge.fill.slices import SliceSource
from edge.metrics.counts import RequestCounts
from edge.peering.routing import PeerRouting
from edge.peering.workers import Siblings
from edge.purge.invalidate import Invalidator, Verdict
from edge.request.admit import Refusal, admit
from edge.request.context import RequestContext, Served
from edge.request.deliver import FastHeads, deliver_fill, deliver_hit
from edge.request.errors import error_status, retry_after
from edge.request.fast import FastAnswer, FastPath
from edge.request.hints import forward_hints
from edge.request.miss import FillStarter
from edge.request.passthrough import Passthrough
from edge.request.peerview import PeerView
from edge.request.relay import Relay
from edge.request.restart import RestartReason, may_restart
from edge.request.sliced import SlicedServer
from edge.request.stale import stale_ok, whole_body
from edge.rules.freshness import Usability, usability
from edge.rules.key import make_key, variant_id
from edge.rules.outcome import (
    CACHE_NAME,
    CacheOutcome,
    Fwd,
    cache_status,
    is_hit_member,
    reason_detail,
    with_upstream,
)
from edge.rules.site_policy import PolicySet, normalise_target
from edge.server.accesslog import AccessLog
from edge.server.request import Request
from edge.server.writer import ClientGone, Writer
from edge.store.base import Hit, RemoveReason, Store
from edge.store.disk import DiskHit
from edge.store.sliced import is_sliced
from edge.store.tiered import TieredStore
from origin.errors import UpstreamError
from origin.routes import Router
from origin.upstream import Upstream

__all__ = ["Handler", "PeerView", "error_status", "retry_after"]

log = logging.getLogger("edge.request.handler")

# What one round of the miss path ends in: an answer, or a reason to look the key up again.
_Step = CacheOutcome | RestartReason


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
        counts: RequestCounts | None = None,
        peer_counts: RequestCounts | None = None,
        cache_name: str = CACHE_NAME,
        slices: SliceSource | None = None,
        siblings: Siblings | None = None,
    ) -> None:
        self._router = router
        self._counts = counts  # client requests (None: not counted)
        self._peer_counts = peer_counts  # requests from peers on the internal listener
        self._name = cache_name  # this cache's Cache-Status member name
        self._upstreams = upstreams
        self._allowlists = allowlists
        self._log = access_log
        self._clock = clock
        self._policies = policies or PolicySet()
        self._purges = purges if purges is not None else Invalidator(())  # pending purge rules, trust
        # where a key may be stored, looked up in this order
        self._stores: dict[FillStore, Store] = {FillStore.MAIN: store}
        if routing is not None:
            self._stores[FillStore.HOT] = routing.hot
        self._fills = FillStarter(
            coalescer=coalescer, filler=filler, stores=self._stores, routing=routing, siblings=siblings
        )
        # a non-owner's plain misses go straight to the owner (edge.request.relay)
        relay = (
            None if routing is None else Relay(routing, self._fills, filler, self._purges, clock, cache_name)
        )
        self._relay = relay
        # issue 14: large objects kept as slices, and cold seeks into them
        self._sliced = (
            None if slices is None else SlicedServer(source=slices, store=store, routing=routing, clock=clock)
        )
        heads = FastHeads(cache_name)
        self._pass = Passthrough(stores=tuple(self._stores.values()), heads=heads, cache_name=cache_name)

        def fast_path(counts: RequestCounts | None) -> FastAnswer:
            return FastPath(
                memory=store.memory,
                heads=heads,
                policies=self._policies,
                purges=self._purges,
                clock=clock,
                access_log=access_log,
                router=router,
                counts=counts,
                hot=routing.hot if routing is not None else None,
            ).try_fast

        # the hot path: bound once, so the listener calls FastPath directly
        self.try_fast: FastAnswer = fast_path(counts)
        self._try_fast_peer: FastAnswer = fast_path(peer_counts)

    def for_peers(self) -> PeerView:
        """The handler as the internal listener sees it: its requests are counted as a peer's."""
        return PeerView(self, self._try_fast_peer)

    async def handle(self, request: Request, writer: Writer, *, from_peer: bool = False) -> None:
        """Answers one request (anything try_fast declined); `from_peer` marks a peer's request."""
        started = time.perf_counter()
        outcome = CacheOutcome.ERROR
        served = Served()
        try:
            with forward_hints(writer, enabled=not from_peer):  # issue 11: 103 Early Hints
                outcome = await self._recv(request, writer, from_peer, served)
        except ClientGone:
            outcome = CacheOutcome.CLIENT_GONE
            writer.abort()
        except (UpstreamError, FillFailed) as exc:
            status, reason = error_status(exc)
            log.warning("%s %s%s → %d: %s", request.method, request.host, request.target, status, exc)
            if writer.started:
                writer.abort()  # the body broke midway: truncate visibly
            else:
                value = cache_status(CacheOutcome.ERROR, detail=type(exc).__name__, name=self._name)
                headers = [("Cache-Status", value), *retry_after(exc)]
                await writer.send_simple(status, reason, headers=headers)
        finally:
            seconds = time.perf_counter() - started
            counts = self._peer_counts if from_peer else self._counts
            if counts is not None:
                counts.record(outcome, served.route, served.tier, writer.bytes_sent, seconds)
            if self._log is not None:
                self._log.write(request, writer.status, outcome, writer.bytes_sent, seconds, served.upstream)

    async def _recv(self, request: Request, writer: Writer, from_peer: bool, served: Served) -> CacheOutcome:
        host = admit(request)
        if isinstance(host, Refusal):
            await writer.send_simple(host.status, host.reason, close=host.close)
            return host.outcome
        route = self._router.match(host, request.target)
        if route is None:
            await writer.send_simple(404, f"no route for host {host!r}; add a [[routes]] entry for it")
            return CacheOutcome.NO_ROUTE
        served.route = route.pool
        policy = self._policies.match(host, request.target)
        key = make_key("http", host, normalise_target(request.target, policy))
        ctx = RequestContext(
            request,
            writer,
            self._upstreams[route.pool],
            self._allowlists.get(route.pool),
            key,
            from_peer,
            policy,
            served,
        )
        if request.method not in ("GET", "HEAD"):
            return await self._pass.run(ctx, fwd=Fwd.METHOD, invalidate=True)
        return await self._serve(ctx)

    async def _serve(self, ctx: RequestContext) -> CacheOutcome:
        """Lookup → hit | stale | miss, looked up again (boundedly) when a fill says to."""
        restarts, after = 0, None
        while True:
            step = await self._lookup(ctx, after)
            if isinstance(step, CacheOutcome):
                return step
            if not may_restart(step, restarts):
                return await self._give_up(ctx, step)
            restarts, after = restarts + 1, step

    async def _give_up(self, ctx: RequestContext, reason: RestartReason) -> CacheOutcome:
        if reason is RestartReason.REVALIDATED:
            raise UpstreamError("revalidated entry vanished from the store twice; retry")
        if reason is RestartReason.PURGED_FILL:  # purged again while its new fill ran: fetch alone
            return await self._pass.run(ctx, fwd=Fwd.URI_MISS, invalidate=False, detail="purged-fill")
        return await self._pass.run(ctx, fwd=Fwd.VARY_MISS, invalidate=False, detail="vary-mismatch")

    async def _find(self, ctx: RequestContext) -> tuple[Hit | None, bytes, FillStore]:
        """Looks the key up (main store, then hot copies), following a Vary marker."""
        key = ctx.key
        for where, store in self._stores.items():
            hit = await store.lookup(key.id)
            if hit is None:
                continue
            if hit.meta.status == VARY_MARKER_STATUS:
                variant = variant_id(key.id, hit.meta.vary, ctx.request.headers)
                await hit.close()
                return await store.lookup(variant), variant, where
            return hit, key.id, where
        return None, key.id, FillStore.MAIN

    async def _lookup(self, ctx: RequestContext, after: RestartReason | None) -> _Step:
        hit, store_id, where = await self._find(ctx)
        verdict = Verdict.VALID
        if hit is not None:
            # the lazy purge check (ban list): a hard purge makes it absent
            verdict = self._purges.check(hit.meta, self._clock())
            if verdict is Verdict.PURGED:
                await hit.close()
                await self._stores[where].remove(store_id, RemoveReason.PURGE)
                hit = None
        if hit is None:
            cold = None if self._sliced is None else self._sliced.cold_index(ctx)
            if cold is not None and self._sliced is not None:  # issue 14: a cold seek costs one slice
                sought = await self._sliced.cold(ctx, cold)
                if sought is not None:
                    return sought
            return await self._miss(ctx, store_id, None, None)
        ctx.served.tier = (
            "hot" if where is FillStore.HOT else "disk" if isinstance(hit, DiskHit) else "memory"
        )
        try:
            now = self._clock()
            if after is RestartReason.REVALIDATED:
                # just validated by a 304 (also covers no-cache entries, stale again at once)
                await self._send_hit(ctx, hit, CacheOutcome.REVALIDATED, now, fwd_status=304)
                return CacheOutcome.REVALIDATED
            if verdict is Verdict.UNTRUSTED:
                use = Usability.MUST_VALIDATE  # purges may have been missed: ask upstream first
            else:  # a soft purge makes it stale; stale-while-revalidate still applies
                use = usability(
                    hit.meta.replace(invalidated=True) if verdict is Verdict.SOFT else hit.meta, now
                )
            if use is Usability.FRESH:
                await self._send_hit(ctx, hit, CacheOutcome.HIT, now)
                return CacheOutcome.HIT
            if use is Usability.STALE_WHILE_REVALIDATE:
                self._fills.join(ctx, store_id, hit.meta, where).release()
                await self._send_hit(ctx, hit, CacheOutcome.STALE_HIT, now, detail="stale-while-revalidate")
                return CacheOutcome.STALE_HIT
            return await self._miss(ctx, store_id, hit, where)
        finally:
            await hit.close()

    async def _send_hit(
        self,
        ctx: RequestContext,
        hit: Hit,
        outcome: CacheOutcome,
        now: float,
        *,
        detail: str | None = None,
        fwd_status: int | None = None,
    ) -> None:
        meta = hit.meta
        status = cache_status(
            outcome, ttl=meta.ttl(now), fwd_status=fwd_status, detail=detail, name=self._name
        )
        trailer = [("Age", str(int(meta.age(now)))), ("Cache-Status", status)]
        if is_sliced(meta) and self._sliced is not None:
            await self._sliced.send(ctx, meta, trailer)  # issue 14: served slice by slice
            return
        await deliver_hit(ctx.request, ctx.writer, hit, trailer)

    async def _miss(
        self, ctx: RequestContext, store_id: bytes, stale: Hit | None, stale_in: FillStore | None
    ) -> _Step:
        # issue 11: a stale copy usable on error is never hidden by a memoised pass
        rescue = stale is not None and stale_ok(self._purges, ctx.policy, stale.meta, self._clock())
        meta = stale.meta if stale is not None else None
        route = self._fills.route(ctx, stale_in)
        relay = self._relay
        step = None if stale is not None or relay is None else await relay.serve(ctx, store_id, route)
        if step is not None and not isinstance(step, UpstreamError):
            return step  # relayed to the owner (edge.request.relay); else the fill way
        joined = self._fills.join(ctx, store_id, meta, stale_in, rescue=rescue, route=route, peer_error=step)
        with joined:
            return await self._read_fill(ctx, stale, joined, stale if rescue else None)

    async def _read_fill(
        self, ctx: RequestContext, stale: Hit | None, joined: JoinResult[FillInfo], rescue: Hit | None
    ) -> _Step:
        """Reads the joined fill; `rescue` is the stale copy to serve if upstream fails."""
        fill, leader = joined.fill, joined.leader
        if joined.passed or fill is None:
            return await self._pass.run(ctx, fwd=Fwd.URI_MISS, invalidate=False, detail="hit-for-pass")
        try:
            head = await fill.head(leader=leader)
        except FillFailed as exc:
            if exc.outcome is FillOutcome.UNCACHEABLE and not (
                rescue is not None and (fill.status or 0) >= 500
            ):
                return await self._pass.run(ctx, fwd=Fwd.URI_MISS, invalidate=False, detail="uncacheable")
            return await self._stale_or_raise(ctx, rescue, exc)  # every failure kind, issue 11
        info, meta = head.extra, head.extra.meta
        ctx.served.upstream = info.upstream
        if not leader and meta is not None and not self._purges.admits(meta, began=info.began_gen):
            # joined a fill that began before a matching purge: its bytes are the purged version;
            # requests from now on coalesce onto one new fill (issue 11)
            self._fills.detach(fill)
            return RestartReason.PURGED_FILL
        if head.status >= 500 and rescue is not None:
            return await self._stale_or_raise(ctx, rescue, None)
        if head.status == 304:
            if (
                not info.refreshed
                and stale is not None
                and self._purges.admits(stale.meta, began=info.began_gen)
            ):
                # validated but not refreshed in the store (a peer keeps the key, or the store
                # declined): our copy is the validated one, and no purge arrived since the fill began
                await self._send_hit(ctx, stale, CacheOutcome.REVALIDATED, self._clock(), fwd_status=304)
                return CacheOutcome.REVALIDATED
            return RestartReason.REVALIDATED  # the stored entry was refreshed: serve it from there
        if (
            info.vary
            and not leader
            and variant_id(ctx.key.id, info.vary, ctx.request.headers) != info.variant_id
        ):
            return RestartReason.VARY_MISMATCH  # the fill is another variant's
        if rescue is not None and not await whole_body(fill, head.length):
            return await self._stale_or_raise(ctx, rescue, None)  # cut short or stalled: stale
        now = self._clock()
        age = info.initial_age_s + max(0.0, now - (meta.response_time if meta is not None else now))
        ctx.served.tier = "peer" if info.upstream_cache_status is not None else "origin"
        outcome = (
            (CacheOutcome.MISS if stale is None else CacheOutcome.EXPIRED)
            if leader
            else CacheOutcome.COLLAPSED
        )
        if outcome is CacheOutcome.MISS and is_hit_member(info.upstream_cache_status):
            outcome = CacheOutcome.PEER_HIT  # the key's owner had it: no origin fetch for this request
        status = cache_status(
            outcome,
            ttl=meta.ttl(now) if meta is not None else None,
            stored=info.stored,
            fwd_status=head.status,
            detail=reason_detail(info.reason) if info.reason is not None else info.source,
            fwd=Fwd.MISS if stale is None else Fwd.STALE,
            name=self._name,
        )
        trailer = [
            ("Age", str(int(age))),
            ("Cache-Status", with_upstream(info.upstream_cache_status, status)),
        ]
        await deliver_fill(
            ctx.request,
            ctx.writer,
            fill,
            status=head.status,
            headers=head.headers,
            length=head.length,
            meta=meta,
            trailer=trailer,
        )
        return outcome

    async def _stale_or_raise(
        self, ctx: RequestContext, stale: Hit | None, exc: BaseException | None
    ) -> CacheOutcome:
        """RFC 5861 stale-if-error: serve the stale entry when upstream failed, if allowed."""
        now = self._clock()
        if stale is not None and stale_ok(self._purges, ctx.policy, stale.meta, now):
            await self._send_hit(ctx, stale, CacheOutcome.STALE_ERROR, now, detail="stale-if-error")
            return CacheOutcome.STALE_ERROR
        if exc is not None:
            raise exc
        raise UpstreamError("upstream answered with an error")
