"""When a client connection's current phase runs out of time: the listener's timeout rules, pure.

A connection is in one phase at a time (`Phase`): idle (no request byte yet), receiving a
head, receiving a body, or busy (a request dispatched and being answered). A write stall
(the client accepts no bytes) can overlap any phase. `verdict()` takes the phase's times
and `now` and says which timeout has expired, if any, or when to look again; the listener
keeps ONE timer per connection and calls it when the timer fires or when a slow event
(a head or body arriving in pieces) gives a chance to check early.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edge.config.server import ServerConfig

__all__ = ["Phase", "TimeoutReason", "Times", "Verdict", "verdict"]


class Phase(enum.IntEnum):
    """Where a connection is in its request cycle."""

    IDLE = 0  # no byte of a request yet (a new connection, or kept alive between requests)
    HEAD = 1  # a request head is arriving
    BODY = 2  # a request body is arriving
    BUSY = 3  # a request is being answered


class TimeoutReason(enum.Enum):
    """Why the listener closed a connection on a timer."""

    IDLE = "idle"  # server.idle_timeout_s
    HEAD = "head"  # server.head_timeout_s
    BODY_IDLE = "body_idle"  # server.body_timeout_s
    BODY_RATE = "body_rate"  # server.body_min_rate
    SEND = "send"  # server.send_timeout_s
    REQUEST = "request"  # server.request_timeout_s


@dataclass(slots=True)
class Times:
    """One connection's clock marks (time.monotonic seconds); mutated by the listener only."""

    body_start: float = 0.0  # first body byte
    body_last: float = 0.0  # latest body byte
    body_bytes: int = 0  # body bytes received so far
    stall_since: float | None = None  # the client stopped accepting bytes at; None = it reads
    bounded: bool = True  # BUSY: the answer is not streamed, so request_timeout_s applies


@dataclass(frozen=True, slots=True)
class Verdict:
    """An expired timeout, or the earliest time one can expire (None: no phase timer runs)."""

    expired: TimeoutReason | None
    at: float | None


def verdict(cfg: ServerConfig, phase: Phase, mark: float, t: Times, now: float) -> Verdict:
    """The earliest deadline of the phase (begun at `mark`) and of a write stall: expired, or when.

    `mark` is when the phase began (for BODY: when its head began; unused).
    """
    best_at = float("inf")
    best: TimeoutReason | None = None
    if t.stall_since is not None:
        best_at, best = t.stall_since + cfg.send_timeout_s, TimeoutReason.SEND
    candidates: tuple[tuple[float, TimeoutReason], ...]
    if phase is Phase.IDLE:
        candidates = ((mark + cfg.idle_timeout_s, TimeoutReason.IDLE),)
    elif phase is Phase.HEAD:
        candidates = ((mark + cfg.head_timeout_s, TimeoutReason.HEAD),)
    elif phase is Phase.BODY:
        candidates = ((t.body_last + cfg.body_timeout_s, TimeoutReason.BODY_IDLE),)
        if cfg.body_min_rate > 0:
            # every byte buys 1/rate seconds on top of the first body_timeout_s
            rate_at = t.body_start + cfg.body_timeout_s + t.body_bytes / cfg.body_min_rate
            candidates += ((rate_at, TimeoutReason.BODY_RATE),)
    elif t.bounded:
        candidates = ((mark + cfg.request_timeout_s, TimeoutReason.REQUEST),)
    else:
        candidates = ()
    for at, reason in candidates:
        if at < best_at:
            best_at, best = at, reason
    if best is None:
        return Verdict(None, None)
    if best_at <= now:
        return Verdict(best, best_at)
    return Verdict(None, best_at)
