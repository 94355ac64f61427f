"""103 Early Hints from the origin, forwarded to the client on the public listener (issue 11).

`forward_hints(writer)` opens a sink for the request's upstream fetches
(origin/early_hints.py): each 103 the origin sends before its final response is written to
the client as a 103 of its own, with the origin's end-to-end fields (hop-by-hop ones and
the CDN-only ones removed). Only the client whose request made the fetch gets them: the
leader of a fill, or a passed request; a follower joins a fill whose hints may be long gone.
The sink closes when the request's handler returns, so a fill that outlives its leader never
writes to a connection that has moved on. Peers' requests get no hints (the internal hop is
not where a browser waits), and a hit never fetches.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from edge.rules.cache_control import for_clients
from edge.server.writer import Writer
from origin.early_hints import early_hints_to

__all__ = ["HintForwarder", "forward_hints"]


class HintForwarder:
    """Writes the origin's 103s to one client until the request is answered."""

    __slots__ = ("_open", "_writer", "sent")

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._open = True  # False once the request's handler returned
        self.sent = 0  # 103 responses written to the client

    def __call__(self, fields: tuple[tuple[str, str], ...]) -> None:
        """Forwards one 103 unless the final response has begun or the request is over."""
        if self._open and self._writer.inform(103, for_clients(list(fields))):
            self.sent += 1

    def close(self) -> None:
        """Drops any later 103 (from a fill that outlives the request)."""
        self._open = False


@contextmanager
def forward_hints(writer: Writer, *, enabled: bool = True) -> Iterator[HintForwarder | None]:
    """Runs the request with its origin 103s going to the client (when `enabled`)."""
    if not enabled:
        yield None
        return
    forwarder = HintForwarder(writer)
    try:
        with early_hints_to(forwarder):
            yield forwarder
    finally:
        forwarder.close()
