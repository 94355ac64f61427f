"""The quick start's `--slice-size`, `--fill-idle-timeout` and `--playlist-ttl` (issue 14)."""

from __future__ import annotations

import dataclasses
from typing import Any

from edge.config.deployment import EdgeConfig
from edge.config.errors import ConfigError
from edge.config.media import parse_policy_media
from edge.rules.site_policy import DEFAULT_POLICY

__all__ = ["quick_media"]


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
