"""The node's stores: an eviction policy per tier, the disk tier under its lock, the tiered store."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Protocol, assert_never

from edge.app.startup import StartupError
from edge.config.cache import CacheConfig, Eviction
from edge.config.deployment import EdgeConfig
from edge.store.admission import AdmissionMode, make_admission
from edge.store.dirlock import DirLock
from edge.store.disk import DiskStore, DiskUnusable
from edge.store.entry import EntryMeta
from edge.store.eviction import EvictionPolicy, LRUPolicy
from edge.store.gdsf import GDSFPolicy
from edge.store.memory import MemoryStore
from edge.store.s3fifo import S3FIFOPolicy
from edge.store.shared import SharedDiskStore
from edge.store.tiered import TieredStore

__all__ = ["hot_store", "lock_disk_dir", "memory_store", "open_disk", "policy", "tiered_store"]

log = logging.getLogger("edge.app")


class DiskShare(Protocol):
    """A worker's share of the machine's disk tier (edge.app.workers.WorkerPlan)."""

    @property
    def tmp(self) -> str: ...

    def owns(self, meta: EntryMeta) -> bool: ...


WHERE = "disk tier"  # how StartupError names the disk tier


def policy(kind: Eviction, max_bytes: int) -> EvictionPolicy:
    """The eviction policy `[cache] policy` names, for a tier of max_bytes."""
    match kind:
        case Eviction.GDSF:
            return GDSFPolicy(max_bytes)
        case Eviction.S3FIFO:
            return S3FIFOPolicy(max_bytes)
        case Eviction.LRU:
            return LRUPolicy(max_bytes)
    assert_never(kind)  # mypy fails here when a new Eviction has no policy above


def disk_policy(kind: Eviction, max_bytes: int) -> EvictionPolicy:
    """The disk tier's policy.

    GDSF ranks by hits per byte, right for RAM; the disk tier is there for byte hits.
    """
    return policy(Eviction.S3FIFO if kind is Eviction.GDSF else kind, max_bytes)


def memory_store(cfg: EdgeConfig) -> MemoryStore:
    """The memory tier."""
    cache = cfg.cache
    return MemoryStore(
        max_bytes=cache.memory_bytes,
        max_object_bytes=cache.memory_object_cap(has_disk=cfg.disk_dir is not None),
        policy=policy(cache.policy, cache.memory_bytes),
    )


def hot_store(cfg: EdgeConfig, hot_bytes: int) -> MemoryStore:
    """The store for keys other nodes own that turned hot here (edge.peering.routing)."""
    return MemoryStore(
        max_bytes=hot_bytes,
        max_object_bytes=min(hot_bytes, cfg.cache.memory_object_cap(has_disk=cfg.disk_dir is not None)),
        policy=policy(cfg.cache.policy, hot_bytes),
    )


def tiered_store(cache: CacheConfig, memory: MemoryStore, disk: DiskStore | None) -> TieredStore:
    """Memory over disk, with the disk admission `[cache] disk_admission` names."""
    admission = make_admission(AdmissionMode(cache.disk_admission), cache.disk_admission_window)
    return TieredStore(memory, disk, admission=admission)


async def lock_disk_dir(disk_dir: Path) -> DirLock | None:
    """Takes the disk directory for this node (one node per directory), or a StartupError."""
    try:
        return await asyncio.to_thread(DirLock.acquire, disk_dir)
    except DiskUnusable as exc:
        raise StartupError(f"{WHERE}: {exc}") from exc
    except OSError as exc:
        raise _unreadable(exc, disk_dir) from exc


async def open_disk(disk_dir: Path, cache: CacheConfig, share: DiskShare | None = None) -> DiskStore:
    """Opens the disk tier and its spool directory; a directory it cannot use is a StartupError.

    With `share`, a worker's tier on the machine's shared directory (edge.store.shared).
    """
    started = time.monotonic()
    kind = DiskStore if share is None else SharedDiskStore
    try:
        disk = await kind.open(
            disk_dir,
            max_bytes=cache.disk_bytes,
            max_object_bytes=cache.disk_max_object_bytes,
            policy=disk_policy(cache.policy, cache.disk_bytes),
            tmp="tmp" if share is None else share.tmp,
            owns=None if share is None else share.owns,
        )
    except DiskUnusable as exc:
        raise StartupError(f"{WHERE}: {exc}") from exc
    except OSError as exc:  # reading what is already there (permissions inside the tree)
        raise _unreadable(exc, disk_dir) from exc
    log.info(
        "disk tier %s: %d objects, %d bytes indexed in %.2fs",
        disk_dir,
        disk.stats.entries,
        disk.stats.bytes,
        time.monotonic() - started,
    )
    try:
        await asyncio.to_thread((disk_dir / "spool").mkdir, exist_ok=True)
    except OSError as exc:
        await disk.close()
        raise StartupError(
            f"{WHERE}: cannot create {disk_dir / 'spool'} ({exc.strerror}); remove what is in its way"
        ) from exc
    return disk


def _unreadable(exc: OSError, disk_dir: Path) -> StartupError:
    return StartupError(
        f"{WHERE}: {exc.strerror or exc} on {exc.filename or disk_dir}; fix its permissions "
        "or pick another directory"
    )
