"""Slice fills: one origin Range request per slice, coalesced per slice, checked, stored.

`SliceSource` reads slice k of a sliced object: from the store when the slice is there and
belongs to the record, else from the coalesced fill of that slice (fill id: object id +
"|slice|" + k), whose producer asks the origin for exactly that range, checks the answer
(edge.rules.slicing.check_slice) and tees it into the fill and a slice entry. Each slice is
its own upstream request, so the origin's total timeout bounds one slice, never a whole
large file.

Answers that do not fit, and what becomes of them:
    CHANGED (other length or validators)   the object is dropped (record and slices) and the
                                           fill fails with SliceChanged: never a mixed body
    WHOLE (200, Range ignored)             the body is read from byte 0, every slice it passes
                                           is stored ("keep what can be kept"), the asked one
                                           is published, and the rest is stored too
    WRONG_RANGE, BAD_STATUS                UpstreamError

Purges: a hard purge removes a stored slice the moment it is looked up (the purged bytes are
never served, even when the origin still has the same version). A soft purge is enforced on
the object's record, which the handler revalidates with one conditional request for the
object's validators before any slice is read; a slice's id carries those validators, so the
slices stored for the version just confirmed (a 304, or a 200 with the same validators) are
served again instead of fetched again (issue 14).
A cold seek (no record yet) defines the object from its first 206; an object that cannot be
sliced (not storable, Vary, no validator, too small, Range ignored) fails the fill with
SliceRefused, and the caller falls back to the whole-object fill.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from edge.config.cache import CacheConfig
from edge.fill.coalesce import Coalescer, Fill, FillHead, JoinResult
from edge.fill.keep import decide_keep
from edge.fill.producer import FillGuard, FillInfo
from edge.rules.key import CacheKey
from edge.rules.site_policy import CachePolicy
from edge.rules.slicing import (
    SLICED_MAX_BYTES,
    SliceCheck,
    SliceExpect,
    SliceSpan,
    check_slice,
    slice_count,
    slice_span,
    worth_slicing,
)
from edge.store.base import Hit, RemoveReason, Store
from edge.store.entry import EntryMeta
from edge.store.sliced import drop_object, record_of, slice_id, slice_matches, slice_meta
from origin.errors import BodyError, UpstreamError
from origin.upstream import Headers, Upstream, UpstreamRequest, UpstreamResponse

__all__ = [
    "ChunkCutter",
    "SliceChanged",
    "SliceGuard",
    "SliceJob",
    "SliceRefused",
    "SliceSource",
    "commit_record",
    "span_of",
]

log = logging.getLogger("edge.fill.slices")


def span_of(record: EntryMeta, index: int) -> SliceSpan:
    """The byte span of slice `index` of a sliced object's record."""
    return slice_span(index, record.total_length, record.slice_bytes)


class SliceChanged(UpstreamError):
    """The origin's object changed between slices; the stored object was dropped."""

    retryable = False


class SliceRefused(UpstreamError):
    """A cold seek found an object that is not kept as slices: fetch it whole instead."""

    retryable = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SliceJob:
    """One sliced object: where its slices come from and go, and the record they must match."""

    key: CacheKey
    upstream: Upstream
    request: UpstreamRequest  # the whole-object GET (no Range, no validators)
    store: Store
    record: EntryMeta | None  # None: a cold seek, the first answer defines the object
    client_headers: Mapping[str, str]
    authorization: bool
    policy: CachePolicy


@dataclass(frozen=True, slots=True)
class _WholeHead:
    """A 206's head seen as the 200 it is part of (for decide_keep)."""

    status: int
    headers: Headers
    request_time: float
    response_time: float


class ChunkCutter:
    """Reads a body in pieces that end exactly at given byte counts (slice boundaries)."""

    __slots__ = ("_it", "_left")

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self._it = body.__aiter__()
        self._left = b""

    async def take(self, count: int) -> AsyncIterator[bytes]:
        """Yields exactly `count` bytes; BodyError if the body ends first."""
        while count > 0:
            if not self._left:
                try:
                    self._left = await anext(self._it)
                except StopAsyncIteration:
                    raise BodyError(f"body ended {count} bytes before the slice did") from None
                continue
            if len(self._left) <= count:
                piece, self._left = self._left, b""
            else:
                piece, self._left = self._left[:count], self._left[count:]
            count -= len(piece)
            yield piece


