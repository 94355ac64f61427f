"""The stores and coalescing: `[cache]` (CacheConfig, its Eviction choice) and `[coalesce]`.

edge/config/deployment.py calls `parse_cache` and `parse_coalesce` with the decoded tables;
both raise ConfigError naming the dotted key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from edge.config.checks import GiB, KiB, MiB, boolean, check_keys, choice, number, opt_str, parse_size
from edge.config.errors import ConfigError

__all__ = ["CacheConfig", "CoalesceConfig", "Eviction", "parse_cache", "parse_coalesce"]


class Eviction(StrEnum):
    """The eviction policy of the memory and disk tiers (`[cache] policy`); app.py builds it."""

    GDSF = "gdsf"  # edge/store/gdsf.py: size-aware, frequency with aging (memory); disk runs S3-FIFO
    S3FIFO = "s3fifo"  # edge/store/s3fifo.py: scan-resistant; one-hit wonders leave first
    LRU = "lru"  # edge/store/eviction.py: the least recently used leaves first (the baseline)


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfig:
    """Stores and HTTP caching knobs (`[cache]`)."""

    memory_bytes: int = 256 * MiB  # memory tier budget
    memory_max_object_bytes: int | None = None  # larger bodies live on disk only; None: memory_object_cap
    disk_dir: str | None = None  # disk tier directory ("{node}" is replaced); None = memory only
    disk_bytes: int = 2 * GiB  # disk tier budget
    disk_max_object_bytes: int = 1 * GiB  # larger bodies are served but not stored
    policy: Eviction = Eviction.GDSF  # memory tier policy; disk: s3fifo (lru if "lru")
    disk_admission: Literal["all", "second_hit"] = "second_hit"  # which fills are written to disk
    disk_admission_window: int = 0  # second_hit: misses a first miss is remembered; 0 = adaptive
    heuristic_fraction: float = 0.1  # RFC 9111 §4.2.2: share of (Date - Last-Modified)
    heuristic_max_s: float = 86400.0  # upper bound of a heuristic lifetime
    allow_set_cookie: bool = False  # store responses carrying Set-Cookie (never by default)
    max_variants: int = 32  # Vary variants kept per URL; one more evicts the oldest

    def memory_object_cap(self, *, has_disk: bool) -> int:
        """The largest body the memory tier takes: memory_max_object_bytes, else by tiering.

        With a disk tier, 64 KiB: bench/hitratio measured it best for object hits (larger
        bodies cost RAM that many small objects would use better, and are sent from disk).
        Without one, RAM is the only place an object can be cached, so 8 MiB.
        """
        if self.memory_max_object_bytes is not None:
            return self.memory_max_object_bytes
        return 64 * KiB if has_disk else 8 * MiB


@dataclass(frozen=True, slots=True, kw_only=True)
class CoalesceConfig:
    """Request coalescing (`[coalesce]`)."""

    head_timeout_s: float = 30.0  # how long a request waits for a fill's response head (then 504)
    idle_timeout_s: float = 30.0  # longest gap between body chunks a reader waits (then abort)
    pass_memo_s: float = 10.0  # how long an unshareable response stops coalescing for its key
    spool_memory_bytes: int = 8 * MiB  # fill bytes kept in memory before spilling to a file


def parse_cache(t: Mapping[str, Any]) -> CacheConfig:
    """Validates `[cache]`."""
    d = CacheConfig()
    check_keys(t, set(CacheConfig.__dataclass_fields__), "cache")
    admission = t.get("disk_admission", d.disk_admission)
    if admission not in ("all", "second_hit"):
        raise ConfigError(f'cache.disk_admission: expected "all" or "second_hit", got {admission!r}')
    window = t.get("disk_admission_window", d.disk_admission_window)
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ConfigError(
            f"cache.disk_admission_window: expected a number of misses, 0 = auto; got {window!r}"
        )
    return CacheConfig(
        memory_bytes=parse_size(t.get("memory_bytes", d.memory_bytes), "cache.memory_bytes"),
        memory_max_object_bytes=None
        if t.get("memory_max_object_bytes") is None
        else parse_size(t["memory_max_object_bytes"], "cache.memory_max_object_bytes"),
        disk_dir=opt_str(t, "disk_dir", "cache"),
        disk_bytes=parse_size(t.get("disk_bytes", d.disk_bytes), "cache.disk_bytes"),
        disk_max_object_bytes=parse_size(
            t.get("disk_max_object_bytes", d.disk_max_object_bytes), "cache.disk_max_object_bytes"
        ),
        policy=choice(t, "policy", d.policy, "cache", "eviction policy"),
        disk_admission=admission,
        disk_admission_window=window,
        heuristic_fraction=number(t, "heuristic_fraction", d.heuristic_fraction, "cache"),
        heuristic_max_s=number(t, "heuristic_max_s", d.heuristic_max_s, "cache"),
        allow_set_cookie=boolean(t, "allow_set_cookie", d.allow_set_cookie, "cache"),
        max_variants=_max_variants(t, d.max_variants),
    )


def _max_variants(t: Mapping[str, Any], default: int) -> int:
    value = t.get("max_variants", default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"cache.max_variants: expected an integer >= 1, got {value!r}; write e.g. 32")
    return value


def parse_coalesce(t: Mapping[str, Any]) -> CoalesceConfig:
    """Validates `[coalesce]`."""
    d = CoalesceConfig()
    check_keys(t, set(CoalesceConfig.__dataclass_fields__), "coalesce")
    return CoalesceConfig(
        head_timeout_s=number(t, "head_timeout_s", d.head_timeout_s, "coalesce"),
        idle_timeout_s=number(t, "idle_timeout_s", d.idle_timeout_s, "coalesce"),
        pass_memo_s=number(t, "pass_memo_s", d.pass_memo_s, "coalesce"),
        spool_memory_bytes=parse_size(
            t.get("spool_memory_bytes", d.spool_memory_bytes), "coalesce.spool_memory_bytes"
        ),
    )
