"""DiskStore: the Store contract plus crash safety, restart, checksums and streaming."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import pytest
import xxhash

from edge.store import diskfile
from edge.store.base import CHUNK_BYTES, RemoveReason, Store
from edge.store.disk import DiskHit, DiskStore, DiskUnusable
from edge.store.diskfile import HEADER, object_path
from edge.store.eviction import LRUPolicy
from edge.store.gdsf import GDSFPolicy
from edge.store.keylock import KeyLocks
from tests.edge.store.store_contract import (
    KiB,
    MiB,
    StoreContract,
    body_of,
    fetch,
    make_meta,
    put,
    read_all,
)


class TestDiskStoreContract(StoreContract):
    async def build(self, root: Path, *, max_bytes: int, max_object_bytes: int) -> Store:
        return await DiskStore.open(root, max_bytes=max_bytes, max_object_bytes=max_object_bytes)


class TestDiskStoreLRUContract(StoreContract):
    async def build(self, root: Path, *, max_bytes: int, max_object_bytes: int) -> Store:
        return await DiskStore.open(
            root, max_bytes=max_bytes, max_object_bytes=max_object_bytes, policy=LRUPolicy(max_bytes)
        )


class TestDiskStoreGDSFContract(StoreContract):
    async def build(self, root: Path, *, max_bytes: int, max_object_bytes: int) -> Store:
        return await DiskStore.open(
            root, max_bytes=max_bytes, max_object_bytes=max_object_bytes, policy=GDSFPolicy(max_bytes)
        )


async def _open(root: Path, *, background: bool = False, max_bytes: int = 64 * MiB) -> DiskStore:
    return await DiskStore.open(
        root, max_bytes=max_bytes, max_object_bytes=32 * MiB, verify_in_background=background
    )


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _body_offset(path: Path) -> int:
    with path.open("rb") as f:
        return int(HEADER.unpack(f.read(HEADER.size))[3])


class TestDiskStoreLayout:
    async def test_store_names_files_by_hex_id_when_committed(self, tmp_path: Path) -> None:
        store = await _open(tmp_path)
        meta = make_meta("../../etc/passwd?x=1")
        await put(store, meta, b"body")
        await store.close()
        hexid = meta.key.hex()
        assert _files(tmp_path) == [tmp_path / "objects" / hexid[:2] / hexid]
        with (tmp_path / "objects" / hexid[:2] / hexid).open("rb") as f:
            assert f.read(4) == b"EDGC"

    async def test_hit_gives_file_span_of_body_when_on_disk(self, tmp_path: Path) -> None:
        store = await _open(tmp_path)
        meta, body = make_meta("span"), body_of(100 * KiB, seed=9)
        await put(store, meta, body)
        hit = await store.lookup(meta.key)
        assert isinstance(hit, DiskHit) and hit.body_bytes() is None
        try:
            span = hit.file_span()
            assert span is not None
            fd, offset, length = span
            assert length == len(body) and os.pread(fd, length, offset) == body
            # A purge unlinks the file; the open fd still serves the ongoing response.
            await store.remove(meta.key, RemoveReason.PURGE)
            assert not object_path(tmp_path, meta.key).exists()
            assert os.pread(fd, length, offset) == body
        finally:
            await hit.close()
        await store.close()

    async def test_commit_copies_body_when_final_meta_outgrows_reservation(
        self, tmp_path: Path
    ) -> None:
        store = await _open(tmp_path)
        meta, body = make_meta("grow"), body_of(300 * KiB, seed=4)
        many = tuple((f"x-header-{i}", "v" * 40) for i in range(100))
        assert await put(store, meta, body, final=meta.replace(headers=many))
        await store.close()
        store = await _open(tmp_path)
        found = await fetch(store, meta.key)
        assert found is not None and found[0].headers == many and found[1] == body
        assert _files(tmp_path / "tmp") == []
        await store.close()


class TestUnusableDirectory:
    async def test_open_fails_saying_what_to_do_when_root_is_a_file(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_bytes(b"x")
        with pytest.raises(DiskUnusable, match="is not a directory; point disk_dir"):
            await _open(tmp_path / "file")

    async def test_open_fails_saying_what_to_do_when_a_parent_is_a_file(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_bytes(b"x")
        with pytest.raises(DiskUnusable, match=r"creating .*/file/cache failed \(Not a directory\)"):
            await _open(tmp_path / "file" / "cache")

    async def test_open_leaves_no_probe_file_when_directory_is_usable(self, tmp_path: Path) -> None:
        await (await _open(tmp_path)).close()
        assert _files(tmp_path / "tmp") == []


class TestDiskStoreRestart:
    async def test_store_keeps_objects_when_reopened(self, tmp_path: Path) -> None:
        store = await _open(tmp_path)
        metas = [make_meta(f"keep{i}") for i in range(3)]
        for i, meta in enumerate(metas):
            await put(store, meta, body_of(50 * KiB, seed=i))
        assert await store.update_meta(metas[0].key, metas[0].replace(etag='"fresh"'), expect=metas[0])
        await store.close()
        store = await _open(tmp_path)
        assert store.stats.entries == 3 and store.verification_pending == 3
        for i, meta in enumerate(metas):
            found = await fetch(store, meta.key)
            assert found is not None and found[1] == body_of(50 * KiB, seed=i)
        assert (await fetch(store, metas[0].key)) is not None
        assert next(m for m in store.entries() if m.key == metas[0].key).etag == '"fresh"'
        assert store.verification_pending == 0
        await store.close()

    async def test_store_deletes_tmp_leftovers_when_opened(self, tmp_path: Path) -> None:
        await (await _open(tmp_path)).close()
        leftover = tmp_path / "tmp" / ("deadbeef" * 4)  # the form of the node's own tmp files
        leftover.write_bytes(b"EDGC half written")
        store = await _open(tmp_path)
        assert not leftover.exists() and store.stats.entries == 0
        await store.close()

    async def test_store_keeps_and_reports_files_it_did_not_write_when_opened(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        # issue 10: a --disk-dir that holds someone else's files loses none of them
        meta = make_meta("mine")
        store = await _open(tmp_path)
        await put(store, meta, body_of(10 * KiB))
        await store.close()
        foreign = [
            tmp_path / "tmp" / "deadbeef",
            tmp_path / "tmp" / "notes",
            tmp_path / "objects" / "readme.txt",
            tmp_path / "objects" / "00" / "not-a-key",
            tmp_path / "objects" / "00" / ("ff" * 16),  # a key's name, in the wrong fan-out directory
        ]
        (tmp_path / "tmp" / "dir").mkdir()
        for path in foreign:
            path.write_bytes(b"someone else's")
        with caplog.at_level(logging.WARNING, logger="edge.store.disk"):
            store = await _open(tmp_path)
        assert all(path.read_bytes() == b"someone else's" for path in foreign)
        assert (tmp_path / "tmp" / "dir").is_dir()
        assert store.stats.entries == 1 and await fetch(store, meta.key) is not None
        assert "left 6 entries the node did not write in place" in caplog.text
        await store.close()

    async def test_store_drops_object_when_file_truncated(self, tmp_path: Path) -> None:
        store = await _open(tmp_path)
        meta = make_meta("cut")
        await put(store, meta, body_of(64 * KiB))
        await store.close()
        path = object_path(tmp_path, meta.key)
        os.truncate(path, path.stat().st_size - 10)
        store = await _open(tmp_path)
        assert await store.lookup(meta.key) is None
        assert not path.exists() and list(store.entries()) == []
        await store.close()

    @pytest.mark.parametrize("background", [False, True])
    async def test_store_never_serves_body_when_a_byte_is_flipped(
        self, tmp_path: Path, background: bool
    ) -> None:
        store = await _open(tmp_path)
        meta, good = make_meta("flip"), make_meta("good")
        await put(store, meta, body_of(64 * KiB))
        await put(store, good, body_of(64 * KiB, seed=1))
        await store.close()
        path = object_path(tmp_path, meta.key)
        with path.open("r+b") as f:
            f.seek(_body_offset(path) + 1000)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x01]))
        store = await _open(tmp_path, background=background)
        await store.wait_verified()
        assert await store.lookup(meta.key) is None
        assert not path.exists() and store.invalid == 1
        assert (await fetch(store, good.key)) is not None
        await store.close()

    @pytest.mark.parametrize(
        "damage", [b"XXXX", b"EDGC\x00\x00\x00\x09", b"EDGC\x00\x00\x00\x01\x00\x00\x00\x05"]
    )
    async def test_store_drops_file_when_header_is_bad(self, tmp_path: Path, damage: bytes) -> None:
        store = await _open(tmp_path)
        meta = make_meta("bad")
        await put(store, meta, b"body")
        await store.close()
        path = object_path(tmp_path, meta.key)
        with path.open("r+b") as f:
            f.write(damage)  # bad magic, unknown version, meta length pointing into garbage
        store = await _open(tmp_path)
        assert store.stats.entries == 0 and not path.exists()
        await store.close()

    async def test_store_drops_file_when_name_is_not_its_key(self, tmp_path: Path) -> None:
        store = await _open(tmp_path)
        meta, other = make_meta("one"), make_meta("two")
        await put(store, meta, b"body")
        await store.close()
        os.rename(object_path(tmp_path, meta.key), object_path(tmp_path, other.key))
        (tmp_path / "objects" / "zz").mkdir()
        (tmp_path / "objects" / "zz" / "not-hex").write_bytes(b"x")
        store = await _open(tmp_path)
        # the file named as the node names objects is dropped; a name the node never writes
        # is not its file and stays (issue 10)
        assert store.stats.entries == 0 and _files(tmp_path) == [tmp_path / "objects" / "zz" / "not-hex"]
        await store.close()

    async def test_store_evicts_when_reopened_with_smaller_budget(self, tmp_path: Path) -> None:
        store = await _open(tmp_path)
        for i in range(8):
            await put(store, make_meta(f"s{i}"), body_of(100 * KiB, seed=i))
        await store.close()
        store = await _open(tmp_path, max_bytes=400 * KiB)
        assert store.stats.bytes <= 400 * KiB and store.stats.evictions > 0
        assert len(_files(tmp_path / "objects")) == store.stats.entries
        await store.close()


class TestDiskStoreStreaming:
    async def test_store_streams_large_body_in_bounded_chunks_when_written_and_read(
        self, tmp_path: Path
    ) -> None:
        store = await _open(tmp_path)
        meta = make_meta("video")
        piece = body_of(64 * KiB, seed=11)
        total = 20 * MiB
        hasher = xxhash.xxh3_64()
        async with await store.open_writer(meta) as writer:
            for _ in range(total // len(piece)):
                await writer.write(piece)
                hasher.update(piece)
            assert await writer.commit()
        assert writer.peak_batch_bytes <= CHUNK_BYTES
        hit = await store.lookup(meta.key)
        assert hit is not None
        read_hash, largest, length = xxhash.xxh3_64(), 0, 0
        try:
            async for chunk in hit.read():
                largest = max(largest, len(chunk))
                length += len(chunk)
                read_hash.update(chunk)
        finally:
            await hit.close()
        assert largest <= CHUNK_BYTES
        assert length == total and read_hash.intdigest() == hasher.intdigest()
        assert hit.meta.checksum == hasher.intdigest()
        await store.close()


class HeldExecutor(Executor):
    """Runs calls inline; calls to the held function run at once but report only on release."""

    def __init__(self) -> None:
        self.held_fn: Callable[..., object] | None = None
        self.submitted = asyncio.Event()  # set when a held call has run
        self._held: list[tuple[Future[object], object]] = []

    def submit(self, fn: Callable[..., object], /, *args: object, **kwargs: object) -> Future[Any]:
        future: Future[object] = Future()
        result = fn(*args, **kwargs)
        if fn is self.held_fn:
            self._held.append((future, result))
            self.submitted.set()
        else:
            future.set_result(result)
        return future

    def release(self) -> None:
        for future, result in self._held:
            future.set_result(result)
        self._held = []


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class TestDiskStoreRaces:
    async def test_lookup_misses_when_purged_while_opening(self, tmp_path: Path) -> None:
        executor = HeldExecutor()
        store = await DiskStore.open(
            tmp_path, max_bytes=MiB, max_object_bytes=MiB, executor=executor
        )
        meta = make_meta("purged")
        await put(store, meta, b"stale")
        fds = _open_fds()
        executor.held_fn = diskfile.open_for_read
        lookup = asyncio.create_task(store.lookup(meta.key))
        await executor.submitted.wait()  # the file is open; the purge now completes
        assert await store.remove(meta.key, RemoveReason.PURGE)
        executor.release()
        assert await lookup is None
        assert _open_fds() == fds  # the opened fd was closed
        await store.close()

    async def test_lookup_serves_new_object_when_replaced_while_opening(
        self, tmp_path: Path
    ) -> None:
        executor = HeldExecutor()
        store = await DiskStore.open(
            tmp_path, max_bytes=MiB, max_object_bytes=MiB, executor=executor
        )
        meta = make_meta("replaced")
        await put(store, meta, b"old")
        executor.held_fn = diskfile.open_for_read
        lookup = asyncio.create_task(store.lookup(meta.key))
        await executor.submitted.wait()
        executor.held_fn = None
        await put(store, meta, b"new")
        executor.release()
        hit = await lookup
        assert hit is not None
        assert await read_all(hit) == b"new"  # the retry opened the file the index names
        await hit.close()
        await store.close()

    @pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
    async def test_store_leaks_no_fds_when_objects_come_and_go(self, tmp_path: Path) -> None:
        store = await _open(tmp_path)
        fds = _open_fds()
        meta = make_meta("fd")
        await put(store, meta, b"x" * 1000)
        async with await store.open_writer(make_meta("aborted")) as writer:
            await writer.write(b"y")
        hit = await store.lookup(meta.key)
        assert hit is not None
        await hit.close()
        await hit.close()  # idempotent
        assert await store.update_meta(meta.key, meta.replace(etag='"2"'), expect=meta)
        await store.remove(meta.key, RemoveReason.PURGE)
        assert _open_fds() == fds
        await store.close()

    async def test_writer_raises_when_written_after_commit(self, tmp_path: Path) -> None:
        store = await _open(tmp_path)
        writer = await store.open_writer(make_meta("late"))
        assert await writer.commit()
        with pytest.raises(RuntimeError):
            await writer.write(b"late")
        await store.close()


class TestKeyLocks:
    async def test_key_locks_serialise_one_key_and_free_it_when_released(self) -> None:
        locks = KeyLocks()
        order: list[str] = []
        inside = asyncio.Event()
        release = asyncio.Event()

        async def first() -> None:
            async with locks.hold(b"k"):
                inside.set()
                await release.wait()
                order.append("first")

        async def second() -> None:
            async with locks.hold(b"k"):
                order.append("second")

        async with asyncio.TaskGroup() as tg:
            tg.create_task(first())
            await inside.wait()
            tg.create_task(second())
            async with locks.hold(b"other"):  # another key is not blocked
                order.append("other")
            release.set()
        assert order == ["other", "first", "second"]
        assert len(locks) == 0
