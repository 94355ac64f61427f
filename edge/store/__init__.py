"""The cache stores: the contract, memory and disk tiers, the tiered store, eviction policies."""

from __future__ import annotations

from edge.store.admission import AdmissionMode, AdmitAll, DiskAdmission, SecondHitFilter
from edge.store.base import CHUNK_BYTES, Hit, RefuseReason, RemoveReason, Store, StoreStats, Writer
from edge.store.disk import DiskHit, DiskStore, DiskWriter
from edge.store.eviction import EvictionPolicy, LRUPolicy
from edge.store.gdsf import GDSFPolicy
from edge.store.memory import MemoryHit, MemoryStore, MemoryWriter
from edge.store.s3fifo import S3FIFOPolicy
from edge.store.tiered import TieredStore, TieredWriter

__all__ = [
    "CHUNK_BYTES",
    "AdmissionMode",
    "AdmitAll",
    "DiskAdmission",
    "DiskHit",
    "DiskStore",
    "DiskWriter",
    "EvictionPolicy",
    "GDSFPolicy",
    "Hit",
    "LRUPolicy",
    "MemoryHit",
    "MemoryStore",
    "MemoryWriter",
    "RefuseReason",
    "RemoveReason",
    "S3FIFOPolicy",
    "SecondHitFilter",
    "Store",
    "StoreStats",
    "TieredStore",
    "TieredWriter",
    "Writer",
]
