"""Freshness lifetime, age, stale windows and 304 merging (RFC 9111 §4.2, §3.2; RFC 5861)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from edge.store.entry import EntryMeta
from edge.rules.cache_control import response_directives
from edge.rules.freshness import (
    Freshness,
    Usability,
    can_serve_stale_on_error,
    compute_freshness,
    updated_headers_from_304,
    usability,
)
from edge.rules.httpdate import format_http_date

T0 = 1_700_000_000.0  # the upstream answered at this wall-clock time in most tests


def date(t: float) -> str:
    return format_http_date(t)


def fresh(
    headers: Iterable[tuple[str, str]],
    *,
    status: int = 200,
    request_time: float = T0,
    response_time: float = T0,
    **kwargs: Any,
) -> Freshness:
    response_headers = tuple(headers)
    directives, used_cdn = response_directives(response_headers)
    return compute_freshness(
        status=status,
        response_headers=response_headers,
        directives=directives,
        used_cdn_cc=used_cdn,
        request_time=request_time,
        response_time=response_time,
        **kwargs,
    )


def meta(**changes: Any) -> EntryMeta:
    fields: dict[str, Any] = {
        "key": b"k" * 16,
        "url": "http://example.test/a",
        "status": 200,
        "headers": (),
        "request_time": T0,
        "response_time": T0,
        "initial_age_s": 0.0,
        "lifetime_s": 60.0,
    }
    fields.update(changes)
    return EntryMeta(**fields)


class TestLifetime:
    def test_compute_freshness_prefers_s_maxage_when_all_present(self) -> None:
        f = fresh([("Cache-Control", "max-age=60, s-maxage=300"), ("Expires", date(T0 + 9))])
        assert (f.lifetime_s, f.heuristic) == (300.0, False)

    def test_compute_freshness_prefers_max_age_when_expires_present(self) -> None:
        f = fresh([("Cache-Control", "max-age=60"), ("Date", date(T0)), ("Expires", date(T0 + 9))])
        assert f.lifetime_s == 60.0

    def test_compute_freshness_uses_expires_minus_date_when_no_max_age(self) -> None:
        # Origin clock 1000 s behind: Expires - Date is immune to the skew.
        f = fresh([("Date", date(T0 - 1000)), ("Expires", date(T0 - 1000 + 120))])
        assert f.lifetime_s == 120.0

    def test_compute_freshness_uses_response_time_when_date_missing(self) -> None:
        assert fresh([("Expires", date(T0 + 30))]).lifetime_s == 30.0

    def test_compute_freshness_uses_response_time_when_date_invalid(self) -> None:
        assert fresh([("Date", "garbage"), ("Expires", date(T0 + 30))]).lifetime_s == 30.0

    @pytest.mark.parametrize(
        "expires",
        [
            "0",
            "-1",
            "never",
            "",
            "Thu, 18-Aug-2050 02:01:18 GMT",  # date dashes in an IMF-fixdate
            "THU, 18 Aug 2050 02:01:18 GMT",
            "Thu, 18 AUG 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 gMT",
            "Thu, 18 Aug 2050 02:01:18 UTC",
            "Thu 18 Aug 2050 02:01:18 GMT",
            "Thu, 18  Aug  2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 2:01:18 GMT",
        ],
    )
    def test_compute_freshness_is_stale_when_expires_invalid(self, expires: str) -> None:
        f = fresh([("Date", date(T0)), ("Expires", expires), ("Last-Modified", date(T0 - 1e5))])
        assert (f.lifetime_s, f.heuristic) == (0.0, False)

    def test_compute_freshness_is_zero_when_expires_in_past(self) -> None:
        assert fresh([("Date", date(T0)), ("Expires", date(T0 - 60))]).lifetime_s == 0.0

    def test_compute_freshness_uses_first_expires_when_repeated(self) -> None:
        f = fresh([("Date", date(T0)), ("Expires", date(T0 + 10)), ("Expires", date(T0 + 99))])
        assert f.lifetime_s == 10.0

    def test_compute_freshness_ignores_expires_when_cdn_field_used(self) -> None:
        f = fresh([("CDN-Cache-Control", "public"), ("Expires", date(T0 + 600))])
        assert f.lifetime_s == 0.0

    def test_compute_freshness_uses_cdn_max_age_when_cache_control_differs(self) -> None:
        f = fresh([("Cache-Control", "max-age=5"), ("CDN-Cache-Control", "max-age=500")])
        assert f.lifetime_s == 500.0

    def test_compute_freshness_is_zero_when_max_age_invalid(self) -> None:
        assert fresh([("Cache-Control", "max-age=soon")]).lifetime_s == 0.0


class TestHeuristic:
    def test_compute_freshness_takes_tenth_of_age_since_modified_when_no_explicit(self) -> None:
        f = fresh([("Date", date(T0)), ("Last-Modified", date(T0 - 1000))])
        assert (f.lifetime_s, f.heuristic) == (100.0, True)

    def test_compute_freshness_bounds_heuristic_when_modified_long_ago(self) -> None:
        f = fresh([("Date", date(T0)), ("Last-Modified", date(T0 - 10 * 86400 * 10))])
        assert f.lifetime_s == 86400.0

    def test_compute_freshness_uses_given_fraction_and_bound_when_configured(self) -> None:
        headers = [("Date", date(T0)), ("Last-Modified", date(T0 - 1000))]
        assert fresh(headers, heuristic_fraction=0.5).lifetime_s == 500.0
        assert fresh(headers, heuristic_max_s=7.0).lifetime_s == 7.0

    def test_compute_freshness_skips_heuristic_when_status_not_heuristic(self) -> None:
        f = fresh([("Date", date(T0)), ("Last-Modified", date(T0 - 1000))], status=302)
        assert (f.lifetime_s, f.heuristic) == (0.0, False)

    def test_compute_freshness_allows_heuristic_when_public_on_other_status(self) -> None:
        headers = [
            ("Cache-Control", "public"),
            ("Date", date(T0)),
            ("Last-Modified", date(T0 - 50)),
        ]
        assert fresh(headers, status=302).lifetime_s == 5.0

    def test_compute_freshness_is_zero_when_last_modified_in_future(self) -> None:
        f = fresh([("Date", date(T0)), ("Last-Modified", date(T0 + 50))])
        assert (f.lifetime_s, f.heuristic) == (0.0, False)

    def test_compute_freshness_is_zero_when_no_last_modified(self) -> None:
        assert fresh([("ETag", '"x"')]).lifetime_s == 0.0


class TestAge:
    def test_compute_freshness_is_zero_age_when_instant_and_no_age(self) -> None:
        assert fresh([("Date", date(T0)), ("Cache-Control", "max-age=9")]).initial_age_s == 0.0

    def test_compute_freshness_adds_response_delay_to_age_header(self) -> None:
        f = fresh([("Age", "30"), ("Date", date(T0))], request_time=T0 - 2.0, response_time=T0)
        assert f.initial_age_s == 32.0

    def test_compute_freshness_uses_apparent_age_when_date_older_than_age_says(self) -> None:
        f = fresh([("Age", "5"), ("Date", date(T0 - 100))])
        assert f.initial_age_s == 100.0

    def test_compute_freshness_clamps_apparent_age_when_date_in_future(self) -> None:
        assert fresh([("Date", date(T0 + 100))]).initial_age_s == 0.0

    def test_compute_freshness_ignores_age_when_invalid(self) -> None:
        f = fresh([("Age", "-7"), ("Date", date(T0))], request_time=T0 - 1.0)
        assert f.initial_age_s == 1.0

    def test_compute_freshness_uses_first_age_when_repeated(self) -> None:
        assert fresh([("Age", "10"), ("Age", "500")]).initial_age_s == 10.0

    @pytest.mark.parametrize(("age", "expected"), [("7200, 0", 7200.0), ("7200,0", 7200.0), ("0, 7200", 0.0)])
    def test_compute_freshness_uses_first_age_member_when_age_is_a_list(
        self, age: str, expected: float
    ) -> None:
        # the same answer as two Age lines give (RFC 9110 §5.3): the first value
        f = fresh([("Date", date(T0)), ("Cache-Control", "max-age=3600"), ("Age", age)])
        assert f.initial_age_s == expected

    @pytest.mark.parametrize("age", ["abc", "-7200", "7200.0", "abc, 7200"])
    def test_compute_freshness_ignores_age_when_first_member_is_invalid(self, age: str) -> None:
        assert fresh([("Date", date(T0)), ("Age", age)]).initial_age_s == 0.0

    def test_compute_freshness_uses_response_time_for_date_when_missing(self) -> None:
        f = fresh([("Age", "3")], request_time=T0 - 1.0, response_time=T0)
        assert f.initial_age_s == 4.0


class TestFlagsAndWindows:
    def test_compute_freshness_keeps_both_windows_when_unrestricted(self) -> None:
        f = fresh([("Cache-Control", "max-age=1, stale-while-revalidate=30, stale-if-error=60")])
        assert (f.swr_s, f.sie_s, f.must_revalidate, f.no_cache) == (30.0, 60.0, False, False)

    @pytest.mark.parametrize("directive", ["must-revalidate", "proxy-revalidate"])
    def test_compute_freshness_drops_windows_when_revalidation_required(
        self, directive: str
    ) -> None:
        cc = f"max-age=1, {directive}, stale-while-revalidate=30, stale-if-error=60"
        f = fresh([("Cache-Control", cc)])
        assert (f.swr_s, f.sie_s, f.must_revalidate) == (0.0, 0.0, True)

    def test_compute_freshness_drops_only_stale_if_error_when_s_maxage(self) -> None:
        cc = "s-maxage=1, stale-while-revalidate=59, stale-if-error=60"
        f = fresh([("Cache-Control", cc)])
        assert (f.swr_s, f.sie_s, f.must_revalidate) == (59.0, 0.0, True)

    def test_compute_freshness_drops_windows_when_no_cache(self) -> None:
        cc = "no-cache, max-age=60, stale-while-revalidate=30, stale-if-error=60"
        f = fresh([("Cache-Control", cc)])
        assert (f.no_cache, f.swr_s, f.sie_s) == (True, 0.0, 0.0)

    def test_compute_freshness_sets_no_cache_when_qualified(self) -> None:
        assert fresh([("Cache-Control", 'no-cache="set-cookie", max-age=9')]).no_cache is True


class TestUsability:
    def test_usability_is_fresh_when_ttl_positive(self) -> None:
        assert usability(meta(), T0 + 59) is Usability.FRESH

    def test_usability_is_must_validate_when_ttl_exactly_zero(self) -> None:
        assert usability(meta(), T0 + 60) is Usability.MUST_VALIDATE

    def test_usability_counts_initial_age_when_deciding(self) -> None:
        assert usability(meta(initial_age_s=50.0), T0 + 11) is Usability.MUST_VALIDATE

    def test_usability_is_stale_while_revalidate_when_within_window(self) -> None:
        assert usability(meta(swr_s=30.0), T0 + 90) is Usability.STALE_WHILE_REVALIDATE

    def test_usability_is_must_validate_when_past_window(self) -> None:
        assert usability(meta(swr_s=30.0), T0 + 90.5) is Usability.MUST_VALIDATE

    def test_usability_is_must_validate_when_no_cache_even_if_fresh(self) -> None:
        assert usability(meta(no_cache=True, swr_s=30.0), T0 + 1) is Usability.MUST_VALIDATE

    def test_usability_is_must_validate_when_soft_purged_without_window(self) -> None:
        assert usability(meta(invalidated=True), T0 + 1) is Usability.MUST_VALIDATE

    def test_usability_is_stale_while_revalidate_when_soft_purged_with_window(self) -> None:
        m = meta(invalidated=True, swr_s=10.0)
        assert usability(m, T0 + 1) is Usability.STALE_WHILE_REVALIDATE

    def test_usability_is_must_validate_when_soft_purged_long_after_expiry(self) -> None:
        assert usability(meta(invalidated=True, swr_s=10.0), T0 + 500) is Usability.MUST_VALIDATE


class TestStaleOnError:
    def test_can_serve_stale_on_error_is_true_when_within_window(self) -> None:
        assert can_serve_stale_on_error(meta(sie_s=300.0), T0 + 360) is True

    def test_can_serve_stale_on_error_is_false_when_past_window(self) -> None:
        assert can_serve_stale_on_error(meta(sie_s=300.0), T0 + 361) is False

    def test_can_serve_stale_on_error_is_false_when_no_window(self) -> None:
        assert can_serve_stale_on_error(meta(), T0 + 61) is False

    def test_can_serve_stale_on_error_is_false_when_must_revalidate(self) -> None:
        assert can_serve_stale_on_error(meta(sie_s=300.0, must_revalidate=True), T0 + 61) is False

    def test_can_serve_stale_on_error_is_false_when_no_cache(self) -> None:
        assert can_serve_stale_on_error(meta(sie_s=300.0, no_cache=True), T0 + 61) is False

    def test_can_serve_stale_on_error_is_true_when_soft_purged(self) -> None:
        assert can_serve_stale_on_error(meta(sie_s=300.0, invalidated=True), T0 + 1) is True


class TestUpdatedHeadersFrom304:
    STORED = (
        ("Content-Type", "text/html"),
        ("Content-Length", "1234"),
        ("Cache-Control", "max-age=60"),
        ("ETag", '"v1"'),
        ("X-Multi", "a"),
        ("X-Multi", "b"),
        ("Date", "Sun, 06 Nov 1994 08:49:37 GMT"),
    )

    def test_updated_headers_replaces_fields_in_place_when_304_carries_them(self) -> None:
        merged = updated_headers_from_304(
            self.STORED,
            [("cache-control", "max-age=600"), ("Date", "Mon, 07 Nov 1994 08:49:37 GMT")],
        )
        assert merged == (
            ("Content-Type", "text/html"),
            ("Content-Length", "1234"),
            ("cache-control", "max-age=600"),
            ("ETag", '"v1"'),
            ("X-Multi", "a"),
            ("X-Multi", "b"),
            ("Date", "Mon, 07 Nov 1994 08:49:37 GMT"),
        )

    def test_updated_headers_replaces_every_line_when_field_repeated(self) -> None:
        merged = updated_headers_from_304(self.STORED, [("X-Multi", "c")])
        assert [v for n, v in merged if n == "X-Multi"] == ["c"]

    def test_updated_headers_appends_new_fields_when_absent_from_stored(self) -> None:
        merged = updated_headers_from_304(self.STORED, [("Expires", "0"), ("X-New", "1")])
        assert merged == (*self.STORED, ("Expires", "0"), ("X-New", "1"))

    @pytest.mark.parametrize(
        "field",
        [
            ("Content-Length", "0"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
            ("Keep-Alive", "timeout=5"),
            ("Content-Encoding", "gzip"),
            ("Content-Range", "bytes 0-1/2"),
            ("Age", "10"),
            ("Set-Cookie", "session=secret"),
        ],
    )
    def test_updated_headers_keeps_stored_when_field_excluded(self, field: tuple[str, str]) -> None:
        assert updated_headers_from_304(self.STORED, [field]) == self.STORED

    def test_updated_headers_skips_fields_named_in_connection_when_present(self) -> None:
        merged = updated_headers_from_304(
            self.STORED, [("Connection", "X-Hop"), ("X-Hop", "1"), ("X-Keep", "2")]
        )
        assert merged == (*self.STORED, ("X-Keep", "2"))

    def test_updated_headers_returns_stored_when_304_has_no_fields(self) -> None:
        assert updated_headers_from_304(self.STORED, []) is self.STORED
