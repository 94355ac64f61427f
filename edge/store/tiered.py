"""TieredStore: the memory tier in front of the (optional) disk tier, as one Store.

Lookups try memory, then disk. A disk hit whose body fits the memory tier's
max_object_bytes is offered to memory on its first hit: the memory tier's own policy decides
whether it stays (S3-FIFO keeps one-hit wonders out of its main queue, GDSF drops a body whose
hits per byte do not earn the room), so a second-hit rule here would only delay warm objects.
A writer writes every chunk to disk, if the disk admission filter (edge/store/admission.py)
admits the fill, and tees it into a memory writer while the body still fits the memory tier;
commit publishes both. Per-key locks keep the two tiers in the same order when writers,
promotions and removals of one key race: whatever commits last is what both tiers hold.
"""

from __future__ import annotations

from collections.abc import Iterator

from edge.store.admission import AdmitAll, DiskAdmission
from edge.store.base import AbortOnExit, Hit, RefuseReason, RemoveReason, StoreStats
from edge.store.disk import DiskHit, DiskStore, DiskWriter
from edge.store.diskfile import CorruptObject
from edge.store.entry import EntryMeta
from edge.store.keylock import KeyLocks
from edge.store.memory import MemoryHit, MemoryStore, MemoryWriter

__all__ = ["TieredStore", "TieredWriter"]


class TieredStore:
    """Memory first, disk second; `memory.get` is the synchronous hot path."""

    def __init__(
        self, memory: MemoryStore, disk: DiskStore | None = None, *, admission: DiskAdmission | None = None
    ) -> None:
        self.memory = memory
        self.disk = disk
        self.admission: DiskAdmission = admission if admission is not None else AdmitAll()
        self.disk_skipped = 0  # fills the admission filter kept off the disk
        self.disk_write_bytes = 0  # body bytes of fills published on disk (flash wear)
        self._locks = KeyLocks()
        self._hits = 0
        self._misses = 0
        self._inserts = 0
        self._rejected = 0
        self.promotions = 0  # disk hits copied into memory

    async def lookup(self, key: bytes) -> Hit | None:
        """Returns a memory hit, else a disk hit (promoted into memory when it fits), else None."""
        fast = self.memory.get(key)
        if fast is not None:
            self._hits += 1
            return fast
        if self.disk is None:
            self._misses += 1
            return None
        # Under the key lock so a promotion cannot install a body older than a racing commit.
        async with self._locks.hold(key):
            hit: Hit | None = self.memory.peek(key)  # filled by a commit or promotion meanwhile
            if hit is None:
                disk_hit = await self.disk.lookup(key)
                hit = None if disk_hit is None else await self._promote(disk_hit)
        if hit is None:
            self._misses += 1
        else:
            self._hits += 1
        return hit

    async def open_writer(self, meta: EntryMeta) -> TieredWriter:
        """Opens a disk writer (if there is a disk tier that admits it) and a memory writer."""
        writer = None
        if self.disk is not None and self.disk.owns(meta):  # a worker writes only its share
            # A replacement of a stored object is always admitted: skipping it would leave
            # the old body on disk. Until the disk first evicts it has room to spare, so
            # every miss is written (the filter still counts it).
            disk = self.disk
            stats = disk.stats
            if (
                meta.key in disk
                or self.admission.should_admit(meta.key, stats.entries)
                or stats.evictions == 0
            ):
                writer = await disk.open_writer(meta)
            else:
                self.disk_skipped += 1
        return TieredWriter(self, meta, await self.memory.open_writer(meta), writer)

    async def update_meta(self, key: bytes, meta: EntryMeta, *, expect: EntryMeta) -> bool:
        """Updates both tiers where they still hold `expect`'s version; True if either did."""
        async with self._locks.hold(key):
            in_memory = await self.memory.update_meta(key, meta, expect=expect)
            on_disk = self.disk is not None and await self.disk.update_meta(key, meta, expect=expect)
            if in_memory and self.disk is not None and not on_disk:
                # The disk copy vanished or could not be rewritten: memory must not outlive
                # a soft purge on disk, and disk must not resurface the old meta later.
                await self.disk.remove(key, RemoveReason.REPLACED)
        return in_memory or on_disk

    async def remove(self, key: bytes, reason: RemoveReason) -> bool:
        """Removes the object from both tiers."""
        async with self._locks.hold(key):
            in_memory = await self.memory.remove(key, reason)
            on_disk = self.disk is not None and await self.disk.remove(key, reason)
        return in_memory or on_disk

    def entries(self) -> Iterator[EntryMeta]:
        """Memory entries, then disk entries not also in memory."""
        seen: set[bytes] = set()
        for meta in self.memory.entries():
            seen.add(meta.key)
            yield meta
        if self.disk is not None:
            for meta in self.disk.entries():
                if meta.key not in seen:
                    yield meta

    @property
    def stats(self) -> StoreStats:
        """Distinct objects, lookups, inserts and refusals of the tiered store.

        bytes, max_bytes and evictions are summed over the tiers (RAM plus disk). Counting
        distinct objects walks the memory tier's keys: for status pages, not per request.
        """
        tiers = [self.memory.stats] + ([] if self.disk is None else [self.disk.stats])
        entries = tiers[0].entries
        if self.disk is not None:
            disk = self.disk
            entries = tiers[1].entries + sum(1 for m in self.memory.entries() if m.key not in disk)
        return StoreStats(
            entries=entries,
            bytes=sum(t.bytes for t in tiers),
            max_bytes=sum(t.max_bytes for t in tiers),
            hits=self._hits,
            misses=self._misses,
            evictions=sum(t.evictions for t in tiers),
            inserts=self._inserts,
            rejected=self._rejected,
        )

    async def close(self) -> None:
        """Closes both tiers."""
        await self.memory.close()
        if self.disk is not None:
            await self.disk.close()

    async def _promote(self, disk_hit: DiskHit) -> Hit | None:
        if disk_hit.meta.body_length > self.memory.max_object_bytes:
            return disk_hit
        try:
            body = b"".join([chunk async for chunk in disk_hit.read()])
        except (OSError, CorruptObject):
            # Truncated or unreadable since it was verified: drop it rather than serve part.
            assert self.disk is not None
            await self.disk.remove(disk_hit.meta.key, RemoveReason.INVALID)
            return None
        finally:
            await disk_hit.close()
        promoted = self.memory.put(disk_hit.meta, body)
        if promoted is None:
            return MemoryHit(disk_hit.meta, body)  # did not fit the budget: serve it anyway
        self.promotions += 1
        return promoted

    async def _commit(self, writer: TieredWriter, meta: EntryMeta) -> bool:
        # Both tiers publish under the key lock, so racing writers leave them agreeing.
        key = meta.key
        async with self._locks.hold(key):
            disk_ok = writer.disk is not None and await writer.disk.commit(meta)
            if disk_ok:
                self.disk_write_bytes += writer.body_bytes
            memory_ok = await writer.memory.commit(meta)
            # A tier that refused the new body must not keep serving the old one.
            if not memory_ok:
                await self.memory.remove(key, RemoveReason.REPLACED)
            if not disk_ok and self.disk is not None:
                await self.disk.remove(key, RemoveReason.REPLACED)
        if memory_ok or disk_ok:
            self._inserts += 1
        else:
            self._rejected += 1
        return memory_ok or disk_ok


