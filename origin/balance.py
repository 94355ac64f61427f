"""Load balancing: which of a pool's eligible servers takes the next try, and in-flight counts.

The pool says which servers may be picked (available and not yet tried for this request)
and how many requests each has in flight; the Balancer answers with one index. Round robin
takes the next eligible server after the last one picked; least outstanding takes the
eligible server with the fewest requests in flight, breaking ties in round-robin order so
that an idle pool still spreads its load evenly. The Balancer is pure: no clock, no I/O.

Panic mode (`panic_pick`): when health checks have taken EVERY server of a pool out, the pool
does not black out; it tries its servers anyway, the least recently failed first (as nginx
treats "all down" as "try all" and Envoy balances over all hosts below its panic threshold).
One flaky stretch of the only origin server then costs the requests that failed, never the
ones the origin would have answered.

A request stays in flight on its server until its body has been read to the end, failed or
been closed: `InFlightBody` wraps the body to release the slot exactly once then, and cuts
the body off at the request's total deadline (a retry started late gets only what is left).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import assert_never

from origin.config import Balance
from origin.errors import BodyTimeout
from origin.upstream import UpstreamResponse

__all__ = ["Balancer", "InFlightBody", "panic_pick", "released_at_end"]


class Balancer:
    """Picks a server index by round robin or least outstanding requests."""

    __slots__ = ("_cursor", "_policy")

    def __init__(self, policy: Balance) -> None:
        self._policy = Balance(policy)  # ValueError on a name that is no Balance, here, not at a pick
        self._cursor = 0  # where the round-robin scan starts: one past the last pick

    @property
    def policy(self) -> Balance:
        """The configured balancing."""
        return self._policy

    def pick(self, eligible: Sequence[bool], outstanding: Sequence[int]) -> int | None:
        """The index to try next among `eligible[i]` servers, or None when none is eligible."""
        n = len(eligible)
        best: int | None = None
        for step in range(n):
            i = (self._cursor + step) % n
            if not eligible[i]:
                continue
            match self._policy:
                case Balance.ROUND_ROBIN:
                    best = i
                    break
                case Balance.LEAST_OUTSTANDING:
                    # Strictly fewer: among equals the first in round-robin order wins.
                    if best is None or outstanding[i] < outstanding[best]:
                        best = i
                case _:
                    assert_never(self._policy)
        if best is not None:
            self._cursor = (best + 1) % n
        return best


def panic_pick(tried: Sequence[bool], last_failed: Sequence[int]) -> int | None:
    """The untried server whose latest failure is the oldest (`last_failed`: a failure sequence
    number, 0 = never failed), ties to the lowest index; None once every server was tried."""
    untried = [i for i, t in enumerate(tried) if not t]
    return min(untried, key=lambda i: (last_failed[i], i)) if untried else None


class InFlightBody:
    """A response body that calls `release` once at its end, failure or close()."""

    __slots__ = ("_body", "_close", "_deadline", "_release", "_upstream")

    def __init__(
        self, response: UpstreamResponse, release: Callable[[], None], deadline: float | None
    ) -> None:
        self._body: AsyncIterator[bytes] = aiter(response.body)
        self._close = response.close
        self._release: Callable[[], None] | None = release
        # loop.time() when the request's total timeout expires; None: no cut-off here
        self._deadline = deadline
        self._upstream = response.upstream

    def __aiter__(self) -> InFlightBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            if self._deadline is None:
                return await anext(self._body)
            async with asyncio.timeout_at(self._deadline):
                return await anext(self._body)
        except TimeoutError as exc:
            self.close()
            raise BodyTimeout(
                f"{self._upstream}: total timeout expired mid-body", upstream=self._upstream
            ) from exc
        except BaseException:
            # The end (StopAsyncIteration), a BodyError, or cancellation: the try is over.
            self._done()
            raise

    def close(self) -> None:
        """Releases the connection (as the wrapped response's close) and the in-flight slot."""
        self._close()
        self._done()

    def _done(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


def released_at_end(
    response: UpstreamResponse, release: Callable[[], None], deadline: float | None = None
) -> UpstreamResponse:
    """The same response, with a body that calls `release` once at its end (InFlightBody)."""
    body = InFlightBody(response, release, deadline)
    return UpstreamResponse(
        status=response.status,
        reason=response.reason,
        headers=response.headers,
        request_time=response.request_time,
        response_time=response.response_time,
        body=body,
        close=body.close,
        upstream=response.upstream,
    )
