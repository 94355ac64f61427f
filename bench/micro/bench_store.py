"""Store micro benchmarks: the memory hot path, commits and disk reads (pytest-benchmark)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from edge.rules.key import make_key
from edge.store.disk import DiskStore
from edge.store.entry import EntryMeta
from edge.store.memory import MemoryStore
from edge.store.tiered import TieredStore

T = TypeVar("T")
MiB = 1024 * 1024
BODY = bytes(range(256)) * 256  # 64 KiB


def _meta(name: str) -> EntryMeta:
    key = make_key("https", "bench.example", f"/{name}")
    return EntryMeta(
        key=key.id,
        url=key.url,
        status=200,
        headers=(("content-type", "application/octet-stream"), ("cache-control", "max-age=60")),
        request_time=0.0,
        response_time=0.0,
        initial_age_s=0.0,
        lifetime_s=60.0,
    )


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


def _sync(loop: asyncio.AbstractEventLoop, fn: Callable[[], Awaitable[T]]) -> Callable[[], T]:
    return lambda: loop.run_until_complete(fn())


async def _put(store: MemoryStore | DiskStore | TieredStore, meta: EntryMeta) -> bool:
    async with await store.open_writer(meta) as writer:
        for offset in range(0, len(BODY), 16 * 1024):
            await writer.write(BODY[offset : offset + 16 * 1024])
        return await writer.commit()


def test_memory_get_hit(benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop) -> None:
    store = MemoryStore(max_bytes=64 * MiB, max_object_bytes=MiB)
    meta = _meta("hot")
    loop.run_until_complete(_put(store, meta))
    hit = benchmark(store.get, meta.key)
    assert hit is not None and hit.body_bytes() == BODY


def test_memory_commit_64k(benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop) -> None:
    store = MemoryStore(max_bytes=64 * MiB, max_object_bytes=MiB)
    meta = _meta("fill")
    assert benchmark(_sync(loop, lambda: _put(store, meta)))


def test_disk_commit_64k(
    benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    store = loop.run_until_complete(
        DiskStore.open(tmp_path, max_bytes=256 * MiB, max_object_bytes=MiB)
    )
    meta = _meta("disk-fill")
    try:
        assert benchmark(_sync(loop, lambda: _put(store, meta)))
    finally:
        loop.run_until_complete(store.close())


def test_disk_lookup_and_read_64k(
    benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    store = loop.run_until_complete(
        DiskStore.open(tmp_path, max_bytes=256 * MiB, max_object_bytes=MiB)
    )
    meta = _meta("disk-read")
    loop.run_until_complete(_put(store, meta))

    async def read() -> int:
        hit = await store.lookup(meta.key)
        assert hit is not None
        try:
            return sum([len(chunk) async for chunk in hit.read()])
        finally:
            await hit.close()

    try:
        assert benchmark(_sync(loop, read)) == len(BODY)
    finally:
        loop.run_until_complete(store.close())


def test_tiered_lookup_memory_hit(
    benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop
) -> None:
    store = TieredStore(MemoryStore(max_bytes=64 * MiB, max_object_bytes=MiB))
    meta = _meta("tiered")
    loop.run_until_complete(_put(store, meta))
    hit = benchmark(_sync(loop, lambda: store.lookup(meta.key)))
    assert hit is not None
