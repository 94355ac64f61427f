"""VariantLimiter: at most N variants per URL, oldest evicted, bounded memory (issue 12)."""

from __future__ import annotations

from edge.fill.variants import VariantLimiter


class TestVariantLimiter:
    def test_add_returns_oldest_variant_when_url_exceeds_cap(self) -> None:
        limiter = VariantLimiter(max_per_url=2)
        assert limiter.add(b"u", b"a") == [] and limiter.add(b"u", b"b") == []
        assert limiter.add(b"u", b"c") == [b"a"]
        assert limiter.add(b"v", b"x") == []  # another URL has its own budget

    def test_add_refreshes_variant_when_stored_again(self) -> None:
        limiter = VariantLimiter(max_per_url=2)
        limiter.add(b"u", b"a")
        limiter.add(b"u", b"b")
        limiter.add(b"u", b"a")  # a is now the newest
        assert limiter.add(b"u", b"c") == [b"b"]

    def test_tracked_urls_are_bounded_when_many_urls_vary(self) -> None:
        limiter = VariantLimiter(max_per_url=2, max_urls=3)
        for i in range(10):
            limiter.add(str(i).encode(), b"a")
        assert len(limiter) == 3
