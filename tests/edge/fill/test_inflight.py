"""Unit tests for edge.fill.inflight through a Coalescer: read-while-write, failures, timeouts.

Concurrency is ordered by the FakeUpstream's gates and by awaiting readers, never by sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.fill.coalesce import Coalescer, Fill, FillFailed, FillHead, FillOutcome
from origin.errors import BodyError, ConnectError
from tests.fakes import FakeProducer, FakeUpstream, read_fill, serve_join, start

KEY = b"k" * 16
BODY = bytes(range(256)) * 64  # 16 KiB: four 4 KiB chunks from FakeUpstream


@pytest.fixture
async def coalescer(tmp_path: Path) -> AsyncIterator[Coalescer]:
    co = Coalescer(spool_dir=tmp_path, head_timeout_s=10.0, idle_timeout_s=10.0)
    try:
        yield co
    finally:
        await co.close()


class TestReadWhileWrite:
    async def test_follower_gets_first_chunk_when_producer_has_not_finished(
        self, coalescer: Coalescer
    ) -> None:
        upstream = FakeUpstream(BODY, gated=True)
        unused = FakeProducer(upstream)
        leader = coalescer.join(KEY, FakeProducer(upstream))
        follower = coalescer.join(KEY, unused)  # a follower's producer is never started
        assert follower.fill is not None
        upstream.release_chunks(1)
        await follower.fill.head(leader=False)
        body = follower.fill.body()
        assert await anext(body) == BODY[:4096]
        assert follower.fill.outcome is None  # chunks 2..4 are still held upstream
        upstream.release_all()
        rest = b"".join([chunk async for chunk in body])
        assert rest == BODY[4096:]
        assert await serve_join(leader) == BODY
        assert unused.runs == 0 and upstream.calls == 1
        follower.release()

    async def test_late_joiner_reads_from_byte_zero_when_half_the_body_has_arrived(
        self, coalescer: Coalescer
    ) -> None:
        upstream = FakeUpstream(BODY, gated=True)
        relay = FakeProducer(upstream)
        leader = coalescer.join(KEY, relay)
        upstream.release_chunks(2)
        await relay.wait_received(len(BODY) // 2)
        late = coalescer.join(KEY, relay)
        assert not late.leader and late.fill is leader.fill and late.fill is not None
        await late.fill.head(leader=False)
        half = len(BODY) // 2
        assert await read_fill(late.fill, 0, half) == BODY[:half]  # no wait for the rest
        rest = await start(read_fill(late.fill, half))
        upstream.release_all()
        assert await rest == BODY[half:]
        assert await serve_join(leader) == BODY and upstream.calls == 1
        late.release()

    async def test_body_range_yields_exact_bytes_when_fill_has_not_finished(
        self, coalescer: Coalescer
    ) -> None:
        upstream = FakeUpstream(BODY, gated=True)
        joined = coalescer.join(KEY, FakeProducer(upstream))
        assert joined.fill is not None
        upstream.release_chunks(2)  # bytes [0, 8192) only
        assert await read_fill(joined.fill, 1000, 7000) == BODY[1000:7000]
        assert await read_fill(joined.fill, 4096, 8192) == BODY[4096:8192]
        assert joined.fill.outcome is None
        upstream.release_all()
        assert await read_fill(joined.fill, 15000) == BODY[15000:]
        assert await read_fill(joined.fill, 16000, 99999) == BODY[16000:]  # clamped like a slice
        joined.release()


class TestFailure:
    async def test_every_joiner_gets_cause_when_producer_fails_before_head(
        self, coalescer: Coalescer
    ) -> None:
        error = ConnectError("refused", upstream="o1")
        upstream = FakeUpstream(BODY, gated=True, error=error)
        joins = [coalescer.join(KEY, FakeProducer(upstream)) for _ in range(3)]
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
        retry = coalescer.join(KEY, FakeProducer(upstream))
        assert retry.leader and await serve_join(retry) == BODY and upstream.calls == 2

    async def test_unfinished_readers_get_fill_failed_when_producer_fails_mid_body(
        self, coalescer: Coalescer
    ) -> None:
        upstream = FakeUpstream(BODY, gated=True, fail_at=6000)
        leader = coalescer.join(KEY, FakeProducer(upstream))
        follower = coalescer.join(KEY, FakeProducer(upstream))
        assert leader.fill is not None and follower.fill is not None
        upstream.release_chunks(1)
        await leader.fill.head(leader=True)
        upstream.release_all()
        received = bytearray()
        with pytest.raises(FillFailed) as info:
            async for chunk in leader.fill.body():
                received += chunk
        assert (
            bytes(received) == BODY[:6000]
        )  # everything spooled, then an error: never a clean end
        assert info.value.outcome is FillOutcome.UPSTREAM_ERROR
        assert isinstance(info.value.__cause__, BodyError) and not info.value.retryable
        assert await read_fill(follower.fill, 0, 6000) == BODY[:6000]  # its range was complete
        with pytest.raises(FillFailed):
            await read_fill(follower.fill, 5000, 7000)
        with pytest.raises(FillFailed):
            await follower.fill.head(leader=False)  # a reader that has not started: clean error
        leader.release()
        follower.release()

    async def test_fill_is_abandoned_when_producer_returns_without_finish(
        self, coalescer: Coalescer
    ) -> None:
        async def quitter(fill: Fill) -> None:
            fill.set_head(FillHead(200, "OK", (), True, None, None))
            await fill.append(b"partial")

        with coalescer.join(KEY, quitter) as joined:
            assert joined.fill is not None
            with pytest.raises(FillFailed) as info:
                await read_fill(joined.fill)
            assert info.value.outcome is FillOutcome.ABANDONED

    async def test_fill_fails_when_body_is_shorter_than_head_length(
        self, coalescer: Coalescer
    ) -> None:
        upstream = FakeUpstream(BODY, headers=(("content-length", str(len(BODY) + 1)),))
        with coalescer.join(KEY, FakeProducer(upstream)) as joined:
            assert joined.fill is not None
            with pytest.raises(FillFailed) as info:
                await read_fill(joined.fill)
            assert isinstance(info.value.__cause__, BodyError)


class TestTimeouts:
    async def test_head_raises_wait_timeout_when_head_is_late(self, tmp_path: Path) -> None:
        co = Coalescer(spool_dir=tmp_path, head_timeout_s=0.05, idle_timeout_s=10.0)
        try:
            upstream = FakeUpstream(BODY, gated=True)
            joined = co.join(KEY, FakeProducer(upstream))
            assert joined.fill is not None
            with pytest.raises(FillFailed) as info:
                await joined.fill.head(leader=True)
            assert info.value.outcome is FillOutcome.WAIT_TIMEOUT and not info.value.retryable
            assert joined.fill.outcome is None and co.in_flight == 1  # the fill itself goes on
            upstream.release_all()
            assert await serve_join(joined) == BODY
        finally:
            await co.close()

    async def test_body_raises_fill_timeout_when_no_bytes_arrive_within_idle_timeout(
        self, tmp_path: Path
    ) -> None:
        co = Coalescer(spool_dir=tmp_path, head_timeout_s=10.0, idle_timeout_s=0.05)
        try:
            upstream = FakeUpstream(BODY, gated=True)
            relay = FakeProducer(upstream)
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
