"""Cache-Control parsing (RFC 9111 §5.2, RFC 5861), CDN-Cache-Control (RFC 9213) and Surrogate-Control."""

from __future__ import annotations

import math

import pytest
from multidict import CIMultiDict

from edge.rules.cache_control import (
    EMPTY,
    Directives,
    for_clients,
    parse_cache_control,
    request_directives,
    response_directives,
)


def cc(*lines: str) -> Directives:
    return parse_cache_control(lines)


class TestResponseDirectiveValues:
    def test_parse_reads_max_age_when_token_argument(self) -> None:
        assert cc("max-age=60").max_age == 60

    def test_parse_reads_max_age_when_quoted_argument(self) -> None:
        assert cc('max-age="60"').max_age == 60

    def test_parse_reads_s_maxage_when_present(self) -> None:
        assert cc("s-maxage=300").s_maxage == 300

    def test_parse_reads_stale_windows_when_present(self) -> None:
        d = cc("max-age=1, stale-while-revalidate=30, stale-if-error=600")
        assert (d.stale_while_revalidate, d.stale_if_error) == (30, 600)

    @pytest.mark.parametrize(
        ("line", "attr"),
        [
            ("no-store", "no_store"),
            ("no-cache", "no_cache"),
            ("private", "private"),
            ("public", "public"),
            ("must-revalidate", "must_revalidate"),
            ("proxy-revalidate", "proxy_revalidate"),
            ("immutable", "immutable"),
            ("must-understand", "must_understand"),
            ("no-transform", "no_transform"),
            ("only-if-cached", "only_if_cached"),
        ],
    )
    def test_parse_sets_flag_when_directive_present(self, line: str, attr: str) -> None:
        assert getattr(cc(line), attr) is True
        assert getattr(EMPTY, attr) is False

    def test_parse_leaves_fields_unset_when_directive_absent(self) -> None:
        assert cc("public") == Directives(public=True)

    def test_parse_ignores_case_and_whitespace_when_sloppy(self) -> None:
        d = cc("  Max-Age = 60 ,NO-STORE,  , Public ")
        assert (d.max_age, d.no_store, d.public) == (60, True, True)

    def test_parse_ignores_unknown_directives_when_present(self) -> None:
        assert cc("community=UCI, x-foo, max-age=5") == Directives(max_age=5)

    def test_parse_returns_empty_when_no_lines(self) -> None:
        assert cc() == EMPTY


class TestFieldLists:
    def test_parse_keeps_unqualified_no_cache_when_no_argument(self) -> None:
        d = cc("no-cache")
        assert (d.no_cache, d.no_cache_fields) == (True, ())

    def test_parse_lists_no_cache_fields_when_qualified(self) -> None:
        d = cc('no-cache="Set-Cookie, X-Token"')
        assert (d.no_cache, d.no_cache_fields) == (True, ("set-cookie", "x-token"))

    def test_parse_lists_private_fields_when_qualified(self) -> None:
        d = cc('private="Set-Cookie", max-age=10')
        assert (d.private, d.private_fields, d.max_age) == (True, ("set-cookie",), 10)

    def test_parse_keeps_commas_inside_quotes_when_splitting(self) -> None:
        d = cc('private="a,b", no-store')
        assert d.private_fields == ("a", "b")
        assert d.no_store is True

    def test_parse_unescapes_quoted_pair_when_present(self) -> None:
        assert cc(r'no-cache="x-\a", public').no_cache_fields == ("x-a",)

    def test_parse_merges_field_lists_when_directive_repeated(self) -> None:
        assert cc('private="a"', 'private="b, a"').private_fields == ("a", "b")


class TestDuplicatesAndMultipleLines:
    def test_parse_merges_lines_when_several_fields(self) -> None:
        d = cc("max-age=60", "must-revalidate")
        assert (d.max_age, d.must_revalidate) == (60, True)

    def test_parse_keeps_first_value_when_directive_repeated(self) -> None:
        assert cc("max-age=60, max-age=0").max_age == 60

    def test_parse_keeps_first_value_when_repeated_across_lines(self) -> None:
        assert cc("s-maxage=5", "s-maxage=500").s_maxage == 5


