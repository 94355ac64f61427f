"""The fill: one upstream fetch whose body is spooled for every waiting client and stored.

`Filler.run` is the producer the coalescer runs in its own task for one key. It fetches
upstream (conditionally when it revalidates a stored entry), asks `edge.fill.keep` once
whether and as what entry the response is kept (RFC 9111 §3, §4.2), announces the head to
the waiters with a typed FillInfo, then tees every chunk into the fill's spool and the store
writer, and commits. A 304 to a revalidation refreshes the stored entry's headers (§4.3.4)
and tells the waiters to serve it from the store.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from edge.config.deployment import CacheConfig
from edge.fill.coalesce import Fill, FillHead
from edge.fill.keep import VARY_MARKER_STATUS, KeepDecision, decide_keep, refreshed_meta
from edge.fill.streaming import settle_playlist
from edge.fill.variants import VariantLimiter
from edge.rules.key import CacheKey
from edge.rules.outcome import NoStoreReason
from edge.rules.site_policy import DEFAULT_POLICY, CachePolicy
from edge.rules.slicing import SLICED_MAX_BYTES, sliceable_head
from edge.store.base import RemoveReason, Store
from edge.store.entry import EntryMeta
from origin.errors import UpstreamError
from origin.upstream import Upstream, UpstreamRequest, UpstreamResponse

__all__ = ["VARY_MARKER_STATUS", "FillGuard", "FillInfo", "FillPlan", "Filler", "Slicer"]

log = logging.getLogger("edge.fill.producer")


@dataclass(frozen=True, slots=True)
class FillInfo:
    """What the edge attaches to a FillHead (its `extra`)."""

    meta: EntryMeta | None  # the entry being stored; None when not stored
    reason: NoStoreReason | None  # why it is not stored
    refreshed: bool = False  # a 304 refreshed the stored entry: serve it from the store
    variant_id: bytes | None = None  # the store id of this variant, when the response varies
    vary: tuple[str, ...] = ()  # lower-cased Vary field names
    initial_age_s: float = 0.0  # for Age on responses that are not stored
    stored: bool = False  # the body is being written to a store
    source: str | None = None  # where it came from when not the origin directly (e.g. "peer-edge2")
    began_gen: int = 0  # this node's purge generation when the fill began (who may join it)
    upstream: str = ""  # the server or peer that answered (UpstreamResponse.upstream), for logs
    upstream_cache_status: str | None = None  # a peer's Cache-Status, put before ours (RFC 9211)


@dataclass(frozen=True, slots=True, kw_only=True)
class FillPlan:
    """Where one fill comes from and where it goes."""

    upstream: Upstream  # the origin pool, or the owning peer
    request: UpstreamRequest  # whole-object GET (the client's validators and Range removed)
    key: CacheKey  # primary key; the variant is derived from Vary and client_headers
    client_headers: Mapping[str, str]  # the leader's request fields (Vary selection, no-store)
    authorization: bool  # the leader's request carried credentials (RFC 9111 §3.5)
    stale: EntryMeta | None = None  # revalidate this entry (conditional request)
    store: Store | None = None  # where the response is kept; None: pass it on only
    fallback: Upstream | None = None  # used when `upstream` (a peer) fails before its head
    fallback_store: Store | None = None  # where a fallback fill is kept
    on_fallback: Callable[[UpstreamError], None] | None = None  # told when the fallback is taken
    source: str | None = None  # names the upstream in Cache-Status detail, e.g. "peer-edge2"
    policy: CachePolicy = DEFAULT_POLICY  # lifetimes where the origin is silent
    purge_gen: int = 0  # set by Filler.run: the generation its entry records (older for a peer fill)
    began_gen: int = 0  # set by Filler.run: this node's purge generation when the fill began


class FillGuard(Protocol):
    """Fill versus purge (edge.purge.invalidate.Invalidator).

    A fill older than a matching purge is not stored.
    """

    @property
    def generation(self) -> int: ...

    def begin_fill(self, *, from_peer: bool) -> int: ...

    def end_fill(self, gen: int) -> None: ...

    def admits(self, meta: EntryMeta) -> bool: ...


class Slicer(Protocol):
    """Keeps a large response as slices (edge.fill.sliced_fill.SlicedFill; issue 14)."""

    def takes(
        self, response: UpstreamResponse, meta: EntryMeta, length: int | None, plan: FillPlan
    ) -> bool: ...

    async def run(
        self,
        fill: Fill[FillInfo],
        response: UpstreamResponse,
        meta: EntryMeta,
        length: int,
        plan: FillPlan,
        store: Store,
    ) -> None: ...


class Filler:
    """Runs fills for one node: upstream fetch → head → spool + store → commit."""

    def __init__(
        self,
        *,
        cache: CacheConfig,
        max_object_bytes: int,
        purges: FillGuard | None = None,
        slicer: Slicer | None = None,
    ) -> None:
        self._cache = cache
        self._max_object_bytes = max_object_bytes  # the largest body any tier takes
        self._purges = purges  # None: no purge state (unit tests)
        self.slicer = slicer  # large objects kept as slices (issue 14); None: always whole
        self._variants = VariantLimiter(max_per_url=cache.max_variants)  # issue 12: Vary cap per URL

    async def run(self, fill: Fill[FillInfo], plan: FillPlan) -> None:
        """Fetches and fills; a stale entry in the plan is revalidated with its validators."""
        if self._purges is None:
            await self._run(fill, plan)
            return
        # a fill from a peer may carry bytes the peer held before a purge reached it
        began = self._purges.generation
        gen = self._purges.begin_fill(from_peer=plan.source is not None)
        try:
            await self._run(fill, dataclasses.replace(plan, purge_gen=gen, began_gen=began))
        finally:
            self._purges.end_fill(gen)

    def decide(
        self,
        response: UpstreamResponse,
        *,
        key: CacheKey,
        client_headers: Mapping[str, str],
        policy: CachePolicy,
        purge_gen: int,
    ) -> KeepDecision:
        """A peer's answer passed on unstored, decided as a fill from that peer would decide it
        (edge.request.relay: a non-owner's plain miss)."""
        return decide_keep(
            response,
            key=key,
            client_headers=client_headers,
            authorization=False,
            has_store=False,
            cache=self._cache,
            max_object_bytes=self._max_object_bytes,
            policy=policy,
            purge_gen=purge_gen,
        )

    def _object_cap(self, response: UpstreamResponse, plan: FillPlan) -> int:
        """The largest body kept: any tier's, or no limit for one kept as slices (issue 14)."""
        sliced = self.slicer is not None and plan.source is None
        if sliced and sliceable_head(response.status, response.headers, plan.policy.slice_bytes):
            return SLICED_MAX_BYTES
        return self._max_object_bytes

    def _admits(self, meta: EntryMeta) -> bool:
        return self._purges is None or self._purges.admits(meta)

    async def _run(self, fill: Fill[FillInfo], plan: FillPlan) -> None:
        request, stale, store, source = plan.request, plan.stale, plan.store, plan.source
        if stale is not None:
            extra = []
            if stale.etag:
                extra.append(("If-None-Match", stale.etag))
            if stale.last_modified:
                extra.append(("If-Modified-Since", stale.last_modified))
            request = UpstreamRequest(
                method=request.method,
                host=request.host,
                target=request.target,
                headers=request.headers + tuple(extra),
                body=None,
            )
        try:
            response = await plan.upstream.fetch(request)
        except UpstreamError as exc:
            # a peer that cannot answer: fill from the origin ourselves (still coalesced here)
            if plan.fallback is None or not exc.retryable:
                raise
            if plan.on_fallback is not None:
                plan.on_fallback(exc)
            store = plan.fallback_store
            source = "origin-fallback"
            response = await plan.fallback.fetch(request)
        try:
            if stale is not None and response.status == 304:
                await self._refresh(fill, response, stale, store, plan)
                return
            await self._store_response(fill, response, plan, store, source)
        finally:
            response.close()

    async def _refresh(
        self,
        fill: Fill[FillInfo],
        response: UpstreamResponse,
        stale: EntryMeta,
        store: Store | None,
        plan: FillPlan,
    ) -> None:
        """RFC 9111 §4.3.4: a 304 freshens the stored headers; the body stays."""
        meta = refreshed_meta(
            stale,
            response,
            cache=self._cache,
            policy=plan.policy,
            target=plan.key.target,
            purge_gen=plan.purge_gen,
        )
        # a purge that arrived during the revalidation wins over its 304
        updated = (
            store is not None
            and self._admits(meta)
            and await store.update_meta(stale.key, meta, expect=stale)
        )
        if updated and store is not None and not self._admits(meta):
            # it arrived while the update was written: the sweep may already have passed the key
            await store.remove(stale.key, RemoveReason.PURGE)
            updated = False
        info = FillInfo(
            meta=meta if updated else None,
            reason=None,
            refreshed=updated,
            stored=updated,
            began_gen=plan.began_gen,
            upstream=response.upstream,
        )
        fill.set_head(FillHead(304, "Not Modified", meta.headers, shareable=True, length=0, extra=info))
        fill.finish()

    async def _store_response(
        self,
        fill: Fill[FillInfo],
        response: UpstreamResponse,
        plan: FillPlan,
        store: Store | None,
        source: str | None,
    ) -> None:
        key = plan.key
        keep = decide_keep(
            response,
            key=key,
            client_headers=plan.client_headers,
            authorization=plan.authorization,
            has_store=store is not None,
            cache=self._cache,
            max_object_bytes=self._object_cap(response, plan),
            policy=plan.policy,
            purge_gen=plan.purge_gen,
        )
        info = FillInfo(
            meta=keep.meta,
            reason=keep.reason,
            variant_id=keep.variant_id,
            vary=keep.vary,
            initial_age_s=keep.initial_age_s,
            stored=keep.stored,
            source=source,
            began_gen=plan.began_gen,
            upstream=response.upstream,
            # a peer is a cache: its member goes before ours; an origin's Cache-Status is not kept
            upstream_cache_status=(
                response.header("cache-status") if source is not None and source == plan.source else None
            ),
        )
        if keep.marker is not None and store is not None:
            async with await store.open_writer(keep.marker) as marker_writer:
                await marker_writer.commit()
            if keep.variant_id is not None:  # the oldest variant makes room (issue 12: Vary cap)
                for victim in self._variants.add(key.id, keep.variant_id):
                    await store.remove(victim, RemoveReason.EVICTION)
        head = FillHead(response.status, response.reason, keep.replay, keep.shareable, keep.length, info)
        fill.set_head(head)
        if keep.meta is None or store is None:
            log.debug("not storing %s: %s", key.url, keep.reason.name if keep.reason else "?")
            fill.stop_when_unwatched()  # issue 12: the origin download ends with the last client
            async for chunk in response.body:
                await fill.append(chunk)
            fill.finish()
            return
        meta = keep.meta
        if (
            self.slicer is not None
            and keep.length is not None
            and self.slicer.takes(response, meta, keep.length, plan)
        ):
            await self.slicer.run(fill, response, meta, keep.length, plan, store)  # issue 14
            return
        async with await store.open_writer(meta) as writer:
            async for chunk in response.body:
                await fill.append(chunk)
                await writer.write(chunk)
            fill.finish()
            if not self._admits(meta):
                # a matching purge arrived during the fill: the waiters got it, the store does not
                log.info("not storing %s: %s", key.url, NoStoreReason.PURGED.name)
            elif not await writer.commit():
                log.info("store refused %s (%d bytes)", key.url, fill.bytes_received)
            elif not self._admits(meta):
                # it arrived while the commit was published: the sweep may already have passed
                # the key, and its rule is dropped when this fill ends, so nothing else would
                await store.remove(meta.key, RemoveReason.PURGE)
                log.info("removed %s: %s during its commit", key.url, NoStoreReason.PURGED.name)
            else:
                await settle_playlist(fill, meta, store, plan.policy, key.target)  # issue 14: live or VOD
