"""MemoryStore: the Store contract plus the synchronous hot path and bounded buffering."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.store.base import RefuseReason, Store
from edge.store.memory import ENTRY_OVERHEAD_BYTES, MemoryStore
from edge.store.eviction import LRUPolicy
from edge.store.gdsf import GDSFPolicy
from tests.edge.store.store_contract import KiB, MiB, StoreContract, make_meta, put


class TestMemoryStoreContract(StoreContract):
    async def build(self, root: Path, *, max_bytes: int, max_object_bytes: int) -> Store:
        return MemoryStore(max_bytes=max_bytes, max_object_bytes=max_object_bytes)


class TestMemoryStoreLRUContract(StoreContract):
    async def build(self, root: Path, *, max_bytes: int, max_object_bytes: int) -> Store:
        policy = LRUPolicy(max_bytes)
        return MemoryStore(max_bytes=max_bytes, max_object_bytes=max_object_bytes, policy=policy)


class TestMemoryStoreGDSFContract(StoreContract):
    async def build(self, root: Path, *, max_bytes: int, max_object_bytes: int) -> Store:
        policy = GDSFPolicy(max_bytes)
        return MemoryStore(max_bytes=max_bytes, max_object_bytes=max_object_bytes, policy=policy)


class TestMemoryStoreHotPath:
    async def test_get_returns_the_stored_hit_when_present(self) -> None:
        store = MemoryStore(max_bytes=MiB, max_object_bytes=MiB)
        meta, body = make_meta("hot"), b"y" * 1000
        await put(store, meta, body, chunk=len(body))
        first, second = store.get(meta.key), store.get(meta.key)
        assert first is not None and first is second  # no allocation per hit
        assert first.body_bytes() is body  # one chunk is stored without a copy
        assert first.file_span() is None
        assert store.stats.hits == 2

    async def test_get_counts_a_miss_when_absent(self) -> None:
        store = MemoryStore(max_bytes=MiB, max_object_bytes=MiB)
        assert store.get(make_meta("none").key) is None
        assert store.stats.misses == 1

    async def test_get_touches_policy_when_hit(self) -> None:
        # LRU over 3 entries: the touched first entry survives, the second is evicted.
        size = 10 * KiB
        budget = 3 * (size + ENTRY_OVERHEAD_BYTES)
        store = MemoryStore(max_bytes=budget, max_object_bytes=size, policy=LRUPolicy(budget))
        metas = [make_meta(f"lru{i}") for i in range(4)]
        for meta in metas[:3]:
            await put(store, meta, b"z" * size)
        assert store.get(metas[0].key) is not None
        await put(store, metas[3], b"z" * size)
        assert store.peek(metas[0].key) is not None
        assert store.peek(metas[1].key) is None

    async def test_store_counts_body_plus_overhead_when_stored(self) -> None:
        store = MemoryStore(max_bytes=MiB, max_object_bytes=MiB)
        await put(store, make_meta("a"), b"x" * 1000)
        assert store.stats.bytes == 1000 + ENTRY_OVERHEAD_BYTES

    async def test_store_refuses_policy_with_other_budget_when_built(self) -> None:
        with pytest.raises(ValueError):
            MemoryStore(max_bytes=MiB, max_object_bytes=KiB, policy=LRUPolicy(2 * MiB))


class TestMemoryStoreGDSF:
    async def test_store_drops_cold_large_body_when_gdsf_ranks_it_last(self) -> None:
        small = 4 * KiB
        budget = 8 * (small + ENTRY_OVERHEAD_BYTES)
        store = MemoryStore(max_bytes=budget, max_object_bytes=budget, policy=GDSFPolicy(budget))
        metas = [make_meta(f"asset{i}") for i in range(8)]
        for meta in metas:
            assert await put(store, meta, b"a" * small)
            assert store.get(meta.key) is not None  # one hit each
        big = make_meta("segment")
        assert not await put(store, big, b"v" * (4 * small))  # refused: every asset outranks it
        assert store.peek(big.key) is None
        assert all(store.peek(meta.key) is not None for meta in metas)
        assert store.put(big, b"v" * (4 * small)) is None  # a promotion is refused the same way
        assert store.stats.bytes <= budget


class TestMemoryWriterBuffering:
    async def test_writer_drops_buffer_when_body_exceeds_max_object_bytes(self) -> None:
        store = MemoryStore(max_bytes=64 * MiB, max_object_bytes=8 * MiB)
        chunk = b"c" * MiB
        writer = await store.open_writer(make_meta("big"))
        peak = 0
        for _ in range(100):  # a 100 MiB body
            await writer.write(chunk)
            peak = max(peak, writer.buffered_bytes)
        assert peak <= 8 * MiB
        assert writer.buffered_bytes == 0
        assert writer.refusal is RefuseReason.TOO_LARGE
        assert not await writer.commit()
        assert store.stats.rejected == 1

    async def test_put_refuses_body_when_larger_than_max_object_bytes(self) -> None:
        store = MemoryStore(max_bytes=MiB, max_object_bytes=KiB)
        assert store.put(make_meta("p"), b"x" * (2 * KiB)) is None
        hit = store.put(make_meta("q"), b"x" * 10)
        assert hit is not None and hit.meta.body_length == 10

    async def test_writer_raises_when_written_after_commit(self) -> None:
        store = MemoryStore(max_bytes=MiB, max_object_bytes=MiB)
        writer = await store.open_writer(make_meta("w"))
        await writer.commit()
        with pytest.raises(RuntimeError):
            await writer.write(b"late")

    async def test_writer_raises_when_commit_names_another_key(self) -> None:
        store = MemoryStore(max_bytes=MiB, max_object_bytes=MiB)
        writer = await store.open_writer(make_meta("w"))
        with pytest.raises(ValueError):
            await writer.commit(make_meta("other"))
