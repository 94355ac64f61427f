"""Connections: the open client connections of one listener, their cap and their counters.

Descriptors are the resource a flood of idle sockets exhausts, so the node raises its soft
RLIMIT_NOFILE to the hard limit at start (`raise_fd_limit`) and caps client connections
below it (`default_max_connections`), keeping room for disk files, origin and peer
sockets. At the cap a new connection first takes the place of the oldest idle keep-alive
connection (a client that is not waiting for anything); when none of the oldest few is
idle, the new connection is refused at once (closed before anything is read). An optional
per-address cap refuses a client address holding too many connections.

Every refusal, eviction and timeout is counted here; `stats()` is what /status shows.
"""

from __future__ import annotations

import enum
import itertools
import logging
import resource
import time
from collections import Counter
from typing import Protocol

from edge.config.server import ServerConfig
from edge.server.deadline import TimeoutReason

__all__ = ["Admission", "Connections", "default_max_connections", "raise_fd_limit"]

log = logging.getLogger("edge.server")

RESERVED_FDS = 512  # kept for disk files, origin and peer sockets, the journal, logs
FDS_PER_CONNECTION = 2  # a client socket plus, at worst, one open object file or origin socket
EVICT_SCAN = 64  # how many of the oldest connections are looked at for an idle one
REFUSAL_LOG_INTERVAL_S = 10.0


class Admission(enum.Enum):
    """What happened to a new connection."""

    ADMITTED = "admitted"
    REFUSED_FULL = "refused_full"  # at server.max_connections and no idle connection to close
    REFUSED_PER_IP = "refused_per_ip"  # the address holds server.max_connections_per_ip already


class Member(Protocol):
    """What the registry needs of a connection."""

    @property
    def idle(self) -> bool:
        """True while no request is in progress (the connection can be closed harmlessly)."""
        ...

    def close_idle(self) -> None:
        """Closes the connection to make room for a new one."""
        ...


def raise_fd_limit() -> int:
    """Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the descriptor limit from %d to %d: %s", soft, target, exc)
    return int(soft)


def default_max_connections(nofile: int) -> int:
    """The client connection cap a descriptor limit affords (never below 64)."""
    return max(64, (nofile - RESERVED_FDS) // FDS_PER_CONNECTION)


class Connections:
    """The open connections of one listener (insertion-ordered: oldest first)."""

    __slots__ = (
        "_last_refusal_log",
        "_open",
        "_per_ip",
        "accepted",
        "config",
        "draining",
        "evicted",
        "max_connections",
        "refused",
        "timeouts",
        "trailers_dropped",
    )

    def __init__(self, config: ServerConfig, max_connections: int) -> None:
        self.config = config
        self.max_connections = max_connections
        self._open: dict[Member, str] = {}
        self._per_ip: Counter[str] = Counter()
        self.accepted = 0
        self.evicted = 0  # idle connections closed to make room for a new one
        self.refused: Counter[Admission] = Counter()
        self.timeouts: Counter[TimeoutReason] = Counter()
        self.trailers_dropped = 0  # request trailer fields discarded (edge.server.request)
        self._last_refusal_log = float("-inf")
        self.draining = False  # set by drain(): every connection closes once it is idle

    def drain(self) -> int:
        """A graceful stop: closes idle connections now; busy ones close after their answer.

        Returns how many were closed now.
        """
        self.draining = True
        idle = [conn for conn in self._open if conn.idle]
        for conn in idle:
            self.release(conn)
            conn.close_idle()
        return len(idle)

    @classmethod
    def for_listener(cls, config: ServerConfig, nofile: int) -> Connections:
        """A registry whose cap is server.max_connections, or derived from `nofile` when 0."""
        return cls(config, config.max_connections or default_max_connections(nofile))

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, conn: Member, peer: str) -> Admission:
        """Registers a new connection, or says why it must be refused."""
        per_ip = self.config.max_connections_per_ip
        if per_ip and self._per_ip[peer] >= per_ip:
            return self._refuse(Admission.REFUSED_PER_IP)
        if len(self._open) >= self.max_connections and not self._evict_idle():
            return self._refuse(Admission.REFUSED_FULL)
        self._open[conn] = peer
        self._per_ip[peer] += 1
        self.accepted += 1
        return Admission.ADMITTED

    def release(self, conn: Member) -> None:
        """Forgets a closed connection (idempotent)."""
        peer = self._open.pop(conn, None)
        if peer is not None:
            left = self._per_ip[peer] - 1
            if left > 0:
                self._per_ip[peer] = left
            else:
                del self._per_ip[peer]

    def timed_out(self, reason: TimeoutReason) -> None:
        self.timeouts[reason] += 1

    def _evict_idle(self) -> bool:
        for conn in itertools.islice(self._open, EVICT_SCAN):
            if conn.idle:
                self.release(conn)
                conn.close_idle()
                self.evicted += 1
                return True
        return False

    def _refuse(self, why: Admission) -> Admission:
        self.refused[why] += 1
        now = time.monotonic()
        if now - self._last_refusal_log >= REFUSAL_LOG_INTERVAL_S:
            self._last_refusal_log = now
            log.warning(
                "refusing client connections (%s): %d open, cap %d; %d refused so far",
                why.value,
                len(self._open),
                self.max_connections,
                sum(self.refused.values()),
            )
        return why

    def stats(self) -> dict[str, object]:
        """Counters for /status."""
        return {
            "open": len(self._open),
            "max_connections": self.max_connections,
            "accepted": self.accepted,
            "evicted_idle": self.evicted,
            "refused": {a.value: self.refused[a] for a in Admission if a is not Admission.ADMITTED},
            "timeouts": {r.value: self.timeouts[r] for r in TimeoutReason},
            "trailers_dropped": self.trailers_dropped,
        }
