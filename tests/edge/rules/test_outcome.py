"""The Cache-Status header (RFC 9211) and outcome names (edge/rules/outcome.py)."""

from __future__ import annotations

import pytest

from edge.rules.outcome import CacheOutcome, Fwd, NoStoreReason, cache_status, reason_detail


class TestCacheStatusHits:
    def test_cache_status_writes_hit_and_ttl_when_fresh_hit(self) -> None:
        assert cache_status(CacheOutcome.HIT, ttl=42.9) == "edgecache; hit; ttl=42"

    def test_cache_status_writes_negative_ttl_when_stale_while_revalidate(self) -> None:
        value = cache_status(CacheOutcome.STALE_HIT, ttl=-2.5)
        assert value == "edgecache; hit; ttl=-3; detail=stale-while-revalidate"

    def test_cache_status_floors_ttl_when_just_expired(self) -> None:
        assert cache_status(CacheOutcome.HIT, ttl=-0.2) == "edgecache; hit; ttl=-1"

    def test_cache_status_omits_ttl_when_unknown(self) -> None:
        assert cache_status(CacheOutcome.HIT, ttl=None) == "edgecache; hit"

    def test_cache_status_omits_fwd_status_when_hit(self) -> None:
        assert cache_status(CacheOutcome.HIT, fwd_status=200) == "edgecache; hit"


class TestCacheStatusForwards:
    def test_cache_status_writes_miss_and_stored_when_filled(self) -> None:
        value = cache_status(CacheOutcome.MISS, ttl=None, stored=True, fwd_status=None)
        assert value == "edgecache; fwd=miss; stored"

    def test_cache_status_writes_reason_when_not_stored(self) -> None:
        value = cache_status(
            CacheOutcome.MISS,
            stored=False,
            detail=reason_detail(NoStoreReason.NO_STORE),
            fwd=Fwd.URI_MISS,
        )
        assert value == "edgecache; fwd=uri-miss; detail=no-store"

    def test_cache_status_writes_stale_and_304_when_revalidated(self) -> None:
        value = cache_status(CacheOutcome.REVALIDATED, ttl=60, fwd_status=304)
        assert value == "edgecache; fwd=stale; fwd-status=304; ttl=60"

    def test_cache_status_writes_stale_and_200_when_expired_and_refetched(self) -> None:
        value = cache_status(CacheOutcome.EXPIRED, ttl=30, stored=True, fwd_status=200)
        assert value == "edgecache; fwd=stale; fwd-status=200; ttl=30; stored"

    def test_cache_status_writes_stale_if_error_when_upstream_failed(self) -> None:
        value = cache_status(CacheOutcome.STALE_ERROR, ttl=-10, fwd_status=503)
        assert value == "edgecache; fwd=stale; fwd-status=503; ttl=-10; detail=stale-if-error"

    @pytest.mark.parametrize(
        ("outcome", "fwd"),
        [
            (CacheOutcome.PASS, "method"),
            (CacheOutcome.BYPASS, "bypass"),
            (CacheOutcome.ERROR, "miss"),
        ],
    )
    def test_cache_status_writes_default_fwd_when_outcome_forwards(
        self, outcome: CacheOutcome, fwd: str
    ) -> None:
        assert cache_status(outcome) == f"edgecache; fwd={fwd}"

    def test_cache_status_writes_collapsed_when_waited_on_fill(self) -> None:
        value = cache_status(CacheOutcome.COLLAPSED, ttl=5)
        assert value == "edgecache; fwd=miss; ttl=5; collapsed"

    def test_cache_status_writes_collapsed_when_flag_set_on_other_outcome(self) -> None:
        value = cache_status(CacheOutcome.REVALIDATED, fwd_status=304, collapsed=True)
        assert value == "edgecache; fwd=stale; fwd-status=304; collapsed"

    def test_cache_status_uses_given_fwd_when_overridden(self) -> None:
        assert cache_status(CacheOutcome.MISS, fwd=Fwd.VARY_MISS) == "edgecache; fwd=vary-miss"

    def test_cache_status_overrides_default_detail_when_detail_given(self) -> None:
        value = cache_status(CacheOutcome.STALE_ERROR, detail="timeout")
        assert value == "edgecache; fwd=stale; detail=timeout"


