"""Unit tests for edge.fill.spool.Spool: memory prefix, spill file, reads by offset, release."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from edge.fill.spool import READ_CHUNK_BYTES, Spool
from tests.fakes import open_files_under

needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")


async def read_all(spool: Spool, offset: int = 0, limit: int = READ_CHUNK_BYTES) -> bytes:
    out = bytearray()
    while offset < spool.size:
        chunk = await spool.read(offset, limit)
        assert 0 < len(chunk) <= min(limit, READ_CHUNK_BYTES)
        out += chunk
        offset += len(chunk)
    return bytes(out)


class ManualExecutor(Executor):
    """Runs submitted calls only when the test says so, in the test's thread."""

    def __init__(self) -> None:
        self.pending: list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = []
        self.submitted = asyncio.Event()  # set on each submit; called from the loop's thread

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        self.pending.append((fut, fn, args))
        self.submitted.set()
        return fut

    async def wait_submitted(self) -> None:
        """Waits until a call is pending."""
        await self.submitted.wait()
        self.submitted.clear()

    async def run_pending(self) -> None:
        """Runs every pending call, then waits until the loop has seen each result."""
        batch, self.pending = self.pending, []
        for fut, fn, args in batch:
            if fut.set_running_or_notify_cancel():
                fut.set_result(fn(*args))
        # The spool's own callbacks on these futures were registered first, so they have run
        # by the time these waits return.
        await asyncio.gather(*(asyncio.wrap_future(f) for f, _, _ in batch), return_exceptions=True)


async def spilling(tmp_path: Path, data: bytes) -> tuple[ManualExecutor, Spool, asyncio.Task[None]]:
    """A file-only spool whose first append of `data` is held as a call in a ManualExecutor."""
    executor = ManualExecutor()
    spool = Spool(memory_bytes=0, spool_dir=tmp_path, executor=executor)
    writer = asyncio.ensure_future(spool.append(data))
    await executor.wait_submitted()
    return executor, spool, writer


class CountingExecutor(ThreadPoolExecutor):
    """A thread pool that counts the calls submitted to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


class TestMemory:
    async def test_read_returns_appended_chunk_objects_when_within_memory(self) -> None:
        spool = Spool(memory_bytes=1024, spool_dir=None)
        a, b = b"a" * 100, b"b" * 50
        await spool.append(a)
        await spool.append(b)
        assert spool.size == 150 and not spool.spilled
        assert await spool.read(0) is a
        assert await spool.read(100) is b
        assert await spool.read(120) == b"b" * 30
        assert await spool.read(10, 5) == b"aaaaa"

    async def test_read_refuses_offset_when_not_yet_written(self) -> None:
        spool = Spool(memory_bytes=1024, spool_dir=None)
        await spool.append(b"xyz")
        with pytest.raises(ValueError):
            await spool.read(3)
        with pytest.raises(ValueError):
            await spool.read(-1)

    async def test_append_ignores_empty_chunk_when_given_one(self) -> None:
        spool = Spool(memory_bytes=1024, spool_dir=None)
        await spool.append(b"")
        assert spool.size == 0


class TestSpill:
    async def test_read_returns_exact_bytes_when_body_crosses_memory_limit(
        self, tmp_path: Path
    ) -> None:
        spool = Spool(memory_bytes=1000, spool_dir=tmp_path)
        body = bytes(range(256)) * 40  # 10,240 bytes, appended in 700-byte chunks
        for i in range(0, len(body), 700):
            await spool.append(body[i : i + 700])
        assert spool.spilled and spool.memory_size == 1000 and spool.size == len(body)
        assert await read_all(spool) == body
        assert await read_all(spool, 990, 7) == body[990:]  # reads across the boundary
        spool.release()

    @needs_proc
    async def test_spill_file_is_unlinked_and_closed_when_released(self, tmp_path: Path) -> None:
        spool = Spool(memory_bytes=10, spool_dir=tmp_path)
        await spool.append(b"x" * 100)
        [target] = open_files_under(tmp_path)
        assert target.endswith("(deleted)")  # never visible by name in the spool directory
        assert list(tmp_path.iterdir()) == []
        spool.release()
        assert open_files_under(tmp_path) == []
        with pytest.raises(RuntimeError):
            await spool.read(0)
        with pytest.raises(RuntimeError):
            await spool.append(b"more")

    async def test_memory_stays_bounded_when_body_is_much_larger(self, tmp_path: Path) -> None:
        spool = Spool(memory_bytes=64 * 1024, spool_dir=tmp_path)
        block = os.urandom(1024 * 1024)
        for _ in range(16):
            await spool.append(block)
        assert spool.memory_size == 64 * 1024 and spool.size == 16 * 1024 * 1024
        assert await spool.read(5 * 1024 * 1024, 10 * 1024 * 1024) == block[:READ_CHUNK_BYTES]
        spool.release()

    async def test_each_file_read_is_one_executor_call_when_spilled(self, tmp_path: Path) -> None:
        executor = CountingExecutor()
        try:
            spool = Spool(memory_bytes=0, spool_dir=tmp_path, executor=executor)
            body = os.urandom(3 * READ_CHUNK_BYTES + 5)
            await spool.append(body)
            assert executor.submitted == 1
            assert await read_all(spool) == body
            assert executor.submitted == 1 + 4  # four reads of at most 256 KiB each
            spool.release()
        finally:
            executor.shutdown()


class TestReleaseRaces:
    @needs_proc
    async def test_release_keeps_fd_open_when_a_cancelled_read_is_still_running(
        self, tmp_path: Path
    ) -> None:
        executor, spool, writer = await spilling(tmp_path, b"y" * 4096)
        await executor.run_pending()
        await writer
        reader = asyncio.ensure_future(spool.read(0))
        await executor.wait_submitted()
        assert len(executor.pending) == 1
        reader.cancel()  # the client went away while the pread was queued in a thread
        with pytest.raises(asyncio.CancelledError):
            await reader
        spool.release()
        assert len(open_files_under(tmp_path)) == 1  # the pread may still use the fd
        await executor.run_pending()
        assert open_files_under(tmp_path) == []

    @needs_proc
    async def test_file_is_closed_when_producer_cancelled_during_first_spill(
        self, tmp_path: Path
    ) -> None:
        executor, spool, writer = await spilling(tmp_path, b"z" * 10)
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer
        await executor.run_pending()  # the thread creates the file after its caller left
        assert len(open_files_under(tmp_path)) == 1
        spool.release()
        assert open_files_under(tmp_path) == []
