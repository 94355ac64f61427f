"""Unit tests for origin.coalesce: single flight, read-while-write, failures, timeouts, spool life.

Concurrency is ordered by the FakeUpstream's gates and by awaiting readers, never by sleeping.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from origin.coalesce import Coalescer, Fill, FillFailed, FillHead, FillOutcome, JoinResult
from origin.errors import BodyError, ConnectError
from origin.upstream import UpstreamRequest
from tests.fakes import FakeClock, FakeUpstream

KEY = b"k" * 16
REQUEST = UpstreamRequest(method="GET", host="example.test", target="/obj")
BODY = bytes(range(256)) * 64  # 16 KiB: four 4 KiB chunks from FakeUpstream


class Relay:
    """The edge's producer, cut down: fetch, publish the head, spool each chunk, finish."""

    def __init__(self, upstream: FakeUpstream, *, shareable: bool = True) -> None:
        self.upstream = upstream
        self.shareable = shareable
        self.runs = 0
        self.received = 0
        self.cancelled = False
        self.commit_gate = asyncio.Event()  # stands for the store commit before finish()
        self.commit_gate.set()
        self._progress = asyncio.Event()  # replaced after every chunk, like Fill's own

    async def __call__(self, fill: Fill) -> None:
        self.runs += 1
        try:
            resp = await self.upstream.fetch(REQUEST)
            length = resp.header("content-length")
            fill.set_head(FillHead(
                status=resp.status, reason=resp.reason, headers=resp.headers,
                shareable=self.shareable, length=int(length) if length is not None else None,
            ))
            async for chunk in resp.body:
                await fill.append(chunk)
                self.received += len(chunk)
                progress, self._progress = self._progress, asyncio.Event()
                progress.set()
            await self.commit_gate.wait()
            fill.finish()
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    async def wait_received(self, count: int) -> None:
        """Waits until at least `count` body bytes are spooled."""
        while self.received < count:
            await self._progress.wait()


async def read_body(fill: Fill, offset: int = 0, end: int | None = None) -> bytes:
    out = bytearray()
    async for chunk in fill.body(offset, end):
        out += chunk
    return bytes(out)


async def fetch_through(joined: JoinResult) -> bytes:
    """What an edge handler does with a join: head, then the whole body, then release."""
    with joined:
        assert joined.fill is not None
        await joined.fill.head(leader=joined.leader)
        return await read_body(joined.fill)


async def producer_ended(key: bytes) -> None:
    """Waits for the producer task of key (named fill-<hex>); its bookkeeping runs inside it."""
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == f"fill-{key.hex()}"]
    if tasks:
        await asyncio.wait(tasks)


def open_files_under(directory: Path) -> list[str]:
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


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
    async def test_producer_runs_once_when_100_clients_join_concurrently(self, coalescer: Coalescer) -> None:
        upstream = FakeUpstream(BODY, gated=True)
        relay = Relay(upstream)
        joins: list[JoinResult] = []
        all_joined = asyncio.Event()

        async def client() -> bytes:
            joined = coalescer.join(KEY, relay)
            joins.append(joined)
            if len(joins) == 100:
                all_joined.set()
            return await fetch_through(joined)

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
        relay = Relay(upstream)
        relay.commit_gate.clear()  # the store commit is still running
        first = coalescer.join(KEY, relay)
        await relay.wait_received(len(BODY))
        second = coalescer.join(KEY, relay)
        assert second.fill is first.fill and not second.leader
        relay.commit_gate.set()
        assert await fetch_through(first) == BODY and await fetch_through(second) == BODY
        await producer_ended(KEY)
        assert coalescer.in_flight == 0
        third = coalescer.join(KEY, relay)  # the edge would have found the store first
        assert third.leader and third.fill is not first.fill
        assert await fetch_through(third) == BODY and upstream.calls == 2


