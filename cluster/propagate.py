"""Purge propagation: fan-out to every node of every region, catch-up, and the purge-lag watchdog.

`PurgeHub` is the one place a purge enters this node. `submit` (the admin API) journals a
new purge and applies it, then sends it to every other node concurrently and reports which
acknowledged within the timeout. `receive` (a peer's POST, or a catch-up page) journals and
applies a purge it has not seen. Journal-then-apply runs under one lock, so purges apply in
local arrival order (their generation).

Catch-up: every `sync_interval_s` the hub asks each peer for what lies beyond its cursor and
receives it. A round that completes with at least one peer is a sync. The watchdog: a node
with peers that has not synced for `max_lag_s` may have missed purges, so it stops trusting
its cache; the deadline (last sync + max_lag_s) is handed to the target's `set_trusted_until`
and compared with the clock on every request, so a node frozen past it (SIGSTOP, a stalled
loop) distrusts its cache from its first request after waking, before this loop runs again.
A lone node is always trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cluster.config import PeerConfig
from cluster.purge import Purge, PurgeKind, PurgeLog, PurgeTarget
from cluster.purge_wire import Page, PropagationError

__all__ = ["PAGE_LIMIT", "PurgeHub", "PurgeResult", "PurgeTransport"]

log = logging.getLogger(__name__)

PAGE_LIMIT = 1000  # purges per catch-up answer
_MAX_PAGES = 100  # pages fetched from one peer in one round


class PurgeTransport(Protocol):
    """How purges travel between nodes (cluster.purge_wire.HttpPurgeTransport, or a fake)."""

    async def send(self, peer: PeerConfig, purge: Purge, timeout_s: float) -> None: ...

    async def fetch(self, peer: PeerConfig, cursor: Mapping[str, int], timeout_s: float) -> Page: ...


class Trust(Protocol):
    """Told the deadline until which the cache may be trusted (edge.purge.invalidate.Invalidator)."""

    def set_trusted_until(self, deadline: float) -> None: ...


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What became of one submitted purge."""

    purge: Purge
    acked: tuple[str, ...]  # nodes that journaled and applied it (this one first)
    pending: tuple[str, ...]  # nodes that did not confirm in time: catch-up will bring it


class _PeerSync:
    __slots__ = ("last_error", "last_ok")

    def __init__(self) -> None:
        self.last_ok: float | None = None  # clock() when a sync with this peer last completed
        self.last_error: str | None = None


