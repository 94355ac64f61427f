"""A miss's fill: which fill a request joins, or the one it starts, and where it goes.

`FillStarter.join` asks the ring view (`PeerRouting`) its questions, lets the pure
`edge.fill.route.plan_fill_route` decide the source and the store, builds the FillPlan
(whole-object GET, the client's request fields for Vary and no-store, the stale entry to
revalidate) and joins the coalescer under the fill's id. Its only other job is telling the
ring when a peer could not be reached, so the next miss goes elsewhere.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping

from edge.fill.coalesce import Coalescer, Fill, JoinResult
from edge.fill.producer import Filler, FillInfo, FillPlan
from edge.fill.route import FillRoute, FillSource, FillStore, asks_hot, plan_fill_route
from edge.peering.routing import PeerRouting
from edge.peering.workers import Siblings, worker_label
from edge.request.context import RequestContext
from edge.request.forward import upstream_request
from edge.store.base import Store
from edge.store.entry import EntryMeta
from origin.errors import ConnectError, UpstreamError
from origin.upstream import UpstreamRequest, UpstreamResponse

__all__ = ["FillStarter"]

log = logging.getLogger("edge.request.miss")


class FillStarter:
    """Starts or joins the fill for a missed (or stale) key."""

    def __init__(
        self,
        *,
        coalescer: Coalescer,
        filler: Filler,
        stores: Mapping[FillStore, Store],
        routing: PeerRouting | None,
        siblings: Siblings | None = None,
    ) -> None:
        self._siblings = siblings  # the machine's other worker processes (docs/workers.md)
        self._coalescer = coalescer
        self._filler = filler
        self._stores = stores  # this node's stores by name (MAIN, and HOT in a cluster)
        self._routing = routing  # None: a lone node, every fill asks the origin

    def route(self, ctx: RequestContext, stale_in: FillStore | None) -> FillRoute:
        """Where this key's fill comes from and which store keeps it (counts a hot-key request)."""
        key, routing = ctx.key, self._routing
        owner = parent = None
        if routing is not None:
            owner, parent = routing.owner(key.id), routing.parent_owner(key.id)
        # asking whether the key is hot counts a request toward it: ask only when it matters
        hot = (
            routing is not None
            and asks_hot(from_peer=ctx.from_peer, owner=owner, stale_in=stale_in)
            and routing.is_hot(key.id)
        )
        return plan_fill_route(
            from_peer=ctx.from_peer, owner=owner, parent_owner=parent, stale_in=stale_in, is_hot=hot
        )

    def join(
        self,
        ctx: RequestContext,
        store_id: bytes,
        stale: EntryMeta | None,
        stale_in: FillStore | None,
        *,
        rescue: bool = False,
        route: FillRoute | None = None,
        peer_error: UpstreamError | None = None,
    ) -> JoinResult[FillInfo]:
        """Joins (or starts) the fill for this key; the caller releases the result.

        `rescue`: the caller holds a stale copy it may serve on error, so it joins a fill
        even while the key is memoised as pass (an error answer never hides that copy).
        `route`: the one `route()` gave (else asked here). `peer_error`: the owner already
        failed this request before its head (edge.request.relay): the fill takes the origin
        fallback at once, as a peer fill does, without asking the owner again.
        """
        request, key, routing = ctx.request, ctx.key, self._routing
        if route is None:
            route = self.route(ctx, stale_in)
        authorization = "authorization" in request.headers
        fetch = upstream_request(
            request,
            method="GET",
            fill=True,
            allowlist=ctx.allowlist,
            client_ip=ctx.client_ip,
            target=key.target,
        )
        plan = FillPlan(
            upstream=ctx.upstream,
            request=fetch,
            key=key,
            client_headers=request.headers.copy(),
            authorization=authorization,
            stale=stale,
            store=self._stores.get(route.store),
            policy=ctx.policy,
        )
        if route.peer is not None and routing is not None:
            # a peer that fails before its head is replaced by the origin, kept in the main store
            plan = dataclasses.replace(
                plan,
                upstream=routing.peer(route.peer) if peer_error is None else _Failed(peer_error),
                fallback=ctx.upstream,
                fallback_store=self._stores[FillStore.MAIN],
                on_fallback=functools.partial(self._peer_failed, route.peer),
                source=route.label,
            )
        if self._siblings is not None and route.source is not FillSource.REGION_OWNER:
            plan = self._via_sibling(plan, self._siblings, key.id)

        async def producer(fill: Fill[FillInfo]) -> None:
            await self._filler.run(fill, plan)

        fill_id = store_id + (b"|auth" if authorization else b"") + (b"|via-peer" if route.own_fill else b"")
        return self._coalescer.join(fill_id, producer, ignore_pass=rescue)

    @staticmethod
    def _via_sibling(plan: FillPlan, siblings: Siblings, key_id: bytes) -> FillPlan:
        """This machine fills the key: its owner worker does, unless that is this worker.

        Asked as a peer, the owner never forwards again. A sibling that cannot be reached
        (restarting) is replaced by the route's own upstream; this worker keeps the answer
        only in its memory tier (edge.store.shared: the owner alone writes the disk).
        """
        owner = siblings.owner(key_id)
        if owner is None:
            return plan
        label = worker_label(owner)
        return dataclasses.replace(
            plan,
            upstream=siblings.client(owner),
            fallback=plan.upstream,
            fallback_store=plan.store,
            on_fallback=lambda exc: log.warning("%s failed (%s); filling without it", label, exc),
            source=label,
        )

    def detach(self, fill: Fill[FillInfo]) -> None:
        """New requests for the fill's key no longer join it (it began before a purge)."""
        self._coalescer.detach(fill)

    @property
    def coalescer(self) -> Coalescer:
        """The node's coalescer (the relay counts its flights there)."""
        return self._coalescer

    def running(self, fill_id: bytes) -> bool:
        """Whether a fill of this id runs (new requests for it join it)."""
        return self._coalescer.running(fill_id)

    def peer_failed(self, name: str, exc: UpstreamError) -> None:
        """A peer could not answer before its head: logged, and a refused connection reported."""
        self._peer_failed(name, exc)

    def _peer_failed(self, name: str, exc: UpstreamError) -> None:
        log.warning("peer %s failed (%s); filling from the origin", name, exc)
        # only a refused or failed connection says the peer is gone; a slow answer does not
        if self._routing is not None and isinstance(exc, ConnectError):
            self._routing.peer_failed(name)


class _Failed:
    """An Upstream that answers with the error the owner already gave this request, so the
    fill takes its origin fallback exactly as for a failure of its own peer fetch."""

    __slots__ = ("_error",)

    def __init__(self, error: UpstreamError) -> None:
        self._error = error

    async def fetch(self, request: UpstreamRequest) -> UpstreamResponse:
        raise self._error
