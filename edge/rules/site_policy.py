"""Cache policies per host and path: what the edge does where the origin is silent.

A `[[policies]]` rule (first match in config order, like routes) can give a lifetime to
responses that carry no freshness information of their own (a default TTL, per-extension
profiles such as HLS/DASH playlists 2 s and segments a day, a short negative TTL for
404/410), a grace period for serving stale content when every origin fails, and the
query-string handling of the cache key. What the key drops is dropped from the URL sent
upstream too, so the origin never answers on something the key ignores. Pure.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from edge.request.key import lower_host
from edge.rules.host import normalise_host
from edge.rules.streaming import LIVE_FALLBACK_TTL_S, MediaKind, media_kind

__all__ = [
    "DEFAULT_POLICY",
    "NEGATIVE_STATUSES",
    "CachePolicy",
    "PolicySet",
    "key_url_form",
    "normalise_target",
]

NEGATIVE_STATUSES = frozenset({404, 410})


@dataclass(frozen=True, slots=True, kw_only=True)
class CachePolicy:
    """How one host/path prefix is cached where the origin says nothing."""

    host: str = "*"  # "*", an exact host, or "*.example.com"
    path_prefix: str = "/"  # plain prefix of the raw path
    default_ttl_s: float = 0.0  # lifetime of responses without freshness information; 0 = RFC default (none)
    negative_ttl_s: float = 0.0  # lifetime of 404/410 without freshness information
    grace_s: float = 0.0  # serve stale this long past expiry when every upstream fails
    ttl_by_extension: Mapping[str, float] = field(default_factory=dict)  # "m3u8" → 2.0 (lower-case, no dot)
    query: Literal["keep", "sort", "drop"] = "keep"  # the query string in the key and upstream URL
    drop_params: tuple[str, ...] = ()  # parameter name patterns removed (fnmatch, e.g. "utm_*")
    store_error_statuses: tuple[int, ...] = ()  # 400/413/414/431/5xx stored anyway (never by default)
    slice_bytes: int = 1024 * 1024  # larger objects are fetched and kept as slices of this size; 0 = off
    slice_read_ahead: int = 2  # slices fetched ahead of a client reading a partial object
    streaming: bool = True  # HLS/DASH lifetimes where the origin is silent (edge.rules.streaming)
    playlist_ttl_s: float = 0.0  # live playlists/manifests; 0 = half the target duration
    vod_playlist_ttl_s: float = 3600.0  # playlists that will not change (#EXT-X-ENDLIST, static MPD)
    segment_ttl_s: float = 86400.0  # media segments (.ts, .m4s, ...): immutable by name

    @property
    def rewrites(self) -> bool:
        """True when the target used for the key differs from the one the client sent."""
        return self.query != "keep" or bool(self.drop_params)

    def silent_ttl(self, status: int, target: str) -> float | None:
        """The lifetime for a response of `status` that carries no freshness information."""
        path = target.split("?", 1)[0]
        dot = path.rfind(".")
        if dot > path.rfind("/") and self.ttl_by_extension:
            ttl = self.ttl_by_extension.get(path[dot + 1 :].lower())
            if ttl is not None:
                return ttl
        if self.streaming and status == 200:  # issue 14: segments and playlists
            kind = media_kind(path, None)
            if kind is MediaKind.SEGMENT:
                return self.segment_ttl_s
            if kind is MediaKind.PLAYLIST:  # until its body says live or VOD (edge.fill.streaming)
                return self.playlist_ttl_s or LIVE_FALLBACK_TTL_S
        if status in NEGATIVE_STATUSES:
            return self.negative_ttl_s or None
        return self.default_ttl_s or None

    def matches(self, host: str, target: str) -> bool:
        """True when this rule covers the request."""
        if not target.startswith(self.path_prefix):
            return False
        if self.host == "*":
            return True
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.lower().rstrip(".")
        if self.host.startswith("*."):
            return name.endswith(self.host[1:])
        return name == self.host


DEFAULT_POLICY = CachePolicy()


class PolicySet:
    """The `[[policies]]` rules; the first that matches applies, else the RFC defaults."""

    def __init__(self, rules: Iterable[CachePolicy] = ()) -> None:
        self._rules = tuple(rules)
        self.rewrites = any(rule.rewrites for rule in self._rules)  # any rule changes keys

    def match(self, host: str, target: str) -> CachePolicy:
        """The policy for a request."""
        for rule in self._rules:
            if rule.matches(host, target):
                return rule
        return DEFAULT_POLICY


def _dropped(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def normalise_target(target: str, policy: CachePolicy) -> str:
    """The target the key and the upstream request use (query kept, sorted or pruned).

    Parameters are compared and kept as raw bytes: nothing is decoded, so a parameter the
    key keeps reaches the origin exactly as the client sent it.
    """
    if not policy.rewrites or "?" not in target:
        return target
    path, _, query = target.partition("?")
    if policy.query == "drop":
        return path
    params = [p for p in query.split("&") if p]
    if policy.drop_params:
        params = [p for p in params if not _dropped(p.split("=", 1)[0], policy.drop_params)]
    if policy.query == "sort":
        params.sort()
    return f"{path}?{'&'.join(params)}" if params else path


def key_url_form(policies: PolicySet) -> Callable[[str], str]:
    """A function giving a URL the form cache keys have: lower-case host, the policy's query."""

    def normalise(url: str) -> str:
        scheme, sep, rest = url.partition("://")
        if not sep:
            return url
        host, slash, target = rest.partition("/")
        target = slash + target
        host = normalise_host(host) or lower_host(host)  # the form request keys use (issue 12)
        if "?" in target:
            target = normalise_target(target, policies.match(host, target))
        return f"{scheme.lower()}://{host}{target}"

    return normalise
