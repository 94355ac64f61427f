"""DiskStore: the disk tier. Crash-safe object files, an in-memory index, sendfile spans.

The file format and every blocking operation live in edge/store/diskfile.py; this module
keeps the index (key -> ObjectInfo), the byte budget and eviction, and runs each blocking
operation as one executor call. Writers stream the body into a tmp file and hash it as it
goes; commit publishes with fsync + rename. update_meta writes a new file with the new meta
and an in-kernel copy of the body (copy_file_range), under the same discipline: simpler
than a meta sidecar and crash-safe, at the cost of a body copy per 304 refresh.

On open the index is rebuilt from the files' headers; bodies are checked against their
checksums before they are first served, lazily at lookup or by a background pass, whichever
comes first. A file that fails is deleted and the lookup misses.

Locking: index changes are synchronous; a key's file operation and its index update happen
together under that key's lock (KeyLocks). Evicted keys leave the index at once and their
files are unlinked afterwards under their own lock, only if no newer object took the key.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import TypeVar

from edge.store import diskfile
from edge.store.base import CHUNK_BYTES, RefuseReason, RemoveReason, StoreCounters, StoreStats
from edge.store.diskfile import DiskUnusable, ObjectInfo, OpenStatus
from edge.store.diskwriter import DiskWriter
from edge.store.entry import EntryMeta
from edge.store.eviction import EvictionPolicy
from edge.store.keylock import KeyLocks
from edge.store.s3fifo import S3FIFOPolicy

# DiskWriter lives in diskwriter.py, DiskUnusable (open's "cannot use this directory") in diskfile.py
__all__ = ["DiskHit", "DiskStore", "DiskUnusable", "DiskWriter"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class DiskHit:
    """An object opened for reading; its fd survives a concurrent remove or replace."""

    __slots__ = ("_body_offset", "_fd", "_store", "meta")

    def __init__(self, store: DiskStore, fd: int, info: ObjectInfo) -> None:
        self.meta = info.meta
        self._fd = fd
        self._body_offset = info.body_offset
        self._store = store

    def file_span(self) -> tuple[int, int, int] | None:
        """(fd, body offset, body length) for loop.sendfile; valid until close()."""
        if self._fd < 0:
            raise ValueError("hit is closed")
        return self._fd, self._body_offset, self.meta.body_length

    def body_bytes(self) -> bytes | None:
        """None: disk bodies are streamed, never held whole."""
        return None

    async def read(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Streams body[start:end] with one pread per chunk in the executor."""
        stop = self.meta.body_length if end is None else min(end, self.meta.body_length)
        offset = start
        while offset < stop:
            if self._fd < 0:
                raise ValueError("hit is closed")
            want = min(CHUNK_BYTES, stop - offset)
            data = await self._store._run(os.pread, self._fd, want, self._body_offset + offset)
            if not data:
                raise diskfile.CorruptObject("object file ended before its body did")
            offset += len(data)
            yield data

    async def close(self) -> None:
        """Closes the fd; idempotent."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class DiskStore:
    """The disk tier under `root`; create with `await DiskStore.open(...)`."""

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int,
        max_object_bytes: int,
        policy: EvictionPolicy | None,
        executor: Executor | None,
        tmp: str = "tmp",
        owns: Callable[[EntryMeta], bool] | None = None,
    ) -> None:
        if max_object_bytes <= 0 or max_bytes <= 0:
            raise ValueError("max_bytes and max_object_bytes must be positive")
        self.root = root
        self.max_bytes = max_bytes
        self.max_object_bytes = max_object_bytes
        self._policy = policy if policy is not None else S3FIFOPolicy(max_bytes)
        if self._policy.max_bytes != max_bytes:
            raise ValueError("the policy's max_bytes must equal the store's")
        self._executor = executor
        self._tmp = tmp  # this process's tmp directory under root (one per worker, docs/workers.md)
        self._owns = owns  # None: every object is this store's; else only those it says (a worker's share)
        self._index: dict[bytes, ObjectInfo] = {}
        self._unverified: set[bytes] = set()  # keys whose current file's body is unchecked
        self._locks = KeyLocks()
        self._verifier: asyncio.Task[None] | None = None
        self._bytes = 0
        self._counts = StoreCounters()
        self.bytes_written = 0  # body bytes written to object files (metrics: disk write volume)
        self.invalid = 0  # objects dropped as corrupt since open

    @classmethod
    async def open(
        cls,
        root: Path | str,
        *,
        max_bytes: int,
        max_object_bytes: int,
        policy: EvictionPolicy | None = None,
        verify_in_background: bool = True,
        executor: Executor | None = None,
        tmp: str = "tmp",
        owns: Callable[[EntryMeta], bool] | None = None,
    ) -> DiskStore:
        """Cleans tmp/, rebuilds the index from the object files and starts verification.

        Raises DiskUnusable when `root` cannot hold the cache (not a directory, not writable,
        no fsync); the message says what to do.
        """
        store = cls(
            Path(root),
            max_bytes=max_bytes,
            max_object_bytes=max_object_bytes,
            policy=policy,
            executor=executor,
            tmp=tmp,
            owns=owns,
        )
        victims: list[bytes] = []
        scanned = await store._run(diskfile.scan, store.root, tmp)  # DiskUnusable: cannot hold the cache
        if scanned.foreign:
            shown = ", ".join(str(p) for p in scanned.foreign[:3])
            more = f" and {len(scanned.foreign) - 3} more" if len(scanned.foreign) > 3 else ""
            log.warning(
                "disk tier %s: left %d entries the node did not write in place (%s%s); "
                "move them out of the cache directory",
                store.root,
                len(scanned.foreign),
                shown,
                more,
            )
        for info in scanned.objects:
            if not store.owns(info.meta):
                continue  # another worker's: it indexes, evicts and purges it
            key = info.meta.key
            store._index[key] = info
            store._bytes += info.file_bytes
            store._unverified.add(key)
            victims += store._policy.admit(key, info.file_bytes)
        for key in victims:  # the budget shrank since the files were written
            store._forget_index(key)
            store._counts.evictions += 1
        paths = [diskfile.object_path(store.root, key) for key in victims]
        await store._run(diskfile.unlink_quietly, paths)
        if verify_in_background and store._unverified:
            store._verifier = asyncio.create_task(store._verify_all(), name="disk-verify")
        return store

    async def lookup(self, key: bytes) -> DiskHit | None:
        """Opens the object (checking its body first if not yet verified), or None."""
        for _ in range(2):  # one retry when a commit replaced the file while we opened it
            info = self._index.get(key)
            if info is None:
                break
            verify = key in self._unverified
            try:
                opened = await self._run(diskfile.open_for_read, self.root, key, verify)
            except OSError:
                log.exception("disk lookup failed for %s", key.hex())
                break
            current = self._index.get(key)
            if opened.status is OpenStatus.OK:
                # Serve only the file the index names now: a purge that completed while we
                # opened must win, even though our fd still reads the unlinked file.
                if current is not None and current == opened.info:
                    if verify:
                        self._unverified.discard(key)
                    self._counts.hits += 1
                    self._policy.touch(key)
                    return DiskHit(self, opened.fd, current)
                os.close(opened.fd)
            elif opened.status is OpenStatus.CORRUPT:
                await self._drop_invalid(key, info)
                break
            elif current is info:  # MISSING although indexed: deleted behind our back
                self._forget_index(key)
                break
        self._counts.misses += 1
        return None

    async def open_writer(self, meta: EntryMeta) -> DiskWriter:
        """Creates the tmp file the body streams into."""
        fd, path = await self._run(diskfile.create_tmp, self.root, self._tmp)
        return DiskWriter(self, meta, fd, path, diskfile.reserve_bytes(meta))

    async def update_meta(self, key: bytes, meta: EntryMeta, *, expect: EntryMeta) -> bool:
        """Publishes a copy with the new meta if the object is still `expect`'s version.

        False if absent or changed; if the rewrite fails the object is removed (False).
        """
        async with self._locks.hold(key):
            old = self._index.get(key)
            if old is None or not old.meta.same_version(expect):
                return False
            kept = meta.replace(key=key, body_length=old.meta.body_length, checksum=old.meta.checksum)
            try:
                info = await self._run(diskfile.rewrite_meta, self.root, old, kept, self._tmp)
            except (OSError, diskfile.CorruptObject):
                # A soft purge that cannot be recorded must not leave the object fresh.
                log.exception("meta rewrite failed for %s; removing it", key.hex())
                self._forget_index(key)
                await self._run(diskfile.unlink_quietly, [diskfile.object_path(self.root, key)])
                return False
            victims = self._index_object(info, verified=key not in self._unverified)
        await self._unlink_evicted(victims)
        return True

    async def remove(self, key: bytes, reason: RemoveReason) -> bool:
        """Deletes the object; open hits keep their fd."""
        async with self._locks.hold(key):
            if not self._forget_index(key):
                return False
            await self._run(diskfile.unlink_quietly, [diskfile.object_path(self.root, key)])
        if reason is RemoveReason.EVICTION:
            self._counts.evictions += 1
        elif reason is RemoveReason.INVALID:
            self.invalid += 1
        return True

    def owns(self, meta: EntryMeta) -> bool:
        """Whether this store writes, indexes and evicts the object (always, but for a worker's share)."""
        return self._owns is None or self._owns(meta)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def entries(self) -> Iterator[EntryMeta]:
        """Iterates a snapshot of the stored metas."""
        return iter([info.meta for info in self._index.values()])

    @property
    def stats(self) -> StoreStats:
        """The current counters; bytes are whole files (header + meta + body)."""
        return self._counts.snapshot(entries=len(self._index), bytes=self._bytes, max_bytes=self.max_bytes)

    @property
    def verification_pending(self) -> int:
        """Objects whose body has not been checked since open."""
        return len(self._unverified)

    async def wait_verified(self) -> None:
        """Waits for the background verification pass to finish."""
        if self._verifier is not None:
            await asyncio.shield(self._verifier)

    async def close(self) -> None:
        """Stops the verification pass; the files stay for the next open."""
        if self._verifier is not None:
            self._verifier.cancel()
            await asyncio.wait([self._verifier])
            self._verifier = None

    # -- WriterHost (edge.store.diskwriter): what a DiskWriter may ask of its store -----------
    async def run_file_op(self, fn: Callable[..., T], *args: object) -> T:
        """Runs one blocking file operation on the store's executor."""
        return await self._run(fn, *args)

    def note_refusal(self) -> None:
        """Counts a body the store refused (too large, I/O error, aborted)."""
        self._counts.rejected += 1

    def note_written(self, size: int) -> None:
        """Counts body bytes a writer got onto the disk."""
        self.bytes_written += size

    async def publish(self, writer: DiskWriter, meta: EntryMeta) -> RefuseReason | None:
        """Takes over the writer's tmp file: writes the final meta, renames it into place."""
        key = meta.key
        if writer.reserved + meta.body_length > self.max_bytes:
            self._counts.rejected += 1
            await self._run(diskfile.discard_tmp, writer.fd, writer.path)
            return RefuseReason.TOO_LARGE
        async with self._locks.hold(key):
            try:
                info = await self._run(
                    diskfile.publish, self.root, writer.fd, writer.path, meta, writer.reserved
                )
            except (OSError, diskfile.CorruptObject):
                log.exception("publishing %s failed", key.hex())
                self._counts.rejected += 1
                return RefuseReason.IO_ERROR
            victims = self._index_object(info, verified=True)
            self._counts.inserts += 1
        await self._unlink_evicted(victims)
        return None if key in self._index else RefuseReason.TOO_LARGE

    def _index_object(self, info: ObjectInfo, *, verified: bool) -> list[bytes]:
        # Synchronous: the index, the byte count and the policy change together.
        # A replaced key keeps its policy history: admit() of a tracked key is a resize.
        key = info.meta.key
        old = self._index.get(key)
        if old is not None:
            self._bytes -= old.file_bytes
        self._index[key] = info
        self._bytes += info.file_bytes
        if verified:
            self._unverified.discard(key)
        else:
            self._unverified.add(key)
        victims = self._policy.admit(key, info.file_bytes)
        for victim in victims:
            self._forget_index(victim)
            self._counts.evictions += 1
        return victims

    def _forget_index(self, key: bytes) -> bool:
        info = self._index.pop(key, None)
        if info is None:
            return False
        self._bytes -= info.file_bytes
        self._unverified.discard(key)
        self._policy.forget(key)
        return True

    async def _unlink_evicted(self, victims: list[bytes]) -> None:
        for key in victims:
            async with self._locks.hold(key):
                if key not in self._index:  # a newer commit may have taken the key meanwhile
                    path = diskfile.object_path(self.root, key)
                    await self._run(diskfile.unlink_quietly, [path])

    async def _drop_invalid(self, key: bytes, info: ObjectInfo) -> None:
        async with self._locks.hold(key):
            if self._index.get(key) is not info:
                return  # replaced or removed since it was found corrupt
            log.warning("dropping corrupt disk object %s", key.hex())
            self._forget_index(key)
            self.invalid += 1
            await self._run(diskfile.unlink_quietly, [diskfile.object_path(self.root, key)])

    async def _verify_all(self) -> None:
        # The background pass: one object per executor call, oldest first.
        for key in list(self._unverified):
            info = self._index.get(key)
            if info is None or key not in self._unverified:
                continue
            status = await self._run(diskfile.verify_file, self.root, key)
            if status is OpenStatus.OK:
                if self._index.get(key) is info:
                    self._unverified.discard(key)
            elif status is OpenStatus.CORRUPT:
                await self._drop_invalid(key, info)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
