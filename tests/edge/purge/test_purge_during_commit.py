"""A purge acknowledged while a fill older than it publishes is still honoured (purge race).

The sweep walks the store once; an entry a fill publishes after that walk is not in it, and
the rule is dropped as soon as that fill ends. The filler therefore checks again once its
commit (or its 304 refresh) is published and removes what a purge arrived for meanwhile.

The store below is the real TieredStore with one step held open: a commit (or a meta
update) waits for the test's gate before it runs. That is where a loaded machine leaves a
fill (a disk commit queued behind other executor work); a real disk cannot be paused on
demand, so this wrapper stands in for the slow part only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType

import pytest

from cluster.purge import Purge, PurgeKind
from edge.config.deployment import CacheConfig
from edge.fill.coalesce import Coalescer
from edge.fill.producer import Filler, FillInfo, FillPlan
from edge.purge.invalidate import Invalidator
from edge.rules.key import make_key
from edge.store.base import Hit, RefuseReason, RemoveReason
from edge.store.entry import EntryMeta
from edge.store.memory import MemoryStore
from edge.store.tiered import TieredStore, TieredWriter
from origin.upstream import UpstreamRequest
from tests.fakes import FakeUpstream, read_fill

pytestmark = pytest.mark.timeout(20)

HOST = "a.test"
WAIT_S = 10.0


class _HeldWriter:
    """A TieredWriter whose commit waits for the store's gate."""

    def __init__(self, inner: TieredWriter, store: _HeldStore) -> None:
        self._inner = inner
        self._store = store

    @property
    def refusal(self) -> RefuseReason | None:
        return self._inner.refusal

    async def write(self, chunk: bytes) -> None:
        await self._inner.write(chunk)

    async def commit(self, meta: EntryMeta | None = None) -> bool:
        self._store.reached.set()
        await self._store.gate.wait()
        return await self._inner.commit(meta)

    async def abort(self) -> None:
        await self._inner.abort()

    async def __aenter__(self) -> _HeldWriter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._inner.__aexit__(exc_type, exc, tb)


class _HeldStore:
    """The real store; commits and meta updates wait for `gate` once they are `reached`."""

    def __init__(self, inner: TieredStore) -> None:
        self.inner = inner
        self.reached = asyncio.Event()
        self.gate = asyncio.Event()

    async def lookup(self, key: bytes) -> Hit | None:
        return await self.inner.lookup(key)

    async def open_writer(self, meta: EntryMeta) -> _HeldWriter:
        return _HeldWriter(await self.inner.open_writer(meta), self)

    async def update_meta(self, key: bytes, meta: EntryMeta, *, expect: EntryMeta) -> bool:
        self.reached.set()
        await self.gate.wait()
        return await self.inner.update_meta(key, meta, expect=expect)

    async def remove(self, key: bytes, reason: RemoveReason) -> bool:
        return await self.inner.remove(key, reason)


@pytest.fixture
def store() -> TieredStore:
    return TieredStore(MemoryStore(max_bytes=64 << 20, max_object_bytes=1 << 20))


@pytest.fixture
async def inv(store: TieredStore, tmp_path: Path) -> AsyncIterator[Invalidator]:
    invalidator = Invalidator([store], state_path=tmp_path / "swept")
    invalidator.start()
    try:
        yield invalidator
    finally:
        await invalidator.close()


@pytest.fixture
async def coalescer(tmp_path: Path) -> AsyncIterator[Coalescer[FillInfo]]:
    co: Coalescer[FillInfo] = Coalescer(spool_dir=tmp_path, head_timeout_s=10.0, idle_timeout_s=10.0)
    try:
        yield co
    finally:
        await co.close()


def _tag_purge(tag: str, *, soft: bool) -> Purge:
    return Purge("n1", 1, PurgeKind.TAG, tag, HOST, soft, 1.0)


async def test_entry_committed_after_the_sweep_passed_is_removed_before_its_rule_is_dropped(
    inv: Invalidator, store: TieredStore, coalescer: Coalescer[FillInfo]
) -> None:
    held = _HeldStore(store)
    upstream = FakeUpstream(
        b"blue body",
        headers=(("content-length", "9"), ("cache-control", "max-age=600"), ("cache-tag", "blue red")),
    )
    filler = Filler(cache=CacheConfig(), max_object_bytes=1 << 20, purges=inv)
    key = make_key("http", HOST, "/t1")
    request = UpstreamRequest(method="GET", host=HOST, target="/t1")
    plan = FillPlan(upstream=upstream, request=request, key=key, client_headers={}, authorization=False,
                    store=held)
    joined = coalescer.join(key.id, lambda fill: filler.run(fill, plan))
    with joined:
        assert joined.fill is not None
        head = await joined.fill.head(leader=True)
        assert head.extra.meta is not None and "blue" in head.extra.meta.tags
        assert await read_fill(joined.fill) == b"blue body"  # the client has its whole answer
    await asyncio.wait_for(held.reached.wait(), WAIT_S)  # admitted, now publishing
    await inv.apply(_tag_purge("blue", soft=False), 1)  # acknowledged from here on
    await asyncio.wait_for(inv.wait_swept(), WAIT_S)  # the walk ran before the entry existed
    held.gate.set()
    assert await coalescer.drain(WAIT_S) == 0
    assert inv.pending == 0 and inv.fast_until > 0  # the rule is gone: nothing lazy covers the key
    assert await store.lookup(key.id) is None and store.memory.peek(key.id) is None


async def test_refresh_written_after_a_soft_purge_swept_the_entry_does_not_make_it_fresh(
    inv: Invalidator, store: TieredStore, coalescer: Coalescer[FillInfo]
) -> None:
    key = make_key("http", HOST, "/s")
    stale = EntryMeta(key=key.id, url=key.url, status=200, headers=(("etag", '"v1"'),), request_time=0.0,
                      response_time=1.0, initial_age_s=0.0, lifetime_s=1.0, tags=("blue",), etag='"v1"')
    async with await store.open_writer(stale) as writer:
        await writer.write(b"old")
        assert await writer.commit()
    held = _HeldStore(store)
    upstream = FakeUpstream(b"", status=304, reason="Not Modified",
                            headers=(("etag", '"v1"'), ("cache-control", "max-age=600")))
    filler = Filler(cache=CacheConfig(), max_object_bytes=1 << 20, purges=inv)
    request = UpstreamRequest(method="GET", host=HOST, target="/s")
    plan = FillPlan(upstream=upstream, request=request, key=key, client_headers={}, authorization=False,
                    store=held, stale=stale)
    joined = coalescer.join(key.id, lambda fill: filler.run(fill, plan))
    with joined:
        assert joined.fill is not None
        await asyncio.wait_for(held.reached.wait(), WAIT_S)  # the 304 was admitted, now written
        await inv.apply(_tag_purge("blue", soft=True), 1)
        await asyncio.wait_for(inv.wait_swept(), WAIT_S)  # marked the (old) entry stale
        held.gate.set()
        head = await joined.fill.head(leader=True)
        assert head.status == 304 and not head.extra.refreshed  # waiters do not serve it as validated
    assert await coalescer.drain(WAIT_S) == 0
    assert inv.pending == 0
    hit = await store.lookup(key.id)
    try:
        assert hit is None or hit.meta.invalidated, "a soft-purged entry came back fresh"
    finally:
        if hit is not None:
            await hit.close()
