"""The cache stores: the contract, memory and disk tiers, the tiered store, eviction policies."""

from __future__ import annotations

from edge.store.base import CHUNK_BYTES, Hit, RefuseReason, RemoveReason, Store, StoreStats, Writer
from edge.store.disk import DiskHit, DiskStore, DiskWriter
from edge.store.eviction import EvictionPolicy, LRUPolicy
from edge.store.memory import MemoryHit, MemoryStore, MemoryWriter
from edge.store.s3fifo import S3FIFOPolicy
from edge.store.tiered import TieredStore, TieredWriter

__all__ = [
    "CHUNK_BYTES",
    "DiskHit",
    "DiskStore",
    "DiskWriter",
    "EvictionPolicy",
    "Hit",
    "LRUPolicy",
    "MemoryHit",
    "MemoryStore",
    "MemoryWriter",
    "RefuseReason",
    "RemoveReason",
    "S3FIFOPolicy",
    "Store",
    "StoreStats",
    "TieredStore",
    "TieredWriter",
    "Writer",
]
