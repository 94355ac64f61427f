"""Admission to an origin pool: at most max_in_flight fetches from first try to body end,
a bounded first-come queue beyond it, PoolSaturated when it is full or the wait runs out.

Pools of FakeUpstreams (through `client_factory`): the servers are not what is tested here,
the slot accounting around them is. Ordering uses the loop itself (`settle`), never time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from origin.admission import Admission, FetchGate, admit
from origin.config import AdmissionConfig
from origin.errors import ConnectError, PoolSaturated
from origin.pool import OriginPool
from origin.upstream import UpstreamResponse
from tests.fakes import FakeUpstream
from tests.origin.servers import read_all
from tests.origin.test_pool import fake_pool, request, take

pytestmark = pytest.mark.timeout(10)


async def settle(condition: Callable[[], bool]) -> None:
    """Lets other tasks run until `condition` holds (a bounded number of loop turns)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def limited(fakes: list[FakeUpstream], *, in_flight: int, queue: int, wait_s: float = 30.0) -> OriginPool:
    admission = AdmissionConfig(max_in_flight=in_flight, max_queue=queue, queue_timeout_s=wait_s)
    return fake_pool(fakes, admission=admission)


class TestAdmit:
    @pytest.mark.parametrize(
        ("in_flight", "queued", "expected"),
        [
            (0, 0, Admission.GO),
            (1, 0, Admission.GO),
            (2, 0, Admission.QUEUE),
            (1, 1, Admission.QUEUE),  # a free slot is the first waiter's, not a newcomer's
            (2, 1, Admission.QUEUE),
            (2, 2, Admission.QUEUE_FULL),
        ],
    )
    def test_admit_decides_from_counts_when_limits_are_two_and_two(
        self, in_flight: int, queued: int, expected: Admission
    ) -> None:
        config = AdmissionConfig(max_in_flight=2, max_queue=2)
        assert admit(in_flight, queued, config) is expected

    def test_admit_turns_away_at_once_when_queue_is_zero(self) -> None:
        assert admit(1, 0, AdmissionConfig(max_in_flight=1, max_queue=0)) is Admission.QUEUE_FULL

    def test_config_rejects_limits_when_out_of_range(self) -> None:
        for bad in ({"max_in_flight": 0}, {"max_queue": -1}, {"queue_timeout_s": 0.0}):
            with pytest.raises(ValueError):
                AdmissionConfig(**bad)  # type: ignore[arg-type]


class TestPoolAdmission:
    async def test_fetch_beyond_queue_fails_at_once_when_slots_and_queue_are_taken(self) -> None:
        fake = FakeUpstream(b"body", name="a")
        pool = limited([fake], in_flight=2, queue=1)
        held = [await take(pool), await take(pool)]
        queued = asyncio.create_task(pool.fetch(request()))
        await settle(lambda: pool.gate.queued == 1)
        with pytest.raises(PoolSaturated) as info:
            await pool.fetch(request())
        assert not info.value.retryable and info.value.retry_after_s == 30
        assert (fake.calls, pool.status().in_flight, pool.status().queued) == (2, 2, 1)
        assert pool.status().saturated == 1
        queued.cancel()
        for response in held:
            response.close()

    async def test_queued_fetch_runs_when_a_body_ends(self) -> None:
        fake = FakeUpstream(b"body", name="a")
        pool = limited([fake], in_flight=1, queue=1)
        first = await take(pool)
        queued = asyncio.create_task(pool.fetch(request()))
        await settle(lambda: pool.gate.queued == 1)
        assert fake.calls == 1  # the slot is held until the body ends, not just the head
        assert await read_all(first) == b"body"
        second: UpstreamResponse = await asyncio.wait_for(queued, 5)
        assert (fake.calls, pool.gate.in_flight, pool.gate.queued) == (2, 1, 0)
        second.close()
        second.close()  # a second close releases nothing more
        assert pool.gate.in_flight == 0

    async def test_queued_fetch_fails_when_wait_runs_out(self) -> None:
        pool = limited([FakeUpstream(b"x")], in_flight=1, queue=4, wait_s=0.05)
        first = await take(pool)
        with pytest.raises(PoolSaturated, match="no fetch slot within 0.05s"):
            await asyncio.wait_for(pool.fetch(request()), 5)
        assert (pool.gate.queued, pool.gate.queue_timeouts, pool.gate.retry_after_s) == (0, 1, 1)
        first.close()
        assert pool.gate.in_flight == 0

    async def test_failed_fetch_gives_its_slot_back_when_every_try_fails(self) -> None:
        pool = limited([FakeUpstream(error=ConnectError("refused"))], in_flight=1, queue=0)
        for _ in range(3):  # would be PoolSaturated from the second on if the slot leaked
            with pytest.raises(ConnectError):
                await pool.fetch(request())
        assert pool.gate.in_flight == 0

    async def test_cancelled_waiter_leaves_queue_when_client_goes(self) -> None:
        pool = limited([FakeUpstream(b"x")], in_flight=1, queue=1)
        first = await take(pool)
        waiting = asyncio.create_task(pool.fetch(request()))
        await settle(lambda: pool.gate.queued == 1)
        waiting.cancel()
        await settle(waiting.done)
        assert pool.gate.queued == 0
        first.close()
        assert pool.gate.in_flight == 0

    async def test_many_fetches_never_exceed_the_bound_when_bodies_end_in_turn(self) -> None:
        fakes = [FakeUpstream(b"abc", name="a", gated=True)]
        pool = limited(fakes, in_flight=3, queue=20)
        tasks = [asyncio.create_task(pool.fetch(request())) for _ in range(20)]
        await settle(lambda: pool.gate.queued == 17)
        peak = pool.gate.in_flight
        fakes[0].release_all()
        bodies = [await read_all(await asyncio.wait_for(t, 5)) for t in tasks]
        assert (peak, bodies, pool.gate.in_flight) == (3, [b"abc"] * 20, 0)


class TestGate:
    async def test_slot_handed_to_a_cancelled_waiter_passes_on_when_it_leaves(self) -> None:
        gate = FetchGate(AdmissionConfig(max_in_flight=1, max_queue=2), "web")
        await gate.acquire()
        first = asyncio.create_task(gate.acquire())
        second = asyncio.create_task(gate.acquire())
        await settle(lambda: gate.queued == 2)
        gate.release()  # hands the slot to `first` ...
        first.cancel()  # ... which is cancelled before it could run
        await settle(second.done)
        assert second.result() is None and gate.in_flight == 1 and gate.queued == 0
        gate.release()
        assert gate.in_flight == 0

