"""Spool: an append-only byte buffer that readers read by offset while it is being written.

A fill's body goes here once, and every client streaming that fill reads it back from here,
each at its own pace and from its own offset. The first `memory_bytes` stay in memory as
the chunks the producer appended (a reader from byte 0 gets those very objects, no copy);
everything beyond spills to an unlinked temporary file, written with os.pwrite and read
with os.pread, one executor call per operation. So a 100 MiB fill holds at most
`memory_bytes` in memory, and the file vanishes from the disk when its descriptor closes.

The spool itself never waits for data: `read()` returns bytes already written and the
owner (edge.fill.coalesce.Fill) wakes its readers after each `append()`. One writer at a time.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import weakref
from bisect import bisect_right
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["READ_CHUNK_BYTES", "Spool"]

READ_CHUNK_BYTES = 256 * 1024  # the most one read() returns (and one pread asks for)

_T = TypeVar("_T")


def _spill(fd: int | None, spool_dir: Path | None, data: bytes, offset: int) -> int:
    """Runs in the executor: creates the unlinked file if needed and writes data at offset."""
    created = fd is None
    if fd is None:
        fd, path = tempfile.mkstemp(prefix="edgecache-spool-", dir=spool_dir)
        os.unlink(path)  # the name goes now; the blocks go when the last descriptor closes
    try:
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view = view[written:]
            offset += written
    except BaseException:
        if created:
            os.close(fd)  # nobody has seen this fd yet: close it rather than leak it
        raise
    return fd


class Spool:
    """Append-only bytes, memory first then an unlinked temp file, readable by offset."""

    __slots__ = (
        "__weakref__",
        "_chunks",
        "_closer",
        "_dir",
        "_executor",
        "_fd",
        "_io_in_flight",
        "_memory_limit",
        "_memory_size",
        "_released",
        "_size",
        "_starts",
        "_writing",
    )

    def __init__(
        self, *, memory_bytes: int, spool_dir: Path | None, executor: Executor | None = None
    ) -> None:
        if memory_bytes < 0:
            raise ValueError("memory_bytes must be >= 0")
        self._memory_limit = memory_bytes
        self._dir = spool_dir  # None: tempfile's default directory
        self._executor = executor  # None: the loop's default executor
        self._chunks: list[bytes] = []  # the in-memory prefix, as appended
        self._starts: list[int] = []  # offset of each chunk in _chunks, for bisect
        self._memory_size = 0
        self._size = 0  # bytes readable: memory prefix + file bytes whose pwrite completed
        self._fd: int | None = None
        self._closer: weakref.finalize[[int], Spool] | None = None  # closes _fd once, even if never released
        self._io_in_flight = 0  # executor calls using _fd; the fd closes only when this is 0
        self._released = False
        self._writing = False

    @property
    def size(self) -> int:
        """Bytes written so far, all readable."""
        return self._size

    @property
    def memory_size(self) -> int:
        """Bytes held in memory (never more than memory_bytes)."""
        return self._memory_size

    @property
    def spilled(self) -> bool:
        """Whether part of the body lives in the temp file."""
        return self._fd is not None

    @property
    def released(self) -> bool:
        """Whether release() was called; reads and appends are refused after it."""
        return self._released

    async def append(self, data: bytes) -> None:
        """Adds data at the end; returns once it is readable."""
        if self._released:
            raise RuntimeError("append to a released spool")
        if self._writing:
            raise RuntimeError("concurrent append: a spool has one writer")
        if not data:
            return
        if type(data) is not bytes:
            data = bytes(data)  # kept by reference: a caller's reusable buffer must not leak in
        room = self._memory_limit - self._memory_size
        if room > 0:
            head = data if len(data) <= room else data[:room]
            self._starts.append(self._size)
            self._chunks.append(head)
            self._memory_size += len(head)
            self._size += len(head)
            data = data[len(head) :]
            if not data:
                return
        self._writing = True
        try:
            fut = self._submit(_spill, self._fd, self._dir, data, self._size - self._memory_limit)
            if self._fd is None:
                # The fd is adopted in a callback, not after the await: a producer cancelled
                # during the first spill must not leak the file its thread just created.
                fut.add_done_callback(self._adopt_fd)
            await asyncio.shield(fut)
        finally:
            self._writing = False
        self._size += len(data)

    async def read(self, offset: int, limit: int = READ_CHUNK_BYTES) -> bytes:
        """Returns 1..limit bytes starting at offset, which must be below `size`."""
        if self._released:
            raise RuntimeError("read from a released spool")
        if not 0 <= offset < self._size:
            raise ValueError(f"offset {offset} outside the written {self._size} bytes")
        limit = min(limit, READ_CHUNK_BYTES)
        if offset < self._memory_size:
            i = bisect_right(self._starts, offset) - 1
            chunk, rel = self._chunks[i], offset - self._starts[i]
            if rel == 0 and len(chunk) <= limit:
                return chunk
            return chunk[rel : rel + limit]
        fd = self._fd
        assert fd is not None  # size > memory_size implies the file exists
        n = min(limit, self._size - offset)
        return await asyncio.shield(self._submit(os.pread, fd, n, offset - self._memory_limit))

    def release(self) -> None:
        """Drops the memory prefix and closes the file (after any read still in flight)."""
        self._released = True
        self._chunks.clear()
        self._starts.clear()
        self._close_if_due()

    def _submit(self, fn: Callable[..., _T], *args: object) -> asyncio.Future[_T]:
        """Starts one executor call; callers await it through asyncio.shield()."""
        # Race: a reader cancelled (client gone) while its pread runs in a thread must not let
        # release() close the fd under that pread, where a reused fd number could be read.
        # shield() keeps the future alive until the thread returns; _io_done closes if due.
        fut = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        self._io_in_flight += 1
        fut.add_done_callback(self._io_done)
        return fut

    def _adopt_fd(self, fut: asyncio.Future[int]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        fd = fut.result()
        self._fd = fd
        self._closer = weakref.finalize(self, os.close, fd)
        self._close_if_due()

    def _io_done(self, fut: asyncio.Future[Any]) -> None:
        self._io_in_flight -= 1
        if not fut.cancelled():
            fut.exception()  # retrieved here so an abandoned call's error is not logged as lost
        self._close_if_due()

    def _close_if_due(self) -> None:
        if self._released and self._io_in_flight == 0 and self._closer is not None:
            self._closer()
