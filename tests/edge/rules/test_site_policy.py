"""edge.rules.site_policy: lifetimes where the origin is silent, and query-string handling of the key."""

from __future__ import annotations

import dataclasses

import pytest

from edge.rules.site_policy import DEFAULT_POLICY, CachePolicy, PolicySet, normalise_target

HLS = CachePolicy(ttl_by_extension={"m3u8": 2.0, "ts": 86400.0}, default_ttl_s=60.0, negative_ttl_s=5.0)


class TestSilentTtl:
    def test_extension_profile_applies_when_path_has_extension(self) -> None:
        assert HLS.silent_ttl(200, "/live/index.m3u8?token=1") == 2.0
        assert HLS.silent_ttl(200, "/live/seg1.TS") == 86400.0

    def test_default_ttl_applies_when_no_profile_matches(self) -> None:
        assert HLS.silent_ttl(200, "/page.html") == 60.0
        assert HLS.silent_ttl(200, "/dir.v2/file") == 60.0  # a dot in a directory is no extension

    def test_negative_ttl_applies_when_status_is_404_or_410(self) -> None:
        assert HLS.silent_ttl(404, "/missing") == 5.0
        assert HLS.silent_ttl(410, "/gone") == 5.0

    def test_nothing_applies_when_policy_is_default(self) -> None:
        # issue 14: the default policy knows HLS/DASH (test_streaming.py); nothing else applies
        assert dataclasses.replace(DEFAULT_POLICY, streaming=False).silent_ttl(200, "/a.m3u8") is None
        assert DEFAULT_POLICY.silent_ttl(200, "/a.html") is None
        assert DEFAULT_POLICY.silent_ttl(404, "/a") is None


class TestMatch:
    def test_first_matching_rule_wins_when_several_match(self) -> None:
        video = CachePolicy(host="cdn.example.com", path_prefix="/video/", default_ttl_s=1.0)
        rest = CachePolicy(host="*", default_ttl_s=2.0)
        rules = PolicySet([video, rest])
        assert rules.match("cdn.example.com:8080", "/video/a.ts") is video
        assert rules.match("cdn.example.com", "/img/a.png") is rest
        assert rules.match("other.example", "/video/a.ts") is rest

    def test_wildcard_host_matches_subdomains_only_when_given(self) -> None:
        rule = CachePolicy(host="*.example.com")
        assert rule.matches("a.example.com", "/") and rule.matches("a.b.example.com.", "/")
        assert not rule.matches("example.com", "/")

    def test_default_policy_applies_when_nothing_matches(self) -> None:
        assert PolicySet([CachePolicy(host="x")]).match("y", "/") is DEFAULT_POLICY


class TestNormaliseTarget:
    @pytest.mark.parametrize(("policy", "target", "expected"), [
        (CachePolicy(), "/a?b=1&a=2", "/a?b=1&a=2"),
        (CachePolicy(query="sort"), "/a?b=1&a=2", "/a?a=2&b=1"),
        (CachePolicy(query="drop"), "/a?b=1&a=2", "/a"),
        (CachePolicy(drop_params=("utm_*", "fbclid")), "/a?utm_source=x&id=7&fbclid=z", "/a?id=7"),
        (CachePolicy(drop_params=("utm_*",)), "/a?utm_source=x", "/a"),
        (CachePolicy(query="sort", drop_params=("utm_*",)), "/a?z=%41&utm_x=1&b=2", "/a?b=2&z=%41"),
        (CachePolicy(query="sort"), "/no-query", "/no-query"),
    ])
    def test_target_is_rewritten_as_configured_when_policy_rewrites(self, policy: CachePolicy, target: str,
                                                                    expected: str) -> None:
        assert normalise_target(target, policy) == expected

    def test_percent_encoding_is_kept_when_params_survive(self) -> None:
        assert normalise_target("/a%3Fx?q=%2e%2e&utm_a=1", CachePolicy(drop_params=("utm_*",))) == "/a%3Fx?q=%2e%2e"


class TestKeyUrlForm:
    def test_purge_url_takes_key_form_when_policy_rewrites_query(self) -> None:
        from edge.rules.site_policy import key_url_form

        form = key_url_form(PolicySet([CachePolicy(query="sort", drop_params=("utm_*",))]))
        assert form("HTTP://Demo.Local/a?b=1&utm_x=2&a=0") == "http://demo.local/a?a=0&b=1"
        assert form("http://demo.local/plain") == "http://demo.local/plain"
