"""DiskWriter: streams one body into a disk-tier tmp file, hashing it as it goes.

Chunks are gathered into batches of about CHUNK_BYTES and each batch is written with one
executor call, so the writer never holds more than one batch of the body. commit() hands
the tmp file to its WriterHost's `publish`, which writes the final meta and renames it into
place. The host (edge.store.disk.DiskStore) is reached only through that narrow Protocol, so
the writer knows nothing of the store's index or locks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

import xxhash

from edge.store import diskfile
from edge.store.base import CHUNK_BYTES, AbortOnExit, RefuseReason
from edge.store.entry import EntryMeta

__all__ = ["DiskWriter", "WriterHost"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class WriterHost(Protocol):
    """What a DiskWriter needs from its store; DiskStore implements it.

    Called by the writer only: `run_file_op` for every blocking file call (one executor hop),
    `note_refusal` once per refused body, and `publish` once, from commit(), handing over the
    tmp file (the host then owns it: it renames it into place or deletes it).
    """

    @property
    def max_object_bytes(self) -> int: ...

    async def run_file_op(self, fn: Callable[..., T], *args: object) -> T: ...

    def note_refusal(self) -> None: ...

    def note_written(self, size: int) -> None: ...

    async def publish(self, writer: DiskWriter, meta: EntryMeta) -> RefuseReason | None: ...


class DiskWriter(AbortOnExit):
    """Streams one body into a tmp file, hashing as it goes; nothing is held but one batch.

    A writer dropped without commit() or abort() (not used with `async with`) leaks its fd
    and tmp file until the store is reopened, which empties tmp/.
    """

    def __init__(self, store: WriterHost, meta: EntryMeta, fd: int, path: Path, reserved: int) -> None:
        self.fd = fd
        self.path = path
        self.reserved = reserved  # the body starts here in the tmp file
        self._store = store
        self._meta = meta
        self._hasher = xxhash.xxh3_64()
        self._batch: list[bytes] = []  # chunks not yet written, at most ~CHUNK_BYTES
        self._batch_bytes = 0
        self._size = 0  # body bytes accepted so far
        self._refusal: RefuseReason | None = None
        self._done = False  # committed, or the tmp file is gone
        self.peak_batch_bytes = 0  # the most body bytes held at once (tests check streaming)

    @property
    def refusal(self) -> RefuseReason | None:
        """Why commit() will return False, if it will."""
        return self._refusal

    async def write(self, chunk: bytes) -> None:
        """Hashes the chunk and writes it out once a batch of CHUNK_BYTES is gathered."""
        if self._done and self._refusal is None:
            raise RuntimeError("write() after commit()")
        if self._refusal is not None:
            return
        self._size += len(chunk)
        if self._size > self._store.max_object_bytes:
            await self._refuse(RefuseReason.TOO_LARGE)
            return
        self._hasher.update(chunk)
        self._batch.append(chunk)
        self._batch_bytes += len(chunk)
        self.peak_batch_bytes = max(self.peak_batch_bytes, self._batch_bytes)
        if self._batch_bytes >= CHUNK_BYTES:
            await self._flush()

    async def commit(self, meta: EntryMeta | None = None) -> bool:
        """Flushes, writes the final meta and publishes; False if refused."""
        final = self._meta if meta is None else meta
        if final.key != self._meta.key:
            raise ValueError("commit() meta names another key")
        if self._done and self._refusal is None:
            raise RuntimeError("commit() called twice")
        if self._refusal is not None:
            return False
        await self._flush()
        if self._refusal is not None:
            return False
        self._done = True
        final = final.replace(body_length=self._size, checksum=self._hasher.intdigest())
        self._refusal = await self._store.publish(self, final)
        return self._refusal is None

    async def abort(self) -> None:
        """Deletes the tmp file; idempotent."""
        if self._done:
            return
        self._refusal = self._refusal or RefuseReason.ABORTED
        self._done = True
        self._batch = []
        await self._store.run_file_op(diskfile.discard_tmp, self.fd, self.path)

    async def _flush(self) -> None:
        if not self._batch:
            return
        data = self._batch[0] if len(self._batch) == 1 else b"".join(self._batch)
        self._batch, self._batch_bytes = [], 0
        offset = self.reserved + self._size - len(data)
        try:
            await self._store.run_file_op(diskfile.pwrite_all, self.fd, data, offset)
        except OSError:
            log.exception("writing a disk object failed")
            await self._refuse(RefuseReason.IO_ERROR)
        else:
            self._store.note_written(len(data))

    async def _refuse(self, reason: RefuseReason) -> None:
        self._store.note_refusal()
        await self.abort()
        self._refusal = reason

    def _settled(self) -> bool:
        return self._done
