"""Preconditions against a stored response (RFC 9110 §13.1, §13.2.2) and entity-tags (§8.8.3)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from edge.rules.conditional import (
    ETag,
    evaluate_preconditions,
    parse_etag,
    parse_etag_list,
    strong_match,
    weak_match,
)

LM = "Sun, 06 Nov 1994 08:49:37 GMT"
BEFORE = "Sat, 05 Nov 1994 08:49:37 GMT"
AFTER = "Mon, 07 Nov 1994 08:49:37 GMT"


def evaluate(
    *headers: tuple[str, str],
    method: str = "GET",
    etag: str | None = '"v1"',
    last_modified: str | None = LM,
) -> int | None:
    return evaluate_preconditions(
        method=method, request_headers=CIMultiDict(headers), etag=etag, last_modified=last_modified
    )


class TestEntityTags:
    def test_parse_etag_list_reads_strong_and_weak_when_mixed(self) -> None:
        tags, star = parse_etag_list('"a", W/"b" ,"c"')
        assert (tags, star) == ([ETag('"a"', False), ETag('"b"', True), ETag('"c"', False)], False)

    def test_parse_etag_list_keeps_comma_when_inside_quotes(self) -> None:
        assert parse_etag_list('"a,b", "c"')[0] == [ETag('"a,b"', False), ETag('"c"', False)]

    def test_parse_etag_list_reports_star_when_wildcard(self) -> None:
        assert parse_etag_list(" * ") == ([], True)

    def test_parse_etag_list_skips_members_when_malformed(self) -> None:
        assert parse_etag_list('abc, W/xyz, "ok", "unterminated')[0] == [ETag('"ok"', False)]

    def test_parse_etag_returns_none_when_absent_or_malformed(self) -> None:
        assert (parse_etag(None), parse_etag("nope"), parse_etag('"a", "b"')) == (None, None, None)

    def test_strong_match_is_false_when_either_weak(self) -> None:
        assert strong_match(ETag('"a"', False), ETag('"a"', False)) is True
        assert strong_match(ETag('"a"', True), ETag('"a"', False)) is False
        assert strong_match(ETag('"a"', False), ETag('"a"', True)) is False

    def test_weak_match_ignores_weakness_when_opaque_equal(self) -> None:
        assert weak_match(ETag('"a"', True), ETag('"a"', False)) is True
        assert weak_match(ETag('"a"', True), ETag('"b"', True)) is False


class TestIfMatch:
    def test_evaluate_is_none_when_if_match_strongly_matches(self) -> None:
        assert evaluate(("If-Match", '"x", "v1"')) is None

    def test_evaluate_is_412_when_if_match_differs(self) -> None:
        assert evaluate(("If-Match", '"v2"')) == 412

    def test_evaluate_is_412_when_if_match_only_weakly_matches(self) -> None:
        assert evaluate(("If-Match", 'W/"v1"')) == 412
        assert evaluate(("If-Match", '"v1"'), etag='W/"v1"') == 412

    def test_evaluate_is_none_when_if_match_star(self) -> None:
        assert evaluate(("If-Match", "*"), etag=None) is None

    def test_evaluate_is_412_when_if_match_and_no_stored_etag(self) -> None:
        assert evaluate(("If-Match", '"v1"'), etag=None) == 412

    def test_evaluate_skips_if_unmodified_since_when_if_match_present(self) -> None:
        assert evaluate(("If-Match", '"v1"'), ("If-Unmodified-Since", BEFORE)) is None


class TestIfUnmodifiedSince:
    def test_evaluate_is_412_when_modified_after_date(self) -> None:
        assert evaluate(("If-Unmodified-Since", BEFORE)) == 412

    @pytest.mark.parametrize("value", [LM, AFTER])
    def test_evaluate_is_none_when_not_modified_after_date(self, value: str) -> None:
        assert evaluate(("If-Unmodified-Since", value)) is None

    def test_evaluate_ignores_if_unmodified_since_when_date_invalid(self) -> None:
        assert evaluate(("If-Unmodified-Since", "yesterday")) is None

    def test_evaluate_ignores_if_unmodified_since_when_no_last_modified(self) -> None:
        assert evaluate(("If-Unmodified-Since", BEFORE), last_modified=None) is None


class TestIfNoneMatch:
    @pytest.mark.parametrize("method", ["GET", "HEAD"])
    def test_evaluate_is_304_when_if_none_match_matches_on_get_or_head(self, method: str) -> None:
        assert evaluate(("If-None-Match", '"v0", "v1"'), method=method) == 304

    def test_evaluate_is_304_when_only_weakly_matching(self) -> None:
        assert evaluate(("If-None-Match", 'W/"v1"')) == 304
        assert evaluate(("If-None-Match", '"v1"'), etag='W/"v1"') == 304

    def test_evaluate_is_304_when_client_echoes_weak_etag(self) -> None:
        assert evaluate(("If-None-Match", 'W/"v1"'), etag='W/"v1"') == 304

    def test_evaluate_is_304_when_if_none_match_star(self) -> None:
        assert evaluate(("If-None-Match", "*")) == 304

    def test_evaluate_is_412_when_if_none_match_matches_on_other_method(self) -> None:
        assert evaluate(("If-None-Match", '"v1"'), method="POST") == 412

    def test_evaluate_is_none_when_if_none_match_differs(self) -> None:
        assert evaluate(("If-None-Match", '"v2"')) is None

    def test_evaluate_is_none_when_if_none_match_and_no_stored_etag(self) -> None:
        assert evaluate(("If-None-Match", '"v1"'), etag=None) is None

    def test_evaluate_skips_if_modified_since_when_if_none_match_present(self) -> None:
        assert evaluate(("If-None-Match", '"v2"'), ("If-Modified-Since", AFTER)) is None

    def test_evaluate_checks_if_match_first_when_both_present(self) -> None:
        assert evaluate(("If-Match", '"v2"'), ("If-None-Match", '"v1"')) == 412


class TestIfModifiedSince:
    @pytest.mark.parametrize("value", [LM, AFTER])
    def test_evaluate_is_304_when_not_modified_since(self, value: str) -> None:
        assert evaluate(("If-Modified-Since", value)) == 304

    def test_evaluate_is_none_when_modified_since(self) -> None:
        assert evaluate(("If-Modified-Since", BEFORE)) is None

    def test_evaluate_ignores_if_modified_since_when_not_get_or_head(self) -> None:
        assert evaluate(("If-Modified-Since", AFTER), method="POST") is None

    def test_evaluate_ignores_if_modified_since_when_date_invalid(self) -> None:
        assert evaluate(("If-Modified-Since", "0")) is None

    def test_evaluate_ignores_if_modified_since_when_no_last_modified(self) -> None:
        assert evaluate(("If-Modified-Since", AFTER), last_modified=None) is None

    def test_evaluate_reads_obsolete_date_form_when_sent(self) -> None:
        assert evaluate(("If-Modified-Since", "Sunday, 06-Nov-94 08:49:37 GMT")) == 304

    def test_evaluate_is_none_when_no_conditional_headers(self) -> None:
        assert evaluate() is None
