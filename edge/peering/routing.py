"""Peering: where a miss is filled from in a region, and the internal listener's gate.

`PeerRouting` answers "who owns this key?" from the current ring (swapped in by
cluster.members when peers die or recover), hands out the PeerClient of an owner, and
counts requests a non-owner sends to owners so a hot key is also kept locally (in its own
bounded memory store, as groupcache keeps hot keys in up to 1/8 of its memory).
`PeerGate` is the internal listener's responder: it refuses requests without the cluster
secret (403, no cache touched), answers health probes, and marks everything else as coming
from a peer, so the owner never forwards it again (no loops, whatever the ring views). A
request with `X-Edge-Deadline` is served under that deadline (origin/deadline.py caps every
upstream wait made for it) and, should its head still not be ready then (e.g. it joined a
fill that began without a deadline), answered 504 at the deadline: the asker, which waits a
margin longer, gets an answer from us rather than giving up and asking the origin itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from cluster.members import HEALTH_PATH
from cluster.peer import DEADLINE_HEADER, HOP_HEADER, SECRET_HEADER, PeerClient, check_secret, parse_deadline
from cluster.purge import JournalError, Purge
from cluster.purge_wire import (
    CONTENT_TYPE,
    PURGE_PATH,
    PURGES_PATH,
    decode_purge,
    encode_page,
    parse_cursor,
)
from cluster.ring import Ring
from edge.server.request import Request
from edge.server.writer import Writer
from edge.store.memory import MemoryStore
from origin.deadline import head_deadline_at
from origin.upstream import Upstream

__all__ = ["HotCounter", "PeerGate", "PeerRouting"]

_MAX_TRACKED = 100_000  # keys whose request counts are kept at once; more resets the window
_CANCEL_GRACE_S = 5.0  # how long a request cut off at its deadline may take to unwind

log = logging.getLogger("edge.peering")


class HotCounter:
    """Counts requests per key in fixed windows; a key is hot at `min_hits` within a window."""

    def __init__(
        self, *, min_hits: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._min_hits = min_hits
        self._window_s = window_s
        self._clock = clock
        self._window_start = clock()
        self._counts: dict[bytes, int] = {}

    def hit(self, key: bytes) -> bool:
        """Counts one request for key; True when the key is hot."""
        now = self._clock()
        if now - self._window_start >= self._window_s or len(self._counts) >= _MAX_TRACKED:
            self._counts.clear()
            self._window_start = now
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        return count >= self._min_hits


class PeerRouting:
    """This node's view of its region: the ring, the peers, and the hot-key store."""

    def __init__(
        self,
        *,
        self_name: str,
        ring: Ring,
        peers: Mapping[str, Upstream],
        hot: MemoryStore,
        hot_counter: HotCounter,
        report_failure: Callable[[str], None],
        parent_ring: Ring | None = None,
        is_healthy: Callable[[str], bool] = lambda name: True,
    ) -> None:
        self.self_name = self_name
        self.ring = ring  # replaced whole by set_ring; never mutated
        self._peers = peers  # this region's other nodes and the parent region's nodes
        # the shield region's ring (static: its nodes from config); health is checked per lookup
        self._parent_ring = parent_ring
        self._is_healthy = is_healthy
        self.hot = hot  # copies of keys other nodes own, kept because they are requested often
        self._hot_counter = hot_counter
        self._report_failure = report_failure

    def set_ring(self, ring: Ring) -> None:
        """Installs a new ring (membership changed)."""
        self.ring = ring

    def owner(self, key_id: bytes) -> str | None:
        """The owning peer's name, or None when this node owns the key."""
        owner = self.ring.owner(key_id)
        return None if owner == self.self_name or owner not in self._peers else owner

    def parent_owner(self, key_id: bytes) -> str | None:
        """The shield region's node to fill from (its owner, or the next healthy one), or None.

        None means there is no parent region, or none of its nodes is healthy: go to the origin.
        """
        if self._parent_ring is None:
            return None
        for name in self._parent_ring.preference(key_id):
            if name in self._peers and self._is_healthy(name):
                return name
        return None

    def peer(self, name: str) -> Upstream:
        """The client for one peer of the region."""
        return self._peers[name]

    def is_hot(self, key_id: bytes) -> bool:
        """Counts a request this node forwards to an owner; True once the key is hot here."""
        return self._hot_counter.hit(key_id)

    def peer_failed(self, name: str) -> None:
        """A peer fetch failed before its head: counts as a failed probe."""
        self._report_failure(name)

    def close(self) -> None:
        """Closes the peer clients' idle connections (a stop, or a new ring's clients took over);
        responses still streaming finish, then their connections close."""
        for client in self._peers.values():
            if isinstance(client, PeerClient):
                client.close()


class _PeerHandler(Protocol):
    """What PeerGate passes requests to (edge.request.handler.Handler)."""

    async def handle(self, request: Request, writer: Writer, *, from_peer: bool = False) -> None: ...

    def try_fast(
        self, head_only: bool, host: bytes, target: bytes, raw_headers: list[tuple[bytes, bytes]], peer: str
    ) -> bytes | tuple[bytes, bytes] | None: ...