async def commit_record(store: Store, record: EntryMeta) -> bool:
    """Stores a sliced object's record (it has no body)."""
    async with await store.open_writer(record) as writer:
        return await writer.commit()


class SliceGuard(FillGuard, Protocol):
    """The purge state slices are checked against (edge.purge.invalidate.Invalidator)."""

    def hard_purged(self, meta: EntryMeta) -> bool: ...


class SliceSource:
    """Reads slices from the store or their coalesced fills; runs the slice producers."""

    def __init__(
        self,
        *,
        coalescer: Coalescer,
        cache: CacheConfig,
        max_object_bytes: int,
        guard: SliceGuard | None = None,
    ) -> None:
        self._coalescer = coalescer
        self._cache = cache
        self._max_object_bytes = max_object_bytes
        self._guard = guard  # purge generations; None in unit tests

    async def stored(self, job: SliceJob, index: int) -> Hit | None:
        """The stored slice `index` of job.record, or None (a mismatching one is removed)."""
        record = job.record
        assert record is not None
        sid = slice_id(record, index)
        hit = await job.store.lookup(sid)
        if hit is None:
            return None
        # soft purges are settled on the record (revalidated before we are asked): see above
        purged = self._guard is not None and self._guard.hard_purged(hit.meta)
        if purged or not slice_matches(hit.meta, record, index):
            await hit.close()
            await job.store.remove(sid, RemoveReason.PURGE if purged else RemoveReason.INVALID)
            return None
        return hit

    def join(self, job: SliceJob, index: int) -> JoinResult[FillInfo]:
        """Joins (or starts) the fill of slice `index`; the caller releases the result."""
        fill_id = job.key.id + b"|slice|" + str(index).encode()
        return self._coalescer.join(fill_id, partial(self._produce, job=job, index=index))

    async def read(
        self, job: SliceJob, index: int, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Bytes [start, end) of slice `index` (offsets inside the slice), stored or fetched."""
        hit = await self.stored(job, index)
        if hit is not None:
            try:
                async for chunk in hit.read(start, end):
                    yield chunk
            finally:
                await hit.close()
            return
        with self.join(job, index) as joined:
            fill = joined.fill
            if fill is None:
                raise UpstreamError("slice fill unavailable; retry")
            await fill.head(leader=joined.leader)
            async for chunk in fill.body(start, end):
                yield chunk

    async def prefetch(self, job: SliceJob, index: int) -> None:
        """Starts the fill of slice `index` unless it is stored (read-ahead); does not wait."""
        hit = await self.stored(job, index)
        if hit is not None:
            await hit.close()
            return
        self.join(job, index).release()

    # -- the producer of one slice fill -------------------------------------------------------

    async def _produce(self, fill: Fill[FillInfo], *, job: SliceJob, index: int) -> None:
        gen = self._guard.begin_fill(from_peer=False) if self._guard is not None else 0
        try:
            await self._fetch(fill, job, index, gen)
        finally:
            if self._guard is not None:
                self._guard.end_fill(gen)

    async def _fetch(self, fill: Fill[FillInfo], job: SliceJob, index: int, gen: int) -> None:
        record = job.record
        if record is not None:
            span = span_of(record, index)
            expect = SliceExpect(span, record.total_length, record.etag, record.last_modified)
        else:
            size = job.policy.slice_bytes
            span = SliceSpan(index, index * size, (index + 1) * size)
            expect = SliceExpect(span, None, None, None)
        request = dataclasses.replace(
            job.request, headers=(*job.request.headers, ("Range", span.range_header))
        )
        response = await job.upstream.fetch(request)
        try:
            verdict, total = check_slice(response.status, response.headers, expect)
            if verdict is SliceCheck.CHANGED and record is not None:
                log.warning(
                    "%s changed at the origin between slices; dropping the stored object", job.key.url
                )
                await drop_object(job.store, record)
                raise SliceChanged(f"{job.key.url} changed at the origin while being fetched; retry")
            if record is None:
                if verdict is not SliceCheck.OK or total is None:
                    raise SliceRefused(f"origin answered a cold slice request with {response.status}")
                record = self._define(job, response, total, gen)
                if self.admits(record):
                    await commit_record(job.store, record)
                span = span_of(record, index)
            if verdict is SliceCheck.WHOLE:
                await self._from_whole(fill, job, record, index, response, gen)
                return
            if verdict is not SliceCheck.OK:
                raise UpstreamError(
                    f"origin answered slice {span.range_header} with {response.status} ({verdict.value})"
                )
            _publish_head(fill, record, span)
            await self.store_slice(
                job.store, record, span, ChunkCutter(response.body), gen, into=fill, finish=True
            )
        finally:
            response.close()

    def _define(self, job: SliceJob, response: UpstreamResponse, total: int, gen: int) -> EntryMeta:
        """The record of an object first met through a 206 (a cold seek), or SliceRefused."""
        headers = tuple(
            (n, v) for n, v in response.headers if n.lower() not in ("content-range", "content-length")
        )
        head = _WholeHead(
            200, (*headers, ("Content-Length", str(total))), response.request_time, response.response_time
        )
        keep = decide_keep(
            head,
            key=job.key,
            client_headers=job.client_headers,
            authorization=job.authorization,
            has_store=True,
            cache=self._cache,
            max_object_bytes=SLICED_MAX_BYTES,
            policy=job.policy,
            purge_gen=gen,
        )
        meta, size = keep.meta, job.policy.slice_bytes
        if (
            meta is None
            or keep.vary
            or not worth_slicing(
                status=200, length=total, size=size, etag=meta.etag, last_modified=meta.last_modified
            )
        ):
            raise SliceRefused(f"{job.key.url} is not kept as slices ({keep.reason or 'not sliceable'})")
        return record_of(meta, total=total, slice_bytes=size)

    async def _from_whole(
        self,
        fill: Fill[FillInfo],
        job: SliceJob,
        record: EntryMeta,
        index: int,
        response: UpstreamResponse,
        gen: int,
    ) -> None:
        """The origin ignored Range: store every slice of the 200 body, publish slice `index`."""
        log.info("origin ignored Range for %s; storing the whole body as slices", job.key.url)
        cutter = ChunkCutter(response.body)
        for k in range(slice_count(record.total_length, record.slice_bytes)):
            span = span_of(record, k)
            if k == index:
                _publish_head(fill, record, span)
                await self.store_slice(job.store, record, span, cutter, gen, into=fill, finish=True)
            else:
                await self.store_slice(job.store, record, span, cutter, gen, into=None)

    async def store_slice(
        self,
        store: Store,
        record: EntryMeta,
        span: SliceSpan,
        cutter: ChunkCutter,
        gen: int,
        *,
        into: Fill[FillInfo] | None,
        finish: bool = False,
    ) -> bool:
        """Copies one slice from the cutter into its entry and `into`; True if stored.

        `finish` ends `into` once the slice is in it, before the entry is committed (fsync),
        so the fill's readers do not wait for the disk.
        """
        meta = slice_meta(record, span.index, gen)
        async with await store.open_writer(meta) as writer:
            async for chunk in cutter.take(span.length):
                if into is not None:
                    await into.append(chunk)
                await writer.write(chunk)
            if finish and into is not None:
                into.finish()
            return self.admits(meta) and await writer.commit()

    def admits(self, meta: EntryMeta) -> bool:
        """Whether an entry may be stored: no purge matching it arrived since its fill began."""
        return self._guard is None or self._guard.admits(meta)


def _publish_head(fill: Fill[FillInfo], record: EntryMeta, span: SliceSpan) -> None:
    info = FillInfo(meta=record, reason=None, stored=True)
    fill.set_head(FillHead(206, "Partial Content", (), True, span.length, info))
