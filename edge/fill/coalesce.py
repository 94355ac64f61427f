"""Coalescer: one upstream fetch per key at a time, streamed to every client while it arrives.

The first request for a key starts a Fill (edge.fill.inflight): its producer (edge code) runs as a
task owned by the Coalescer, never by a client request, so a client that disconnects cannot
cancel a fill others wait on. Every joiner, the first included, reads the body from the
fill's spool as bytes arrive (read-while-write), from byte 0 or any offset.

The producer contract (after Pingora's miss handler, "dropped = failed"): `set_head()`, then
`await append(chunk)` per chunk, then `finish()`. If it raises, the fill fails with that
cause; if it returns without finishing, the fill is ABANDONED. The fill leaves the
Coalescer's map when the producer task ends, so a producer that commits its store before
`finish()` lets later requests find the stored object instead of starting a second fetch.
An unshareable head (`shareable=False`) memoises the key as pass for pass_memo_s: later
joins are told to fetch on their own rather than queue behind a body only the leader reads.

`join` is generic in what the producer attaches to its head (FillHead.extra): a joiner gets
the type its own producer publishes. All joins of one Coalescer use one producer type (the
edge's handler is its only caller), so a follower's fill carries that type too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Generic

from edge.fill.inflight import Fill, FillFailed, FillHead, FillOutcome, T
from edge.fill.spool import Spool

__all__ = ["Coalescer", "Fill", "FillFailed", "FillHead", "FillOutcome", "JoinResult", "Producer"]

MiB = 1024 * 1024
log = logging.getLogger(__name__)


class JoinResult(Generic[T]):
    """One caller's share of a join: the fill (or None when passed) and whether it leads.

    Release it (or use `with`) when done with the fill; the spool is freed once the fill has
    ended and every joiner has released and every body reader has finished. A result that is
    never released only delays that until the Fill is garbage collected.
    """

    __slots__ = ("_held", "fill", "leader", "passed")

    def __init__(self, fill: Fill[T] | None, leader: bool, passed: bool) -> None:
        self.fill = fill
        self.leader = leader  # the first joiner: may read an unshareable body
        self.passed = passed  # key memoised as not shareable: fetch on your own, no coalescing
        self._held = fill is not None
        if fill is not None:
            fill.hold()

    def release(self) -> None:
        """Lets go of the fill's spool; idempotent."""
        if self._held and self.fill is not None:
            self._held = False
            self.fill.let_go()

    def __enter__(self) -> JoinResult[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


Producer = Callable[[Fill[T]], Awaitable[None]]


class Coalescer:
    """Runs at most one fill per key and hands every joiner the running one."""

    def __init__(
        self,
        *,
        spool_dir: Path | None,
        memory_spool_bytes: int = 8 * MiB,
        head_timeout_s: float,
        idle_timeout_s: float,
        pass_memo_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        close_timeout_s: float = 5.0,
        executor: Executor | None = None,
    ) -> None:
        self._spool_dir = spool_dir  # spill directory; None: tempfile's default
        self._memory_spool_bytes = memory_spool_bytes  # per fill; the rest spills to a file
        self._head_timeout_s = head_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._pass_memo_s = pass_memo_s  # how long an unshareable key skips coalescing
        self._clock = clock  # monotonic seconds, read only for the pass memo
        self._close_timeout_s = close_timeout_s  # how long close() waits for cancelled producers
        self._executor = executor  # spool file I/O; None: the loop's default executor
        self._fills: dict[bytes, Fill[Any]] = {}  # key -> the fill new joiners get
        self._tasks: dict[asyncio.Task[None], Fill[Any]] = {}  # strong refs to running producers
        # key -> memo deadline. One memo length and a monotonic clock make insertion order
        # deadline order, so expired entries are always at the front.
        self._passes: OrderedDict[bytes, float] = OrderedDict()
        self._closed = False
        self.stopped_unwatched = 0  # unkept fills stopped because their last joiner left
        # coalescing done without a fill (edge.request.relay: a non-owner's relays to the owner),
        # counted in `in_flight` and `waiting` so /status shows every shared upstream fetch
        self.relays = 0
        self.relay_waiters = 0

    @property
    def in_flight(self) -> int:
        """Fills (and relays) new joiners would share."""
        return len(self._fills) + self.relays

    @property
    def waiting(self) -> int:
        """Requests holding a fill (or a relay) new joiners would share (for /status and tests)."""
        return sum(fill.holders for fill in self._fills.values()) + self.relay_waiters

    def join(self, key: bytes, producer: Producer[T], *, ignore_pass: bool = False) -> JoinResult[T]:
        """Returns the running fill for key, a pass, or a new fill whose producer starts now.

        `ignore_pass` skips the not-shareable memo: a caller holding a stale copy it may
        serve on error fetches coalesced, so a memoised error never hides that copy.
        """
        if self._closed:
            raise RuntimeError("join() on a closed Coalescer")
        fill = self._fills.get(key)
        if fill is not None and fill.outcome in (None, FillOutcome.DONE):
            return JoinResult(fill, leader=False, passed=False)
        if not ignore_pass and self._is_passed(key):
            return JoinResult(None, leader=False, passed=True)
        fill = Fill[T](
            key,
            spool=Spool(
                memory_bytes=self._memory_spool_bytes,
                spool_dir=self._spool_dir,
                executor=self._executor,
            ),
            head_timeout_s=self._head_timeout_s,
            idle_timeout_s=self._idle_timeout_s,
            on_uncacheable=self._memo_pass,
            on_unwatched=self._stop_unwatched,
        )
        self._fills[key] = fill
        # The task is named for the key so logs, debuggers and tests can find it.
        task = asyncio.get_running_loop().create_task(self._drive(producer, fill), name=f"fill-{key.hex()}")
        self._tasks[task] = fill
        task.add_done_callback(partial(self._task_done, fill))
        return JoinResult(fill, leader=True, passed=False)

    def running(self, key: bytes) -> bool:
        """Whether a fill new joiners of `key` would share is running (edge.request.relay asks)."""
        fill = self._fills.get(key)
        return fill is not None and fill.outcome in (None, FillOutcome.DONE)

    def detach(self, fill: Fill[Any]) -> None:
        """Stops handing `fill` to new joiners (its readers go on); the next join starts anew.

        A fill that began before a matching purge carries the purged version: requests that
        arrive after the purge detach it and coalesce onto one new fill instead.
        """
        if self._fills.get(fill.key) is fill:
            del self._fills[fill.key]

    def forget_pass(self, key: bytes) -> None:
        """Drops the not-shareable memo for key, so the next join coalesces again."""
        self._passes.pop(key, None)

    async def drain(self, timeout_s: float) -> int:
        """Waits up to timeout_s for running fills to end on their own; returns how many are left.

        A graceful stop calls this before close(), so a fill whose body is complete gets to
        commit it to the store instead of being cancelled between its last byte and its fsync.
        """
        tasks = list(self._tasks)
        if not tasks:
            return 0
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        return len(pending)

    async def close(self) -> None:
        """Fails every fill as ABANDONED, cancels the producers, waits at most close_timeout_s."""
        self._closed = True
        for fill in self._tasks.values():
            fill.fail(None, outcome=FillOutcome.ABANDONED)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._close_timeout_s)
            if pending:
                log.warning("coalescer closed with %d producers ignoring cancellation", len(pending))
        self._fills.clear()

    def _is_passed(self, key: bytes) -> bool:
        if not self._passes:
            return False
        now = self._clock()
        while self._passes:
            first = next(iter(self._passes))
            if self._passes[first] > now:
                break
            del self._passes[first]
        return key in self._passes

    def _memo_pass(self, fill: Fill[Any]) -> None:
        # Called from set_head(shareable=False): later requests go straight upstream instead of
        # queueing behind a body only the leader may read.
        self._passes[fill.key] = self._clock() + self._pass_memo_s
        self._passes.move_to_end(fill.key)
        if self._fills.get(fill.key) is fill:
            del self._fills[fill.key]

    def _stop_unwatched(self, fill: Fill[Any]) -> None:
        # Called when the last joiner of a fill that nothing stores let go (issue 12): the
        # producer is cancelled, which closes its upstream response (the origin connection),
        # and the fill ends ABANDONED before a new joiner could get it.
        for task, owned in self._tasks.items():
            if owned is fill:
                fill.fail(None, outcome=FillOutcome.ABANDONED)
                self.detach(fill)
                task.cancel()
                self.stopped_unwatched += 1
                log.debug("fill %s: last client gone and nothing stores it; upstream stopped", fill.key.hex())
                return

    async def _drive(self, producer: Producer[T], fill: Fill[T]) -> None:
        # The bookkeeping runs inside the task, so once the task is done the fill has ended
        # and left the map (no window where a finished task's fill is still joinable).
        try:
            await producer(fill)
        except asyncio.CancelledError:
            fill.fail(None, outcome=FillOutcome.ABANDONED)
            raise
        except Exception as exc:  # the producer's failure is the fill's outcome, not a task error
            if fill.outcome is None:
                fill.fail(exc)
            elif not isinstance(exc, FillFailed):  # FillFailed: told to stop, e.g. by close()
                log.warning("producer for %s raised after its fill ended", fill.key.hex(), exc_info=exc)
        else:
            if fill.outcome is None:
                # "Dropped = failed": returning without finish() must not look like a whole body.
                fill.fail(None, outcome=FillOutcome.ABANDONED)
        finally:
            self._settle(fill)

    def _settle(self, fill: Fill[Any]) -> None:
        if self._fills.get(fill.key) is fill:
            del self._fills[fill.key]
        fill.retire()

    def _task_done(self, fill: Fill[Any], task: asyncio.Task[None]) -> None:
        del self._tasks[task]
        if task.cancelled():
            # Cancelled before its first step, _drive never ran: settle here (idempotent).
            fill.fail(None, outcome=FillOutcome.ABANDONED)
            self._settle(fill)