class _PurgeEndpoint(Protocol):
    """What PeerGate hands purge traffic to (cluster.propagate.PurgeHub)."""

    self_name: str

    async def receive(self, purge: Purge) -> int | None: ...

    def missing(
        self, cursor: Mapping[str, int], limit: int = ..., *, asker: str | None = None
    ) -> tuple[Sequence[Purge], bool]: ...


_SECRET_NAME = SECRET_HEADER.lower().encode("ascii")
_SECRET_LEN = len(_SECRET_NAME)


class PeerGate:
    """The internal listener's responder: secret check, health, purges, then the handler."""

    def __init__(
        self,
        handler: _PeerHandler,
        secret: str,
        purges: _PurgeEndpoint | None = None,
        serving: Callable[[], bool] = lambda: True,
    ) -> None:
        self._handler = handler
        self._secret = secret
        self._purges = purges  # None: this node takes no purges from peers
        self._serving = serving  # False while draining: health says 503 so peers drop this node

    def serve(self, handler: _PeerHandler) -> None:
        """Installs the handler built from a reloaded config (requests in flight keep theirs)."""
        self._handler = handler

    def try_fast(
        self, head_only: bool, host: bytes, target: bytes, raw_headers: list[tuple[bytes, bytes]], peer: str
    ) -> bytes | tuple[bytes, bytes] | None:
        """A peer's plain GET of a fresh memory hit, answered on the fast path once its secret checks.

        Internal endpoints (/_edge/...) and anything without the right secret take the checked
        path, which refuses them with 403.
        """
        if target.startswith(b"/_edge/"):
            return None
        for name, value in raw_headers:
            if len(name) == _SECRET_LEN and name.lower() == _SECRET_NAME:
                if check_secret(value.decode("latin-1"), self._secret):
                    return self._handler.try_fast(head_only, host, target, raw_headers, peer)
                return None
        return None

    async def handle(self, request: Request, writer: Writer) -> None:
        """Refuses requests without the secret; answers health; serves the rest as peer requests."""
        if not check_secret(request.headers.get(SECRET_HEADER), self._secret):
            await writer.send_simple(
                403, "cluster secret missing or wrong; internal endpoints are for peers only"
            )
            return
        if request.target == HEALTH_PATH:
            if self._serving():
                await writer.send_simple(200, "ok")
            else:
                await writer.send_simple(503, "draining: take this node out of the ring", close=True)
            return
        if self._purges is not None and request.target.partition("?")[0] in (PURGE_PATH, PURGES_PATH):
            await self._purge_traffic(self._purges, request, writer)
            return
        seconds = parse_deadline(request.headers.get(DEADLINE_HEADER))
        if seconds is None:
            await self._handler.handle(request, writer, from_peer=True)
            return
        await self._handle_by(request, writer, asyncio.get_running_loop().time() + seconds)

    async def _handle_by(self, request: Request, writer: Writer, deadline: float) -> None:
        """Serves a peer's request under its deadline; 504 then if no head has been sent."""

        async def serve() -> None:
            with head_deadline_at(deadline):
                await self._handler.handle(request, writer, from_peer=True)

        loop = asyncio.get_running_loop()
        task = loop.create_task(serve(), name="peer-request")
        try:
            await asyncio.wait([task], timeout=max(0.0, deadline - loop.time()))
            if not task.done() and not writer.started:
                task.cancel()
                await asyncio.wait([task], timeout=_CANCEL_GRACE_S)
                if writer.started:  # a head slipped out while the request unwound: cut it off
                    writer.abort()
                    return
                log.warning(
                    "%s %s%s: no head by the asker's deadline; 504",
                    request.method,
                    request.host,
                    request.target,
                )
                await writer.send_simple(504, "no response head by the asking node's deadline")
                return
            await task
        finally:
            if not task.done():
                task.cancel()

    async def _purge_traffic(self, purges: _PurgeEndpoint, request: Request, writer: Writer) -> None:
        """POST /_edge/purge: journal + apply, then 200 (the ack). GET /_edge/purges: catch-up page."""
        path = request.target.partition("?")[0]
        if path == PURGE_PATH and request.method == "POST":
            try:
                purge = decode_purge(request.body)
            except ValueError as exc:
                await writer.send_simple(400, f"bad purge body: {exc}")
                return
            try:
                await purges.receive(purge)
            except JournalError as exc:
                await writer.send_simple(503, f"cannot journal the purge: {exc}")
                return
            await writer.send_simple(200, "ok")
        elif path == PURGES_PATH and request.method == "GET":
            try:
                cursor = parse_cursor(request.target)
            except ValueError as exc:
                await writer.send_simple(400, f"bad cursor: {exc}")
                return
            page, more = purges.missing(cursor, asker=request.headers.get(HOP_HEADER))
            body = encode_page(purges.self_name, page, more)
            writer.start(200, [("Content-Type", CONTENT_TYPE)], len(body))
            await writer.write(body)
            writer.finish()
        else:
            await writer.send_simple(405, f"use POST {PURGE_PATH} or GET {PURGES_PATH}")
