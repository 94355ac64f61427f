"""HLS and DASH at the edge: playlists, manifests and segments, and their lifetimes — pure.

Streaming origins often send only Last-Modified. The RFC 9111 §4.2.2 heuristic then gives a
VOD playlist up to a day and a live playlist, rewritten every few seconds, almost nothing,
so every player's poll reaches the origin. Where the origin says nothing about freshness
(no max-age, s-maxage, Expires, no-cache or no-store), a route's policy decides instead:

    segment (.ts .m4s .aac ...)     `segment_ttl_s` (a day): segments are immutable by name
    playlist / manifest             `playlist_ttl_s` while only the name is known; once the
      (.m3u8 .mpd, or by type)      body is in: a live playlist gets `playlist_ttl_s`, or half
                                    its #EXT-X-TARGETDURATION (a DASH manifest: its
                                    minimumUpdatePeriod) when that is 0; a VOD one (#EXT-X-ENDLIST,
                                    PLAYLIST-TYPE:VOD, a master playlist, a static MPD) gets
                                    `vod_playlist_ttl_s`
Coalescing does the rest: every poll of an expired playlist joins the one refresh, so players
cost the origin one request per lifetime, however many there are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from edge.rules.cache_control import response_directives

__all__ = [
    "LIVE_FALLBACK_TTL_S",
    "PLAYLIST_SNIFF_BYTES",
    "MediaKind",
    "PlaylistFacts",
    "PlaylistKind",
    "media_kind",
    "origin_silent",
    "playlist_lifetime",
    "read_playlist",
]

LIVE_FALLBACK_TTL_S = 1.0  # a live playlist whose target duration cannot be read
PLAYLIST_SNIFF_BYTES = 256 * 1024  # the most of a playlist read to find its kind

_PLAYLIST_EXTS = frozenset({"m3u8", "m3u", "mpd"})
_SEGMENT_EXTS = frozenset(
    {"ts", "m4s", "m4a", "m4v", "aac", "ac3", "ec3", "cmfv", "cmfa", "cmft", "vtt", "webvtt"}
)
_PLAYLIST_TYPES = frozenset(
    {
        "application/vnd.apple.mpegurl",
        "application/x-mpegurl",
        "audio/mpegurl",
        "audio/x-mpegurl",
        "application/dash+xml",
    }
)
_ISO_SECONDS = re.compile(r"^PT(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$")


class MediaKind(Enum):
    """What a streaming response is to the edge."""

    PLAYLIST = "playlist"  # HLS playlist or DASH manifest: short-lived when live
    SEGMENT = "segment"  # a media segment: immutable by name
    OTHER = "other"


class PlaylistKind(Enum):
    """What a playlist's body says about its future."""

    LIVE = "live"  # rewritten as the stream goes on
    VOD = "vod"  # complete: will not change
    UNKNOWN = "unknown"  # not a playlist we can read


@dataclass(frozen=True, slots=True)
class PlaylistFacts:
    """What the edge reads from a playlist's body."""

    kind: PlaylistKind
    refresh_s: float | None = None  # HLS target duration, or DASH minimumUpdatePeriod


def media_kind(target: str, content_type: str | None) -> MediaKind:
    """Recognises playlists and manifests by extension or Content-Type, segments by extension."""
    path = target.split("?", 1)[0]
    slash, dot = path.rfind("/"), path.rfind(".")
    ext = path[dot + 1 :].lower() if dot > slash else ""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if ext in _PLAYLIST_EXTS or media_type in _PLAYLIST_TYPES:
        return MediaKind.PLAYLIST
    if ext in _SEGMENT_EXTS:
        return MediaKind.SEGMENT
    return MediaKind.OTHER


def origin_silent(headers: Iterable[tuple[str, str]]) -> bool:
    """Whether the origin said nothing about freshness (the edge's defaults may apply)."""
    headers = tuple(headers)
    directives, used_cdn = response_directives(headers)
    if directives.max_age is not None or directives.s_maxage is not None:
        return False
    if directives.no_cache or directives.no_store:
        return False
    return used_cdn or not any(n.lower() == "expires" for n, _ in headers)


def _iso_duration(value: str) -> float | None:
    match = _ISO_SECONDS.match(value.strip())
    if match is None or not any(match.groups()):
        return None
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def read_playlist(body: bytes) -> PlaylistFacts:
    """Reads an HLS playlist or a DASH manifest's kind and refresh interval."""
    text = body.decode("utf-8", "replace").lstrip("\ufeff \r\n\t")
    if text.startswith("#EXTM3U"):
        target = None
        vod = False
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("#EXT-X-TARGETDURATION:"):
                value = line.partition(":")[2].strip()
                target = float(value) if value.replace(".", "", 1).isdigit() else None
            elif line == "#EXT-X-ENDLIST" or line.replace(" ", "") == "#EXT-X-PLAYLIST-TYPE:VOD":
                vod = True
            elif line.startswith("#EXT-X-STREAM-INF"):
                vod = True  # a master playlist names variants; it does not roll
        return PlaylistFacts(PlaylistKind.VOD if vod else PlaylistKind.LIVE, target)
    mpd = re.search(r"<MPD\b[^>]*>", text)
    if mpd is None:
        return PlaylistFacts(PlaylistKind.UNKNOWN)
    attrs = mpd.group(0)
    kind = re.search(r'\btype\s*=\s*"([^"]*)"', attrs)
    if kind is None or kind.group(1) != "dynamic":
        return PlaylistFacts(PlaylistKind.VOD)
    period = re.search(r'\bminimumUpdatePeriod\s*=\s*"([^"]*)"', attrs)
    return PlaylistFacts(PlaylistKind.LIVE, _iso_duration(period.group(1)) if period else None)


def playlist_lifetime(facts: PlaylistFacts, *, live_ttl_s: float, vod_ttl_s: float) -> float | None:
    """The lifetime of a playlist the origin was silent about; None: leave it as it is.

    `live_ttl_s` 0 means "half the target duration" (HLS) or the manifest's update period
    (DASH), else LIVE_FALLBACK_TTL_S.
    """
    if facts.kind is PlaylistKind.VOD:
        return vod_ttl_s
    if facts.kind is PlaylistKind.LIVE:
        if live_ttl_s > 0:
            return live_ttl_s
        if facts.refresh_s is not None and facts.refresh_s > 0:
            return facts.refresh_s / 2
        return LIVE_FALLBACK_TTL_S
    return None