class PurgeHub:
    """Journal + apply + fan-out + catch-up + watchdog for one node."""

    def __init__(
        self,
        log_: PurgeLog,
        target: PurgeTarget,
        trust: Trust,
        *,
        self_name: str,
        peers: Sequence[PeerConfig],
        transport: PurgeTransport,
        sync_interval_s: float = 1.0,
        max_lag_s: float = 10.0,
        sync_timeout_s: float = 2.0,
        trusted_at_start: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.log = log_
        self._target = target
        self._trust = trust
        self.self_name = self_name
        self._peers = tuple(p for p in peers if p.name != self_name)  # every other node, every region
        self._transport = transport
        self._interval_s = sync_interval_s
        self._wake = asyncio.Event()  # set: run a catch-up round now (new peers), not at the interval
        self.max_lag_s = max_lag_s
        self._sync_timeout_s = sync_timeout_s
        self._clock = clock
        self._lock = asyncio.Lock()  # journal + apply of one purge at a time: gen order = apply order
        self._sync = {p.name: _PeerSync() for p in self._peers}
        # what each peer is known to hold, per accepting node: the highest seq it acknowledged
        # or had in its cursor when it last asked us for purges (for `edgecache purge --wait`)
        self._held: dict[str, dict[str, int]] = {p.name: {} for p in self._peers}
        # An empty cache has nothing a missed purge could concern: such a node starts trusted.
        self.last_sync: float | None = clock() if trusted_at_start else None
        self._trusted: bool | None = None  # the state last logged
        self._loop_task: asyncio.Task[None] | None = None
        self._flip: asyncio.TimerHandle | None = None  # wakes _publish when trust runs out, to log it
        # Own sequence numbers must never be reused: a journal without any of our own purges
        # (new, lost, or in memory) first learns them back from a peer before we accept one.
        self._synced_once = log_.cursor().get(self_name, 0) > 0
        self._publish()

    # -- entry points ---------------------------------------------------------------------
    @property
    def has_peers(self) -> bool:
        """Whether any other node takes part in purges."""
        return bool(self._peers)

    @property
    def accepting(self) -> bool:
        """Whether new purges may be submitted (our own sequence is known: journaled, or synced)."""
        return self._synced_once or not self._peers

    async def submit(
        self, kind: PurgeKind, value: str, host: str, soft: bool, *, timeout_s: float
    ) -> PurgeResult:
        """Journals and applies a new purge, then sends it to every node; waits at most timeout_s for acks."""
        async with self._lock:
            purge, gen = await self.log.append(kind, value, host, soft, now=self._clock())
            await self._target.apply(purge, gen)
        if not self._peers:
            return PurgeResult(purge, (self.self_name,), ())
        results = await asyncio.gather(*(self._send(peer, purge, timeout_s) for peer in self._peers))
        acked = tuple(name for name, ok in results if ok)
        pending = tuple(name for name, ok in results if not ok)
        return PurgeResult(purge, (self.self_name, *acked), pending)

    async def receive(self, purge: Purge) -> int | None:
        """Journals and applies a purge from another node; its generation, or None if seen before."""
        if self.log.seen(purge.node, purge.seq):
            return None
        async with self._lock:
            gen = await self.log.record(purge)
            if gen is not None:
                await self._target.apply(purge, gen)
        return gen

    def missing(
        self, cursor: Mapping[str, int], limit: int = PAGE_LIMIT, *, asker: str | None = None
    ) -> tuple[list[Purge], bool]:
        """What a peer with `cursor` lacks (one page) and whether more remain; notes what `asker` holds."""
        if asker is not None:
            for node, seq in cursor.items():
                self._note_held(asker, node, seq)
        purges = self.log.since(cursor, limit + 1)
        return purges[:limit], len(purges) > limit

    def set_peers(self, peers: Sequence[PeerConfig]) -> None:
        """The deployment's nodes changed (reload, DNS discovery): fan out and catch up with these.

        A node not known before is caught up with at once rather than at the next interval, so
        a node that was alone accepts purges and trusts its cache again without waiting.
        """
        known = {p.name for p in self._peers}
        self._peers = tuple(p for p in peers if p.name != self.self_name)
        self._sync = {p.name: self._sync.get(p.name) or _PeerSync() for p in self._peers}
        if any(p.name not in known for p in self._peers):
            self._wake.set()
        if self._loop_task is None and self._peers:
            self.start()

    # -- catch-up and watchdog ------------------------------------------------------------
    def start(self) -> None:
        """Starts the periodic catch-up loop (nothing to do without peers)."""
        if self._peers and self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="purge-sync")

    async def stop(self) -> None:
        """Stops the loop."""
        if self._flip is not None:
            self._flip.cancel()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.wait([self._loop_task])
            self._loop_task = None

    async def sync_round(self) -> int:
        """Catches up with every peer at once; returns how many peers completed."""
        if not self._peers:
            return 0
        started = self._clock()
        done = await asyncio.gather(*(self._catch_up(peer, started) for peer in self._peers))
        count = sum(done)
        if count:
            self._synced_once = True
            self.last_sync = max(self.last_sync or started, started)
        self._publish()
        return count

    def trusted(self, now: float) -> bool:
        """Whether the cache is trusted at `now` (synced within max_lag_s, or no peers)."""
        return not self._peers or (self.last_sync is not None and now - self.last_sync <= self.max_lag_s)

    def status(self, now: float) -> dict[str, Any]:
        """Generation, cursor, trust and each peer's sync state, for GET /status."""
        peers = {}
        for peer in self._peers:
            state = self._sync[peer.name]
            peers[peer.name] = {
                "region": peer.region,
                "last_sync_age_s": None if state.last_ok is None else round(now - state.last_ok, 3),
                "last_error": state.last_error,
            }
        return {
            "generation": self.log.generation,
            "cursor": self.log.cursor(),
            "trusted": self.trusted(now),
            "purge_lag_s": None if self.last_sync is None else round(now - self.last_sync, 3),
            "max_purge_lag_s": self.max_lag_s,
            "peers": peers,
        }

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # the interval passed without a new peer
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
            try:
                await self.sync_round()
            except Exception:  # a bug in one round must not end catch-up for good
                log.exception("purge catch-up round failed")
                self._publish()

    async def _catch_up(self, peer: PeerConfig, started: float) -> bool:
        state = self._sync[peer.name]
        try:
            for _ in range(_MAX_PAGES):
                page = await self._transport.fetch(peer, self.log.cursor(), self._sync_timeout_s)
                for purge in page.purges:
                    if await self.receive(purge) is not None:
                        log.info("caught up purge %s from %s", purge.id, peer.name)
                if not page.more:
                    break
        except PropagationError as exc:
            if state.last_error is None:
                log.warning("purge catch-up with %s failed: %s", peer.name, exc)
            state.last_error = str(exc)
            return False
        if state.last_error is not None:
            log.info("purge catch-up with %s works again", peer.name)
        state.last_error = None
        state.last_ok = started
        return True

    async def _send(self, peer: PeerConfig, purge: Purge, timeout_s: float) -> tuple[str, bool]:
        try:
            await self._transport.send(peer, purge, timeout_s)
        except PropagationError as exc:
            log.warning("purge %s not acknowledged by %s: %s", purge.id, peer.name, exc)
            return peer.name, False
        self._note_held(peer.name, purge.node, purge.seq)
        return peer.name, True

    def _note_held(self, peer: str, node: str, seq: int) -> None:
        held = self._held.get(peer)
        if held is not None and seq > held.get(node, 0):
            held[node] = seq

    def holders(self, node: str, seq: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(nodes known to hold purge node:seq, nodes not known to yet), this node first if it has it."""
        here = (self.self_name,) if self.log.seen(node, seq) else ()
        have = tuple(p.name for p in self._peers if self._held[p.name].get(node, 0) >= seq or p.name == node)
        missing = tuple(p.name for p in self._peers if p.name not in have)
        return (*here, *have), ((self.self_name,) if not here else ()) + missing

    def _publish(self) -> None:
        """Hands the trust deadline to the target and logs when trust flips."""
        if not self._peers:
            deadline = math.inf
        elif self.last_sync is None:
            deadline = -math.inf
        else:
            deadline = self.last_sync + self.max_lag_s
        self._trust.set_trusted_until(deadline)
        now = self._clock()
        trusted = self.trusted(now)
        if trusted != self._trusted and self._peers:
            if trusted:
                log.info("purge state trusted: synced with a peer %.1fs ago", now - (self.last_sync or now))
            else:
                log.warning(
                    "purge lag over %.1fs (no sync with any peer): every cached object is revalidated "
                    "until a sync succeeds",
                    self.max_lag_s,
                )
            self._trusted = trusted
        if self._flip is not None:
            self._flip.cancel()
            self._flip = None
        if trusted and math.isfinite(deadline) and self._loop_task is not None:
            self._flip = asyncio.get_running_loop().call_later(deadline - now + 0.01, self._publish)
