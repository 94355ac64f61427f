"""A whole-object fill that turns out large: stored as slices, continued slice by slice.

The Filler hands a 200 over here when `edge.rules.slicing.worth_slicing` says so (and the
fill comes from the origin itself, not a peer). Slice 0 is cut from the response already
open; the object's record is stored once slice 0 is, so later requests find a partial
object and fetch only the slices they need. From slice 1 on, when the origin accepts ranges,
the response is closed and each slice comes from `SliceSource.read`: stored, or its own
coalesced Range fill with its own origin timeouts, so a fill slower than the origin's total
timeout still completes. An origin that does not accept ranges is streamed to the end,
slice after slice. A response that breaks mid-slice is resumed from the byte it broke at
with a Range request. At each slice boundary the fill stops when no client is left on it.
"""

from __future__ import annotations

import logging

from edge.fill.coalesce import Fill
from edge.fill.producer import FillInfo, FillPlan
from edge.fill.slices import ChunkCutter, SliceJob, SliceSource, commit_record, span_of
from edge.rules.slicing import accepts_ranges, slice_count, worth_slicing
from edge.store.base import Store
from edge.store.entry import EntryMeta
from edge.store.sliced import record_of
from origin.errors import BodyError
from origin.upstream import UpstreamResponse

__all__ = ["SlicedFill"]

log = logging.getLogger("edge.fill.sliced_fill")


class SlicedFill:
    """Stores a large whole-object fill as slices (the Filler's `slicer`)."""

    def __init__(self, source: SliceSource) -> None:
        self._source = source

    def takes(self, response: UpstreamResponse, meta: EntryMeta, length: int | None, plan: FillPlan) -> bool:
        """Whether this fill's response is kept as slices."""
        return (
            plan.source is None
            and not meta.vary
            and worth_slicing(
                status=response.status,
                length=length,
                size=plan.policy.slice_bytes,
                etag=meta.etag,
                last_modified=meta.last_modified,
            )
        )

    async def run(
        self,
        fill: Fill[FillInfo],
        response: UpstreamResponse,
        meta: EntryMeta,
        length: int,
        plan: FillPlan,
        store: Store,
    ) -> None:
        """Streams the body into the fill (whose head is set) and the slices; finishes the fill."""
        source = self._source
        record = record_of(meta, total=length, slice_bytes=plan.policy.slice_bytes)
        job = SliceJob(
            key=plan.key,
            upstream=plan.upstream,
            request=plan.request,
            store=store,
            record=record,
            client_headers=plan.client_headers,
            authorization=plan.authorization,
            policy=plan.policy,
        )
        ranges = accepts_ranges(response.headers)
        cutter: ChunkCutter | None = ChunkCutter(response.body)
        for k in range(slice_count(length, record.slice_bytes)):
            span = span_of(record, k)
            if k == 1 and source.admits(record):
                await commit_record(store, record)  # a partial object from now on
            if k > 0 and fill.holders == 0:
                log.info("%s: no client left; fill stops after slice %d of %d", plan.key.url, k, length)
                return  # not finished: the fill is ABANDONED, nobody reads it
            if cutter is not None and (k == 0 or not ranges):
                try:
                    await source.store_slice(store, record, span, cutter, plan.purge_gen, into=fill)
                    continue
                except BodyError:
                    if not ranges:
                        raise
                    log.info("%s: origin response broke in slice %d; resuming with Range", plan.key.url, k)
            if cutter is not None:
                response.close()  # the rest comes slice by slice
                cutter = None
            async for chunk in source.read(job, k, fill.bytes_received - span.start):
                await fill.append(chunk)
        fill.finish()
