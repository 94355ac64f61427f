"""Web cache deception armour: when may the edge give a response a lifetime of its own? Pure.

Where the origin is silent the edge adds freshness: a policy's `ttl_by_extension`,
`default_ttl_s`, `negative_ttl_s`, or the RFC 9111 §4.2.2 heuristic from Last-Modified.
Web cache deception turns that against the origin's users: a victim is lured to
`/account/x.css` (or `/account;x.css`, `/account%2Fx.css`, `/account/..%2Fstatic/x.css`), an
origin that routes by a looser reading of the path answers with the victim's private page
and no cache headers, and the edge, seeing ".css", keeps it for everyone. So a response
whose lifetime would come from the edge is stored only when

1. the request carried no Cookie or Authorization, unless the origin marked the response
   shareable itself (`public`, `s-maxage`, or CDN-Cache-Control deciding the policy);
2. the path is unambiguous: no `;` parameters, no encoded `/ \\ ; # ? % .` or control
   characters, no dot segments; every origin reads its last segment the same way;
3. the path's extension, if it has one, is in the table below, and the response's
   Content-Type is one the table allows for it (a private page is HTML or JSON, never CSS).

Responses with explicit freshness from the origin (max-age, s-maxage, Expires) are the
origin's own word and pass untouched; a negative response (404/410) is judged by rule 1
only, since error pages carry the site's type, not the path's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from edge.rules.cache_control import Directives
from edge.rules.outcome import NoStoreReason

__all__ = ["MEDIA_TYPES", "PathExtension", "edge_lifetime_refusal", "path_extension"]

_OCTETS = "application/octet-stream"  # a binary file served untyped: never a page

# extension -> media types a response may carry for the edge to keep it on its own word
_TEXT = {
    "css": ("text/css",),
    "js": ("text/javascript", "application/javascript", "application/x-javascript", "application/ecmascript"),
    "mjs": ("text/javascript", "application/javascript"),
    "json": ("application/json",),
    "map": ("application/json",),
    "html": ("text/html",),
    "htm": ("text/html",),
    "txt": ("text/plain",),
    "csv": ("text/csv",),
    "xml": ("application/xml", "text/xml"),
    "svg": ("image/svg+xml",),
    "webmanifest": ("application/manifest+json",),
    "m3u8": ("application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl", "audio/x-mpegurl"),
    "mpd": ("application/dash+xml",),
    "vtt": ("text/vtt",),
}
_BINARY = {
    "png": ("image/png",),
    "jpg": ("image/jpeg",),
    "jpeg": ("image/jpeg",),
    "gif": ("image/gif",),
    "webp": ("image/webp",),
    "avif": ("image/avif",),
    "ico": ("image/x-icon", "image/vnd.microsoft.icon"),
    "bmp": ("image/bmp",),
    "woff": ("font/woff", "application/font-woff"),
    "woff2": ("font/woff2",),
    "ttf": ("font/ttf", "application/x-font-ttf"),
    "otf": ("font/otf",),
    "eot": ("application/vnd.ms-fontobject",),
    "mp4": ("video/mp4",),
    "m4v": ("video/mp4", "video/x-m4v"),
    "m4s": ("video/iso.segment", "video/mp4", "audio/mp4"),
    "m4a": ("audio/mp4",),
    "webm": ("video/webm", "audio/webm"),
    "mp3": ("audio/mpeg",),
    "ogg": ("audio/ogg", "video/ogg", "application/ogg"),
    "ogv": ("video/ogg",),
    "wav": ("audio/wav", "audio/x-wav"),
    "flac": ("audio/flac",),
    "aac": ("audio/aac",),
    "ts": ("video/mp2t",),
    "mov": ("video/quicktime",),
    "pdf": ("application/pdf",),
    "zip": ("application/zip",),
    "gz": ("application/gzip",),
    "wasm": ("application/wasm",),
}
MEDIA_TYPES: Mapping[str, frozenset[str]] = {
    **{ext: frozenset(types) for ext, types in _TEXT.items()},
    **{ext: frozenset((*types, _OCTETS)) for ext, types in _BINARY.items()},
}

# encoded characters that change how a path splits or resolves: / \ ; # ? % . and controls
_STRUCTURAL = re.compile(r"%(?:2[fFeE35]|5[cC]|3[bBfF]|[01][0-9a-fA-F]|7[fF])")
_NEGATIVE = frozenset({404, 410})


@dataclass(frozen=True, slots=True)
class PathExtension:
    """The extension of a request path's last segment, as every origin would read it."""

    ambiguous: bool  # origins may read the path differently: no extension can be trusted
    extension: str = ""  # lower case, no dot; "" when the last segment has none


def path_extension(target: str) -> PathExtension:
    """The extension of the decoded last segment of `target`'s path, or ambiguous."""
    path = target.split("?", 1)[0]
    if any(c in path for c in ";\\#") or _STRUCTURAL.search(path):
        return PathExtension(ambiguous=True)
    segments = path.split("/")
    if any(segment in (".", "..") for segment in segments):
        return PathExtension(ambiguous=True)
    last = unquote(segments[-1], errors="replace") if "%" in segments[-1] else segments[-1]
    if any(ord(c) < 0x20 or c == "\x7f" for c in last):
        return PathExtension(ambiguous=True)
    dot = last.rfind(".")
    return PathExtension(ambiguous=False, extension=last[dot + 1 :].lower() if dot > 0 else "")


def _content_type(headers: Iterable[tuple[str, str]]) -> str | None:
    for name, value in headers:
        if name.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower()
    return None


def edge_lifetime_refusal(
    *,
    target: str,
    status: int,
    request_headers: Mapping[str, str],
    response_headers: Iterable[tuple[str, str]],
    directives: Directives,
    used_cdn_cc: bool,
    lifetime_s: float,
) -> NoStoreReason | None:
    """Why a response may not be stored on a lifetime the edge would give it, or None."""
    fields = tuple(response_headers)
    has_expires = any(name.lower() == "expires" for name, _ in fields)
    if directives.s_maxage is not None or directives.max_age is not None or (has_expires and not used_cdn_cc):
        return None  # explicit freshness: the origin decided, not the edge
    shareable = directives.public or used_cdn_cc
    if not shareable and ("cookie" in request_headers or "authorization" in request_headers):
        return NoStoreReason.CREDENTIALS
    if lifetime_s <= 0 or status in _NEGATIVE:
        return None  # nothing added (each reuse is validated upstream), or a negative answer
    ext = path_extension(target)
    if ext.ambiguous:
        return NoStoreReason.AMBIGUOUS_PATH
    if not ext.extension:
        return None
    allowed = MEDIA_TYPES.get(ext.extension)
    if allowed is None:
        return NoStoreReason.UNKNOWN_EXTENSION
    if _content_type(fields) not in allowed:
        return NoStoreReason.TYPE_MISMATCH
    return None
