"""Cluster configuration values: the nodes of the deployment and how a region shares its cache.

Frozen, slotted, keyword-only dataclasses; each default is documented beside its field and
checked in `__post_init__` (ValueError names the field). edge/config/topology.py parses the TOML
`[cluster]` and `[nodes.*]` tables into these and reports errors with the dotted path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cluster.ring import DEFAULT_VNODES
from origin.config import ServerConfig, TimeoutConfig

__all__ = ["ClusterConfig", "PeerConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerConfig:
    """One node of the deployment as the others see it (this node is listed too)."""

    name: str  # unique node name, e.g. "edge1"; the ring hashes it, so renaming moves keys
    region: str  # nodes of one region form one ring; other regions are only tracked
    internal_url: str  # the node's internal listener, "http://127.0.0.3:9080" (no path)
    weight: float = 1.0  # share of the ring relative to the other nodes; 2.0 = twice the keys

    def __post_init__(self) -> None:
        if not self.name or not self.region:
            raise ValueError("name and region must not be empty")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"weight must be a finite number > 0, got {self.weight!r}")
        ServerConfig(url=self.internal_url)  # raises ValueError saying what is wrong with it

    @property
    def server(self) -> ServerConfig:
        """The internal listener as an origin.config.ServerConfig, for an OriginClient."""
        return ServerConfig(url=self.internal_url)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """How the nodes of a region find, trust and use each other."""

    # Shared by every node; required on internal requests (X-Edge-Secret). Never empty.
    secret: str
    # Virtual nodes per unit of weight. With 160 the busiest of 10 nodes reaches ~1.2x the
    # mean for unlucky node names; 1024 keeps it below ~1.11x (see cluster.ring.DEFAULT_VNODES).
    vnodes: int = DEFAULT_VNODES  # 1024
    probe_interval_s: float = 0.5  # each peer is probed this often
    probe_timeout_s: float = 0.5  # a probe without a 200 within this long has failed
    fail_after: int = 3  # consecutive failed probes (or failed peer fetches) -> peer leaves
    recover_after: int = 2  # consecutive good probes -> a peer that left rejoins
    # Peer fetch phases: connect fails fast so the asker falls back to the origin quickly; the
    # first byte may wait for the owner's own origin fill; idle bounds a stalled stream.
    peer_connect_timeout_s: float = 0.5
    peer_first_byte_timeout_s: float = 5.0
    peer_idle_timeout_s: float = 10.0
    peer_total_timeout_s: float = 120.0  # whole peer response, large objects included
    # Hot keys: a non-owner also keeps a key it served at least `hot_min_hits` times within
    # `hot_window_s`, in at most `hot_share` of its memory tier (groupcache uses 1/8).
    hot_share: float = 0.125
    hot_min_hits: int = 20
    hot_window_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("secret must not be empty")
        if self.vnodes < 1:
            raise ValueError("vnodes must be >= 1")
        if self.fail_after < 1 or self.recover_after < 1 or self.hot_min_hits < 1:
            raise ValueError("fail_after, recover_after and hot_min_hits must be >= 1")
        for name in (
            "probe_interval_s",
            "probe_timeout_s",
            "peer_connect_timeout_s",
            "peer_first_byte_timeout_s",
            "peer_idle_timeout_s",
            "peer_total_timeout_s",
            "hot_window_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if not 0 <= self.hot_share <= 1:
            raise ValueError("hot_share must be between 0 and 1")

    @property
    def peer_timeouts(self) -> TimeoutConfig:
        """The phase timeouts of one peer fetch, in the shape origin.client uses."""
        return TimeoutConfig(
            connect_s=self.peer_connect_timeout_s,
            first_byte_s=self.peer_first_byte_timeout_s,
            total_s=self.peer_total_timeout_s,
            idle_s=self.peer_idle_timeout_s,
        )

    @property
    def leave_within_s(self) -> float:
        """The longest a dead peer stays in the ring: fail_after probes plus one probe timeout."""
        return self.fail_after * self.probe_interval_s + self.probe_timeout_s
