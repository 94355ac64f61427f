"""Where a fetch's 103 (Early Hints) responses go: a sink carried by the request's context.

RFC 8297: an origin may send `103 Early Hints` (typically `Link: <...>; rel=preload`)
before its final response, so the client can start fetching subresources while the origin
still works. The edge asks for them by running a request's fetches inside
`early_hints_to(sink)`; origin/client.py calls `deliver(fields)` for each 103 it reads. As
with origin/deadline.py, asyncio copies the context into tasks started from the request,
so a fill the request leads reports its hints to that request's sink. Without a sink (a
peer's request, a background refresh) hints are read and dropped, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["HintSink", "deliver", "early_hints_to", "wants_hints"]

Headers = tuple[tuple[str, str], ...]
HintSink = Callable[[Headers], None]  # must not block, never raises to the caller

_SINK: ContextVar[HintSink | None] = ContextVar("edgecache_early_hints", default=None)


@contextmanager
def early_hints_to(sink: HintSink | None) -> Iterator[None]:
    """Runs the block (and the tasks it starts) with 103 responses going to `sink`."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


def wants_hints() -> bool:
    """Whether the current request has a sink for 103 responses."""
    return _SINK.get() is not None


def deliver(fields: Headers) -> None:
    """Hands one 103's fields to the current request's sink, if it has one."""
    sink = _SINK.get()
    if sink is not None:
        sink(fields)