class TestInvalidArguments:
    @pytest.mark.parametrize("line", ["max-age=abc", "max-age=-1", "max-age=1.5", "max-age"])
    def test_parse_treats_max_age_as_zero_when_argument_invalid(self, line: str) -> None:
        assert cc(line).max_age == 0

    def test_parse_treats_s_maxage_as_zero_when_argument_invalid(self) -> None:
        assert cc("s-maxage=soon").s_maxage == 0

    def test_parse_caps_max_age_when_beyond_2_pow_31(self) -> None:
        assert cc("max-age=99999999999").max_age == 2**31

    @pytest.mark.parametrize("name", ["stale-while-revalidate", "stale-if-error", "min-fresh"])
    def test_parse_drops_window_when_argument_invalid(self, name: str) -> None:
        d = cc(f"{name}=x, {name}")
        assert (d.stale_while_revalidate, d.stale_if_error, d.min_fresh) == (None, None, None)

    def test_parse_uses_first_valid_window_when_earlier_invalid(self) -> None:
        assert cc("stale-if-error=bad, stale-if-error=9").stale_if_error == 9


class TestRequestDirectives:
    def test_parse_reads_max_stale_as_infinite_when_no_argument(self) -> None:
        assert cc("max-stale").max_stale == math.inf

    def test_parse_reads_max_stale_when_argument(self) -> None:
        assert cc("max-stale=30").max_stale == 30.0

    def test_parse_reads_min_fresh_when_present(self) -> None:
        assert cc("min-fresh=10").min_fresh == 10

    def test_request_directives_reads_header_when_case_differs(self) -> None:
        headers = CIMultiDict([("cache-control", "no-store, max-age=0")])
        d = request_directives(headers)
        assert (d.no_store, d.max_age) == (True, 0)

    def test_request_directives_returns_empty_when_header_absent(self) -> None:
        assert request_directives(CIMultiDict()) is EMPTY


