"""Range and If-Range against a stored body (RFC 9110 §14, §13.1.5)."""

from __future__ import annotations

import pytest

from edge.rules.ranges import ByteRange, RangeKind, content_range, if_range_allows, parse_range

LM = "Sun, 06 Nov 1994 08:49:37 GMT"


class TestParseRange:
    def test_parse_range_is_none_when_header_absent(self) -> None:
        assert parse_range(None, 100) == (RangeKind.NONE, None)

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("bytes=0-9", ByteRange(0, 9)),
            ("bytes=10-19", ByteRange(10, 19)),
            ("bytes=90-", ByteRange(90, 99)),
            ("bytes=-10", ByteRange(90, 99)),
            ("bytes=0-0", ByteRange(0, 0)),
            ("bytes=99-99", ByteRange(99, 99)),
            ("Bytes = 5-6 ", ByteRange(5, 6)),
            ("bytes=5-6,", ByteRange(5, 6)),
        ],
    )
    def test_parse_range_is_single_when_one_satisfiable_range(
        self, header: str, expected: ByteRange
    ) -> None:
        assert parse_range(header, 100) == (RangeKind.SINGLE, expected)

    def test_parse_range_clamps_end_when_past_length(self) -> None:
        assert parse_range("bytes=50-1000", 100) == (RangeKind.SINGLE, ByteRange(50, 99))

    def test_parse_range_takes_whole_body_when_suffix_longer_than_body(self) -> None:
        assert parse_range("bytes=-500", 100) == (RangeKind.SINGLE, ByteRange(0, 99))

    @pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0", "bytes=500-"])
    def test_parse_range_is_unsatisfiable_when_nothing_selected(self, header: str) -> None:
        assert parse_range(header, 100) == (RangeKind.UNSATISFIABLE, None)

    @pytest.mark.parametrize("header", ["bytes=0-", "bytes=-5"])
    def test_parse_range_is_unsatisfiable_when_body_empty(self, header: str) -> None:
        assert parse_range(header, 0) == (RangeKind.UNSATISFIABLE, None)

    def test_parse_range_is_none_when_several_ranges(self) -> None:
        assert parse_range("bytes=0-1, 5-6", 100) == (RangeKind.NONE, None)

    @pytest.mark.parametrize(
        "header",
        [
            "",
            "bytes",
            "bytes=",
            "items=0-5",
            "bytes=abc",
            "bytes=5",
            "bytes=9-5",
            "bytes=-",
            "bytes=a-5",
            "bytes=5-b",
            "bytes=--5",
            "bytes=-5-",
            "bytes=+1-2",
            "bytes=\u0661-2",
            "bytes= 1 - 2",
        ],
    )
    def test_parse_range_is_none_when_malformed_or_unknown_unit(self, header: str) -> None:
        assert parse_range(header, 100) == (RangeKind.NONE, None)

    def test_byte_range_length_counts_inclusive_bytes_when_computed(self) -> None:
        assert ByteRange(10, 19).length == 10


class TestIfRange:
    def test_if_range_allows_when_header_absent(self) -> None:
        assert if_range_allows(None, '"v1"', LM) is True

    def test_if_range_allows_when_strong_etag_matches(self) -> None:
        assert if_range_allows('"v1"', '"v1"', None) is True

    def test_if_range_refuses_when_etag_differs(self) -> None:
        assert if_range_allows('"v2"', '"v1"', LM) is False

    @pytest.mark.parametrize(("cond", "stored"), [('W/"v1"', '"v1"'), ('"v1"', 'W/"v1"')])
    def test_if_range_refuses_when_either_etag_weak(self, cond: str, stored: str) -> None:
        assert if_range_allows(cond, stored, LM) is False

    def test_if_range_refuses_when_no_stored_etag(self) -> None:
        assert if_range_allows('"v1"', None, LM) is False

    def test_if_range_allows_when_date_equals_last_modified(self) -> None:
        assert if_range_allows(LM, '"v1"', LM) is True

    def test_if_range_allows_when_same_instant_in_obsolete_form(self) -> None:
        assert if_range_allows("Sunday, 06-Nov-94 08:49:37 GMT", None, LM) is True

    def test_if_range_refuses_when_date_later_than_last_modified(self) -> None:
        assert if_range_allows("Mon, 07 Nov 1994 08:49:37 GMT", None, LM) is False

    def test_if_range_refuses_when_no_last_modified(self) -> None:
        assert if_range_allows(LM, '"v1"', None) is False

    @pytest.mark.parametrize("value", ["", "garbage", "v1"])
    def test_if_range_refuses_when_value_invalid(self, value: str) -> None:
        assert if_range_allows(value, '"v1"', LM) is False


class TestContentRange:
    def test_content_range_writes_span_when_satisfiable(self) -> None:
        assert content_range(ByteRange(0, 9), 100) == "bytes 0-9/100"

    def test_content_range_writes_star_when_unsatisfiable(self) -> None:
        assert content_range(None, 100) == "bytes */100"
