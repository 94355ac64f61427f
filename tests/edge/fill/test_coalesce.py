"""Unit tests for edge.fill.coalesce: single flight, disconnects, the pass memo, spool life, close.

Concurrency is ordered by the FakeUpstream's gates and by awaiting readers, never by sleeping.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.fill.coalesce import Coalescer, FillFailed, FillOutcome, JoinResult
from tests.fakes import (
    FakeClock,
    FakeProducer,
    FakeUpstream,
    open_files_under,
    producer_ended,
    read_fill,
    serve_join,
    start,
)

KEY = b"k" * 16
BODY = bytes(range(256)) * 64  # 16 KiB: four 4 KiB chunks from FakeUpstream


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def coalescer(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Coalescer]:
    co = Coalescer(
        spool_dir=tmp_path, head_timeout_s=10.0, idle_timeout_s=10.0, pass_memo_s=10.0, clock=clock
    )
    try:
        yield co
    finally:
        await co.close()


class TestSingleFlight:
    async def test_producer_runs_once_when_100_clients_join_concurrently(
        self, coalescer: Coalescer
    ) -> None:
        upstream = FakeUpstream(BODY, gated=True)
        relay = FakeProducer(upstream)
        joins: list[JoinResult] = []
        all_joined = asyncio.Event()

        async def client() -> bytes:
            joined = coalescer.join(KEY, relay)
            joins.append(joined)
            if len(joins) == 100:
                all_joined.set()
            return await serve_join(joined)

        clients = [asyncio.create_task(client()) for _ in range(100)]
        await all_joined.wait()
        assert sum(j.leader for j in joins) == 1 and coalescer.in_flight == 1
        assert all(j.fill is joins[0].fill for j in joins)
        upstream.release_all()
        bodies = await asyncio.gather(*clients)
        assert bodies == [BODY] * 100
        assert upstream.calls == 1 and relay.runs == 1

    async def test_fill_stays_joinable_until_producer_task_ends(self, coalescer: Coalescer) -> None:
        upstream = FakeUpstream(BODY)
        relay = FakeProducer(upstream)
        relay.commit_gate.clear()  # the store commit is still running
        first = coalescer.join(KEY, relay)
        await relay.wait_received(len(BODY))
        second = coalescer.join(KEY, relay)
        assert second.fill is first.fill and not second.leader
        relay.commit_gate.set()
        assert await serve_join(first) == BODY and await serve_join(second) == BODY
        await producer_ended(KEY)
        assert coalescer.in_flight == 0
        third = coalescer.join(KEY, relay)  # the edge would have found the store first
        assert third.leader and third.fill is not first.fill
        assert await serve_join(third) == BODY and upstream.calls == 2


class TestDisconnect:
    async def test_cancelled_reader_does_not_cancel_fill_when_others_still_read(
        self, coalescer: Coalescer
    ) -> None:
        upstream = FakeUpstream(BODY, gated=True)
        relay = FakeProducer(upstream)
        leader = coalescer.join(KEY, relay)
        follower = coalescer.join(KEY, relay)
        got_first = asyncio.Event()

        async def client_that_leaves(joined: JoinResult) -> None:
            with joined:
                assert joined.fill is not None
                await joined.fill.head(leader=True)
                async for _ in joined.fill.body():
                    got_first.set()

        gone = asyncio.create_task(client_that_leaves(leader))
        upstream.release_chunks(1)
        await got_first.wait()
        gone.cancel()  # the first client disconnects mid-body
        with pytest.raises(asyncio.CancelledError):
            await gone
        upstream.release_all()
        assert await serve_join(follower) == BODY
        await producer_ended(KEY)
        assert not relay.cancelled and upstream.calls == 1


class TestUncacheable:
    async def test_followers_get_uncacheable_at_once_when_head_is_not_shareable(
        self, coalescer: Coalescer
    ) -> None:
        upstream = FakeUpstream(BODY, gated=True)
        relay = FakeProducer(upstream, shareable=False)
        leader = coalescer.join(KEY, relay)
        follower = coalescer.join(KEY, relay)
        assert leader.fill is not None and follower.fill is not None
        waiting = await start(follower.fill.head(leader=False))
        upstream.release_head()  # the body is still held upstream
        with pytest.raises(FillFailed) as info:
            await waiting
        assert info.value.outcome is FillOutcome.UNCACHEABLE and info.value.retryable
        follower.release()
        head = await leader.fill.head(leader=True)
        assert not head.shareable
        upstream.release_all()
        assert await serve_join(leader) == BODY

    async def test_join_passes_until_memo_expires_when_key_was_uncacheable(
        self, coalescer: Coalescer, clock: FakeClock
    ) -> None:
        upstream = FakeUpstream(BODY)
        assert (
            await serve_join(coalescer.join(KEY, FakeProducer(upstream, shareable=False))) == BODY
        )
        passed = coalescer.join(KEY, FakeProducer(upstream))
        assert passed.passed and passed.fill is None and coalescer.in_flight == 0
        clock.advance(9.9)
        assert coalescer.join(KEY, FakeProducer(upstream)).passed
        clock.advance(0.2)
        again = coalescer.join(KEY, FakeProducer(upstream))
        assert again.leader and not again.passed
        assert await serve_join(again) == BODY and upstream.calls == 2

    async def test_join_coalesces_despite_memo_when_caller_ignores_pass(self, coalescer: Coalescer) -> None:
        # issue 11: a request holding a stale copy it may serve on error is never passed
        upstream = FakeUpstream(BODY, gated=True)
        await serve_join(coalescer.join(KEY, FakeProducer(FakeUpstream(BODY), shareable=False)))
        assert coalescer.join(KEY, FakeProducer(upstream)).passed
        first = coalescer.join(KEY, FakeProducer(upstream), ignore_pass=True)
        second = coalescer.join(KEY, FakeProducer(upstream), ignore_pass=True)
        assert first.leader and not first.passed and second.fill is first.fill
        assert coalescer.in_flight == 1 and coalescer.waiting == 2
        upstream.release_all()
        assert await serve_join(first) == BODY and await serve_join(second) == BODY
        assert upstream.calls == 1

    async def test_join_coalesces_again_when_pass_is_forgotten(self, coalescer: Coalescer) -> None:
        upstream = FakeUpstream(BODY)
        await serve_join(coalescer.join(KEY, FakeProducer(upstream, shareable=False)))
        coalescer.forget_pass(KEY)
        joined = coalescer.join(KEY, FakeProducer(upstream))
        assert joined.leader and await serve_join(joined) == BODY


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
class TestSpill:
    async def test_readers_get_exact_bytes_when_body_spills_past_memory_spool_bytes(
        self, tmp_path: Path
    ) -> None:
        co = Coalescer(
            spool_dir=tmp_path, memory_spool_bytes=1000, head_timeout_s=10, idle_timeout_s=10
        )
        try:
            body = os.urandom(200_000)
            upstream = FakeUpstream(body, chunk_size=7000, gated=True)
            relay = FakeProducer(upstream)
            first, second = co.join(KEY, relay), co.join(KEY, relay)
            assert first.fill is not None
            upstream.release_chunks(3)
            await relay.wait_received(21_000)
            assert len(open_files_under(tmp_path)) == 1  # spilled, to an unlinked file
            assert await read_fill(first.fill, 900, 15_000) == body[900:15_000]
            upstream.release_all()
            assert await serve_join(first) == body
            assert len(open_files_under(tmp_path)) == 1  # the second joiner still holds it
            assert await serve_join(second) == body
            await producer_ended(KEY)
            assert open_files_under(tmp_path) == []  # the last reader let go
        finally:
            await co.close()

    async def test_spool_file_is_closed_when_nobody_ever_reads(self, tmp_path: Path) -> None:
        co = Coalescer(
            spool_dir=tmp_path, memory_spool_bytes=0, head_timeout_s=10, idle_timeout_s=10
        )
        try:
            upstream = FakeUpstream(BODY)
            relay = FakeProducer(upstream)
            co.join(KEY, relay).release()  # the only client leaves before reading a byte
            await relay.wait_received(len(BODY))
            await producer_ended(KEY)
            assert relay.runs == 1 and open_files_under(tmp_path) == []
        finally:
            await co.close()


class TestClose:
    async def test_close_wakes_readers_with_abandoned_when_fills_are_running(
        self, tmp_path: Path
    ) -> None:
        co = Coalescer(spool_dir=tmp_path, head_timeout_s=10, idle_timeout_s=10)
        upstream = FakeUpstream(BODY, gated=True)
        relay = FakeProducer(upstream)
        leader, follower = co.join(KEY, relay), co.join(KEY, relay)
        assert leader.fill is not None and follower.fill is not None
        upstream.release_chunks(1)
        await relay.wait_received(4096)
        other = co.join(
            b"other", FakeProducer(FakeUpstream(gated=True))
        )  # still waiting for its head
        assert other.fill is not None
        head_waiter = await start(other.fill.head(leader=True))
        body = follower.fill.body()
        assert await anext(body) == BODY[:4096]
        next_chunk = await start(read_fill(follower.fill, 4096))
        await co.close()
        for waiter in (head_waiter, next_chunk):
            with pytest.raises(FillFailed) as info:
                await waiter
            assert info.value.outcome is FillOutcome.ABANDONED
        assert relay.cancelled and co.in_flight == 0
        with pytest.raises(RuntimeError):
            co.join(KEY, relay)
        leader.release()
        follower.release()


class TestDetach:
    async def test_next_join_starts_one_new_fill_when_running_fill_is_detached(
        self, coalescer: Coalescer
    ) -> None:
        # issue 11: the fill of a purged version is detached; later requests share a new one
        old_upstream, new_upstream = FakeUpstream(BODY, gated=True), FakeUpstream(BODY, gated=True)
        old = coalescer.join(KEY, FakeProducer(old_upstream))
        coalescer.detach(old.fill)  # type: ignore[arg-type]
        fresh = coalescer.join(KEY, FakeProducer(new_upstream))
        coalescer.detach(old.fill)  # type: ignore[arg-type]  # a late detach leaves the new fill alone
        follower = coalescer.join(KEY, FakeProducer(new_upstream))
        assert fresh.leader and follower.fill is fresh.fill and fresh.fill is not old.fill
        old_upstream.release_all()
        new_upstream.release_all()
        assert await serve_join(old) == BODY  # the detached fill still serves its readers
        assert await serve_join(fresh) == BODY and await serve_join(follower) == BODY
        assert old_upstream.calls == 1 and new_upstream.calls == 1
