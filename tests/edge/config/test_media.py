"""[[policies]] keys for slices and streaming: parsed into CachePolicy, mistakes name the key."""

from __future__ import annotations

import pytest

from edge.config.deployment import ConfigError, EdgeConfig, parse, quickstart
from edge.config.quick_media import quick_media
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
        policy_with(
            slice_bytes="4MiB", slice_read_ahead=0, streaming=False, playlist_ttl_s=1.5, vod_playlist_ttl_s=60
        ),
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


class TestQuickStartFlags:
    def base(self) -> EdgeConfig:
        return quickstart(origin="http://127.0.0.1:8000", listen="127.0.0.2:8080")

    def test_flags_set_the_policy_and_the_idle_timeouts(self) -> None:
        cfg = quick_media(self.base(), slice_size="4MiB", fill_idle_timeout="45", playlist_ttl="1.5")
        (rule,) = cfg.policies
        assert (rule.slice_bytes, rule.playlist_ttl_s, rule.streaming) == (4 << 20, 1.5, True)
        assert cfg.coalesce.idle_timeout_s == 45
        assert all(pool.timeouts.idle_s == 45 for pool in cfg.pools.values())

    def test_no_flags_change_nothing(self) -> None:
        base = self.base()
        assert quick_media(base, slice_size=None, fill_idle_timeout=None, playlist_ttl=None) == base

    @pytest.mark.parametrize(
        ("flags", "message"),
        [
            ({"slice_size": "10"}, r"slice_bytes: expected 0"),
            ({"fill_idle_timeout": "0"}, r"^--fill-idle-timeout: expected seconds > 0"),
            ({"fill_idle_timeout": "soon"}, r"^--fill-idle-timeout: expected a number"),
            ({"playlist_ttl": "-1"}, r"^--playlist-ttl: expected a non-negative"),
        ],
    )
    def test_bad_flags_name_themselves(self, flags: dict[str, str], message: str) -> None:
        given = {"slice_size": None, "fill_idle_timeout": None, "playlist_ttl": None, **flags}
        with pytest.raises(ConfigError, match=message):
            quick_media(self.base(), **given)
