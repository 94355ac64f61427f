"""Where a miss is filled from and which store keeps the answer — pure.

In a region every key has an owner (the ring's choice); the owner fills from the origin and
coalesces for the whole region. A node that does not own a key asks the owner and keeps a
copy only of keys requested often here (the hot-copy store). The owner, and any node
answering a peer's request, asks the shield region's node for the key instead of the
origin when there is a parent region with a healthy node; regions form a tree, so going up
never loops. A request from a peer is never sent to a peer of the same region again.

The handler asks the ring (`PeerRouting`) and passes the answers in; `plan_fill_route`
decides; the handler then only does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["FillRoute", "FillSource", "FillStore", "asks_hot", "plan_fill_route"]


class FillSource(Enum):
    """Who a fill asks."""

    ORIGIN = "origin"  # the route's origin pool
    REGION_OWNER = "peer"  # the node of this region that owns the key
    SHIELD = "shield"  # the shield (parent) region's node for the key


class FillStore(Enum):
    """Which of this node's stores keeps a fill's answer."""

    MAIN = "main"  # the tiered store (memory, then disk)
    HOT = "hot"  # the bounded store of hot copies of keys other nodes own
    NONE = "none"  # nowhere: the owner keeps it, this node only passes it on


@dataclass(frozen=True, slots=True)
class FillRoute:
    """One fill's source and the store that keeps its answer."""

    source: FillSource
    peer: str | None  # the node asked (REGION_OWNER, SHIELD); None for ORIGIN
    store: FillStore

    @property
    def label(self) -> str | None:
        """Names a peer source in Cache-Status detail ("peer-edge2", "shield-edge5")."""
        return None if self.peer is None else f"{self.source.value}-{self.peer}"

    @property
    def own_fill(self) -> bool:
        """True when the fill needs an id of its own, apart from fills that peer requests join.

        Two nodes with crossed ring views would otherwise wait on each other: a's fill asks
        b, b's fill asks a, and each peer request joins the fill that waits on it.
        """
        return self.source is FillSource.REGION_OWNER


def asks_hot(*, from_peer: bool, owner: str | None, stale_in: FillStore | None) -> bool:
    """Whether the route depends on the key being hot here (asking counts one request)."""
    return not from_peer and owner is not None and stale_in is None


def plan_fill_route(
    *,
    from_peer: bool,
    owner: str | None,
    parent_owner: str | None,
    stale_in: FillStore | None,
    is_hot: bool,
) -> FillRoute:
    """Decides where a miss is filled from and where the answer is kept.

    `owner` is the region's owner of the key (None: this node, or no cluster); `parent_owner`
    the shield region's healthy node for it (None: no parent region or none healthy);
    `stale_in` the store holding a stale copy being revalidated (it keeps the new answer);
    `is_hot` is read only when `asks_hot` says so.
    """
    if not from_peer and owner is not None:
        if stale_in is not None:
            return FillRoute(FillSource.REGION_OWNER, owner, stale_in)
        return FillRoute(FillSource.REGION_OWNER, owner, FillStore.HOT if is_hot else FillStore.NONE)
    store = stale_in or FillStore.MAIN
    if parent_owner is not None:
        return FillRoute(FillSource.SHIELD, parent_owner, store)
    return FillRoute(FillSource.ORIGIN, None, store)
