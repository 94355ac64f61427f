"""A `[[policies]]` rule's keys for large objects and streaming (issue 14), and their flags.

`parse_policy_media` validates them and returns the CachePolicy fields they set; the
deployment reader (edge/config/deployment.py) spreads them into the rule it builds.
`quick_media` applies the quick start's flags to a quick-start config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edge.config.checks import MiB, boolean, number, parse_size
from edge.config.errors import ConfigError
from edge.rules.site_policy import DEFAULT_POLICY

if TYPE_CHECKING:
    from edge.config.deployment import EdgeConfig

__all__ = ["MAX_SLICE_BYTES", "MIN_SLICE_BYTES", "POLICY_MEDIA_KEYS", "parse_policy_media", "quick_media"]

MIN_SLICE_BYTES = 64 * 1024  # smaller slices cost more in requests than they save
MAX_SLICE_BYTES = 64 * MiB  # a slice is read whole by a cold seek and kept as one entry

POLICY_MEDIA_KEYS = frozenset(
    {"slice_bytes", "slice_read_ahead", "streaming", "playlist_ttl_s", "vod_playlist_ttl_s", "segment_ttl_s"}
)


def _slice_bytes(t: Mapping[str, Any], path: str) -> int:
    value = parse_size(t.get("slice_bytes", DEFAULT_POLICY.slice_bytes), f"{path}.slice_bytes")
    if value != 0 and not MIN_SLICE_BYTES <= value <= MAX_SLICE_BYTES:
        raise ConfigError(
            f'{path}.slice_bytes: expected 0 (whole objects) or a size from 64KiB to 64MiB such as "1MiB", '
            f"got {value}"
        )
    return value


def _read_ahead(t: Mapping[str, Any], path: str) -> int:
    value = t.get("slice_read_ahead", DEFAULT_POLICY.slice_read_ahead)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 64:
        raise ConfigError(
            f"{path}.slice_read_ahead: expected an integer from 0 to 64 such as 2, got {value!r}"
        )
    return value


def parse_policy_media(t: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The CachePolicy fields a rule's slice and streaming keys set (defaults where absent)."""
    d = DEFAULT_POLICY
    return {
        "slice_bytes": _slice_bytes(t, path),
        "slice_read_ahead": _read_ahead(t, path),
        "streaming": boolean(t, "streaming", d.streaming, path),
        "playlist_ttl_s": number(t, "playlist_ttl_s", d.playlist_ttl_s, path),
        "vod_playlist_ttl_s": number(t, "vod_playlist_ttl_s", d.vod_playlist_ttl_s, path),
        "segment_ttl_s": number(t, "segment_ttl_s", d.segment_ttl_s, path),
    }


def quick_media(
    cfg: EdgeConfig, *, slice_size: str | None, fill_idle_timeout: str | None, playlist_ttl: str | None
) -> EdgeConfig:
    """The quick start's `--slice-size`, `--fill-idle-timeout` and `--playlist-ttl` applied to cfg.

    `--fill-idle-timeout` is the longest gap between body bytes of a fill, both for the origin
    fetch and for clients reading the fill; there is no wall-clock cap on a sliced fill that
    still receives bytes (each slice is its own request, bounded by the origin's total timeout).
    """
    raw: dict[str, Any] = {}
    if slice_size is not None:
        raw["slice_bytes"] = slice_size
    if playlist_ttl is not None:
        raw["playlist_ttl_s"] = _seconds(playlist_ttl, "--playlist-ttl")
    if raw:
        fields = parse_policy_media(raw, "quick start")
        cfg = dataclasses.replace(cfg, policies=(dataclasses.replace(DEFAULT_POLICY, **fields),))
    if fill_idle_timeout is not None:
        idle = _seconds(fill_idle_timeout, "--fill-idle-timeout")
        if idle <= 0:
            raise ConfigError("--fill-idle-timeout: expected seconds > 0 such as 30")
        pools = {
            name: dataclasses.replace(pool, timeouts=dataclasses.replace(pool.timeouts, idle_s=idle))
            for name, pool in cfg.pools.items()
        }
        coalesce = dataclasses.replace(cfg.coalesce, idle_timeout_s=idle)
        cfg = dataclasses.replace(cfg, pools=pools, coalesce=coalesce)
    return cfg


def _seconds(value: str, flag: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{flag}: expected a number of seconds such as 2, got {value!r}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise ConfigError(f"{flag}: expected a non-negative number of seconds such as 2, got {value!r}")
    return seconds
