"""A stored playlist's lifetime, once its body says whether it is live or VOD (issue 14).

The policy gives a playlist the origin is silent about a short provisional lifetime at its
head (edge.rules.site_policy); when the whole body is in, the Filler calls `settle_playlist`,
which reads the body back from the fill's spool, asks edge.rules.streaming what kind of
playlist it is, and updates the stored entry's lifetime.
"""

from __future__ import annotations

from typing import Any

from edge.fill.coalesce import Fill
from edge.rules.site_policy import CachePolicy
from edge.rules.streaming import (
    PLAYLIST_SNIFF_BYTES,
    MediaKind,
    media_kind,
    origin_silent,
    playlist_lifetime,
    read_playlist,
)
from edge.store.base import Store
from edge.store.entry import EntryMeta

__all__ = ["settle_playlist"]


async def settle_playlist(
    fill: Fill[Any], meta: EntryMeta, store: Store, policy: CachePolicy, target: str
) -> bool:
    """Gives a just-stored playlist its live or VOD lifetime; True when the entry changed."""
    if not policy.streaming or meta.status != 200:
        return False
    content_type = next((v for n, v in meta.headers if n.lower() == "content-type"), None)
    if media_kind(target, content_type) is not MediaKind.PLAYLIST or not origin_silent(meta.headers):
        return False
    parts = [chunk async for chunk in fill.body(0, PLAYLIST_SNIFF_BYTES)]
    lifetime = playlist_lifetime(
        read_playlist(b"".join(parts)), live_ttl_s=policy.playlist_ttl_s, vod_ttl_s=policy.vod_playlist_ttl_s
    )
    if lifetime is None or lifetime == meta.lifetime_s:
        return False
    return await store.update_meta(meta.key, meta.replace(lifetime_s=lifetime), expect=meta)
