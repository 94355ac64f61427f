"""A cap on the Vary variants kept per URL: bookkeeping only, it returns victims.

A response that varies on a request field is stored once per distinct value the field
takes. Normalising Accept-Encoding bounds that field, but an origin may vary on anything
(User-Agent, a custom header) and a client can send a new value with every request, so
each URL keeps at most `max_per_url` variants: storing one more evicts the oldest (issue
12). The filler calls `add` when it stores a variant and removes the ids it returns.
Memory is bounded too: at most `max_urls` URLs are tracked (least recently added dropped;
their stored variants then age out through the store's own eviction).
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["VariantLimiter"]


class VariantLimiter:
    """Tracks the variant ids stored under each primary key, oldest first."""

    def __init__(self, *, max_per_url: int, max_urls: int = 100_000) -> None:
        self._max_per_url = max(1, max_per_url)
        self._max_urls = max(1, max_urls)
        self._urls: OrderedDict[bytes, OrderedDict[bytes, None]] = OrderedDict()

    def add(self, primary: bytes, variant: bytes) -> list[bytes]:
        """Records a stored variant; returns the variant ids to evict (oldest first)."""
        variants = self._urls.get(primary)
        if variants is None:
            variants = self._urls[primary] = OrderedDict()
            if len(self._urls) > self._max_urls:
                self._urls.popitem(last=False)
        else:
            self._urls.move_to_end(primary)
        variants.pop(variant, None)  # a refreshed variant becomes the newest
        variants[variant] = None
        victims: list[bytes] = []
        while len(variants) > self._max_per_url:
            victims.append(variants.popitem(last=False)[0])
        return victims

    def forget(self, primary: bytes) -> None:
        """Drops what is known of a URL (its variants were purged)."""
        self._urls.pop(primary, None)

    def __len__(self) -> int:
        return len(self._urls)
