"""Playlists, manifests and segments, and their lifetimes where the origin is silent (pure)."""

from __future__ import annotations

import pytest

from edge.rules.site_policy import CachePolicy
from edge.rules.streaming import (
    LIVE_FALLBACK_TTL_S,
    MediaKind,
    PlaylistFacts,
    PlaylistKind,
    media_kind,
    origin_silent,
    playlist_lifetime,
    read_playlist,
)

LIVE = b"#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:6.0,\nseg3.ts\n"


@pytest.mark.parametrize(
    ("target", "content_type", "kind"),
    [
        ("/a/index.m3u8", None, MediaKind.PLAYLIST),
        ("/a/INDEX.M3U8?token=1", None, MediaKind.PLAYLIST),
        ("/a/manifest.mpd", None, MediaKind.PLAYLIST),
        ("/a/live", "application/vnd.apple.mpegURL; charset=utf-8", MediaKind.PLAYLIST),
        ("/a/live", "application/dash+xml", MediaKind.PLAYLIST),
        ("/a/seg1.ts", "video/mp2t", MediaKind.SEGMENT),
        ("/a/chunk-5.m4s", None, MediaKind.SEGMENT),
        ("/a/movie.mp4", "video/mp4", MediaKind.OTHER),
        ("/a.b/file", None, MediaKind.OTHER),
    ],
)
def test_media_kind(target: str, content_type: str | None, kind: MediaKind) -> None:
    assert media_kind(target, content_type) is kind


class TestReadPlaylist:
    def test_live_hls_has_its_target_duration(self) -> None:
        assert read_playlist(LIVE) == PlaylistFacts(PlaylistKind.LIVE, 6.0)

    @pytest.mark.parametrize(
        "body",
        [
            LIVE + b"#EXT-X-ENDLIST\n",
            b"#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:6\n",
            b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nlow.m3u8\n",
            b'<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static">',
        ],
    )
    def test_vod(self, body: bytes) -> None:
        assert read_playlist(body).kind is PlaylistKind.VOD

    def test_dynamic_mpd_has_its_update_period(self) -> None:
        body = b'<MPD type="dynamic" minimumUpdatePeriod="PT4S" availabilityStartTime="2030-01-01T00:00:00Z">'
        assert read_playlist(body) == PlaylistFacts(PlaylistKind.LIVE, 4.0)

    def test_other_bodies_are_unknown(self) -> None:
        assert read_playlist(b"<html>not a playlist</html>").kind is PlaylistKind.UNKNOWN


class TestLifetime:
    def test_live_is_half_the_target_duration_unless_configured(self) -> None:
        facts = PlaylistFacts(PlaylistKind.LIVE, 6.0)
        assert playlist_lifetime(facts, live_ttl_s=0, vod_ttl_s=3600) == 3.0
        assert playlist_lifetime(facts, live_ttl_s=1.5, vod_ttl_s=3600) == 1.5
        unknown = PlaylistFacts(PlaylistKind.LIVE, None)
        assert playlist_lifetime(unknown, live_ttl_s=0, vod_ttl_s=3600) == LIVE_FALLBACK_TTL_S

    def test_vod_and_unknown(self) -> None:
        assert playlist_lifetime(PlaylistFacts(PlaylistKind.VOD), live_ttl_s=0, vod_ttl_s=900) == 900
        assert playlist_lifetime(PlaylistFacts(PlaylistKind.UNKNOWN), live_ttl_s=0, vod_ttl_s=900) is None


def test_origin_silent() -> None:
    assert origin_silent([("Last-Modified", "Tue, 01 Jan 2030 00:00:00 GMT")])
    assert not origin_silent([("Cache-Control", "max-age=2")])
    assert not origin_silent([("Cache-Control", "no-cache")])
    assert not origin_silent([("Expires", "Tue, 01 Jan 2030 00:00:00 GMT")])


def test_policy_defaults_for_silent_origins() -> None:
    policy = CachePolicy()
    assert policy.silent_ttl(200, "/v/seg1.ts") == policy.segment_ttl_s
    assert policy.silent_ttl(200, "/v/index.m3u8") == LIVE_FALLBACK_TTL_S  # until the body is read
    assert policy.silent_ttl(200, "/v/page.html") is None
    assert CachePolicy(streaming=False).silent_ttl(200, "/v/seg1.ts") is None
    assert CachePolicy(ttl_by_extension={"ts": 60.0}).silent_ttl(200, "/v/seg1.ts") == 60.0
