"""Admission to an origin pool: a bound on concurrent fetches, and a bounded queue beyond it.

An origin that slows down must not turn into unbounded tasks, sockets and buffers on the
node. Each pool lets at most `max_in_flight` fetches run at once; a fetch holds its slot from
before its first try until its response body ends (or is closed), retries included. Beyond
the bound, at most `max_queue` fetches wait, first come first served, each for at most
`queue_timeout_s`; a fetch that finds the queue full, or waits too long, fails with
PoolSaturated, which the edge answers with 503 and Retry-After. Nothing else is touched: hits
never ask the pool, so they are served at full speed while it is saturated.

`admit` decides (pure); FetchGate keeps the counts and the waiters (no clock of its own: the
wait is bounded by asyncio.timeout).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from enum import Enum

from origin.config import AdmissionConfig
from origin.errors import PoolSaturated

__all__ = ["Admission", "FetchGate", "admit"]


class Admission(Enum):
    """What a fetch that asks for a slot gets."""

    GO = "go"  # a slot is free and nobody waits before it
    QUEUE = "queue"  # every slot is taken; it waits in the queue
    QUEUE_FULL = "queue-full"  # every slot is taken and the queue is full: PoolSaturated now


def admit(in_flight: int, queued: int, config: AdmissionConfig) -> Admission:
    """Whether a new fetch runs, waits or is turned away, given the pool's current counts."""
    if in_flight < config.max_in_flight and queued == 0:
        return Admission.GO
    if queued < config.max_queue:
        return Admission.QUEUE
    return Admission.QUEUE_FULL


class FetchGate:
    """Slots for one pool's fetches: `acquire` before the first try, `release` once at the end."""

    __slots__ = ("_config", "_name", "_waiters", "in_flight", "queue_timeouts", "rejected", "retry_after_s")

    def __init__(self, config: AdmissionConfig, name: str) -> None:
        self._config = config
        self._name = name
        self._waiters: deque[asyncio.Future[None]] = deque()  # at most max_queue, oldest first
        self.in_flight = 0  # slots held
        self.rejected = 0  # fetches turned away because the queue was full
        self.queue_timeouts = 0  # fetches that waited queue_timeout_s without a slot
        # what clients are told: about one queue wait, at least a second
        self.retry_after_s = max(1, math.ceil(config.queue_timeout_s))

    @property
    def queued(self) -> int:
        """Fetches waiting for a slot now."""
        return len(self._waiters)

    async def acquire(self) -> None:
        """Takes a slot, waiting in the queue if need be; raises PoolSaturated instead."""
        match admit(self.in_flight, len(self._waiters), self._config):
            case Admission.GO:
                self.in_flight += 1
                return
            case Admission.QUEUE_FULL:
                self.rejected += 1
                raise self._saturated(
                    f"{self.in_flight} fetches in flight and {len(self._waiters)} waiting (the limits)"
                )
            case Admission.QUEUE:
                pass
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._config.queue_timeout_s):
                await waiter  # release() hands its slot over by setting the result
        except TimeoutError:
            self._give_back(waiter)
            self.queue_timeouts += 1
            raise self._saturated(
                f"no fetch slot within {self._config.queue_timeout_s}s ({self.in_flight} in flight)"
            ) from None
        except BaseException:  # cancelled while waiting
            self._give_back(waiter)
            raise

    def release(self) -> None:
        """Gives a slot back: to the oldest waiter, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; in_flight stays the same
                return
        self.in_flight -= 1

    def _give_back(self, waiter: asyncio.Future[None]) -> None:
        """A waiter leaves without its slot; one handed to it in the meantime passes on."""
        if waiter.done() and not waiter.cancelled():
            self.release()  # release() popped it already
            return
        waiter.cancel()
        if waiter in self._waiters:
            self._waiters.remove(waiter)

    def _saturated(self, why: str) -> PoolSaturated:
        return PoolSaturated(
            f"pool {self._name!r} is saturated: {why}; retry after {self.retry_after_s}s",
            upstream=self._name,
            retry_after_s=self.retry_after_s,
        )
