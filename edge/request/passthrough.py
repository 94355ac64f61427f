"""The pass branch: the request goes upstream as is, the answer streams back, nothing is stored.

Unsafe methods pass (`fwd=method`) and, on success, invalidate the URI and the same-host
URIs their Location and Content-Location name (RFC 9111 §4.4). A GET passes too when its
key is memoised as not shareable, when the fill it joined was not for it (uncacheable,
purged, another variant): each says why in Cache-Status `detail`.
"""

from __future__ import annotations

from edge.fill.keep import replay_headers
from edge.request.context import RequestContext
from edge.request.deliver import FastHeads
from edge.request.forward import upstream_request
from edge.rules.cache_control import for_clients
from edge.rules.key import CacheKey, make_key
from edge.rules.outcome import CACHE_NAME, CacheOutcome, Fwd, cache_status
from edge.store.base import RemoveReason, Store

__all__ = ["Passthrough"]


class Passthrough:
    """Forwards requests that cannot use the cache; invalidates after unsafe successes."""

    def __init__(self, *, stores: tuple[Store, ...], heads: FastHeads, cache_name: str = CACHE_NAME) -> None:
        self._name = cache_name  # this cache's Cache-Status member name
        self._stores = stores  # every store a key may live in (main, then hot copies)
        self._heads = heads  # prebuilt fast-path responses, dropped with their entries

    async def run(
        self, ctx: RequestContext, *, fwd: Fwd, invalidate: bool, detail: str | None = None
    ) -> CacheOutcome:
        """Forwards the request as is and streams the answer back; nothing is stored."""
        request, writer = ctx.request, ctx.writer
        response = await ctx.upstream.fetch(
            upstream_request(
                request, fill=False, allowlist=ctx.allowlist, client_ip=ctx.client_ip, target=ctx.key.target
            )
        )
        ctx.served.tier, ctx.served.upstream = "origin", response.upstream
        try:
            fields = list(replay_headers(response.headers))
            if not ctx.from_peer:
                fields = for_clients(fields)  # Surrogate-Control is for the CDN alone
            age = response.header("age")
            if age is not None:
                fields.append(("Age", age))
            status = cache_status(
                CacheOutcome.PASS, fwd=fwd, fwd_status=response.status, detail=detail, name=self._name
            )
            fields.append(("Cache-Status", status))
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
            await self.invalidate(ctx.key, response.header("location"), response.header("content-location"))
        return CacheOutcome.PASS

    async def invalidate(self, key: CacheKey, *related: str | None) -> None:
        """RFC 9111 §4.4: an unsafe method's success invalidates the URI (and same-host related ones)."""
        ids = [key.id]
        for target in related:
            if target and target.startswith("/"):
                ids.append(make_key("http", key.host, target).id)
        for store_id in ids:
            self._heads.drop(store_id)
            for store in self._stores:
                await store.remove(store_id, RemoveReason.PURGE)
