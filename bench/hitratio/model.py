"""The in-process replay: a trace through the node's own eviction policies and admission filter.

`TierModel` makes the same decisions, in the same order, as edge.store.tiered.TieredStore over
a MemoryStore and a DiskStore, using the very policy and filter objects the node builds
(edge.store.eviction / s3fifo / gdsf / admission) and the sizes the stores charge (body +
ENTRY_OVERHEAD_BYTES in RAM, body + the reserved file head on disk). It holds no bodies, so
a 1.5 M-request, 32 GiB trace replays in seconds per configuration:

  lookup:  memory hit -> touch | disk hit -> touch, offer to memory if <= the memory cap
  miss:    disk writer if the admission filter admits it, or the disk never evicted yet;
           commit: disk first (policy admit), then memory if <= the cap (policy admit)

tests/bench/test_hitratio_model.py replays a trace through a real TieredStore (real files)
and this model side by side and checks every request's outcome is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from edge.config.deployment import CacheConfig
from edge.store.admission import AdmissionMode, make_admission
from edge.store.eviction import EvictionPolicy, LRUPolicy
from edge.store.gdsf import GDSFPolicy
from edge.store.memory import ENTRY_OVERHEAD_BYTES
from edge.store.s3fifo import S3FIFOPolicy

KiB = 1024
MiB = 1024 * KiB
DISK_HEAD_BYTES = 512  # about what diskfile.reserve_bytes reserves for a demo-origin meta


class Served(Enum):
    """Where one request was answered from."""

    MEMORY = "memory"
    DISK = "disk"
    ORIGIN = "origin"


def make_policy(name: str, max_bytes: int) -> EvictionPolicy:
    """One policy by its config name (the node's own mapping in edge.app)."""
    if name == "gdsf":
        return GDSFPolicy(max_bytes)
    if name == "lfuda":
        return GDSFPolicy(max_bytes, byte_hits=True)
    if name == "s3fifo":
        return S3FIFOPolicy(max_bytes)
    if name == "lru":
        return LRUPolicy(max_bytes)
    raise ValueError(f"unknown policy {name!r}")


@dataclass(frozen=True, slots=True)
class TierSpec:
    """One configuration of the two tiers."""

    name: str
    memory_policy: str
    disk_policy: str
    memory_max_object_bytes: int
    admission: AdmissionMode = AdmissionMode.ALL
    admission_window: int = 0  # 0: adaptive

    @classmethod
    def defaults(cls, name: str = "defaults") -> TierSpec:
        """What a node runs with an empty [cache] table."""
        d = CacheConfig()
        memory_policy = str(getattr(d.policy, "value", d.policy))
        return cls(
            name,
            memory_policy,
            "lru" if memory_policy == "lru" else "s3fifo",
            d.memory_object_cap(has_disk=True),
            AdmissionMode(d.disk_admission),
            d.disk_admission_window,
        )


@dataclass(slots=True)
class Tally:
    """Counts of one replay."""

    requests: int = 0
    bytes: int = 0
    memory_hits: int = 0
    disk_hits: int = 0
    miss_bytes: int = 0
    disk_write_bytes: int = 0
    promotions: int = 0
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [requests, misses]

    @property
    def misses(self) -> int:
        return self.requests - self.memory_hits - self.disk_hits

    @property
    def object_miss(self) -> float:
        return self.misses / max(1, self.requests)

    @property
    def byte_miss(self) -> float:
        return self.miss_bytes / max(1, self.bytes)

    @property
    def ram_share(self) -> float:
        """Share of all hits served from RAM."""
        return self.memory_hits / max(1, self.memory_hits + self.disk_hits)


class TierModel:
    """TieredStore's decisions over the node's policies, sizes only."""

    def __init__(self, spec: TierSpec, *, memory_bytes: int, disk_bytes: int) -> None:
        self.spec = spec
        self.memory_bytes = memory_bytes
        self.disk_bytes = disk_bytes
        self.memory = make_policy(spec.memory_policy, memory_bytes)
        self.disk = make_policy(spec.disk_policy, disk_bytes)
        self.admission = make_admission(spec.admission, spec.admission_window)
        self.cap = spec.memory_max_object_bytes
        self.disk_evicted = False  # until the disk first evicts, every miss is written
        self.tally = Tally()

    def request(self, key: bytes, size: int, head: int = DISK_HEAD_BYTES) -> Served:
        """Replays one request of `size` body bytes; `head` is the disk file's reserved head."""
        t = self.tally
        t.requests += 1
        t.bytes += size
        memory, disk = self.memory, self.disk
        if key in memory:
            memory.touch(key)
            t.memory_hits += 1
            return Served.MEMORY
        if key in disk:
            disk.touch(key)
            t.disk_hits += 1
            if size <= self.cap and size + ENTRY_OVERHEAD_BYTES <= self.memory_bytes:
                memory.admit(key, size + ENTRY_OVERHEAD_BYTES)
                t.promotions += 1
            return Served.DISK
        t.miss_bytes += size
        if self.admission.should_admit(key, len(disk)) or not self.disk_evicted:
            t.disk_write_bytes += size
            if head + size <= self.disk_bytes and disk.admit(key, head + size):
                self.disk_evicted = True
        if size <= self.cap and size + ENTRY_OVERHEAD_BYTES <= self.memory_bytes:
            memory.admit(key, size + ENTRY_OVERHEAD_BYTES)
        return Served.ORIGIN
