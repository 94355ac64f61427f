"""Fill: one upstream fetch in flight, its head and its spooled body, read while written.

A Fill is the busy object of a coalesced fetch (edge.fill.coalesce runs it). The producer (edge
code) publishes into it; every joiner reads the head with `head()` and the body with
`body()`, from any offset, as bytes arrive. Its states, after Varnish's busy objects:

    waiting for head ──set_head──▶ streaming ──finish──▶ DONE
            └──────────fail / producer raised / cancelled──┴──▶ failed (FillFailed.outcome)

    FillFailed(outcome, cause)   every "no" a reader can get; `.retryable` says whether the
                                 caller may fetch again (UNCACHEABLE, retryable upstream errors)

Every wait is bounded: head() by head_timeout_s (WAIT_TIMEOUT; the fill itself goes on),
each wait for more body bytes by idle_timeout_s (FILL_TIMEOUT).

A fill whose body is kept for nobody but its readers (not stored: no-store, private, too
big, pass) is told so by its producer (`stop_when_unwatched`); once its last joiner has
released it, the coalescer is told (`on_unwatched`) and stops the producer, so the origin
download ends with the last client (issue 12). A stored fill always runs to its end.

A Fill is generic in what its producer attaches to the head (`FillHead.extra`, typed `T`):
the edge's producer attaches its FillInfo, so its readers get a typed value, never `object`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from edge.fill.spool import READ_CHUNK_BYTES, Spool
from origin.errors import BodyError, UpstreamError

__all__ = ["Fill", "FillFailed", "FillHead", "FillOutcome", "T"]

T = TypeVar("T")  # what the producer attaches to the head


class FillOutcome(Enum):
    """How a fill (or one reader's wait on it) ended."""

    DONE = "done"  # the whole body is spooled
    UPSTREAM_ERROR = "upstream_error"  # the fetch failed; the cause is an UpstreamError
    UNCACHEABLE = "uncacheable"  # not shareable: a follower must fetch for itself
    WAIT_TIMEOUT = "wait_timeout"  # no head within head_timeout_s (the fill itself goes on)
    FILL_TIMEOUT = "fill_timeout"  # no body bytes within idle_timeout_s
    ABANDONED = "abandoned"  # the producer stopped without finishing: cancelled, shut down, bug


@dataclass(frozen=True, slots=True)
class FillHead(Generic[T]):
    """The response head a producer publishes to the fill's readers."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    shareable: bool  # False: only the leader may read this body; followers fetch for themselves
    length: int | None  # the body's byte count (Content-Length) if known; finish() checks it
    extra: T  # the producer's own facts about the response (the edge's FillInfo)


class FillFailed(Exception):
    """A reader's wait on a fill ended without the bytes it asked for."""

    def __init__(self, outcome: FillOutcome, cause: BaseException | None = None) -> None:
        super().__init__(f"fill {outcome.value}" + (f": {cause!r}" if cause is not None else ""))
        self.outcome = outcome
        self.__cause__ = cause

    @property
    def retryable(self) -> bool:
        """Whether fetching again may help: a fetch of its own, or a retryable upstream error."""
        if self.outcome is FillOutcome.UNCACHEABLE:
            return True
        if self.outcome is FillOutcome.UPSTREAM_ERROR:
            return bool(getattr(self.__cause__, "retryable", False))
        return False


def _outcome_of(exc: BaseException | None) -> FillOutcome:
    if isinstance(exc, FillFailed):
        return exc.outcome
    if isinstance(exc, UpstreamError):
        return FillOutcome.UPSTREAM_ERROR
    return FillOutcome.ABANDONED


class Fill(Generic[T]):
    """One upstream fetch in flight: its head, its spooled body, and how it ended."""

    __slots__ = (
        "_cause",
        "_head",
        "_head_ready",
        "_head_timeout_s",
        "_holds",
        "_idle_timeout_s",
        "_on_uncacheable",
        "_on_unwatched",
        "_outcome",
        "_progress",
        "_readers",
        "_retired",
        "_spool",
        "_unkept",
        "key",
    )

    def __init__(
        self,
        key: bytes,
        *,
        spool: Spool,
        head_timeout_s: float,
        idle_timeout_s: float,
        on_uncacheable: Callable[[Fill[T]], None],
        on_unwatched: Callable[[Fill[T]], None] | None = None,
    ) -> None:
        self.key = key
        self._spool = spool
        self._head_timeout_s = head_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._on_uncacheable = on_uncacheable
        self._on_unwatched = on_unwatched  # stops the producer of an unkept fill nobody reads
        self._unkept = False  # set by stop_when_unwatched(): the body is not stored anywhere
        self._head: FillHead[T] | None = None
        self._outcome: FillOutcome | None = None
        self._cause: BaseException | None = None
        # Set once, when the head is known or the fill has ended: head() waiters wait on it.
        self._head_ready = asyncio.Event()
        # Guards "bytes past what a body reader has seen, or the end": replaced by a fresh Event
        # (and the old one set) on every append and at the end, so a reader that captured the
        # current one before waiting cannot miss a wake-up and nobody has to clear a shared flag.
        self._progress = asyncio.Event()
        self._holds = 0  # joiners that have not released their JoinResult
        self._readers = 0  # body() iterators running
        self._retired = False  # the producer task has ended; no new joiner can get this fill

    @property
    def outcome(self) -> FillOutcome | None:
        """DONE or the failure outcome once the fill has ended; None while it runs."""
        return self._outcome

    @property
    def status(self) -> int | None:
        """The published head's status (even one head() refuses a follower); None before it."""
        return None if self._head is None else self._head.status

    @property
    def holders(self) -> int:
        """Joiners that have not released their JoinResult."""
        return self._holds

    @property
    def bytes_received(self) -> int:
        """Body bytes spooled so far."""
        return self._spool.size

    async def head(self, *, leader: bool) -> FillHead[T]:
        """Waits for the head (at most head_timeout_s); followers are refused unshareable ones."""
        if not self._head_ready.is_set():
            try:
                async with asyncio.timeout(self._head_timeout_s):
                    await self._head_ready.wait()
            except TimeoutError:
                raise FillFailed(FillOutcome.WAIT_TIMEOUT) from None
        head = self._head
        if head is not None and not head.shareable and not leader:
            raise FillFailed(FillOutcome.UNCACHEABLE)
        if self._outcome is not None and self._outcome is not FillOutcome.DONE:
            # A reader that has not started gets a clean error rather than a head whose body
            # is known to be cut short.
            raise self._failure()
        assert head is not None  # head_ready is set and the fill did not fail
        return head

    async def body(self, offset: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Streams bytes [offset, end) as they arrive; raises FillFailed rather than stop short.

        Call it after head(); a follower that head() refused must not read. An `end` past the
        finished body is clamped, like a slice. Each wait for more bytes lasts at most
        idle_timeout_s (FILL_TIMEOUT).
        """
        if offset < 0 or (end is not None and end < offset):
            raise ValueError(f"bad body range [{offset}, {end})")
        self._readers += 1
        try:
            pos = offset
            while end is None or pos < end:
                if pos < self._spool.size:
                    chunk = await self._read(pos, READ_CHUNK_BYTES if end is None else end - pos)
                    pos += len(chunk)
                    yield chunk
                    continue
                # Bytes already spooled are served first: a reader whose range was complete
                # before a failure still gets all of it; one that needs more gets FillFailed.
                if self._outcome is FillOutcome.DONE:
                    return
                if self._outcome is not None:
                    raise self._failure()
                progress = self._progress
                try:
                    async with asyncio.timeout(self._idle_timeout_s):
                        await progress.wait()
                except TimeoutError:
                    raise FillFailed(FillOutcome.FILL_TIMEOUT) from None
        finally:
            self._readers -= 1
            self._maybe_release()

    async def _read(self, pos: int, limit: int) -> bytes:
        if self._spool.released:
            raise FillFailed(FillOutcome.ABANDONED)  # read after every holder let go: a caller bug
        if pos < self._spool.memory_size:
            return await self._spool.read(pos, limit)  # in memory: never suspends
        try:
            async with asyncio.timeout(self._idle_timeout_s):  # an executor call: bounded too
                return await self._spool.read(pos, limit)
        except TimeoutError:
            raise FillFailed(FillOutcome.FILL_TIMEOUT) from None

    # -- producer side: called only from the producer coroutine --------------------------------

    def set_head(self, head: FillHead[T]) -> None:
        """Publishes the head; an unshareable one releases the followers at once."""
        self._check_open()
        if self._head is not None:
            raise RuntimeError("set_head() called twice")
        self._head = head
        self._head_ready.set()
        if not head.shareable:
            self._on_uncacheable(self)

    def stop_when_unwatched(self) -> None:
        """Says the body is kept for nobody but the readers: once no joiner holds the fill,
        `on_unwatched` stops the producer (at once when none holds it now)."""
        self._unkept = True
        self._check_unwatched()

    async def append(self, chunk: bytes) -> None:
        """Spools one body chunk and wakes the readers waiting for it."""
        self._check_open()
        if self._head is None:
            raise RuntimeError("append() before set_head()")
        await self._spool.append(chunk)
        self._wake()

    def finish(self) -> None:
        """Marks the body complete; a length that disagrees with the head fails the fill instead."""
        if self._outcome is not None:
            return  # already failed from outside (shutdown): that outcome stands
        if self._head is None:
            raise RuntimeError("finish() before set_head()")
        length, size = self._head.length, self._spool.size
        if length is not None and length != size:
            # A body cut short must never reach a reader as if complete.
            self.fail(BodyError(f"body has {size} bytes, its head promised {length}"))
            return
        self._end(FillOutcome.DONE, None)

    def fail(self, exc: BaseException | None, *, outcome: FillOutcome | None = None) -> None:
        """Ends the fill with an error; every waiting reader gets FillFailed. No-op once ended."""
        if self._outcome is not None:
            return
        cause = exc.__cause__ if isinstance(exc, FillFailed) else exc
        if isinstance(cause, asyncio.CancelledError):
            cause = None  # a cancelled producer is ABANDONED; the CancelledError says nothing more
        self._end(outcome or _outcome_of(exc), cause)

    # -- internals -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._outcome is FillOutcome.DONE:
            raise RuntimeError("fill already finished")
        if self._outcome is not None:
            raise self._failure()  # e.g. ABANDONED by close(): the producer should stop

    def _failure(self) -> FillFailed:
        # A fresh exception per raise: one instance raised in many tasks would pile up tracebacks.
        assert self._outcome is not None
        return FillFailed(self._outcome, self._cause)

    def _end(self, outcome: FillOutcome, cause: BaseException | None) -> None:
        self._outcome = outcome
        self._cause = cause
        self._head_ready.set()
        self._wake()

    def _wake(self) -> None:
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

    # -- coalescer side ---------------------------------------------------------------------------

    def hold(self) -> None:
        """Counts one more joiner that may still read (JoinResult does this)."""
        self._holds += 1

    def let_go(self) -> None:
        """Counts one joiner done with the fill (JoinResult.release does this)."""
        self._holds -= 1
        self._check_unwatched()
        self._maybe_release()

    def retire(self) -> None:
        """Marks the producer task ended: no new joiner can get this fill."""
        self._retired = True
        self._maybe_release()

    def _check_unwatched(self) -> None:
        # Joiners, not body() iterators, are counted: every reader holds a JoinResult until
        # its reading has ended, while an abandoned iterator ends only when it is collected.
        if self._unkept and self._holds == 0 and self._outcome is None and self._on_unwatched is not None:
            self._unkept = False  # once
            self._on_unwatched(self)

    def _maybe_release(self) -> None:
        # Race: a small body can be fetched and finished before the leader's first body() call.
        # Releasing at "ended and no reader" would then drop bytes the leader is about to read,
        # so every joiner holds the spool until it releases its JoinResult.
        if self._retired and self._holds == 0 and self._readers == 0 and not self._spool.released:
            self._spool.release()
