"""[[policies]] keys for slices and streaming: parsed into CachePolicy, mistakes name the key."""

from __future__ import annotations

import pytest

from edge.config.deployment import ConfigError, parse
from edge.rules.site_policy import DEFAULT_POLICY

BASE = {
    "nodes": {"edge1": {"listen": "127.0.0.2:8080"}},
    "origins": {"web": {"servers": ["http://127.0.0.1:8000"]}},
    "routes": [{"host": "*", "origin": "web"}],
}


def policy_with(**keys: object) -> dict[str, object]:
    return {**BASE, "policies": [{"path_prefix": "/video/", **keys}]}


def test_defaults_slice_and_know_streaming() -> None:
    rule = parse(policy_with(), "edge1").policies[0]
    assert rule.slice_bytes == DEFAULT_POLICY.slice_bytes == 1 << 20
    assert rule.streaming and rule.playlist_ttl_s == 0 and rule.segment_ttl_s == 86400


def test_keys_are_read() -> None:
    rule = parse(
        policy_with(slice_bytes="4MiB", slice_read_ahead=0, streaming=False, playlist_ttl_s=1.5, vod_playlist_ttl_s=60),
        "edge1",
    ).policies[0]
    assert (rule.slice_bytes, rule.slice_read_ahead, rule.streaming) == (4 << 20, 0, False)
    assert (rule.playlist_ttl_s, rule.vod_playlist_ttl_s) == (1.5, 60)
    assert parse(policy_with(slice_bytes=0), "edge1").policies[0].slice_bytes == 0  # slicing off


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"slice_bytes": 1000}, r"^policies\[0\]\.slice_bytes: expected 0 \(whole objects\) or a size"),
        ({"slice_bytes": "1GiB"}, r"^policies\[0\]\.slice_bytes:"),
        ({"slice_read_ahead": -1}, r"^policies\[0\]\.slice_read_ahead: expected an integer"),
        ({"slice_read_ahead": True}, r"^policies\[0\]\.slice_read_ahead:"),
        ({"playlist_ttl_s": -2}, r"^policies\[0\]\.playlist_ttl_s: expected a non-negative number"),
        ({"streaming": "yes"}, r"^policies\[0\]\.streaming:"),
    ],
)
def test_mistakes_name_the_key(keys: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(policy_with(**keys), "edge1")