class TestCacheStatusDetail:
    def test_cache_status_quotes_detail_when_not_a_token(self) -> None:
        value = cache_status(CacheOutcome.ERROR, detail='connect refused "x"')
        assert value == 'edgecache; fwd=miss; detail="connect refused \\"x\\""'

    def test_cache_status_replaces_non_ascii_when_detail_quoted(self) -> None:
        assert cache_status(CacheOutcome.ERROR, detail="é\n").endswith('detail="??"')

    def test_cache_status_escapes_backslash_when_detail_quoted(self) -> None:
        assert cache_status(CacheOutcome.ERROR, detail="a\\b").endswith('detail="a\\\\b"')


class TestReasonDetail:
    @pytest.mark.parametrize("reason", list(NoStoreReason))
    def test_reason_detail_is_kebab_token_when_any_reason(self, reason: NoStoreReason) -> None:
        detail = reason_detail(reason)
        assert detail == reason.name.lower().replace("_", "-")

    def test_reason_detail_names_no_freshness_when_nothing_to_reuse(self) -> None:
        assert reason_detail(NoStoreReason.NO_FRESHNESS) == "no-freshness"


class TestOutcomeNames:
    def test_log_name_keeps_stale_word_when_stale_while_revalidate(self) -> None:
        assert CacheOutcome.STALE_HIT.log_name == "stale"

    def test_log_name_calls_refetch_a_miss_when_entry_expired(self) -> None:
        assert CacheOutcome.EXPIRED.log_name == "miss"

    @pytest.mark.parametrize(
        "outcome",
        [CacheOutcome.BAD_REQUEST, CacheOutcome.NO_ROUTE, CacheOutcome.NOT_FOUND, CacheOutcome.CLIENT_GONE],
    )
    def test_cache_status_refuses_outcome_when_cache_never_looked(self, outcome: CacheOutcome) -> None:
        with pytest.raises(ValueError, match=outcome.name):
            cache_status(outcome)

    def test_cache_status_writes_pass_reason_and_status_when_get_passes(self) -> None:
        value = cache_status(CacheOutcome.PASS, fwd=Fwd.URI_MISS, fwd_status=200, detail="hit-for-pass")
        assert value == "edgecache; fwd=uri-miss; fwd-status=200; detail=hit-for-pass"

    def test_cache_status_keeps_stale_fwd_when_follower_collapsed_on_revalidation(self) -> None:
        value = cache_status(CacheOutcome.COLLAPSED, fwd=Fwd.STALE, fwd_status=200, ttl=9, stored=True)
        assert value == "edgecache; fwd=stale; fwd-status=200; ttl=9; stored; collapsed"


class TestClusterMembers:
    """Issue 16: a node of a cluster names itself; a peer's member comes first (RFC 9211 §2)."""

    def test_cache_name_carries_the_node_when_in_a_cluster(self) -> None:
        from edge.rules.outcome import cache_name

        assert cache_name(None) == "edgecache" and cache_name("n1") == "edgecache-n1"
        assert cache_name("n 1") == "edgecache-n_1"

    def test_with_upstream_puts_the_peer_member_first_when_a_peer_answered(self) -> None:
        from edge.rules.outcome import with_upstream

        own = cache_status(CacheOutcome.PEER_HIT, fwd=Fwd.MISS, name="edgecache-n2")
        assert with_upstream("edgecache-n1; hit; ttl=5", own) == "edgecache-n1; hit; ttl=5, edgecache-n2; fwd=miss"
        assert with_upstream(None, own) == own

    @pytest.mark.parametrize(("value", "hit"), [
        ("edgecache-n1; hit; ttl=5", True),
        ("edgecache-n5; hit, edgecache-n1; fwd=miss", False),  # the last hop fetched
        ("edgecache-n1; hit; ttl=-3; detail=stale-while-revalidate", False),  # stale is not a hit
        ("edgecache-n1; fwd=uri-miss", False),
        (None, False),
    ])
    def test_is_hit_member_reads_the_last_member_when_checking_a_peer_answer(self, value: str | None, hit: bool) -> None:
        from edge.rules.outcome import is_hit_member

        assert is_hit_member(value) is hit
