"""The demo origin's pure RFC 9110 rules: preconditions and single byte ranges."""

from __future__ import annotations

import pytest

from origin.demo.httprules import (
    Precondition,
    RangeKind,
    Validators,
    evaluate_preconditions,
    http_date,
    parse_http_date,
    select_range,
)

LM = 1_700_000_000
V = Validators('"abc"', LM)


class TestPreconditions:
    def test_preconditions_proceed_when_no_conditional_headers(self) -> None:
        assert evaluate_preconditions("GET", {}, V) is Precondition.PROCEED

    @pytest.mark.parametrize("value", ['"abc"', 'W/"abc"', '"x", "abc"', "*"])
    def test_if_none_match_gives_304_when_weakly_equal(self, value: str) -> None:
        decision = evaluate_preconditions("GET", {"If-None-Match": value}, V)
        assert decision is Precondition.NOT_MODIFIED

    def test_if_none_match_gives_412_when_matching_unsafe_method(self) -> None:
        assert evaluate_preconditions("PUT", {"If-None-Match": '"abc"'}, V) is Precondition.FAILED

    def test_if_match_fails_when_only_weakly_equal(self) -> None:
        assert evaluate_preconditions("GET", {"If-Match": 'W/"abc"'}, V) is Precondition.FAILED
        assert evaluate_preconditions("GET", {"If-Match": '"abc"'}, V) is Precondition.PROCEED

    def test_if_modified_since_gives_304_when_not_modified_after(self) -> None:
        headers = {"If-Modified-Since": http_date(LM)}
        assert evaluate_preconditions("GET", headers, V) is Precondition.NOT_MODIFIED
        headers = {"If-Modified-Since": http_date(LM - 1)}
        assert evaluate_preconditions("GET", headers, V) is Precondition.PROCEED

    def test_if_modified_since_is_ignored_when_if_none_match_present(self) -> None:
        headers = {"If-None-Match": '"zzz"', "If-Modified-Since": http_date(LM)}
        assert evaluate_preconditions("GET", headers, V) is Precondition.PROCEED

    def test_if_modified_since_is_ignored_when_date_invalid(self) -> None:
        headers = {"If-Modified-Since": "yesterday"}
        assert evaluate_preconditions("GET", headers, V) is Precondition.PROCEED

    def test_if_unmodified_since_fails_when_modified_after(self) -> None:
        headers = {"If-Unmodified-Since": http_date(LM - 10)}
        assert evaluate_preconditions("GET", headers, V) is Precondition.FAILED


class TestRanges:
    def test_range_is_full_when_method_is_head(self) -> None:
        assert select_range("HEAD", {"Range": "bytes=0-1"}, V, 10).kind is RangeKind.FULL

    @pytest.mark.parametrize(
        ("value", "start", "end"),
        [("bytes=0-0", 0, 1), ("bytes=5-", 5, 10), ("bytes=-3", 7, 10), ("bytes=8-100", 8, 10),
         ("bytes=-20", 0, 10), ("BYTES = 2-3", 2, 4)],
    )  # fmt: skip
    def test_range_selects_span_when_single_range(self, value: str, start: int, end: int) -> None:
        decision = select_range("GET", {"Range": value}, V, 10)
        assert decision.kind is RangeKind.PARTIAL
        assert (decision.start, decision.end) == (start, end)
        assert decision.content_range == f"bytes {start}-{end - 1}/10"

    @pytest.mark.parametrize("value", ["bytes=10-", "bytes=-0", "bytes=99-100"])
    def test_range_is_unsatisfiable_when_past_end(self, value: str) -> None:
        decision = select_range("GET", {"Range": value}, V, 10)
        assert decision.kind is RangeKind.UNSATISFIABLE
        assert decision.content_range == "bytes */10"

    @pytest.mark.parametrize(
        "value", ["items=0-1", "bytes=0-1,3-4", "bytes=5-2", "bytes=a-b", "bytes"]
    )
    def test_range_is_ignored_when_unsupported_or_invalid(self, value: str) -> None:
        assert select_range("GET", {"Range": value}, V, 10).kind is RangeKind.FULL

    @pytest.mark.parametrize(
        ("if_range", "kind"),
        [('"abc"', RangeKind.PARTIAL), ('W/"abc"', RangeKind.FULL), ('"old"', RangeKind.FULL),
         (http_date(LM), RangeKind.PARTIAL), (http_date(LM + 1), RangeKind.FULL)],
    )  # fmt: skip
    def test_if_range_applies_range_when_validator_matches_exactly(
        self, if_range: str, kind: RangeKind
    ) -> None:
        headers = {"Range": "bytes=0-1", "If-Range": if_range}
        assert select_range("GET", headers, V, 10).kind is kind


class TestDates:
    def test_http_date_round_trips_when_formatted(self) -> None:
        assert http_date(LM) == "Tue, 14 Nov 2023 22:13:20 GMT"
        assert parse_http_date(http_date(LM)) == LM

    def test_parse_http_date_accepts_obsolete_forms_when_valid(self) -> None:
        assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777
        assert parse_http_date("Sun Nov  6 08:49:37 1994") == 784111777
        assert parse_http_date("not a date") is None