class TieredWriter(AbortOnExit):
    """Writes to disk and tees into memory while the body fits the memory tier."""

    def __init__(
        self, store: TieredStore, meta: EntryMeta, memory: MemoryWriter, disk: DiskWriter | None
    ) -> None:
        self.memory = memory
        self.disk = disk
        self._store = store
        self._meta = meta
        self._committed = False
        self.body_bytes = 0  # body bytes written so far

    @property
    def refusal(self) -> RefuseReason | None:
        """Why commit() will return False: only when every tier refused."""
        if self.disk is None:
            return self.memory.refusal
        if self.disk.refusal is None or self.memory.refusal is None:
            return None
        return self.disk.refusal

    async def write(self, chunk: bytes) -> None:
        """Writes the chunk to disk and to the memory buffer (which stops once too large)."""
        self.body_bytes += len(chunk)
        if self.disk is not None:
            await self.disk.write(chunk)
        await self.memory.write(chunk)

    async def commit(self, meta: EntryMeta | None = None) -> bool:
        """Publishes to both tiers; True if either tier stored the object."""
        if self._committed:
            raise RuntimeError("commit() called twice")
        self._committed = True
        return await self._store._commit(self, self._meta if meta is None else meta)

    async def abort(self) -> None:
        """Aborts both tier writers."""
        await self.memory.abort()
        if self.disk is not None:
            await self.disk.abort()

    def _settled(self) -> bool:
        return self._committed
