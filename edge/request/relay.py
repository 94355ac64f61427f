"""The relay: a non-owner's plain miss answered straight from the key's owner, without a fill.

In a region, a node that does not own a key and keeps no hot copy of it asks the owner for
every request (edge.fill.route). A fill (coalescer, spool, producer task) for each of those
costs far more than the hop itself, and keeps nothing: the owner stores the object. So a
plain GET/HEAD (no body, no validators, no Range, no credentials: `Request.plain`) with no
stale copy here, routed to the owner and not admitted as a hot copy, is relayed: this
request's own task asks the owner through its PeerClient and writes the answer to the client.

Coalescing stays per node: one peer request per key at a time. The first request for a key
leads and records a Flight; requests for the same key that arrive meanwhile wait for it.
- A small answer (a Content-Length up to INLINE_BODY_MAX) is read whole: the leader sends it
  with its head in one write and every waiting request gets the same bytes (COLLAPSED), after
  the same checks a fill's followers make (shareable, Vary variant, no purge since it began).
- A large or unframed answer streams to the leader's client; its followers go the fill way
  and share ONE fill among them. The owner coalesces every peer request for the key with its
  own fill (they carry X-Edge-Hop, so it never forwards them), so the region still sends one
  origin request per object.
- The owner failing before its head (refused, timed out, marked down): the leader and its
  followers take one fill that goes to the origin at once (FillStarter.join's `peer_error`),
  kept in the main store: today's peer-failure fallback, coalesced per node.
A fill of the key already running here (a hot-copy admission, a fallback) is joined instead.
Deadlines are the peer client's (X-Edge-Deadline from the request's own deadline).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from edge.fill.keep import KeepDecision
from edge.fill.producer import Filler
from edge.fill.route import FillRoute, FillSource, FillStore
from edge.peering.routing import PeerRouting
from edge.purge.invalidate import Invalidator
from edge.request.context import RequestContext
from edge.request.deliver import INLINE_BODY_MAX, deliver_relayed
from edge.request.forward import upstream_request
from edge.request.miss import FillStarter
from edge.request.restart import RestartReason
from edge.rules.key import variant_id
from edge.rules.outcome import (
    CACHE_NAME,
    CacheOutcome,
    Fwd,
    cache_status,
    is_hit_member,
    reason_detail,
    with_upstream,
)
from origin.errors import BodyError, UpstreamError
from origin.upstream import UpstreamResponse

__all__ = ["Relay", "RelayStep"]

# What a relay ends in: an answer, a reason to look the key up again, None (take the fill way),
# or the owner's error before its head (take the fill way, straight to the origin fallback).
RelayStep = CacheOutcome | RestartReason | UpstreamError | None


@dataclass(frozen=True, slots=True)
class Relayed:
    """An owner's small answer, whole: what the leader sent and its followers share."""

    status: int
    body: bytes
    keep: KeepDecision
    upstream: str  # "peer:<name>"
    upstream_cache_status: str | None  # the owner's Cache-Status, put before ours
    response_time: float
    began_gen: int  # this node's purge generation when the relay began
    source: str | None  # "peer-<owner>", Cache-Status detail


