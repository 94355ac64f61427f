"""StoreContract: the behaviour every Store has, subclassed once per implementation.

A subclass provides `build(root, max_bytes=, max_object_bytes=)`, which makes one store (in
the fresh directory `root` if it needs one); the `make_store` fixture turns it into an async
factory that closes every store it made at teardown.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import xxhash

from edge.rules.key import make_key
from edge.store.base import CHUNK_BYTES, Hit, RefuseReason, RemoveReason, Store
from edge.store.entry import EntryMeta

StoreFactory = Callable[..., Awaitable[Store]]

KiB = 1024
MiB = 1024 * KiB


def make_meta(name: str, **changes: Any) -> EntryMeta:
    """A plausible stored-response meta for https://example.com/<name>."""
    key = make_key("https", "example.com", f"/{name}")
    meta = EntryMeta(
        key=key.id,
        url=key.url,
        status=200,
        headers=(("content-type", "application/octet-stream"),),
        request_time=1000.0,
        response_time=1000.5,
        initial_age_s=0.0,
        lifetime_s=60.0,
        etag='"v1"',
        tags=("group-a",),
    )
    return meta.replace(**changes)


def body_of(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes."""
    return (xxhash.xxh3_128_digest(seed.to_bytes(8, "big")) * (size // 16 + 1))[:size]


async def put(
    store: Store,
    meta: EntryMeta,
    body: bytes,
    *,
    chunk: int = 64 * KiB,
    final: EntryMeta | None = None,
) -> bool:
    """Writes `body` through a writer in chunks and commits it."""
    async with await store.open_writer(meta) as writer:
        for offset in range(0, len(body), chunk):
            await writer.write(body[offset : offset + chunk])
        return await writer.commit(final)


async def read_all(hit: Hit, start: int = 0, end: int | None = None) -> bytes:
    """Reads [start, end) and checks every chunk respects CHUNK_BYTES."""
    chunks = [chunk async for chunk in hit.read(start, end)]
    assert all(0 < len(chunk) <= CHUNK_BYTES for chunk in chunks)
    return b"".join(chunks)


async def fetch(store: Store, key: bytes) -> tuple[EntryMeta, bytes] | None:
    """Looks up, reads the whole body and closes the hit."""
    hit = await store.lookup(key)
    if hit is None:
        return None
    try:
        return hit.meta, await read_all(hit)
    finally:
        await hit.close()


class StoreContract:
    """Every Store: round trip, ranges, abort, replace, remove, update_meta, entries, budget."""

    async def build(self, root: Path, *, max_bytes: int, max_object_bytes: int) -> Store:
        """One new store of the implementation under test; `root` is a fresh directory.

        Returning it as a Store makes mypy check that the implementation satisfies Store.
        """
        raise NotImplementedError("subclasses provide build")

    @pytest.fixture
    async def make_store(self, tmp_path: Path) -> AsyncIterator[StoreFactory]:
        made: list[Store] = []

        async def factory(*, max_bytes: int, max_object_bytes: int) -> Store:
            root = tmp_path / f"cache{len(made)}"
            made.append(
                await self.build(root, max_bytes=max_bytes, max_object_bytes=max_object_bytes)
            )
            return made[-1]

        yield factory
        for store in made:
            await store.close()

    @pytest.fixture
    async def store(self, make_store: StoreFactory) -> Store:
        return await make_store(max_bytes=64 * MiB, max_object_bytes=4 * MiB)

    async def test_store_returns_body_and_meta_when_committed(self, store: Store) -> None:
        meta, body = make_meta("a"), body_of(300 * KiB)
        assert await put(store, meta, body)
        found = await fetch(store, meta.key)
        assert found is not None
        stored, read = found
        assert read == body
        assert stored.body_length == len(body)
        assert stored.checksum == xxhash.xxh3_64_intdigest(body)
        assert stored.replace(body_length=0, checksum=0) == meta

    async def test_store_misses_when_key_never_written(self, store: Store) -> None:
        assert await store.lookup(make_meta("nothing").key) is None
        assert store.stats.misses == 1

    async def test_store_counts_hits_and_inserts_when_used(self, store: Store) -> None:
        meta = make_meta("a")
        await put(store, meta, b"x")
        await fetch(store, meta.key)
        await fetch(store, meta.key)
        stats = store.stats
        assert (stats.hits, stats.inserts, stats.entries) == (2, 1, 1)

    async def test_store_stores_empty_body_when_length_zero(self, store: Store) -> None:
        meta = make_meta("empty", status=204)
        assert await put(store, meta, b"")
        assert await fetch(store, meta.key) == (
            meta.replace(checksum=xxhash.xxh3_64_intdigest(b"")),
            b"",
        )

    @pytest.mark.parametrize(
        ("start", "end"),
        [(0, None), (1000, 300_000), (0, 1), (599 * KiB, None), (600 * KiB, None), (10, 10**9)],
    )
    async def test_hit_reads_range_when_start_and_end_given(
        self, store: Store, start: int, end: int | None
    ) -> None:
        meta, body = make_meta("range"), body_of(600 * KiB, seed=3)
        await put(store, meta, body)
        hit = await store.lookup(meta.key)
        assert hit is not None
        try:
            assert await read_all(hit, start, end) == body[start:end]
        finally:
            await hit.close()

    async def test_store_stores_final_meta_when_commit_passes_one(self, store: Store) -> None:
        meta = make_meta("final")
        final = meta.replace(headers=(("x-new", "1"),), etag='"v2"')
        await put(store, meta, b"body", final=final)
        found = await fetch(store, meta.key)
        assert (
            found is not None and found[0].etag == '"v2"' and found[0].headers == (("x-new", "1"),)
        )

    async def test_store_misses_when_writer_left_without_commit(self, store: Store) -> None:
        meta = make_meta("abandoned")
        async with await store.open_writer(meta) as writer:
            await writer.write(b"partial")
        assert writer.refusal is RefuseReason.ABORTED
        assert await store.lookup(meta.key) is None
        assert list(store.entries()) == []

    async def test_writer_refuses_commit_when_aborted(self, store: Store) -> None:
        meta = make_meta("aborted")
        writer = await store.open_writer(meta)
        await writer.write(b"partial")
        await writer.abort()
        assert not await writer.commit()
        assert await store.lookup(meta.key) is None

    async def test_store_keeps_old_object_when_replacement_aborted(self, store: Store) -> None:
        meta = make_meta("keep")
        await put(store, meta, b"old")
        writer = await store.open_writer(meta)
        await writer.write(b"new")
        await writer.abort()
        found = await fetch(store, meta.key)
        assert found is not None and found[1] == b"old"

    async def test_store_serves_new_body_when_key_replaced(self, store: Store) -> None:
        meta = make_meta("replace")
        await put(store, meta, body_of(100 * KiB, seed=1))
        await put(store, meta.replace(etag='"v2"'), body_of(50 * KiB, seed=2))
        found = await fetch(store, meta.key)
        assert found is not None
        assert found[1] == body_of(50 * KiB, seed=2) and found[0].etag == '"v2"'
        assert [m.key for m in store.entries()] == [meta.key]

    async def test_hit_keeps_reading_old_body_when_replaced_or_removed(self, store: Store) -> None:
        meta, old = make_meta("held"), body_of(400 * KiB, seed=5)
        await put(store, meta, old)
        hit = await store.lookup(meta.key)
        assert hit is not None
        try:
            await put(store, meta, b"new")
            await store.remove(meta.key, RemoveReason.PURGE)
            assert await read_all(hit) == old
        finally:
            await hit.close()

    async def test_store_misses_when_removed(self, store: Store) -> None:
        meta = make_meta("gone")
        await put(store, meta, b"x")
        assert await store.remove(meta.key, RemoveReason.PURGE)
        assert await store.lookup(meta.key) is None
        assert not await store.remove(meta.key, RemoveReason.PURGE)
        assert store.stats.entries == 0

    async def test_store_keeps_body_when_meta_updated(self, store: Store) -> None:
        meta, body = make_meta("fresh"), body_of(200 * KiB, seed=7)
        await put(store, meta, body)
        newer = meta.replace(response_time=2000.0, invalidated=True, body_length=0, checksum=0)
        assert await store.update_meta(meta.key, newer, expect=meta)
        found = await fetch(store, meta.key)
        assert found is not None
        stored, read = found
        assert read == body
        assert stored.invalidated and stored.response_time == 2000.0
        assert (stored.body_length, stored.checksum) == (len(body), xxhash.xxh3_64_intdigest(body))

    async def test_store_refuses_meta_update_when_key_absent(self, store: Store) -> None:
        absent = make_meta("absent")
        assert not await store.update_meta(absent.key, absent, expect=absent)

    async def test_meta_update_read_before_a_newer_fill_leaves_the_newer_object_alone(
        self, store: Store
    ) -> None:
        # a purge sweep or a 304 refresh read `old`; a new fill committed before it wrote
        old = make_meta("raced", etag='"old"', headers=(("content-type", "text/plain"),))
        await put(store, old, b"old body")
        new = make_meta("raced", etag='"new"', response_time=1999.0, headers=(("content-type", "image/png"),))
        await put(store, new, b"new body, longer")
        assert not await store.update_meta(old.key, old.replace(invalidated=True), expect=old)
        found = await fetch(store, old.key)
        assert found is not None
        stored, body = found
        assert body == b"new body, longer" and stored.etag == '"new"' and not stored.invalidated
        assert stored.headers == (("content-type", "image/png"),)

    async def test_refresh_read_before_a_soft_purge_does_not_clear_it(self, store: Store) -> None:
        meta = make_meta("purged-meanwhile")
        await put(store, meta, b"body")
        assert await store.update_meta(meta.key, meta.replace(invalidated=True), expect=meta)  # soft purge
        refreshed = meta.replace(response_time=3000.0, request_time=2999.0)  # a 304 read before the purge
        assert not await store.update_meta(meta.key, refreshed, expect=meta)
        found = await fetch(store, meta.key)
        assert found is not None and found[0].invalidated and found[0].response_time == meta.response_time

    async def test_store_iterates_every_entry_when_removing_during_iteration(
        self, store: Store
    ) -> None:
        metas = [make_meta(f"e{i}", tags=(f"t{i % 2}",)) for i in range(6)]
        for meta in metas:
            await put(store, meta, b"x")
        for stored in store.entries():
            if "t0" in stored.tags:
                await store.remove(stored.key, RemoveReason.PURGE)
        assert sorted(m.key for m in store.entries()) == sorted(m.key for m in metas[1::2])

    async def test_store_stays_within_budget_when_filled_past_it(
        self, make_store: StoreFactory
    ) -> None:
        store = await make_store(max_bytes=400 * KiB, max_object_bytes=64 * KiB)
        metas = [make_meta(f"fill{i}") for i in range(30)]
        for i, meta in enumerate(metas):
            assert await put(store, meta, body_of(30 * KiB, seed=i))
            assert store.stats.bytes <= store.stats.max_bytes
        stats = store.stats
        assert stats.evictions > 0 and stats.entries < 30
        found = await fetch(store, metas[-1].key)
        assert found is not None and found[1] == body_of(30 * KiB, seed=29)

    async def test_writer_refuses_commit_when_body_exceeds_max_object_bytes(
        self, make_store: StoreFactory
    ) -> None:
        store = await make_store(max_bytes=4 * MiB, max_object_bytes=64 * KiB)
        meta = make_meta("huge")
        writer = await store.open_writer(meta)
        for _ in range(10):
            await writer.write(body_of(16 * KiB))
        assert writer.refusal is RefuseReason.TOO_LARGE
        assert not await writer.commit()
        assert await store.lookup(meta.key) is None
        assert store.stats.rejected >= 1

    @pytest.mark.parametrize("last", ["a", "b"])
    async def test_store_keeps_last_commit_unmixed_when_writers_race_on_one_key(
        self, store: Store, last: str
    ) -> None:
        meta = make_meta("race")
        bodies = {"a": b"a" * (300 * KiB), "b": b"b" * (200 * KiB)}
        writers = {name: await store.open_writer(meta.replace(etag=f'"{name}"')) for name in "ab"}
        for offset in range(0, 300 * KiB, 50 * KiB):  # interleave chunk by chunk
            for name, writer in writers.items():
                await writer.write(bodies[name][offset : offset + 50 * KiB])
        first = "b" if last == "a" else "a"
        assert await writers[first].commit()
        assert await writers[last].commit()
        found = await fetch(store, meta.key)
        assert found == (
            meta.replace(
                etag=f'"{last}"',
                body_length=len(bodies[last]),
                checksum=xxhash.xxh3_64_intdigest(bodies[last]),
            ),
            bodies[last],
        )

    async def test_store_keeps_last_commit_when_commits_run_concurrently(
        self, store: Store
    ) -> None:
        meta = make_meta("gather")
        writers = [await store.open_writer(meta.replace(etag=f'"{i}"')) for i in range(4)]
        for i, writer in enumerate(writers):
            await writer.write(bytes([65 + i]) * (100 * KiB))
        assert all(await asyncio.gather(*(w.commit() for w in writers)))
        found = await fetch(store, meta.key)
        assert found is not None
        stored, body = found
        # Whichever commit won, meta and body belong to the same writer.
        assert body == bytes([65 + int(stored.etag.strip('"'))]) * (100 * KiB)  # type: ignore[union-attr]
        assert stored.checksum == xxhash.xxh3_64_intdigest(body)
