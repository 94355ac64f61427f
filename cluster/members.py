"""Membership: probes every peer, flips its health on consecutive results, swaps in a new Ring.

Nodes come from config, and from DNS (cluster/discovery.py calls `add_peer`/`remove_peer`).
This node is always in its own ring; a peer of the same region is in it while healthy.
Configured peers start healthy (config says they are members), discovered ones start down
and join after `recover_after` good probes like any peer coming back; all leave after
`fail_after` consecutive failed probes, and rejoin after `recover_after` consecutive good
ones. A failed peer fetch (`report_failure`) counts as a failed probe. Peers of other
regions are probed and reported but never in this ring.

Each peer has its own probe loop on a fixed schedule (a slow peer delays nobody): probes
start every `probe_interval_s` and each is cut off after `probe_timeout_s`, so a peer that
dies right after a good probe has left the ring `fail_after * probe_interval_s +
probe_timeout_s` later at most (2 s by default).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp

from cluster.config import ClusterConfig, PeerConfig
from cluster.peer import SECRET_HEADER
from cluster.ring import Ring

__all__ = ["HEALTH_PATH", "Membership", "PeerStatus", "Probe", "http_probe"]

HEALTH_PATH = "/_edge/health"  # served by every node's internal listener; needs the secret

Probe = Callable[[PeerConfig], Awaitable[bool]]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerStatus:
    """One peer's health as this node sees it."""

    name: str
    region: str
    healthy: bool
    consecutive_failures: int
    changed_at: float  # clock() when `healthy` last flipped (or when tracking began)


class _Health:
    """Mutable per-peer counters; only Membership touches them, on the event loop."""

    __slots__ = ("changed_at", "failures", "healthy", "successes")

    def __init__(self, now: float, healthy: bool = True) -> None:
        self.healthy = healthy
        self.successes = 0
        self.failures = 0
        self.changed_at = now


