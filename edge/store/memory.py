"""MemoryStore: the memory tier, a byte-budgeted dict of immutable hits.

Each entry is one MemoryHit (meta + the whole body as ONE bytes object joined at commit),
so a hit allocates nothing: get() returns the stored object itself, and the server writes
body_bytes() straight to the socket. Every entry counts its body plus ENTRY_OVERHEAD_BYTES
against max_bytes; the eviction policy picks victims and the store deletes them. Writers
buffer chunks and stop buffering as soon as the body exceeds max_object_bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import xxhash

from edge.store.base import (
    CHUNK_BYTES,
    AbortOnExit,
    RefuseReason,
    RemoveReason,
    StoreCounters,
    StoreStats,
)
from edge.store.entry import EntryMeta
from edge.store.eviction import EvictionPolicy
from edge.store.s3fifo import S3FIFOPolicy

__all__ = ["ENTRY_OVERHEAD_BYTES", "MemoryHit", "MemoryStore", "MemoryWriter"]

# What one entry costs besides its body: the dict slot, the hit, the meta and its headers.
ENTRY_OVERHEAD_BYTES = 1024


@dataclass(frozen=True, slots=True)
class MemoryHit:
    """A stored memory object; immutable, so one instance serves every hit on it."""

    meta: EntryMeta
    body: bytes

    async def read(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Yields body[start:end] in chunks of at most CHUNK_BYTES."""
        body = self.body
        stop = len(body) if end is None else min(end, len(body))
        if start == 0 and stop == len(body) and stop <= CHUNK_BYTES:
            if stop:
                yield body  # the common small object: no copy
            return
        view = memoryview(body)
        for offset in range(start, stop, CHUNK_BYTES):
            yield bytes(view[offset : min(offset + CHUNK_BYTES, stop)])

    def file_span(self) -> tuple[int, int, int] | None:
        """None: the body is not in a file."""
        return None

    def body_bytes(self) -> bytes | None:
        """The whole body, not copied."""
        return self.body

    async def close(self) -> None:
        """Nothing to release."""


