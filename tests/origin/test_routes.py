"""Router matching and hop-by-hop stripping (config parsing: test_config.py)."""

from __future__ import annotations

import pytest

from origin.config import RouteRule
from origin.hopbyhop import strip_hop_by_hop
from origin.routes import Router, request_hostname

pytestmark = pytest.mark.timeout(10)


def rule(host: str, prefix: str, pool: str) -> RouteRule:
    return RouteRule(host=host, path_prefix=prefix, pool=pool)


class TestRouterHost:
    router = Router(
        [
            rule("static.example.com", "/", "exact"),
            rule("*.example.com", "/", "wild"),
            rule("*", "/", "any"),
        ]
    )

    @pytest.mark.parametrize(
        ("host", "pool"),
        [
            ("static.example.com", "exact"),
            ("STATIC.Example.COM:8080", "exact"),
            ("static.example.com.", "exact"),
            ("a.example.com", "wild"),
            ("a.b.example.com:443", "wild"),
            ("example.com", "any"),
            ("badexample.com", "any"),
            ("", "any"),
        ],
    )
    def test_match_picks_first_matching_host_rule_when_host_varies(
        self, host: str, pool: str
    ) -> None:
        matched = self.router.match(host, "/x")
        assert matched is not None and matched.pool == pool

    @pytest.mark.parametrize(
        ("host", "name"),
        [
            ("Example.com:80", "example.com"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
            ("h.", "h"),
        ],
    )
    def test_request_hostname_strips_port_and_case_when_present(self, host: str, name: str) -> None:
        assert request_hostname(host) == name


class TestRouterPath:
    router = Router(
        [
            rule("*", "/api", "api"),
            rule("*", "/static/", "static"),
            rule("example.com", "/", "site"),
        ]
    )

    @pytest.mark.parametrize(
        ("target", "pool"),
        [
            ("/api", "api"),
            ("/api/v1?x=1", "api"),
            ("/apix", "api"),  # plain string prefix, not a segment boundary
            ("/static/a.css", "static"),
            ("/static", "site"),
            ("/x?/api", "site"),  # only the path before "?" is compared
            ("/%61pi", "site"),  # compared raw, never decoded
            ("*", "site"),
        ],
    )
    def test_match_compares_raw_path_prefix_when_target_varies(
        self, target: str, pool: str
    ) -> None:
        matched = self.router.match("example.com", target)
        assert matched is not None and matched.pool == pool

    def test_match_returns_none_when_no_rule_matches(self) -> None:
        assert self.router.match("other.com", "/page") is None

    def test_match_keeps_config_order_when_a_later_rule_is_more_specific(self) -> None:
        router = Router([rule("*", "/", "first"), rule("*", "/api/", "second")])
        matched = router.match("example.com", "/api/x")
        assert matched is not None and matched.pool == "first"


class TestStripHopByHop:
    def test_strip_drops_fields_named_in_connection_when_present_in_any_case(self) -> None:
        headers = [
            ("Connection", "X-Foo, close"),
            ("connection", "x-bar"),
            ("X-FOO", "1"),
            ("X-Bar", "2"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic x"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("ETag", '"v1"'),
        ]
        assert strip_hop_by_hop(headers) == (
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("ETag", '"v1"'),
        )

    def test_strip_keeps_everything_when_no_hop_by_hop_field_is_present(self) -> None:
        headers = (("A", "1"), ("B", "2"), ("A", "3"))
        assert strip_hop_by_hop(iter(headers)) == headers