class TestReadWhileWrite:
    async def test_follower_gets_first_chunk_when_producer_has_not_finished(self, coalescer: Coalescer) -> None:
        upstream = FakeUpstream(BODY, gated=True)
        leader = coalescer.join(KEY, Relay(upstream))
        follower = coalescer.join(KEY, Relay(upstream))
        assert follower.fill is not None
        upstream.release_chunks(1)
        await follower.fill.head(leader=False)
        body = follower.fill.body()
        assert await anext(body) == BODY[:4096]
        assert follower.fill.outcome is None  # chunks 2..4 are still held upstream
        upstream.release_all()
        rest = b"".join([chunk async for chunk in body])
        assert rest == BODY[4096:]
        assert await fetch_through(leader) == BODY
        follower.release()

    async def test_late_joiner_reads_from_byte_zero_when_half_the_body_has_arrived(
        self, coalescer: Coalescer
    ) -> None:
        upstream = FakeUpstream(BODY, gated=True)
        relay = Relay(upstream)
        leader = coalescer.join(KEY, relay)
        upstream.release_chunks(2)
        await relay.wait_received(len(BODY) // 2)
        late = coalescer.join(KEY, relay)
        assert not late.leader and late.fill is leader.fill
        late_read = asyncio.create_task(fetch_through(late))
        upstream.release_all()
        assert await late_read == BODY
        assert await fetch_through(leader) == BODY and upstream.calls == 1

    async def test_body_range_yields_exact_bytes_when_fill_has_not_finished(self, coalescer: Coalescer) -> None:
        upstream = FakeUpstream(BODY, gated=True)
        joined = coalescer.join(KEY, Relay(upstream))
        assert joined.fill is not None
        upstream.release_chunks(2)  # bytes [0, 8192) only
        assert await read_body(joined.fill, 1000, 7000) == BODY[1000:7000]
        assert await read_body(joined.fill, 4096, 8192) == BODY[4096:8192]
        assert joined.fill.outcome is None
        upstream.release_all()
        assert await read_body(joined.fill, 15000) == BODY[15000:]
        assert await read_body(joined.fill, 16000, 99999) == BODY[16000:]  # clamped like a slice
        joined.release()


class TestFailure:
    async def test_every_joiner_gets_cause_when_producer_fails_before_head(self, coalescer: Coalescer) -> None:
        error = ConnectError("refused", upstream="o1")
        upstream = FakeUpstream(BODY, gated=True, error=error)
        joins = [coalescer.join(KEY, Relay(upstream)) for _ in range(3)]
        upstream.release_head()
        for joined in joins:
            assert joined.fill is not None
            with joined, pytest.raises(FillFailed) as info:
                await joined.fill.head(leader=joined.leader)
            assert info.value.outcome is FillOutcome.UPSTREAM_ERROR
            assert info.value.__cause__ is error and info.value.retryable
        assert coalescer.in_flight == 0
        upstream.error = None
        upstream.release_all()
        retry = coalescer.join(KEY, Relay(upstream))
        assert retry.leader and await fetch_through(retry) == BODY and upstream.calls == 2

    async def test_unfinished_readers_get_fill_failed_when_producer_fails_mid_body(
        self, coalescer: Coalescer
    ) -> None:
        upstream = FakeUpstream(BODY, gated=True, fail_at=6000)
        leader = coalescer.join(KEY, Relay(upstream))
        follower = coalescer.join(KEY, Relay(upstream))
        assert leader.fill is not None and follower.fill is not None
        upstream.release_chunks(1)
        await leader.fill.head(leader=True)
        upstream.release_all()
        received = bytearray()
        with pytest.raises(FillFailed) as info:
            async for chunk in leader.fill.body():
                received += chunk
        assert bytes(received) == BODY[:6000]  # everything spooled, then an error: never a clean end
        assert info.value.outcome is FillOutcome.UPSTREAM_ERROR
        assert isinstance(info.value.__cause__, BodyError) and not info.value.retryable
        assert await read_body(follower.fill, 0, 6000) == BODY[:6000]  # its range was complete
        with pytest.raises(FillFailed):
            await read_body(follower.fill, 5000, 7000)
        with pytest.raises(FillFailed):
            await follower.fill.head(leader=False)  # a reader that has not started: clean error
        leader.release()
        follower.release()

    async def test_fill_is_abandoned_when_producer_returns_without_finish(self, coalescer: Coalescer) -> None:
        async def quitter(fill: Fill) -> None:
            fill.set_head(FillHead(200, "OK", (), True, None))
            await fill.append(b"partial")

        with coalescer.join(KEY, quitter) as joined:
            assert joined.fill is not None
            with pytest.raises(FillFailed) as info:
                await read_body(joined.fill)
            assert info.value.outcome is FillOutcome.ABANDONED

    async def test_fill_fails_when_body_is_shorter_than_head_length(self, coalescer: Coalescer) -> None:
        upstream = FakeUpstream(BODY, headers=(("content-length", str(len(BODY) + 1)),))
        with coalescer.join(KEY, Relay(upstream)) as joined:
            assert joined.fill is not None
            with pytest.raises(FillFailed) as info:
                await read_body(joined.fill)
            assert isinstance(info.value.__cause__, BodyError)


class TestTimeouts:
    async def test_head_raises_wait_timeout_when_head_is_late(self, tmp_path: Path) -> None:
        co = Coalescer(spool_dir=tmp_path, head_timeout_s=0.05, idle_timeout_s=10.0)
        try:
            upstream = FakeUpstream(BODY, gated=True)
            joined = co.join(KEY, Relay(upstream))
            assert joined.fill is not None
            with pytest.raises(FillFailed) as info:
                await joined.fill.head(leader=True)
            assert info.value.outcome is FillOutcome.WAIT_TIMEOUT and not info.value.retryable
            assert joined.fill.outcome is None and co.in_flight == 1  # the fill itself goes on
            upstream.release_all()
            assert await fetch_through(joined) == BODY
        finally:
            await co.close()

    async def test_body_raises_fill_timeout_when_no_bytes_arrive_within_idle_timeout(
        self, tmp_path: Path
    ) -> None:
        co = Coalescer(spool_dir=tmp_path, head_timeout_s=10.0, idle_timeout_s=0.05)
        try:
            upstream = FakeUpstream(BODY, gated=True)
            relay = Relay(upstream)
            with co.join(KEY, relay) as joined:
                assert joined.fill is not None
                upstream.release_chunks(1)
                await relay.wait_received(4096)
                body = joined.fill.body()
                assert await anext(body) == BODY[:4096]  # spooled already: no wait
                with pytest.raises(FillFailed) as info:
                    await anext(body)
                assert info.value.outcome is FillOutcome.FILL_TIMEOUT
        finally:
            await co.close()


class TestDisconnect:
    async def test_cancelled_reader_does_not_cancel_fill_when_others_still_read(
        self, coalescer: Coalescer
    ) -> None:
        upstream = FakeUpstream(BODY, gated=True)
        relay = Relay(upstream)
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
        assert await fetch_through(follower) == BODY
        await producer_ended(KEY)
        assert not relay.cancelled and upstream.calls == 1


class TestUncacheable:
    async def test_followers_get_uncacheable_at_once_when_head_is_not_shareable(
        self, coalescer: Coalescer
    ) -> None:
        upstream = FakeUpstream(BODY, gated=True)
        relay = Relay(upstream, shareable=False)
        leader = coalescer.join(KEY, relay)
        follower = coalescer.join(KEY, relay)
        assert leader.fill is not None and follower.fill is not None
        waiting = asyncio.create_task(follower.fill.head(leader=False))
        upstream.release_head()  # the body is still held upstream
        with pytest.raises(FillFailed) as info:
            await waiting
        assert info.value.outcome is FillOutcome.UNCACHEABLE and info.value.retryable
        follower.release()
        head = await leader.fill.head(leader=True)
        assert not head.shareable
        upstream.release_all()
        assert await fetch_through(leader) == BODY

    async def test_join_passes_until_memo_expires_when_key_was_uncacheable(
        self, coalescer: Coalescer, clock: FakeClock
    ) -> None:
        upstream = FakeUpstream(BODY)
        assert await fetch_through(coalescer.join(KEY, Relay(upstream, shareable=False))) == BODY
        passed = coalescer.join(KEY, Relay(upstream))
        assert passed.passed and passed.fill is None and coalescer.in_flight == 0
        clock.advance(9.9)
        assert coalescer.join(KEY, Relay(upstream)).passed
        clock.advance(0.2)
        again = coalescer.join(KEY, Relay(upstream))
        assert again.leader and not again.passed
        assert await fetch_through(again) == BODY and upstream.calls == 2

    async def test_join_coalesces_again_when_pass_is_forgotten(self, coalescer: Coalescer) -> None:
        upstream = FakeUpstream(BODY)
        await fetch_through(coalescer.join(KEY, Relay(upstream, shareable=False)))
        coalescer.forget_pass(KEY)
        joined = coalescer.join(KEY, Relay(upstream))
        assert joined.leader and await fetch_through(joined) == BODY


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
class TestSpill:
    async def test_readers_get_exact_bytes_when_body_spills_past_memory_spool_bytes(
        self, tmp_path: Path
    ) -> None:
        co = Coalescer(spool_dir=tmp_path, memory_spool_bytes=1000, head_timeout_s=10, idle_timeout_s=10)
        try:
            body = os.urandom(200_000)
            upstream = FakeUpstream(body, chunk_size=7000, gated=True)
            relay = Relay(upstream)
            first, second = co.join(KEY, relay), co.join(KEY, relay)
            assert first.fill is not None
            upstream.release_chunks(3)
            await relay.wait_received(21_000)
            assert len(open_files_under(tmp_path)) == 1  # spilled, to an unlinked file
            assert await read_body(first.fill, 900, 15_000) == body[900:15_000]
            upstream.release_all()
            assert await fetch_through(first) == body
            assert len(open_files_under(tmp_path)) == 1  # the second joiner still holds it
            assert await fetch_through(second) == body
            await producer_ended(KEY)
            assert open_files_under(tmp_path) == []  # the last reader let go
        finally:
            await co.close()

    async def test_spool_file_is_closed_when_nobody_ever_reads(self, tmp_path: Path) -> None:
        co = Coalescer(spool_dir=tmp_path, memory_spool_bytes=0, head_timeout_s=10, idle_timeout_s=10)
        try:
            upstream = FakeUpstream(BODY)
            relay = Relay(upstream)
            co.join(KEY, relay).release()  # the only client leaves before reading a byte
            await relay.wait_received(len(BODY))
            await producer_ended(KEY)
            assert relay.runs == 1 and open_files_under(tmp_path) == []
        finally:
            await co.close()


class TestClose:
    async def test_close_wakes_readers_with_abandoned_when_fills_are_running(self, tmp_path: Path) -> None:
        co = Coalescer(spool_dir=tmp_path, head_timeout_s=10, idle_timeout_s=10)
        upstream = FakeUpstream(BODY, gated=True)
        relay = Relay(upstream)
        leader, follower = co.join(KEY, relay), co.join(KEY, relay)
        assert leader.fill is not None and follower.fill is not None
        upstream.release_chunks(1)
        await relay.wait_received(4096)
        other = co.join(b"other", Relay(FakeUpstream(gated=True)))  # still waiting for its head
        assert other.fill is not None
        head_waiter = asyncio.create_task(other.fill.head(leader=True))
        body = follower.fill.body()
        assert await anext(body) == BODY[:4096]
        next_chunk = asyncio.create_task(anext(body))
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
