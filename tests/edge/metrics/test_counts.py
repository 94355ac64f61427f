"""edge.metrics.counts and edge.metrics.collector: plain-int counters exported at scrape time."""

from __future__ import annotations

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edge.metrics.collector import Sources, registry_for
from edge.metrics.counts import LATENCY_BOUNDS_S, Histogram, RequestCounts, metric_outcome
from edge.metrics.origin import OriginCounts
from edge.rules.outcome import CacheOutcome

pytestmark = pytest.mark.timeout(10)


def samples(counts: RequestCounts, origins: OriginCounts | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    sources = Sources(node="n1", region="r1", clients=counts, peers=RequestCounts(),
                      origins=origins or OriginCounts(), stores={})
    text = generate_latest(registry_for(sources)).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class TestHistogram:
    def test_value_on_a_bound_falls_in_that_bucket_and_cumulative_ends_with_inf(self) -> None:
        h = Histogram()
        h.observe(LATENCY_BOUNDS_S[0])
        h.observe(LATENCY_BOUNDS_S[3] * 1.01)
        h.observe(1e6)
        pairs = list(h.cumulative())
        assert pairs[0][1] == 1 and pairs[3][1] == 1 and pairs[4][1] == 2
        assert pairs[-1] == ("+Inf", 3) and h.count == 3


class TestRequestCounts:
    @pytest.mark.parametrize(("outcome", "label"), [
        (CacheOutcome.HIT, "hit"), (CacheOutcome.PEER_HIT, "peer_hit"), (CacheOutcome.STALE_HIT, "stale"),
        (CacheOutcome.EXPIRED, "miss"), (CacheOutcome.COLLAPSED, "miss"), (CacheOutcome.REVALIDATED, "revalidated"),
        (CacheOutcome.PASS, "pass"), (CacheOutcome.BAD_REQUEST, "error"),
    ])
    def test_every_outcome_has_a_label_when_counted(self, outcome: CacheOutcome, label: str) -> None:
        assert metric_outcome(outcome) == label

    def test_exposition_merges_fast_and_slow_hits_when_both_paths_served_a_route(self) -> None:
        counts = RequestCounts()
        fast = counts.fast_cell("demo")
        fast.count += 2
        fast.bytes += 200
        counts.record(CacheOutcome.HIT, "demo", "disk", 50, 0.002)
        counts.record(CacheOutcome.COLLAPSED, "demo", "origin", 7, 0.02)
        got = samples(counts)
        assert got[("edgecache_requests_total", (("outcome", "hit"), ("route", "demo")))] == 3
        assert got[("edgecache_response_body_bytes_total", (("outcome", "hit"), ("route", "demo")))] == 250
        assert got[("edgecache_served_bytes_total", (("tier", "memory"),))] == 200
        assert got[("edgecache_served_bytes_total", (("tier", "disk"),))] == 50
        assert got[("edgecache_coalesced_waiters_total", ())] == 1
        assert got[("edgecache_request_duration_seconds_count", (("outcome", "miss"),))] == 1

    def test_origin_fetches_are_labelled_by_pool_server_and_status_when_recorded(self) -> None:
        origins = OriginCounts()
        origins.record("demo", "http://127.0.0.1:1", "200", 0.01)
        origins.record("demo", "", "error", 0.5)
        got = samples(RequestCounts(), origins)
        key = (("pool", "demo"), ("server", "http://127.0.0.1:1"), ("status", "200"))
        assert got[("edgecache_origin_fetches_total", key)] == 1
        assert got[("edgecache_origin_fetches_total", (("pool", "demo"), ("server", "none"), ("status", "error")))] == 1
        assert got[("edgecache_origin_fetch_duration_seconds_count", (("pool", "demo"),))] == 2


class TestSeries:
    def test_view_turns_snapshots_into_rates_when_sampled_a_second_apart(self) -> None:
        from edge.metrics.series import Series

        counts, origins = RequestCounts(), OriginCounts()
        series = Series(counts, origins, max_points=3)
        series.sample(100.0)
        for _ in range(3):
            counts.record(CacheOutcome.HIT, "demo", "memory", 100, 0.001)
        counts.record(CacheOutcome.MISS, "demo", "origin", 100, 0.05)
        origins.record("demo", "http://127.0.0.1:1", "200", 0.04)
        series.sample(102.0)
        series.sample(103.0)  # nothing happened
        view = series.view()
        assert view["t"] == [102.0, 103.0]
        assert view["requests_per_s"] == [2.0, 0.0] and view["hit_ratio"] == [0.75, None]
        assert view["bytes_per_s"] == [200.0, 0.0] and view["origin_per_s"] == [0.5, 0.0]
        assert view["origin_latency_ms"][0] == pytest.approx(40.0) and view["origin_latency_ms"][1] is None
        assert view["totals"] == {"requests": 4, "served_here": 3, "body_bytes": 400, "origin_fetches": 1}
        series.sample(104.0)  # the oldest point falls out of a full history
        assert series.view()["t"] == [103.0, 104.0]
