"""HTTP-date and delta-seconds parsing (RFC 9110 §5.6.7, RFC 9111 §1.2.2)."""

from __future__ import annotations

import pytest

from edge.rules.httpdate import (
    DELTA_SECONDS_MAX,
    format_http_date,
    parse_delta_seconds,
    parse_http_date,
)

NOV_6_1994 = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT


class TestParseHttpDate:
    def test_parse_http_date_reads_imf_fixdate_when_preferred_form(self) -> None:
        assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == NOV_6_1994

    def test_parse_http_date_reads_rfc850_when_obsolete_form(self) -> None:
        assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == NOV_6_1994

    def test_parse_http_date_reads_asctime_when_obsolete_form(self) -> None:
        assert parse_http_date("Sun Nov  6 08:49:37 1994") == NOV_6_1994

    def test_parse_http_date_puts_two_digit_year_in_2000s_when_below_70(self) -> None:
        assert parse_http_date("Tuesday, 01-Jan-30 00:00:00 GMT") == 1893456000.0

    def test_parse_http_date_ignores_surrounding_whitespace_when_present(self) -> None:
        assert parse_http_date("  Sun, 06 Nov 1994 08:49:37 GMT ") == NOV_6_1994

    def test_parse_http_date_folds_leap_second_when_second_is_60(self) -> None:
        assert parse_http_date("Sun, 06 Nov 1994 08:49:60 GMT") == NOV_6_1994 + 22

    @pytest.mark.parametrize(
        "value",
        [
            None,
            "",
            "0",
            "-1",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Wed, 29 Feb 1995 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 08-49-37 GMT",
            "Sun, 06 Nov 0000 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov  6 08:49 1994",
            "Sun, 06-Nov-1994 08:49:37 GMT",  # IMF-fixdate positions with dashes
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "sun, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 gmt",
            "Sun,06 Nov 1994 08:49:37 GMT ",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06  Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 UTC",
            "sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",
            "Sun  Nov  6 08:49:37 1994",
            "Sun, Nov  6 08:49:37 1994",
        ],
    )
    def test_parse_http_date_returns_none_when_malformed(self, value: str | None) -> None:
        assert parse_http_date(value) is None

    def test_parse_http_date_accepts_feb_29_when_leap_year(self) -> None:
        assert parse_http_date("Thu, 29 Feb 1996 00:00:00 GMT") == 825552000.0


class TestFormatHttpDate:
    def test_format_http_date_writes_imf_fixdate_when_given_timestamp(self) -> None:
        assert format_http_date(NOV_6_1994) == "Sun, 06 Nov 1994 08:49:37 GMT"

    def test_format_http_date_round_trips_when_parsed_back(self) -> None:
        assert parse_http_date(format_http_date(1700000000.0)) == 1700000000.0


class TestParseDeltaSeconds:
    @pytest.mark.parametrize(("value", "expected"), [("60", 60), (" 0 ", 0), ("007", 7)])
    def test_parse_delta_seconds_returns_int_when_digits(self, value: str, expected: int) -> None:
        assert parse_delta_seconds(value) == expected

    @pytest.mark.parametrize("value", ["", "-1", "1.5", "abc", "6 0", "\u0663"])
    def test_parse_delta_seconds_returns_none_when_not_digits(self, value: str) -> None:
        assert parse_delta_seconds(value) is None

    def test_parse_delta_seconds_caps_at_2_pow_31_when_huge(self) -> None:
        assert parse_delta_seconds("99999999999999999999") == DELTA_SECONDS_MAX == 2**31
