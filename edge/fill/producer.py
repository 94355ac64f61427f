"""The fill: one upstream fetch whose body is spooled for every waiting client and stored.

`Filler.run` is the producer the coalescer runs in its own task for one key. It fetches
upstream (conditionally when it revalidates a stored entry), decides whether the response
may be stored and shared (RFC 9111 §3), computes its freshness (§4.2), announces the head
to the waiters, then tees every chunk into the fill's spool and the store writer, and
commits. A 304 to a revalidation refreshes the stored entry's headers (§4.3.4) and tells
the waiters to serve it from the store.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from edge.config.deployment import CacheConfig
from edge.fill.coalesce import Fill, FillHead
from edge.fill.variants import VariantLimiter
from edge.request.key import CacheKey
from edge.rules.cache_control import Directives, response_directives
from edge.rules.deception import edge_lifetime_refusal
from edge.rules.error_storage import error_store_reason
from edge.rules.freshness import compute_freshness, updated_headers_from_304
from edge.rules.outcome import NoStoreReason
from edge.rules.site_policy import DEFAULT_POLICY, CachePolicy
from edge.rules.storable import HEURISTIC_STATUSES, no_store_reason
from edge.store.base import RemoveReason, Store
from edge.store.entry import EntryMeta
from origin.errors import UpstreamError
from origin.upstream import Upstream, UpstreamRequest, UpstreamResponse

__all__ = [
    "VARY_MARKER_STATUS",
    "FillGuard",
    "FillInfo",
    "FillPlan",
    "Filler",
    "replay_headers",
    "vary_names",
]

log = logging.getLogger("edge.fill.producer")

# A stored entry with this status is a Vary marker: its `vary` names the fields that select
# the variant, stored under CacheKey.variant(); it has no body.
VARY_MARKER_STATUS = 0

# Fields never replayed from a stored response: framing and per-hop (we set them), and Age
# (recomputed on every response, RFC 9111 §4.2.3).
_NOT_REPLAYED = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "age",
        "cache-status",
        "proxy-connection",
        "trailer",
        "upgrade",
        "te",
        "accept-ranges",
    }
)

# Reasons a response is not stored but may still be given to the requests that waited on it:
# they are public answers (errors, too-large or unvalidatable bodies). Everything else
# (private, no-store, credentials, cookies) goes to the leader only. A client's own no-store
# only stops storing: the answer itself is public.
_SHAREABLE_REASONS = frozenset(
    {NoStoreReason.STATUS, NoStoreReason.TOO_LARGE, NoStoreReason.PARTIAL, NoStoreReason.REQUEST_NO_STORE}
)


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


def replay_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The response fields a cache replays (framing, per-hop fields and Age removed)."""
    return tuple((n, v) for n, v in headers if n.lower() not in _NOT_REPLAYED)