class MemoryStore:
    """The memory tier; get() is the synchronous hot path."""

    def __init__(
        self,
        *,
        max_bytes: int,
        max_object_bytes: int,
        policy: EvictionPolicy | None = None,
    ) -> None:
        if max_object_bytes <= 0 or max_bytes <= 0:
            raise ValueError("max_bytes and max_object_bytes must be positive")
        self.max_bytes = max_bytes
        self.max_object_bytes = max_object_bytes
        self._policy = policy if policy is not None else S3FIFOPolicy(max_bytes)
        if self._policy.max_bytes != max_bytes:
            raise ValueError("the policy's max_bytes must equal the store's")
        self._entries: dict[bytes, MemoryHit] = {}
        self._bytes = 0
        self._counts = StoreCounters()

    def get(self, key: bytes) -> MemoryHit | None:
        """Returns the stored hit or None, without awaiting; counts it and touches the policy."""
        hit = self._entries.get(key)
        if hit is None:
            self._counts.misses += 1
            return None
        self._counts.hits += 1
        self._policy.touch(key)
        return hit

    def peek(self, key: bytes) -> MemoryHit | None:
        """Returns the stored hit or None without counting or touching anything."""
        return self._entries.get(key)

    def record_hit(self, key: bytes) -> None:
        """Counts a hit served from a peek() and touches the policy (the fast path's get)."""
        self._counts.hits += 1
        self._policy.touch(key)

    async def lookup(self, key: bytes) -> MemoryHit | None:
        """The Store interface over get()."""
        return self.get(key)

    async def open_writer(self, meta: EntryMeta) -> MemoryWriter:
        """Starts buffering a body for meta.key."""
        return MemoryWriter(self, meta)

    def put(self, meta: EntryMeta, body: bytes) -> MemoryHit | None:
        """Stores a complete body (promotion from disk); returns the new hit or None if refused.

        body_length and checksum are taken from `body`.
        """
        if len(body) > self.max_object_bytes:
            self._counts.rejected += 1
            return None
        meta = meta.replace(body_length=len(body), checksum=xxhash.xxh3_64_intdigest(body))
        return self._install(MemoryHit(meta, body))

    async def update_meta(self, key: bytes, meta: EntryMeta, *, expect: EntryMeta) -> bool:
        """Swaps in new meta if the entry is still `expect`'s version, keeping body, length, checksum."""
        old = self._entries.get(key)
        if old is None or not old.meta.same_version(expect):
            return False
        kept = meta.replace(key=key, body_length=old.meta.body_length, checksum=old.meta.checksum)
        self._entries[key] = MemoryHit(kept, old.body)
        return True

    async def remove(self, key: bytes, reason: RemoveReason) -> bool:
        """Deletes the entry; hits already handed out keep their body."""
        if not self._drop(key):
            return False
        self._policy.forget(key)
        if reason is RemoveReason.EVICTION:
            self._counts.evictions += 1
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def entries(self) -> Iterator[EntryMeta]:
        """Iterates a snapshot of the stored metas."""
        return iter([hit.meta for hit in self._entries.values()])

    @property
    def stats(self) -> StoreStats:
        """The current counters."""
        return self._counts.snapshot(entries=len(self._entries), bytes=self._bytes, max_bytes=self.max_bytes)

    async def close(self) -> None:
        """Drops every entry."""
        self._entries.clear()
        self._bytes = 0

    def _refused(self) -> None:
        self._counts.rejected += 1

    def _install(self, hit: MemoryHit) -> MemoryHit | None:
        # Runs without an await: the dict swap is atomic for every coroutine on the loop.
        key = hit.meta.key
        size = len(hit.body) + ENTRY_OVERHEAD_BYTES
        if size > self.max_bytes:
            self._counts.rejected += 1
            return None
        # A replaced key keeps its policy history: admit() of a tracked key is a resize.
        self._drop(key)
        self._entries[key] = hit
        self._bytes += size
        self._counts.inserts += 1
        for victim in self._policy.admit(key, size):
            self._drop(victim)
            self._counts.evictions += 1
        # the policy may choose the newcomer itself as a victim (S3-FIFO with a full main queue)
        return hit if key in self._entries else None

    def _drop(self, key: bytes) -> bool:
        old = self._entries.pop(key, None)
        if old is None:
            return False
        self._bytes -= len(old.body) + ENTRY_OVERHEAD_BYTES
        return True


class MemoryWriter(AbortOnExit):
    """Buffers one body; commit() joins it into one bytes object and installs it."""

    def __init__(self, store: MemoryStore, meta: EntryMeta) -> None:
        self._store = store
        self._meta = meta
        self._chunks: list[bytes] = []
        self._size = 0
        self._refusal: RefuseReason | None = None
        self._committed = False

    @property
    def refusal(self) -> RefuseReason | None:
        """Why commit() will return False, if it will."""
        return self._refusal

    @property
    def buffered_bytes(self) -> int:
        """Bytes currently held by the writer."""
        return sum(len(chunk) for chunk in self._chunks)

    async def write(self, chunk: bytes) -> None:
        """Buffers a chunk; past max_object_bytes drops the buffer and refuses."""
        if self._committed:
            raise RuntimeError("write() after commit()")
        if self._refusal is not None:
            return
        self._size += len(chunk)
        if self._size > self._store.max_object_bytes:
            self._refuse(RefuseReason.TOO_LARGE)
            return
        self._chunks.append(chunk)

    async def commit(self, meta: EntryMeta | None = None) -> bool:
        """Installs the body atomically; False if refused."""
        if self._committed:
            raise RuntimeError("commit() called twice")
        final = self._meta if meta is None else meta
        if final.key != self._meta.key:
            raise ValueError("commit() meta names another key")
        if self._refusal is not None:
            return False
        self._committed = True
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        final = final.replace(body_length=len(body), checksum=xxhash.xxh3_64_intdigest(body))
        return self._store._install(MemoryHit(final, body)) is not None

    async def abort(self) -> None:
        """Discards the buffer."""
        if not self._committed and self._refusal is None:
            self._refusal = RefuseReason.ABORTED
            self._chunks = []

    def _refuse(self, reason: RefuseReason) -> None:
        self._refusal = reason
        self._chunks = []
        self._store._refused()

    def _settled(self) -> bool:
        return self._committed