class Flight:
    """A relay in progress: its followers wait on `answer` (None: take the fill way)."""

    __slots__ = ("answer",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.answer: asyncio.Future[Relayed | None] = loop.create_future()


def relayable(ctx: RequestContext, route: FillRoute) -> bool:
    """Whether this miss is relayed: a plain client GET/HEAD the owner answers and nobody here keeps."""
    request = ctx.request
    return (
        route.source is FillSource.REGION_OWNER
        and route.store is FillStore.NONE
        and request.plain
        and request.body is None
        and not ctx.from_peer
    )


class Relay:
    """Relays non-owners' plain misses to the key's owner, one peer request per key at a time."""

    def __init__(
        self,
        routing: PeerRouting,
        fills: FillStarter,
        filler: Filler,
        purges: Invalidator,
        clock: Callable[[], float],
        cache_name: str = CACHE_NAME,
    ) -> None:
        self._routing = routing
        self._fills = fills
        self._filler = filler
        self._purges = purges
        self._clock = clock
        self._name = cache_name
        self._flights: dict[bytes, Flight] = {}  # fill id -> the relay its followers wait on

    @property
    def in_flight(self) -> int:
        """Relays running now (tests and status)."""
        return len(self._flights)

    async def serve(self, ctx: RequestContext, store_id: bytes, route: FillRoute) -> RelayStep:
        """Relays the miss, follows the relay running for its key, or says to take the fill way."""
        if not relayable(ctx, route):
            return None
        fill_id = store_id + b"|via-peer"  # the id the fill way uses for it (FillRoute.own_fill)
        if self._fills.running(fill_id):
            return None  # a fill of this key runs here: join it
        flight = self._flights.get(fill_id)
        counts = self._fills.coalescer  # /status counts relays and their waiters with the fills
        if flight is not None:
            # bounded: the leader settles it when it ends, however it ends, and its waits are
            # the peer client's (first byte, idle, total)
            counts.relay_waiters += 1
            try:
                relayed = await asyncio.shield(flight.answer)
            finally:
                counts.relay_waiters -= 1
            return None if relayed is None else await self._follow(ctx, relayed)
        flight = self._flights[fill_id] = Flight(asyncio.get_running_loop())
        counts.relays += 1
        counts.relay_waiters += 1
        try:
            return await self._lead(ctx, route, flight)
        finally:
            self._settle(fill_id, flight, None)

    def _settle(self, fill_id: bytes, flight: Flight, relayed: Relayed | None) -> None:
        """Hands the followers their answer; later requests start a relay of their own."""
        if self._flights.get(fill_id) is flight:
            del self._flights[fill_id]
            counts = self._fills.coalescer
            counts.relays -= 1
            counts.relay_waiters -= 1
        if not flight.answer.done():
            flight.answer.set_result(relayed)

    async def _lead(self, ctx: RequestContext, route: FillRoute, flight: Flight) -> RelayStep:
        assert route.peer is not None
        request = ctx.request
        fetch = upstream_request(
            request,
            method="GET",
            fill=True,
            allowlist=ctx.allowlist,
            client_ip=ctx.client_ip,
            target=ctx.key.target,
        )
        purges = self._purges
        began = purges.generation
        gen = purges.begin_fill(from_peer=True)  # keeps purge rules while it runs, as a fill does
        try:
            try:
                response = await self._routing.peer(route.peer).fetch(fetch)
            except UpstreamError as exc:
                if not exc.retryable:
                    raise
                return exc  # the fill way, straight to the origin (coalesced with the followers)
            try:
                keep = self._filler.decide(
                    response, key=ctx.key, client_headers=request.headers, policy=ctx.policy, purge_gen=gen
                )
                length = keep.length
                if length is None or length > INLINE_BODY_MAX:
                    flight.answer.set_result(None)  # large: the followers share one fill
                    return await self._stream(ctx, response, keep, route.label)
                relayed = Relayed(
                    status=response.status,
                    body=await _whole(response, length),
                    keep=keep,
                    upstream=response.upstream,
                    upstream_cache_status=response.header("cache-status"),
                    response_time=response.response_time,
                    began_gen=began,
                    source=route.label,
                )
            finally:
                response.close()
        finally:
            purges.end_fill(gen)
        flight.answer.set_result(relayed)
        return await self._send(ctx, relayed, leader=True)

    async def _follow(self, ctx: RequestContext, relayed: Relayed) -> RelayStep:
        """A request that waited on a relay: its answer, if a fill's follower could read it."""
        keep = relayed.keep
        if not keep.shareable:
            return None  # the leader's alone (private, credentials): ask on our own
        if keep.meta is not None and not self._purges.admits(keep.meta, began=relayed.began_gen):
            return RestartReason.PURGED_FILL  # began before a matching purge: its bytes are purged
        if keep.vary and variant_id(ctx.key.id, keep.vary, ctx.request.headers) != keep.variant_id:
            return None  # another variant: ask for ours
        return await self._send(ctx, relayed, leader=False)

    async def _send(self, ctx: RequestContext, relayed: Relayed, *, leader: bool) -> CacheOutcome:
        keep, upstream = relayed.keep, relayed.upstream_cache_status
        outcome = CacheOutcome.MISS if leader else CacheOutcome.COLLAPSED
        if leader and is_hit_member(upstream):
            outcome = CacheOutcome.PEER_HIT  # the owner had it: no origin fetch for this request
        trailer = self._trailer(
            outcome, relayed.status, keep, upstream, relayed.response_time, relayed.source
        )
        served = ctx.served
        served.tier, served.upstream = "peer", relayed.upstream
        await deliver_relayed(
            ctx.request,
            ctx.writer,
            status=relayed.status,
            headers=keep.replay,
            body=relayed.body,
            length=len(relayed.body),
            trailer=trailer,
        )
        return outcome

    async def _stream(
        self, ctx: RequestContext, response: UpstreamResponse, keep: KeepDecision, source: str | None
    ) -> CacheOutcome:
        upstream = response.header("cache-status")
        outcome = CacheOutcome.PEER_HIT if is_hit_member(upstream) else CacheOutcome.MISS
        trailer = self._trailer(outcome, response.status, keep, upstream, response.response_time, source)
        served = ctx.served
        served.tier, served.upstream = "peer", response.upstream
        await deliver_relayed(
            ctx.request,
            ctx.writer,
            status=response.status,
            headers=keep.replay,
            body=response.body,
            length=keep.length,
            trailer=trailer,
        )
        return outcome

    def _trailer(
        self,
        outcome: CacheOutcome,
        status: int,
        keep: KeepDecision,
        upstream: str | None,
        response_time: float,
        source: str | None,
    ) -> list[tuple[str, str]]:
        """Age and Cache-Status as the fill way gives them (Handler._read_fill)."""
        now = self._clock()
        meta = keep.meta
        age = keep.initial_age_s + max(0.0, now - response_time)
        value = cache_status(
            outcome,
            ttl=meta.ttl(now) if meta is not None else None,
            stored=keep.stored,
            fwd_status=status,
            detail=reason_detail(keep.reason) if keep.reason is not None else source,
            fwd=Fwd.MISS,
            name=self._name,
        )
        return [("Age", str(int(age))), ("Cache-Status", with_upstream(upstream, value))]


async def _whole(response: UpstreamResponse, length: int) -> bytes:
    """The body of `length` bytes (bounded by the peer client's idle and total timeouts)."""
    chunks = [chunk async for chunk in response.body]
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if len(body) != length:
        message = f"{response.upstream}: body of {len(body)} bytes, {length} announced"
        raise BodyError(message, upstream=response.upstream)
    return body
