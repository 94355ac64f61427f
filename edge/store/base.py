"""The storage contract: what the memory tier, the disk tier and the tiered store promise.

After Pingora's split, a read is *lookup → Hit* and a fill is *open_writer → write… → commit*.
A Writer that is dropped without commit() has failed: nothing it wrote is ever visible. A
commit is atomic: a concurrent lookup sees the old object or the new one, never a mix, and
of two writers for one key the last to commit wins. Keys are the 16-byte ids of
`edge.rules.key.CacheKey` (`EntryMeta.key`); stores never see URLs. Every store passes
`tests/edge/store/store_contract.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Protocol, Self

from edge.store.entry import EntryMeta

__all__ = [
    "CHUNK_BYTES",
    "AbortOnExit",
    "Hit",
    "RefuseReason",
    "RemoveReason",
    "Store",
    "StoreCounters",
    "StoreStats",
    "Writer",
]

CHUNK_BYTES = 256 * 1024  # the largest chunk Hit.read() yields


class RemoveReason(Enum):
    """Why an object leaves a store (counted and logged by the caller)."""

    EVICTION = "eviction"  # the byte budget needed room
    PURGE = "purge"  # a hard purge (URL, prefix, tag or all)
    INVALID = "invalid"  # corrupt on disk: bad header, truncated, checksum mismatch
    REPLACED = "replaced"  # a newer copy superseded it (e.g. one tier refused the new body)


class RefuseReason(Enum):
    """Why a Writer's commit() returned False."""

    TOO_LARGE = "too_large"  # body exceeded max_object_bytes (or the whole budget)
    ABORTED = "aborted"  # abort() was called, or the writer was left without commit()
    IO_ERROR = "io_error"  # the disk failed (full, EIO); the cache just does not store it


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreStats:
    """A snapshot of a store's counters."""

    entries: int  # objects currently stored
    bytes: int  # bytes counted against the budget (body + per-object overhead)
    max_bytes: int  # the byte budget
    hits: int  # lookups that returned a Hit
    misses: int  # lookups that returned None
    evictions: int  # objects removed to make room
    inserts: int  # successful commits
    rejected: int  # commits refused by the store (too large, over budget, I/O error); aborts not counted


@dataclass(slots=True)
class StoreCounters:
    """The running counts a store keeps behind its StoreStats (mutable, store-private)."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    inserts: int = 0
    rejected: int = 0

    def snapshot(self, *, entries: int, bytes: int, max_bytes: int) -> StoreStats:
        """The counters frozen into a StoreStats alongside the store's sizes."""
        return StoreStats(
            entries=entries,
            bytes=bytes,
            max_bytes=max_bytes,
            hits=self.hits,
            misses=self.misses,
            evictions=self.evictions,
            inserts=self.inserts,
            rejected=self.rejected,
        )


class Hit(Protocol):
    """One stored object, opened for reading; close() releases what lookup() acquired.

    The caller reads with read() (any tier), or sends file_span() with loop.sendfile (disk),
    or writes body_bytes() directly (memory). A Hit stays readable after the object is
    removed or replaced: it holds the body it was opened on.
    """

    @property
    def meta(self) -> EntryMeta:
        """The metadata of the body this Hit reads."""
        ...

    def read(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Streams body bytes [start, end) (end exclusive) in chunks of at most CHUNK_BYTES."""
        ...

    def file_span(self) -> tuple[int, int, int] | None:
        """(fd, offset, length) of the body for loop.sendfile; None when not on disk."""
        ...

    def body_bytes(self) -> bytes | None:
        """The whole body without copying (memory tier); None when on disk."""
        ...

    async def close(self) -> None:
        """Releases the Hit (closes its file); idempotent."""
        ...


class Writer(Protocol):
    """Stores one body as it streams in. Use `async with`: leaving without commit() aborts.

    A writer that exceeds max_object_bytes aborts itself at once and drops what it buffered,
    so a 100 MiB body is never held; later write() calls are no-ops and commit() returns False.
    """

    @property
    def refusal(self) -> RefuseReason | None:
        """Why the writer refused (or will refuse) to commit; None while it may still commit."""
        ...

    async def write(self, chunk: bytes) -> None:
        """Appends a chunk of the body."""
        ...

    async def commit(self, meta: EntryMeta | None = None) -> bool:
        """Publishes the object atomically; fills body_length and checksum (xxh3_64 of body).

        `meta` (same key) replaces the meta given to open_writer, e.g. with updated headers.
        Returns False, and publishes nothing, if the writer was refused.
        """
        ...

    async def abort(self) -> None:
        """Discards everything written; idempotent; commit() then returns False."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class AbortOnExit:
    """Writer mixin: `async with` returns the writer and aborts it if left before commit()."""

    def _settled(self) -> bool:
        """True once nothing is left to abort (committed, or already discarded)."""
        raise NotImplementedError

    async def abort(self) -> None:
        """Discards everything written (each writer implements it)."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._settled():
            await self.abort()


class Store(Protocol):
    """A byte-budgeted cache of bodies with EntryMeta, keyed by 16-byte ids."""

    async def lookup(self, key: bytes) -> Hit | None:
        """Opens the object for reading, or None; counts a hit or a miss and touches the policy."""
        ...

    async def open_writer(self, meta: EntryMeta) -> Writer:
        """Starts storing an object named meta.key; visible only after commit()."""
        ...

    async def update_meta(self, key: bytes, meta: EntryMeta, *, expect: EntryMeta) -> bool:
        """Replaces the stored meta (304 freshening, soft purge), keeping the body.

        Compare-and-set: only while the stored meta is still the version `expect` describes
        (EntryMeta.same_version), so a sweep or a refresh that read the entry earlier never
        writes over a newer fill, refresh or soft purge. False if absent or changed. The
        stored body_length and checksum are kept whatever `meta` says.
        """
        ...

    async def remove(self, key: bytes, reason: RemoveReason) -> bool:
        """Removes the object; open Hits keep reading it. False if absent."""
        ...

    def entries(self) -> Iterator[EntryMeta]:
        """Iterates a snapshot of the stored metas; safe while the store changes."""
        ...

    @property
    def stats(self) -> StoreStats:
        """The current counters."""
        ...

    async def close(self) -> None:
        """Stops background work and releases files; the store is unusable afterwards."""
        ...
