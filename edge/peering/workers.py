"""Worker processes of one machine: which worker owns a key, and how the others reach it.

A machine runs N worker processes (docs/workers.md) that share one disk tier. Every key has
one owner worker, chosen from the key id alone (`owner_worker`), so every process agrees
without talking: the owner is the only worker that fills the key (origin, shield or the
region's owner node), writes it to disk, evicts it and sweeps it on purge. Another worker
that misses reads the disk object itself; if it is not there, it asks the owner over the
owner's sibling listener (`Siblings`), so a machine sends one upstream request per object.

The ring stays one member per machine: this is the level below it. The choice uses bits of
the id the ring's own hash of the key does not feed on directly (the id's second half,
little-endian), and it is plain arithmetic (the fast path never calls it).
"""

from __future__ import annotations

from collections.abc import Mapping

from origin.upstream import Upstream

__all__ = ["Siblings", "owner_worker", "worker_label"]


def owner_worker(key_id: bytes, count: int) -> int:
    """The index (0..count-1) of the worker that owns `key_id` (a 16-byte primary key id)."""
    if count <= 1:
        return 0
    return int.from_bytes(key_id[8:16], "little") % count


def worker_label(index: int) -> str:
    """How a worker is named in Cache-Status detail, logs and metrics: "worker-2"."""
    return f"worker-{index}"


class Siblings:
    """This worker's view of its machine: its index, the count, and a client per sibling."""

    __slots__ = ("_clients", "count", "index")

    def __init__(self, *, index: int, count: int, clients: Mapping[int, Upstream]) -> None:
        if not 0 <= index < count:
            raise ValueError(f"worker index {index} is not below the count {count}")
        self.index = index
        self.count = count
        self._clients = clients  # every sibling but this worker, by index

    def owner(self, key_id: bytes) -> int | None:
        """The sibling that owns the key, or None when this worker does."""
        owner = owner_worker(key_id, self.count)
        return None if owner == self.index else owner

    def client(self, index: int) -> Upstream:
        """The client that asks sibling `index` over its sibling listener."""
        return self._clients[index]
