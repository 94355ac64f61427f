"""A fill nothing stores stops with its last joiner; a stored one goes on (issue 12).

The producers here publish a head, say whether the body is kept, and then wait for the
test's `more` event between chunks, so every step is ordered by events, never by sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge.fill.coalesce import Coalescer, FillOutcome
from edge.fill.inflight import Fill, FillHead

pytestmark = pytest.mark.timeout(10)

KEY = b"u" * 16


@dataclass
class Streaming:
    """A producer that streams b"x" chunks, one per `more`; `kept` False: nothing stores it."""

    kept: bool
    more: asyncio.Event = field(default_factory=asyncio.Event)
    headed: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)  # ended before its body's end
    chunks: int = 3

    async def __call__(self, fill: Fill[None]) -> None:
        fill.set_head(FillHead(200, "OK", (), shareable=True, length=None, extra=None))
        self.headed.set()
        if not self.kept:
            fill.stop_when_unwatched()
        try:
            for _ in range(self.chunks):
                await fill.append(b"x")
                await self.more.wait()
                self.more.clear()
            fill.finish()
        finally:
            if fill.outcome is not FillOutcome.DONE:
                self.stopped.set()  # cancelled, or told by its fill that it was abandoned


@pytest.fixture
async def coalescer(tmp_path: Path) -> AsyncIterator[Coalescer]:
    co = Coalescer(spool_dir=tmp_path, head_timeout_s=5.0, idle_timeout_s=5.0)
    try:
        yield co
    finally:
        await co.close()


class TestUnwatched:
    async def test_producer_is_stopped_when_last_joiner_of_unkept_fill_lets_go(
        self, coalescer: Coalescer
    ) -> None:
        producer = Streaming(kept=False)
        leader = coalescer.join(KEY, producer)
        follower = coalescer.join(KEY, producer)
        assert leader.fill is not None and follower.fill is leader.fill
        await leader.fill.head(leader=True)
        leader.release()
        assert leader.fill.outcome is None  # one joiner still holds it
        follower.release()
        assert leader.fill.outcome is FillOutcome.ABANDONED
        await asyncio.wait_for(producer.stopped.wait(), 5)
        assert coalescer.stopped_unwatched == 1
        with coalescer.join(KEY, Streaming(kept=False)) as again:
            assert again.leader and again.fill is not leader.fill  # a new fill, not the stopped one

    async def test_producer_stops_at_once_when_nobody_holds_fill_as_it_turns_out_unkept(
        self, coalescer: Coalescer
    ) -> None:
        producer = Streaming(kept=False)
        joined = coalescer.join(KEY, producer)
        fill = joined.fill
        joined.release()  # e.g. a background revalidation: nobody reads it
        assert await coalescer.drain(5) == 0  # `more` is never set: only a stop ends it
        assert producer.stopped.is_set() and fill is not None and fill.outcome is FillOutcome.ABANDONED
        assert coalescer.stopped_unwatched == 1

    async def test_kept_fill_runs_to_its_end_when_every_joiner_lets_go(self, coalescer: Coalescer) -> None:
        producer = Streaming(kept=True, chunks=1)
        joined = coalescer.join(KEY, producer)
        assert joined.fill is not None
        fill = joined.fill
        await asyncio.wait_for(producer.headed.wait(), 5)
        joined.release()
        assert fill.outcome is None
        producer.more.set()
        await asyncio.wait_for(coalescer.drain(5), 6)
        assert fill.outcome is FillOutcome.DONE and not producer.stopped.is_set()
        assert coalescer.stopped_unwatched == 0
