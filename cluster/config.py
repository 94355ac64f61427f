"""Cluster configuration values: the nodes of the deployment and how a region shares its cache.

Frozen, slotted, keyword-only dataclasses; each default is documented beside its field and
checked in `__post_init__` (ValueError names the field). edge/config/topology.py parses the TOML
`[cluster]` and `[nodes.*]` tables into these and reports errors with the dotted path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from cluster.ring import DEFAULT_VNODES
from origin.config import OriginPoolConfig, ServerConfig, TimeoutConfig

__all__ = ["ClusterConfig", "OriginBudget", "PeerConfig", "chain_timeouts", "max_hops"]


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
    secret: str = field(repr=False)  # never printed: repr and logs show the other fields only
    # Virtual nodes per unit of weight. With 160 the busiest of 10 nodes reaches ~1.2x the
    # mean for unlucky node names; 1024 keeps it below ~1.11x (see cluster.ring.DEFAULT_VNODES).
    vnodes: int = DEFAULT_VNODES  # 1024
    probe_interval_s: float = 0.5  # each peer is probed this often
    probe_timeout_s: float = 0.5  # a probe without a 200 within this long has failed
    fail_after: int = 3  # consecutive failed probes (or failed peer fetches) -> peer leaves
    recover_after: int = 2  # consecutive good probes -> a peer that left rejoins
    # Peer fetch phases: connect fails fast so the asker falls back to the origin quickly; the
    # first byte may wait for the owner's own fill; idle bounds a stalled stream. None (the
    # default) = derived from the origin pools by `chained()`, so each hop waits longer than
    # the hop behind it (see `chain_timeouts`); a peer is also told the asker's deadline.
    peer_connect_timeout_s: float = 0.5
    peer_first_byte_timeout_s: float | None = None
    peer_idle_timeout_s: float | None = None
    peer_total_timeout_s: float | None = None  # whole peer response, large objects included
    # What each hop keeps for itself: a peer is told to answer this much before the asker's
    # own deadline, and derived timeouts grow by this much per hop.
    peer_deadline_margin_s: float = 0.5
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
            "peer_deadline_margin_s",
            "hot_window_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        for name in ("peer_first_byte_timeout_s", "peer_idle_timeout_s", "peer_total_timeout_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0")
        if not 0 <= self.hot_share <= 1:
            raise ValueError("hot_share must be between 0 and 1")

    @property
    def peer_timeouts(self) -> TimeoutConfig:
        """The phase timeouts of one peer fetch, in the shape origin.client uses.

        Unset ones come from `chained()`; before that (a config built in code) they are
        derived as for one hop to a default origin pool.
        """
        one_pool = OriginBudget.of(TimeoutConfig(), tries=1)
        first_byte, idle, total = chain_timeouts((one_pool,), 1, self.peer_deadline_margin_s)
        return TimeoutConfig(
            connect_s=self.peer_connect_timeout_s,
            first_byte_s=_given(self.peer_first_byte_timeout_s, first_byte),
            total_s=_given(self.peer_total_timeout_s, total),
            idle_s=_given(self.peer_idle_timeout_s, idle),
        )

    def chained(
        self, pools: Mapping[str, OriginPoolConfig], parents: Mapping[str, str | None]
    ) -> ClusterConfig:
        """This config with every unset peer timeout derived from the deployment's origin pools
        and the depth of its region tree (`parents`: region -> parent region or None)."""
        budgets = tuple(OriginBudget.of_pool(name, pools) for name in pools) or (
            OriginBudget.of(TimeoutConfig(), tries=1),
        )
        first_byte, idle, total = chain_timeouts(budgets, max_hops(parents), self.peer_deadline_margin_s)
        return replace(
            self,
            peer_first_byte_timeout_s=_given(self.peer_first_byte_timeout_s, first_byte),
            peer_idle_timeout_s=_given(self.peer_idle_timeout_s, idle),
            peer_total_timeout_s=_given(self.peer_total_timeout_s, total),
        )

    @property
    def leave_within_s(self) -> float:
        """The longest a dead peer stays in the ring: fail_after probes plus one probe timeout."""
        return self.fail_after * self.probe_interval_s + self.probe_timeout_s


def _given(value: float | None, derived: float) -> float:
    return derived if value is None else value


@dataclass(frozen=True, slots=True)
class OriginBudget:
    """The longest an origin pool may take: for a response head, between chunks, in all."""

    head_s: float
    idle_s: float
    total_s: float

    @classmethod
    def of(cls, timeouts: TimeoutConfig, *, tries: int) -> OriginBudget:
        """`tries` tries in a row, each up to first_byte_s, all within total_s."""
        return cls(min(timeouts.total_s, tries * timeouts.first_byte_s), timeouts.idle_s, timeouts.total_s)

    @classmethod
    def of_pool(cls, name: str, pools: Mapping[str, OriginPoolConfig], depth: int = 0) -> OriginBudget:
        """A pool's budget: a try per server up to retry.attempts, then its backup pool's."""
        pool = pools[name]
        own = cls.of(pool.timeouts, tries=min(pool.retry.attempts, len(pool.servers)))
        if pool.backup is None or pool.backup not in pools or depth > len(pools):
            return own
        spare = cls.of_pool(pool.backup, pools, depth + 1)
        return cls(own.head_s + spare.head_s, max(own.idle_s, spare.idle_s), own.total_s + spare.total_s)


def max_hops(parents: Mapping[str, str | None]) -> int:
    """Peer hops from a client-facing node to the one that asks the origin: one to the key's
    owner in its region, then one per ancestor region (shield, its parent, ...)."""
    longest = 0
    for region in parents:
        seen = {region}
        ancestors = 0
        parent = parents.get(region)
        while parent is not None and parent not in seen:
            seen.add(parent)
            ancestors += 1
            parent = parents.get(parent)
        longest = max(longest, ancestors)
    return 1 + longest


def chain_timeouts(budgets: Sequence[OriginBudget], hops: int, margin_s: float) -> tuple[float, float, float]:
    """Peer (first byte, idle, total) timeouts that outlast the slowest origin pool by one
    margin per hop, so every node waits longer than the nodes it asks — pure."""
    extra = hops * margin_s
    return (
        max(b.head_s for b in budgets) + extra,
        max(b.idle_s for b in budgets) + extra,
        max(b.total_s for b in budgets) + extra,
    )
