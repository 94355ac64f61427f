"""A `[[policies]]` rule's keys for large objects and streaming (issue 14).

`parse_policy_media` validates them and returns the CachePolicy fields they set; the
deployment reader (edge/config/deployment.py) spreads them into the rule it builds.
The quick start's flags for them are applied by edge/config/quick_media.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge.config.checks import MiB, boolean, number, parse_size
from edge.config.errors import ConfigError
from edge.rules.site_policy import DEFAULT_POLICY

__all__ = ["MAX_SLICE_BYTES", "MIN_SLICE_BYTES", "POLICY_MEDIA_KEYS", "parse_policy_media"]

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
