"""The deadline a request brings for its response head, carried to every fetch made for it.

A node asked by a peer is told how long the peer will wait for the head (cluster/peer.py's
`X-Edge-Deadline`); it serves the request inside `head_deadline_at(...)`, and every fetch made
on its behalf, in tasks started from it too (asyncio copies the context into new tasks, the
coalescer's fill included), caps its wait for a head at that instant: the origin pool stops
trying (origin/pool.py) and a peer asked further up is given what is left, minus a margin.
So each hop gives up, and answers, before the hop behind it stops waiting for it.

Deadlines are `loop.time()` instants. A nested scope can only shorten the deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["head_deadline", "head_deadline_at"]

_DEADLINE: ContextVar[float | None] = ContextVar("edgecache_head_deadline", default=None)


def head_deadline() -> float | None:
    """The loop.time() by which the current request needs a response head, or None."""
    return _DEADLINE.get()


@contextmanager
def head_deadline_at(at: float) -> Iterator[None]:
    """Runs the block (and the tasks it starts) under a head deadline no later than `at`."""
    current = _DEADLINE.get()
    token = _DEADLINE.set(at if current is None else min(current, at))
    try:
        yield
    finally:
        _DEADLINE.reset(token)
