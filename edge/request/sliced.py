"""Serving sliced objects: a hit on a (possibly partial) record, and a cold seek.

`send` answers a request from a sliced object's record: Range and conditionals are planned
against the whole object (its total length and validators), then each slice the answer
covers comes from the store (memory bytes or a sendfile span) or from its coalesced fill
(edge.fill.slices). While slices are being fetched, the next `slice_read_ahead` ones inside
the client's range are started too (a player's open-ended range runs to the end of the
object; a closed seek costs only the slices it covers). A client that leaves stops the
loop: no slice beyond the read-ahead is asked for.

`cold` answers a Range request whose start lies past the first slice of an object this node
has never seen: it asks the origin for that one slice (coalesced: every client seeking there
shares it), which defines the object's record, and streams the client's range from there.
The first byte arrives after one slice, not after the whole file. Objects that are not kept
as slices make `cold` return None, and the caller takes the ordinary whole-object miss.
Only the key's owner in a region (or a lone node) seeks cold: other nodes ask the owner.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edge.fill.coalesce import Fill, FillFailed
from edge.fill.producer import FillInfo
from edge.fill.slices import SliceJob, SliceRefused, SliceSource, span_of
from edge.peering.routing import PeerRouting
from edge.request.context import RequestContext
from edge.request.deliver import plan_response, send_head
from edge.request.forward import upstream_request
from edge.rules.outcome import CacheOutcome, Fwd, cache_status
from edge.rules.slicing import cold_slice_index, slice_count, slices_for
from edge.store.base import Store
from edge.store.entry import EntryMeta
from origin.errors import UpstreamError

__all__ = ["SlicedServer"]


class SlicedServer:
    """Answers requests for sliced objects of one node's main store."""

    def __init__(
        self,
        *,
        source: SliceSource,
        store: Store,
        routing: PeerRouting | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._store = store
        self._routing = routing
        self._clock = clock

    def cold_index(self, ctx: RequestContext) -> int | None:
        """The slice a cold Range request starts in, when it should be fetched alone."""
        request = ctx.request
        if request.method != "GET" or "authorization" in request.headers:
            return None
        if self._routing is not None and self._routing.owner(ctx.key.id) is not None:
            return None  # not the owner: the owner coalesces for the region
        return cold_slice_index(request.headers.get("range"), ctx.policy.slice_bytes)

    def job(self, ctx: RequestContext, record: EntryMeta | None) -> SliceJob:
        """The slices of this request's object: from the route's origin, into the main store."""
        request = ctx.request
        fetch = upstream_request(
            request,
            method="GET",
            fill=True,
            allowlist=ctx.allowlist,
            client_ip=ctx.client_ip,
            target=ctx.key.target,
        )
        return SliceJob(
            key=ctx.key,
            upstream=ctx.upstream,
            request=fetch,
            store=self._store,
            record=record,
            client_headers=request.headers.copy(),
            authorization="authorization" in request.headers,
            policy=ctx.policy,
        )

    async def cold(self, ctx: RequestContext, index: int) -> CacheOutcome | None:
        """A cold seek: fetches the one slice, then serves the range; None if not sliceable."""
        with self._source.join(self.job(ctx, None), index) as joined:
            fill = joined.fill
            if fill is None:
                return None
            try:
                head = await fill.head(leader=joined.leader)
            except FillFailed as exc:
                if isinstance(exc.__cause__, SliceRefused):
                    return None
                raise
            record = head.extra.meta
            if record is None:
                return None
            outcome = CacheOutcome.MISS if joined.leader else CacheOutcome.COLLAPSED
            now = self._clock()
            status = cache_status(outcome, ttl=record.ttl(now), stored=True, fwd_status=206, fwd=Fwd.MISS)
            trailer = [("Age", str(int(record.age(now)))), ("Cache-Status", status)]
            await self.send(ctx, record, trailer, first=(index, fill))
        return outcome

    async def send(
        self,
        ctx: RequestContext,
        record: EntryMeta,
        trailer: list[tuple[str, str]],
        *,
        first: tuple[int, Fill[FillInfo]] | None = None,
    ) -> int:
        """Answers the request from the sliced object; returns the status sent."""
        request, writer = ctx.request, ctx.writer
        plan = plan_response(
            request,
            status=200,
            length=record.total_length,
            etag=record.etag,
            last_modified=record.last_modified,
        )
        count = plan.end - plan.start
        body = request.method != "HEAD" and count > 0 and plan.status in (200, 206)
        joined = None
        if body and first is None:
            # the first slice's head before ours: an object that changed fails cleanly (502)
            index = plan.start // record.slice_bytes
            job = self.job(ctx, record)
            hit = await self._source.stored(job, index)
            if hit is not None:
                await hit.close()
            else:
                joined = self._source.join(job, index)
                fill = joined.fill
                if fill is None:
                    joined.release()
                    raise UpstreamError("slice fill unavailable; retry")
                first = (index, fill)
        try:
            if first is not None:
                await first[1].head(leader=joined.leader if joined is not None else True)
            if not send_head(request, writer, plan, record.headers, trailer, count):
                return plan.status
            if body:
                await self._body(ctx, record, plan.start, plan.end, first)
        finally:
            if joined is not None:
                joined.release()
        writer.finish()
        return plan.status

    async def _body(
        self,
        ctx: RequestContext,
        record: EntryMeta,
        start: int,
        end: int,
        first: tuple[int, Fill[FillInfo]] | None,
    ) -> None:
        writer, source = ctx.writer, self._source
        job = self.job(ctx, record)
        # read-ahead stays inside the client's range: an open-ended one (a player) runs to the
        # end of the object, a closed one (a seek) costs only the slices it covers
        total = min(slice_count(record.total_length, record.slice_bytes), (end - 1) // record.slice_bytes + 1)
        ahead = max(0, ctx.policy.slice_read_ahead)
        started = 0  # slices before this index were started (read ahead) already
        for k in slices_for(start, end, record.slice_bytes):
            span = span_of(record, k)
            lo, hi = max(start, span.start) - span.start, min(end, span.end) - span.start
            if first is not None and first[0] == k:
                fill: Fill[FillInfo] | None = first[1]
            else:
                fill = None
                hit = await source.stored(job, k)
                if hit is not None:
                    try:
                        body = hit.body_bytes()
                        span_fd = hit.file_span() if body is None else None
                        if body is not None:
                            await writer.write(body if (lo, hi) == (0, len(body)) else body[lo:hi])
                        elif span_fd is not None:
                            await writer.sendfile(span_fd[0], span_fd[1] + lo, hi - lo)
                        else:
                            async for chunk in hit.read(lo, hi):
                                await writer.write(chunk)
                    finally:
                        await hit.close()
                    continue
            # fetching from here: this slice first, then the next ones while it streams
            joined = None if fill is not None else source.join(job, k)
            try:
                for j in range(max(k + 1, started), min(k + 1 + ahead, total)):
                    await source.prefetch(job, j)
                started = max(started, k + 1 + ahead)
                if joined is not None:
                    fill = joined.fill
                    if fill is None:
                        raise UpstreamError("slice fill unavailable; retry")
                    await fill.head(leader=joined.leader)
                assert fill is not None
                async for chunk in fill.body(lo, hi):
                    await writer.write(chunk)
            finally:
                if joined is not None:
                    joined.release()