class Membership:
    """Tracks peer health and owns the current Ring of this region's healthy nodes."""

    def __init__(
        self,
        self_name: str,
        peers: Sequence[PeerConfig],
        config: ClusterConfig,
        probe: Probe,
        on_change: Callable[[Ring], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        by_name = {peer.name: peer for peer in peers}
        if len(by_name) != len(peers):
            raise ValueError("peer names must be unique")
        if self_name not in by_name:
            raise ValueError(f"{self_name!r} must be listed among the peers (with its region)")
        self._self = by_name.pop(self_name)
        self._peers = by_name  # every other node, any region
        self._config = config
        self._probe = probe
        self._on_change = on_change
        self._clock = clock
        now = clock()
        self._health = {name: _Health(now) for name in self._peers}
        # per peer, set while it is down (a fresh one once it recovers): fetches waiting on a
        # peer give up on it the moment it is marked down (cluster/peer.py)
        self._down = {name: asyncio.Event() for name in self._peers}
        self._ring = self._build_ring()
        self._task: asyncio.Task[None] | None = None
        self._loops: dict[str, asyncio.Task[None]] = {}  # one probe loop per peer while running
        self._running = False

    @property
    def ring(self) -> Ring:
        """The current ring: this node plus the healthy peers of its region."""
        return self._ring

    @property
    def region(self) -> str:
        """This node's region."""
        return self._self.region

    def is_healthy(self, name: str) -> bool:
        """Whether a node is up as far as this node knows (itself always is)."""
        if name == self._self.name:
            return True
        health = self._health.get(name)
        return health is not None and health.healthy

    def down_event(self, name: str) -> asyncio.Event:
        """An Event that is set once the peer is marked down (already set while it is down)."""
        event = self._down.get(name)
        return event if event is not None else asyncio.Event()  # this node, or not a peer

    def peer(self, name: str) -> PeerConfig | None:
        """A tracked peer's config, or None."""
        return self._peers.get(name)

    def add_peer(self, peer: PeerConfig) -> bool:
        """Starts tracking a discovered peer, down until `recover_after` good probes; False when
        it is already tracked (or is this node)."""
        if peer.name == self._self.name or peer.name in self._peers:
            return False
        self._peers[peer.name] = peer
        self._health[peer.name] = _Health(self._clock(), healthy=False)
        down = asyncio.Event()
        down.set()
        self._down[peer.name] = down
        if self._running:
            self._start_loop(peer.name)
        _log.info(
            "peer %s (%s) discovered; it joins after %d good probes",
            peer.name,
            peer.internal_url,
            self._config.recover_after,
        )
        return True

    def remove_peer(self, name: str) -> bool:
        """Stops tracking a peer that vanished; it leaves the ring at once. False if not tracked."""
        peer = self._peers.pop(name, None)
        if peer is None:
            return False
        health = self._health.pop(name)
        self._down.pop(name).set()  # fetches waiting on it give up now
        loop_task = self._loops.pop(name, None)
        if loop_task is not None:
            loop_task.cancel()
        _log.info("peer %s vanished from discovery; it leaves", name)
        if health.healthy and peer.region == self._self.region:
            self._swap_ring()
        return True

    def status(self) -> list[PeerStatus]:
        """Every peer's health, sorted by region then name (this node is not listed)."""
        return [
            PeerStatus(
                name=name,
                region=self._peers[name].region,
                healthy=health.healthy,
                consecutive_failures=health.failures,
                changed_at=health.changed_at,
            )
            for name, health in sorted(
                self._health.items(), key=lambda item: (self._peers[item[0]].region, item[0])
            )
        ]

    # --- recording results ---------------------------------------------------------------

    def record(self, name: str, ok: bool) -> None:
        """Counts one probe result for a peer; flips its health and the ring at the thresholds."""
        health = self._health.get(name)
        if health is None:
            return  # not a peer (this node itself, or unknown): nothing to track
        if ok:
            health.successes += 1
            health.failures = 0
            flip = not health.healthy and health.successes >= self._config.recover_after
        else:
            health.failures += 1
            health.successes = 0
            flip = health.healthy and health.failures >= self._config.fail_after
        if flip:
            health.healthy = not health.healthy
            health.changed_at = self._clock()
            if health.healthy:
                self._down[name] = asyncio.Event()
            else:
                self._down[name].set()
            _log.info("peer %s is %s", name, "healthy" if health.healthy else "down")
            if self._peers[name].region == self._self.region:
                self._swap_ring()

    def report_failure(self, name: str) -> None:
        """Counts a failed peer fetch as a failed probe."""
        self.record(name, False)

    def _build_ring(self) -> Ring:
        weights = {self._self.name: self._self.weight}
        for name, peer in self._peers.items():
            if peer.region == self._self.region and self._health[name].healthy:
                weights[name] = peer.weight
        return Ring(weights, vnodes=self._config.vnodes)

    def _swap_ring(self) -> None:
        ring = self._build_ring()
        if ring == self._ring:
            return
        self._ring = ring
        try:
            self._on_change(ring)
        except Exception:
            # A broken listener must not stop health checking; the new ring is in place anyway.
            _log.exception("membership on_change callback failed")

    # --- probing -------------------------------------------------------------------------

    async def probe_once(self, name: str) -> bool:
        """Probes one peer under the probe timeout, records and returns the result."""
        peer = self._peers.get(name)
        if peer is None:
            return False  # removed while its loop was scheduled
        try:
            async with asyncio.timeout(self._config.probe_timeout_s):
                ok = await self._probe(peer)
        except TimeoutError:
            ok = False
        except Exception:
            _log.warning("probe of %s raised", name, exc_info=True)
            ok = False
        self.record(name, ok)
        return ok

    async def probe_all(self) -> None:
        """Probes every peer once, concurrently."""
        async with asyncio.TaskGroup() as group:
            for name in list(self._peers):
                group.create_task(self.probe_once(name))

    async def _probe_loop(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        interval = self._config.probe_interval_s
        next_at = loop.time()
        while True:
            await self.probe_once(name)
            # Fixed rate: the next probe starts one interval after this one started, not after
            # it ended; a round that overran skips ahead rather than bunching probes up.
            next_at += interval
            now = loop.time()
            next_at = max(next_at, now)
            await asyncio.sleep(next_at - now)

    def _start_loop(self, name: str) -> None:
        self._loops[name] = asyncio.get_running_loop().create_task(
            self._probe_loop(name), name=f"probe:{name}"
        )

    async def run(self) -> None:
        """Probes every peer (those added later too) every `probe_interval_s` until cancelled."""
        self._running = True
        try:
            for name in self._peers:
                self._start_loop(name)
            await asyncio.Event().wait()  # until cancelled; the loops do the work
        finally:
            self._running = False
            loops = list(self._loops.values())
            self._loops.clear()
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    def start(self) -> None:
        """Starts `run()` as a task this object owns; call from a running loop."""
        if self._task is not None and not self._task.done():
            raise RuntimeError("membership is already running")
        self._task = asyncio.get_running_loop().create_task(self.run(), name="membership")

    async def stop(self) -> None:
        """Cancels the probe task and waits for it to end."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # stop() itself was cancelled, not only the probe task


def http_probe(session: aiohttp.ClientSession, secret: str) -> Probe:
    """A probe that GETs `{internal_url}/_edge/health` with the cluster secret; 200 = healthy."""

    async def probe(peer: PeerConfig) -> bool:
        try:
            async with session.get(
                peer.server.base + HEALTH_PATH,
                headers={SECRET_HEADER: secret},
                allow_redirects=False,
            ) as response:
                await response.read()  # read to the end so the connection is reused
                return response.status == 200
        except (aiohttp.ClientError, OSError) as exc:
            _log.debug("probe of %s failed: %r", peer.name, exc)
            return False

    return probe
