"""PeerView: the handler as the internal listener sees it (its requests counted as a peer's)."""

from __future__ import annotations

from typing import Protocol

from edge.request.fast import FastAnswer
from edge.server.request import Request
from edge.server.writer import Writer

__all__ = ["PeerView"]


class Handler(Protocol):
    """What a PeerView wraps (edge.request.handler.Handler)."""

    async def handle(self, request: Request, writer: Writer, *, from_peer: bool = False) -> None: ...


class PeerView:
    """The handler for the internal listener: the same requests path, counted as a peer's."""

    __slots__ = ("_handler", "try_fast")

    def __init__(self, handler: Handler, try_fast: FastAnswer) -> None:
        self._handler = handler
        self.try_fast = try_fast

    async def handle(self, request: Request, writer: Writer, *, from_peer: bool = False) -> None:
        """Answers one peer request (the gate passes from_peer=True)."""
        await self._handler.handle(request, writer, from_peer=from_peer)