class TestCdnCacheControl:
    def test_response_directives_uses_cache_control_when_no_cdn_field(self) -> None:
        d, used = response_directives([("Cache-Control", "max-age=60")])
        assert (d.max_age, used) == (60, False)

    def test_response_directives_prefers_cdn_field_when_valid(self) -> None:
        d, used = response_directives(
            [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=600")]
        )
        assert used is True
        assert d == Directives(max_age=600)

    def test_response_directives_merges_cdn_lines_when_several(self) -> None:
        d, used = response_directives(
            [("cdn-cache-control", "max-age=600"), ("CDN-Cache-Control", "stale-if-error=60")]
        )
        assert (d.max_age, d.stale_if_error, used) == (600, 60, True)

    def test_response_directives_falls_back_when_cdn_field_empty(self) -> None:
        d, used = response_directives([("CDN-Cache-Control", " "), ("Cache-Control", "no-store")])
        assert (d.no_store, used) == (True, False)

    def test_response_directives_falls_back_when_cdn_field_not_structured(self) -> None:
        # Upper-case keys are not valid Structured Fields dictionary keys (RFC 8941 §3.2).
        d, used = response_directives(
            [("CDN-Cache-Control", "Max-Age=600"), ("Cache-Control", "max-age=5")]
        )
        assert (d.max_age, used) == (5, False)

    def test_response_directives_falls_back_when_cdn_value_malformed(self) -> None:
        d, used = response_directives(
            [("CDN-Cache-Control", "max-age=6 0"), ("Cache-Control", "private")]
        )
        assert (d.private, used) == (True, False)

    def test_response_directives_uses_cdn_field_when_only_unknown_directive(self) -> None:
        headers = [("CDN-Cache-Control", "x-ext"), ("Cache-Control", "private")]
        d, used = response_directives(headers)
        assert (d, used) == (EMPTY, True)

    def test_response_directives_accepts_parameters_when_structured(self) -> None:
        d, used = response_directives([("CDN-Cache-Control", "max-age=60;a=1, no-store;b")])
        assert (d.max_age, d.no_store, used) == (60, True, True)

    def test_response_directives_treats_false_boolean_as_absent_when_question_zero(self) -> None:
        d, used = response_directives([("CDN-Cache-Control", "no-store=?0, max-age=9")])
        assert (d.no_store, d.max_age, used) == (False, 9, True)

    def test_response_directives_reads_quoted_list_when_cdn_private(self) -> None:
        d, _ = response_directives([("CDN-Cache-Control", 'private="set-cookie"')])
        assert d.private_fields == ("set-cookie",)

    def test_response_directives_returns_empty_when_no_fields(self) -> None:
        assert response_directives([("Content-Type", "text/plain")]) == (EMPTY, False)


class TestCdnCacheControlTypes:
    @pytest.mark.parametrize(
        "value",
        ['max-age="60"', 'max-age="10000"', "s-maxage=1.5", "stale-if-error=soon", "max-age=-5"],
    )
    def test_response_directives_ignores_cdn_field_when_integer_directive_has_wrong_type(
        self, value: str
    ) -> None:
        # RFC 9213 §2.1: an Integer is required; a String/Decimal/Token invalidates the field.
        d, used = response_directives([("CDN-Cache-Control", value), ("Cache-Control", "no-store")])
        assert (d.no_store, d.max_age, used) == (True, None, False)

    @pytest.mark.parametrize("value", ["max-age =100", "max-age= 100"])
    def test_response_directives_ignores_cdn_field_when_space_around_equals(self, value: str) -> None:
        d, used = response_directives([("CDN-Cache-Control", value), ("Cache-Control", "max-age=1")])
        assert (d.max_age, used) == (1, False)

    def test_response_directives_keeps_cdn_field_when_integers_and_outer_spaces(self) -> None:
        d, used = response_directives([("CDN-Cache-Control", " max-age=99999999999 ,  stale-if-error=5 ")])
        assert (d.max_age, d.stale_if_error, used) == (2**31, 5, True)

    def test_parse_still_accepts_quoted_max_age_when_in_cache_control(self) -> None:
        # RFC 9111 §5.2: recipients accept both token and quoted-string arguments.
        assert cc('max-age="60"', 's-maxage="30"') == Directives(max_age=60, s_maxage=30)


class TestSurrogateControl:
    def test_surrogate_max_age_wins_over_cache_control_when_both_present(self) -> None:
        d, used = response_directives(
            [("Cache-Control", "max-age=3600, s-maxage=7200"), ("Surrogate-Control", "max-age=1")]
        )
        assert (d.max_age, d.s_maxage, used) == (1, None, False)

    def test_surrogate_no_store_stops_storing_when_cache_control_is_fresh(self) -> None:
        d, _ = response_directives([("Cache-Control", "max-age=10000"), ("Surrogate-Control", "no-store")])
        assert d.no_store and d.max_age == 10000

    def test_surrogate_no_store_remote_stops_storing_when_present(self) -> None:
        d, _ = response_directives([("Surrogate-Control", 'content="ESI/1.0", no-store-remote')])
        assert d.no_store

    def test_cache_control_private_still_applies_when_surrogate_sets_max_age(self) -> None:
        d, _ = response_directives([("Cache-Control", "private"), ("Surrogate-Control", "max-age=60")])
        assert (d.private, d.max_age) == (True, 60)

    @pytest.mark.parametrize("value", ["max-age =100", "max-age= 100", "max-age=abc", "max-age"])
    def test_surrogate_max_age_is_dropped_when_malformed(self, value: str) -> None:
        d, _ = response_directives([("Cache-Control", "max-age=1"), ("Surrogate-Control", value)])
        assert d.max_age == 1

    def test_surrogate_reads_case_insensitive_name_and_skips_extension(self) -> None:
        d, _ = response_directives([("Surrogate-Control", "foobar, MaX-aGe=3600")])
        assert d.max_age == 3600

    def test_surrogate_uses_lifetime_part_when_max_age_has_plus_extension(self) -> None:
        d, _ = response_directives([("Surrogate-Control", "max-age=300+60")])
        assert d.max_age == 300

    def test_surrogate_skips_directives_when_targeted_at_another_device(self) -> None:
        d, _ = response_directives([("Surrogate-Control", "max-age=60;edge2, no-store;edge2")])
        assert d == EMPTY

    def test_cdn_cache_control_wins_over_surrogate_control_when_both_valid(self) -> None:
        d, used = response_directives([("Surrogate-Control", "no-store"), ("CDN-Cache-Control", "max-age=9")])
        assert (d, used) == (Directives(max_age=9), True)

    def test_for_clients_removes_surrogate_control_and_keeps_the_rest(self) -> None:
        headers = [("Surrogate-Control", "max-age=9"), ("CDN-Cache-Control", "max-age=9"), ("ETag", '"x"')]
        assert for_clients(headers) == headers[1:]
