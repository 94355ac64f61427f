"""Unit tests for edge.purge.invalidate: lazy checks, the background sweep, soft purges, fill versus purge (issue 5)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cluster.purge import Purge, PurgeKind
from edge.config.deployment import CacheConfig
from edge.fill.coalesce import Coalescer
from edge.fill.producer import Filler, FillPlan
from edge.purge.invalidate import Invalidator, Verdict
from edge.rules.key import make_key
from edge.store.entry import EntryMeta
from edge.store.memory import MemoryStore
from edge.store.tiered import TieredStore
from origin.upstream import UpstreamRequest
from tests.fakes import FakeClock, FakeUpstream, read_fill

HOST = "a.test"


def _meta(target: str, *, tags: tuple[str, ...] = (), gen: int = 0, host: str = HOST) -> EntryMeta:
    key = make_key("http", host, target)
    return EntryMeta(key=key.id, url=key.url, status=200, headers=(), request_time=0.0, response_time=1000.0,
                     initial_age_s=0.0, lifetime_s=3600.0, tags=tags, purge_gen=gen, etag='"v1"')


def _purge(kind: PurgeKind, value: str, *, soft: bool = False, seq: int = 1, host: str = HOST) -> Purge:
    return Purge("n1", seq, kind, value, host, soft, 1.0)


def _store() -> TieredStore:
    return TieredStore(MemoryStore(max_bytes=64 << 20, max_object_bytes=1 << 20))


async def _put(store: TieredStore, meta: EntryMeta, body: bytes = b"body") -> None:
    async with await store.open_writer(meta) as writer:
        await writer.write(body)
        assert await writer.commit()


@pytest.fixture
async def store() -> TieredStore:
    return _store()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
async def inv(store: TieredStore, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Invalidator]:
    # the sweeper is not started: a test calls start() when it wants rules swept
    invalidator = Invalidator([store], state_path=tmp_path / "swept", clock=clock, peer_window_s=5.0)
    try:
        yield invalidator
    finally:
        await invalidator.close()


class TestLazyCheck:
    async def test_check_says_purged_when_pending_hard_rule_matches_older_entry(self, inv: Invalidator) -> None:
        await inv.apply(_purge(PurgeKind.PREFIX, "http://a.test/img/"), 1)
        assert inv.check(_meta("/img/1.png"), 1000.0) is Verdict.PURGED
        assert inv.check(_meta("/css/1.css"), 1000.0) is Verdict.VALID
        assert inv.check(_meta("/img/1.png", gen=1), 1000.0) is Verdict.VALID  # filled after the purge

    async def test_check_says_soft_when_pending_soft_tag_rule_matches(self, inv: Invalidator) -> None:
        await inv.apply(_purge(PurgeKind.TAG, "blue", soft=True), 1)
        assert inv.check(_meta("/x", tags=("red", "blue")), 1000.0) is Verdict.SOFT
        assert inv.check(_meta("/x", tags=("blue",), host="b.test"), 1000.0) is Verdict.VALID

    async def test_check_says_untrusted_when_clock_is_past_trusted_until(self, inv: Invalidator) -> None:
        inv.set_trusted_until(1000.0)
        assert inv.check(_meta("/x"), 1000.0) is Verdict.VALID
        assert inv.check(_meta("/x"), 1000.5) is Verdict.UNTRUSTED
        assert inv.fast_until == 1000.0

    async def test_fast_until_is_minus_infinity_when_rule_pending_and_returns_after_sweep(
        self, inv: Invalidator
    ) -> None:
        inv.start()
        assert inv.fast_until == math.inf
        await inv.apply(_purge(PurgeKind.ALL, HOST), 1)
        assert inv.fast_until == -math.inf
        await inv.wait_swept()
        assert inv.fast_until == math.inf and inv.pending == 0


class TestSweep:
    async def test_sweep_removes_tagged_entries_and_keeps_others_when_hard(
        self, inv: Invalidator, store: TieredStore, tmp_path: Path
    ) -> None:
        inv.start()
        for i in range(10):
            await _put(store, _meta(f"/o/{i}", tags=("even",) if i % 2 == 0 else ("odd",)))
        await inv.apply(_purge(PurgeKind.TAG, "even"), 1)
        await inv.wait_swept()
        left = sorted(m.url for m in store.entries())
        assert left == [f"http://a.test/o/{i}" for i in range(1, 10, 2)]
        assert inv.swept_through == 1 and (tmp_path / "swept").read_text() == "1"

    async def test_sweep_marks_entries_invalidated_when_soft(self, inv: Invalidator, store: TieredStore) -> None:
        inv.start()
        await _put(store, _meta("/s", tags=("t",)))
        await inv.apply(_purge(PurgeKind.TAG, "t", soft=True), 1)
        await inv.wait_swept()
        hit = await store.lookup(_meta("/s").key)
        assert hit is not None and hit.meta.invalidated and hit.body_bytes() == b"body"

    async def test_url_purge_removes_primary_at_once_and_variants_by_sweep(
        self, inv: Invalidator, store: TieredStore
    ) -> None:
        primary = _meta("/v")
        variant = primary.replace(key=make_key("http", HOST, "/v").variant(("accept-encoding",),
                                                                          {"accept-encoding": "gzip"}).id)
        await _put(store, primary.replace(status=0, vary=("accept-encoding",)), b"")
        await _put(store, variant)
        await _put(store, _meta("/other"))
        removed = await inv.apply(_purge(PurgeKind.URL, "http://a.test/v"), 1)
        assert removed == 1 and await store.lookup(primary.key) is None
        assert inv.check(variant, 1000.0) is Verdict.PURGED  # lazy check covers the variant meanwhile
        inv.start()
        await inv.wait_swept()
        assert sorted(m.url for m in store.entries()) == ["http://a.test/other"]


class TestHardPurged:
    async def test_hard_purged_counts_only_hard_rules_newer_than_the_entry_when_slices_are_checked(
        self, inv: Invalidator
    ) -> None:
        # issue 14: a soft purge is settled on a sliced object's record, a hard one on each slice
        await inv.apply(_purge(PurgeKind.URL, "http://a.test/soft", soft=True), 1)
        await inv.apply(_purge(PurgeKind.URL, "http://a.test/hard", seq=2), 2)
        assert not inv.admits(_meta("/soft")) and not inv.hard_purged(_meta("/soft"))
        assert inv.hard_purged(_meta("/hard"))
        assert not inv.hard_purged(_meta("/hard", gen=2))  # stored after the purge
        assert not inv.hard_purged(_meta("/other"))


class TestFillVersusPurge:
    async def test_admits_is_false_when_matching_purge_arrived_during_fill(self, inv: Invalidator) -> None:
        inv.start()
        gen = inv.begin_fill(from_peer=False)
        await inv.apply(_purge(PurgeKind.PREFIX, "http://a.test/"), 1)
        await inv.wait_swept()
        assert inv.pending == 1  # kept while the older fill runs
        assert not inv.admits(_meta("/late", gen=gen))
        assert inv.admits(_meta("/late", gen=1))
        inv.end_fill(gen)
        assert inv.pending == 0

    async def test_peer_fill_counts_as_older_when_purge_arrived_within_window(
        self, inv: Invalidator, clock: FakeClock
    ) -> None:
        inv.start()
        await inv.apply(_purge(PurgeKind.URL, "http://a.test/p"), 1)
        await inv.wait_swept()
        assert inv.begin_fill(from_peer=False) == 1
        gen = inv.begin_fill(from_peer=True)
        assert gen == 0 and not inv.admits(_meta("/p", gen=gen))
        clock.advance(6.0)
        assert inv.begin_fill(from_peer=True) == 1

    async def test_peer_fill_begun_after_purge_may_be_joined_though_not_stored(
        self, inv: Invalidator
    ) -> None:
        # issue 11: the peer window keeps such a fill out of the store, but requests arriving
        # now may read it as its leader does; only a fill begun before the purge is refused
        inv.start()
        await inv.apply(_purge(PurgeKind.PREFIX, "http://a.test/"), 1)
        began = inv.generation
        gen = inv.begin_fill(from_peer=True)
        meta = _meta("/p", gen=gen)
        assert not inv.admits(meta)  # not stored
        assert inv.admits(meta, began=began)  # but joinable
        assert not inv.admits(meta, began=0)  # a fill begun before the purge is not
        inv.end_fill(gen)

    async def test_filler_does_not_store_when_purge_arrives_mid_body(
        self, inv: Invalidator, store: TieredStore, tmp_path: Path
    ) -> None:
        body = b"x" * 8192
        upstream = FakeUpstream(body, gated=True, chunk_size=4096,
                                headers=(("content-length", "8192"), ("cache-control", "max-age=60")))
        filler = Filler(cache=CacheConfig(), max_object_bytes=1 << 20, purges=inv)
        key = make_key("http", HOST, "/race")
        plan = FillPlan(upstream=upstream, request=UpstreamRequest(method="GET", host=HOST, target="/race"),
                        key=key, client_headers={}, authorization=False, store=store)
        co = Coalescer(spool_dir=tmp_path, head_timeout_s=10.0, idle_timeout_s=10.0)
        try:
            joined = co.join(key.id, lambda fill: filler.run(fill, plan))
            assert joined.fill is not None
            upstream.release_chunks(1)
            await joined.fill.head(leader=True)
            await inv.apply(_purge(PurgeKind.URL, key.url), 1)
            upstream.release_all()
            assert await read_fill(joined.fill) == body  # the waiter still gets it
            joined.release()
            await co.drain(10.0)
            assert await store.lookup(key.id) is None
        finally:
            await co.close()


class TestRestart:
    async def test_load_restores_swept_through_when_state_file_exists(self, store: TieredStore,
                                                                     tmp_path: Path) -> None:
        (tmp_path / "swept").write_text("3")
        inv = Invalidator([store], state_path=tmp_path / "swept")
        await inv.load(journal_generation=5)
        assert inv.swept_through == 3 and inv.generation == 3

    async def test_load_drops_cache_when_journal_is_shorter_than_swept_through(self, store: TieredStore,
                                                                              tmp_path: Path) -> None:
        await _put(store, _meta("/kept-too-long", gen=7))
        (tmp_path / "swept").write_text("7")
        inv = Invalidator([store], state_path=tmp_path / "swept")
        await inv.load(journal_generation=0)
        assert list(store.entries()) == [] and inv.generation == 0
