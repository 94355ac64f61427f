"""TieredStore: the Store contract (with and without a disk tier) plus promotion and tee."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.store.base import RemoveReason, Store
from edge.store.disk import DiskHit, DiskStore
from edge.store.admission import SecondHitFilter
from edge.store.gdsf import GDSFPolicy
from edge.store.memory import MemoryHit, MemoryStore
from edge.store.tiered import TieredStore
from tests.edge.store.store_contract import KiB, MiB, StoreContract, body_of, fetch, make_meta, put


class TestTieredStoreContract(StoreContract):
    async def build(self, root: Path, *, max_bytes: int, max_object_bytes: int) -> Store:
        memory = MemoryStore(max_bytes=max_bytes, max_object_bytes=max_object_bytes)
        disk = await DiskStore.open(root, max_bytes=max_bytes, max_object_bytes=max_object_bytes)
        return TieredStore(memory, disk)


class TestTieredMemoryOnlyContract(StoreContract):
    async def build(self, root: Path, *, max_bytes: int, max_object_bytes: int) -> Store:
        memory = MemoryStore(max_bytes=max_bytes, max_object_bytes=max_object_bytes)
        return TieredStore(memory, None)


class TestTieredGDSFSecondHitContract(StoreContract):
    """The default node: GDSF in RAM, S3-FIFO on disk behind the second-hit filter."""

    async def build(self, root: Path, *, max_bytes: int, max_object_bytes: int) -> Store:
        memory = MemoryStore(
            max_bytes=max_bytes, max_object_bytes=max_object_bytes, policy=GDSFPolicy(max_bytes)
        )
        disk = await DiskStore.open(root, max_bytes=max_bytes, max_object_bytes=max_object_bytes)
        return TieredStore(memory, disk, admission=SecondHitFilter(1000))


@pytest.fixture
async def tiered(tmp_path: Path) -> AsyncIterator[TieredStore]:
    memory = MemoryStore(max_bytes=8 * MiB, max_object_bytes=256 * KiB)
    disk = await DiskStore.open(tmp_path, max_bytes=64 * MiB, max_object_bytes=16 * MiB)
    store = TieredStore(memory, disk)
    yield store
    await store.close()


class TestTieredPromotion:
    async def test_lookup_promotes_disk_hit_when_body_fits_memory(
        self, tiered: TieredStore
    ) -> None:
        meta, body = make_meta("warm"), body_of(100 * KiB)
        await put(tiered, meta, body)
        await tiered.memory.remove(meta.key, RemoveReason.EVICTION)
        hit = await tiered.lookup(meta.key)
        assert isinstance(hit, MemoryHit) and hit.body_bytes() == body
        assert tiered.memory.peek(meta.key) is hit and tiered.promotions == 1

    async def test_lookup_serves_from_disk_when_body_exceeds_memory_limit(
        self, tiered: TieredStore
    ) -> None:
        meta, body = make_meta("big"), body_of(1 * MiB)
        await put(tiered, meta, body)
        assert tiered.memory.peek(meta.key) is None  # the tee stopped past 256 KiB
        hit = await tiered.lookup(meta.key)
        assert isinstance(hit, DiskHit)
        await hit.close()
        assert tiered.promotions == 0 and tiered.memory.peek(meta.key) is None

    async def test_writer_fills_both_tiers_when_body_fits_memory(self, tiered: TieredStore) -> None:
        meta, body = make_meta("both"), body_of(10 * KiB)
        await put(tiered, meta, body)
        assert tiered.memory.peek(meta.key) is not None
        assert tiered.disk is not None and await fetch(tiered.disk, meta.key) is not None
        assert [m.key for m in tiered.entries()] == [meta.key]  # de-duplicated

    @pytest.mark.parametrize("last", [0, 1])
    async def test_tiers_agree_when_writers_race_on_one_key(
        self, tiered: TieredStore, last: int
    ) -> None:
        meta = make_meta("race")
        writers = [await tiered.open_writer(meta.replace(etag=f'"{i}"')) for i in range(2)]
        for i, writer in enumerate(writers):
            await writer.write(bytes([65 + i]) * (8 * KiB))
        await writers[1 - last].commit()
        await writers[last].commit()
        in_memory = tiered.memory.peek(meta.key)
        assert tiered.disk is not None
        on_disk = await fetch(tiered.disk, meta.key)
        assert in_memory is not None and on_disk is not None
        assert in_memory.meta == on_disk[0] and in_memory.body == on_disk[1]
        assert in_memory.meta.etag == f'"{last}"'

    async def test_commit_removes_old_disk_copy_when_disk_refuses_new_body(
        self, tmp_path: Path
    ) -> None:
        memory = MemoryStore(max_bytes=8 * MiB, max_object_bytes=MiB)
        disk = await DiskStore.open(tmp_path, max_bytes=8 * MiB, max_object_bytes=64 * KiB)
        store = TieredStore(memory, disk)
        meta = make_meta("shift")
        await put(store, meta, b"old")
        assert await put(store, meta, body_of(128 * KiB))  # fits memory only
        assert await fetch(disk, meta.key) is None
        found = await fetch(store, meta.key)
        assert found is not None and found[1] == body_of(128 * KiB)
        await store.close()

    async def test_commit_removes_old_memory_copy_when_memory_refuses_new_body(
        self, tiered: TieredStore
    ) -> None:
        meta = make_meta("grow")
        await put(tiered, meta, b"old")
        await put(tiered, meta, body_of(MiB))  # too big for memory: disk only
        assert tiered.memory.peek(meta.key) is None
        found = await fetch(tiered, meta.key)
        assert found is not None and found[1] == body_of(MiB)

    async def test_update_meta_reaches_disk_when_object_in_both_tiers(
        self, tiered: TieredStore
    ) -> None:
        meta = make_meta("soft")
        await put(tiered, meta, b"body")
        assert await tiered.update_meta(meta.key, meta.replace(invalidated=True), expect=meta)
        await tiered.memory.remove(meta.key, RemoveReason.EVICTION)
        found = await fetch(tiered, meta.key)  # promoted again from disk
        assert found is not None and found[0].invalidated

    async def test_remove_clears_both_tiers_when_purged(self, tiered: TieredStore) -> None:
        meta = make_meta("purge")
        await put(tiered, meta, b"body")
        assert await tiered.remove(meta.key, RemoveReason.PURGE)
        assert tiered.memory.peek(meta.key) is None
        assert tiered.disk is not None and await tiered.disk.lookup(meta.key) is None
        assert await tiered.lookup(meta.key) is None



async def _full_disk_store(tmp_path: Path, admission: SecondHitFilter) -> TieredStore:
    """A 4 MiB disk that has already evicted (filled past its budget with 1 MiB fillers)."""
    memory = MemoryStore(max_bytes=8 * MiB, max_object_bytes=64 * KiB)
    disk = await DiskStore.open(tmp_path, max_bytes=4 * MiB, max_object_bytes=16 * MiB)
    store = TieredStore(memory, disk, admission=admission)
    for i in range(4):  # the fourth (and its file head) does not fit: the first eviction
        await put(store, make_meta(f"filler{i}"), body_of(MiB, seed=i))
    assert disk.stats.evictions > 0 and store.disk_skipped == 0
    return store


class TestTieredDiskAdmission:
    async def test_writer_writes_every_miss_when_disk_never_evicted(self, tmp_path: Path) -> None:
        memory = MemoryStore(max_bytes=8 * MiB, max_object_bytes=64 * KiB)
        disk = await DiskStore.open(tmp_path, max_bytes=64 * MiB, max_object_bytes=16 * MiB)
        filt = SecondHitFilter(1000)
        store = TieredStore(memory, disk, admission=filt)
        try:
            meta, body = make_meta("cold-start"), body_of(MiB)
            assert await put(store, meta, body)  # a first miss, written: the disk has room
            assert meta.key in disk and filt.count(meta.key) == 1  # the filter still counted it
            assert store.disk_skipped == 0 and store.disk_write_bytes == MiB
        finally:
            await store.close()

    async def test_writer_skips_disk_on_first_miss_and_writes_on_second_when_disk_is_full(
        self, tmp_path: Path
    ) -> None:
        store = await _full_disk_store(tmp_path, SecondHitFilter(1000))
        assert store.disk is not None
        written = store.disk_write_bytes
        try:
            meta, body = make_meta("segment"), body_of(MiB, seed=9)
            assert not await put(store, meta, body)  # too big for RAM, first miss not admitted
            assert await store.lookup(meta.key) is None and store.disk_skipped == 1
            assert await put(store, meta, body)  # the second miss within the window
            found = await fetch(store.disk, meta.key)
            assert found is not None and found[1] == body
            assert store.disk_write_bytes - written == MiB
        finally:
            await store.close()

    async def test_writer_keeps_small_body_in_memory_when_disk_not_admitted(
        self, tmp_path: Path
    ) -> None:
        store = await _full_disk_store(tmp_path, SecondHitFilter(1000))
        assert store.disk is not None
        try:
            meta, body = make_meta("asset"), body_of(10 * KiB)
            assert await put(store, meta, body)
            assert meta.key not in store.disk and store.memory.peek(meta.key) is not None
            found = await fetch(store, meta.key)
            assert found is not None and found[1] == body
        finally:
            await store.close()

    async def test_writer_replaces_disk_copy_when_key_already_on_disk(self, tmp_path: Path) -> None:
        filt = SecondHitFilter(1000)
        store = await _full_disk_store(tmp_path, filt)
        assert store.disk is not None
        try:
            meta = make_meta("filler3")  # the last filler is on disk
            assert meta.key in store.disk
            counted = filt.count(meta.key)
            assert await put(store, meta.replace(etag='"v2"'), body_of(MiB, seed=20))
            assert filt.count(meta.key) == counted  # not asked: a replacement is always written
            found = await fetch(store.disk, meta.key)
            assert found is not None and found[1] == body_of(MiB, seed=20)
        finally:
            await store.close()