def vary_names(headers: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """Lower-cased field names from every Vary header, in order, without duplicates."""
    names: list[str] = []
    for n, v in headers:
        if n.lower() == "vary":
            for token in v.split(","):
                token = token.strip().lower()
                if token and token not in names:
                    names.append(token)
    return tuple(names)


def _tags(headers: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    tags: list[str] = []
    for n, v in headers:
        ln = n.lower()
        if ln == "surrogate-key" or ln == "cache-tag":
            tags.extend(t for t in v.replace(",", " ").split() if t)
    return tuple(dict.fromkeys(tags))


def _header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


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
    purge_gen: int = 0  # set by Filler.run: this node's purge generation when the fill began


class FillGuard(Protocol):
    """Fill versus purge (edge.purge.invalidate.Invalidator).

    A fill older than a matching purge is not stored.
    """

    def begin_fill(self, *, from_peer: bool) -> int: ...

    def end_fill(self, gen: int) -> None: ...

    def admits(self, meta: EntryMeta) -> bool: ...


@dataclass(frozen=True, slots=True)
class _Fresh:
    """What the filler learns of a response's freshness."""

    meta_fields: dict[str, Any]  # the EntryMeta freshness and validator fields
    directives: Directives
    used_cdn: bool  # CDN-Cache-Control decided the policy (RFC 9213)
    from_policy: bool  # the lifetime is the route policy's (the origin was silent)


class Filler:
    """Runs fills for one node: upstream fetch → head → spool + store → commit."""

    def __init__(self, *, cache: CacheConfig, max_object_bytes: int, purges: FillGuard | None = None) -> None:
        self._cache = cache
        self._max_object_bytes = max_object_bytes  # the largest body any tier takes
        self._purges = purges  # None: no purge state (unit tests)
        self._variants = VariantLimiter(max_per_url=cache.max_variants)  # issue 12: Vary cap per URL

    async def run(self, fill: Fill, plan: FillPlan) -> None:
        """Fetches and fills; a stale entry in the plan is revalidated with its validators."""
        if self._purges is None:
            await self._run(fill, plan)
            return
        # a fill from a peer may carry bytes the peer held before a purge reached it
        gen = self._purges.begin_fill(from_peer=plan.source is not None)
        try:
            await self._run(fill, dataclasses.replace(plan, purge_gen=gen))
        finally:
            self._purges.end_fill(gen)

    def _admits(self, meta: EntryMeta) -> bool:
        return self._purges is None or self._purges.admits(meta)

    async def _run(self, fill: Fill, plan: FillPlan) -> None:
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
        self, fill: Fill, response: UpstreamResponse, stale: EntryMeta, store: Store | None, plan: FillPlan
    ) -> None:
        """RFC 9111 §4.3.4: a 304 freshens the stored headers; the body stays."""
        headers = replay_headers(updated_headers_from_304(stale.headers, response.headers))
        meta = stale.replace(
            headers=headers,
            request_time=response.request_time,
            response_time=response.response_time,
            invalidated=False,
            purge_gen=plan.purge_gen,
            **self._freshness(stale.status, headers, response, plan).meta_fields,
        )
        # a purge that arrived during the revalidation wins over its 304
        updated = store is not None and self._admits(meta) and await store.update_meta(stale.key, meta)
        fill.set_head(
            FillHead(
                status=304,
                reason="Not Modified",
                headers=headers,
                shareable=True,
                length=0,
                extra=FillInfo(
                    meta=meta if updated else None, reason=None, refreshed=updated, stored=updated
                ),
            )
        )
        fill.finish()

    async def _store_response(
        self, fill: Fill, response: UpstreamResponse, plan: FillPlan, store: Store | None, source: str | None
    ) -> None:
        key, client_headers, authorization = plan.key, plan.client_headers, plan.authorization
        headers = response.headers
        fresh = self._freshness(response.status, headers, response, plan)
        reason = no_store_reason(
            method="GET",
            status=response.status,
            request_headers=client_headers,
            response_headers=headers,
            directives=fresh.directives,
            authorization=authorization,
            allow_set_cookie=self._cache.allow_set_cookie,
            used_cdn_cc=fresh.used_cdn,
        )
        if fresh.from_policy and reason is NoStoreReason.NO_FRESHNESS:
            reason = None  # the policy gives it the freshness the origin did not
        if reason is None:  # issue 12: web cache deception armour for edge-added lifetimes
            reason = edge_lifetime_refusal(
                target=key.target,
                status=response.status,
                request_headers=client_headers,
                response_headers=headers,
                directives=fresh.directives,
                used_cdn_cc=fresh.used_cdn,
                lifetime_s=fresh.meta_fields["lifetime_s"],
            )
        if reason is None:  # issue 12: request-caused errors and 5xx are not kept, whatever they say
            reason = error_store_reason(response.status, plan.policy.store_error_statuses)
        replay = replay_headers(headers)
        length_s = response.header("content-length")
        length = int(length_s) if length_s and length_s.isdigit() else None
        if reason is None and length is not None and length > self._max_object_bytes:
            reason = NoStoreReason.TOO_LARGE
        vary = vary_names(headers)
        store_key = key.variant(vary, client_headers) if vary else key
        meta: EntryMeta | None = None
        if reason is None:
            meta = EntryMeta(
                key=store_key.id,
                url=key.url,
                status=response.status,
                headers=replay,
                request_time=response.request_time,
                response_time=response.response_time,
                vary=vary,
                tags=_tags(headers),
                purge_gen=plan.purge_gen,
                **fresh.meta_fields,
            )
        shareable = reason is None or reason in _SHAREABLE_REASONS
        stored = meta is not None and store is not None  # store None: the owner keeps it, we pass it on
        info = FillInfo(
            meta=meta,
            reason=reason,
            variant_id=store_key.id if vary else None,
            vary=vary,
            initial_age_s=fresh.meta_fields["initial_age_s"],
            stored=stored,
            source=source,
        )
        if meta is not None and store is not None and vary:
            await self._write_vary_marker(key, meta, store)
            for victim in self._variants.add(key.id, store_key.id):  # the oldest variant makes room
                await store.remove(victim, RemoveReason.EVICTION)
        fill.set_head(
            FillHead(
                status=response.status,
                reason=response.reason,
                headers=replay,
                shareable=shareable,
                length=length,
                extra=info,
            )
        )
        if meta is None or store is None:
            log.debug("not storing %s: %s", key.url, reason.name if reason else "?")
            async for chunk in response.body:
                await fill.append(chunk)
            fill.finish()
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

    def _freshness(
        self, status: int, headers: tuple[tuple[str, str], ...], response: UpstreamResponse, plan: FillPlan
    ) -> _Fresh:
        """A response's freshness (RFC 9111 §4.2, then the policy where the origin is silent)."""
        directives, used_cdn = response_directives(headers)
        f = compute_freshness(
            status=status,
            response_headers=headers,
            directives=directives,
            used_cdn_cc=used_cdn,
            request_time=response.request_time,
            response_time=response.response_time,
            heuristic_fraction=self._cache.heuristic_fraction,
            heuristic_max_s=self._cache.heuristic_max_s,
        )
        explicit = (
            directives.s_maxage is not None
            or directives.max_age is not None
            or (not used_cdn and _header(headers, "expires") is not None)
        )
        silent = not (explicit or directives.no_cache or directives.no_store) and status in HEURISTIC_STATUSES
        policy_ttl = plan.policy.silent_ttl(status, plan.key.target) if silent else None
        fields = {
            "initial_age_s": f.initial_age_s,
            "lifetime_s": f.lifetime_s if policy_ttl is None else policy_ttl,
            "swr_s": f.swr_s,
            "sie_s": f.sie_s,
            "must_revalidate": f.must_revalidate,
            "no_cache": f.no_cache,
            "etag": _header(headers, "etag"),
            "last_modified": _header(headers, "last-modified"),
        }
        return _Fresh(fields, directives, used_cdn, policy_ttl is not None)

    async def _write_vary_marker(self, key: CacheKey, variant: EntryMeta, store: Store) -> None:
        """Stores the primary key's Vary marker (no body) naming the selecting fields."""
        marker = variant.replace(
            key=key.id,
            status=VARY_MARKER_STATUS,
            headers=(),
            etag=None,
            last_modified=None,
            lifetime_s=10 * 365 * 86400.0,
            no_cache=False,
            must_revalidate=False,
        )
        async with await store.open_writer(marker) as writer:
            await writer.commit()
