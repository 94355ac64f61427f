"""Cache-Control parsing (RFC 9111 §5.2, RFC 5861) and CDN-Cache-Control precedence (RFC 9213)."""

from __future__ import annotations

import math

import pytest
from multidict import CIMultiDict

from edge.rules.cache_control import (
    EMPTY,
    Directives,
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
