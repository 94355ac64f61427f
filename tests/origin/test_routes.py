"""Router matching, hop-by-hop stripping, and strict parsing of [origins.*] and [[routes]]."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from origin.config import (
    ConfigError,
    OriginPoolConfig,
    RetryConfig,
    RouteRule,
    ServerConfig,
    TimeoutConfig,
    parse_pools,
    parse_routes,
)
from origin.hopbyhop import strip_hop_by_hop
from origin.routes import Router, request_hostname

pytestmark = pytest.mark.timeout(10)

EXAMPLE = """
[origins.web]
servers = ["http://127.0.0.1:8000"]
connect_timeout_s = 2.0
first_byte_timeout_s = 10.0
total_timeout_s = 60.0
idle_timeout_s = 10.0
retries = 1
forward_headers = ["accept", "Accept-Encoding", "x-app"]

[origins.api]
servers = ["http://127.0.0.1:8001/", "https://[::1]:8443"]
retries = 0

[[routes]]
host = "API.example.com"
path_prefix = "/v1/"
origin = "api"

[[routes]]
host = "*"
origin = "web"
"""


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


class TestParseValid:
    def test_parse_builds_pools_and_routes_when_given_the_documented_shape(self) -> None:
        data = tomllib.loads(EXAMPLE)
        pools = parse_pools(data["origins"], "origins")
        routes = parse_routes(data["routes"], "routes", pools)
        assert pools["web"] == OriginPoolConfig(
            name="web",
            servers=(ServerConfig(url="http://127.0.0.1:8000"),),
            timeouts=TimeoutConfig(connect_s=2.0, first_byte_s=10.0, total_s=60.0, idle_s=10.0),
            retry=RetryConfig(attempts=2),
            forward_headers=("accept", "accept-encoding", "x-app"),
        )
        assert pools["api"].forward_headers is None and pools["api"].retry.attempts == 1
        assert [s.base for s in pools["api"].servers] == [
            "http://127.0.0.1:8001",
            "https://[::1]:8443",
        ]
        assert routes == (rule("api.example.com", "/v1/", "api"), rule("*", "/", "web"))


def parse_pool(table: dict[str, Any]) -> dict[str, OriginPoolConfig]:
    return parse_pools({"web": table}, "origins")


OK_POOL = {"servers": ["http://127.0.0.1:8000"]}


class TestParseErrors:
    @pytest.mark.parametrize(
        ("table", "dotted"),
        [
            ({**OK_POOL, "retry": 1}, "origins.web.retry:"),
            ({**OK_POOL, "connect_timeout_s": "2"}, "origins.web.connect_timeout_s:"),
            ({**OK_POOL, "total_timeout_s": 0}, "origins.web.total_timeout_s:"),
            ({**OK_POOL, "retries": True}, "origins.web.retries:"),
            ({**OK_POOL, "retries": -1}, "origins.web.retries:"),
            ({**OK_POOL, "forward_headers": "accept"}, "origins.web.forward_headers:"),
            ({**OK_POOL, "forward_headers": ["ok", "bad name"]}, "origins.web.forward_headers[1]:"),
            ({}, "origins.web.servers:"),
            ({"servers": []}, "origins.web.servers:"),
            ({"servers": "http://127.0.0.1:1"}, "origins.web.servers:"),
            ({"servers": ["http://127.0.0.1:1", 5]}, "origins.web.servers[1]:"),
            ({"servers": ["ftp://127.0.0.1:1"]}, "origins.web.servers[0]:"),
            ({"servers": ["http:///nohost"]}, "origins.web.servers[0]:"),
            ({"servers": ["http://127.0.0.1:1/path"]}, "origins.web.servers[0]:"),
            ({"servers": ["http://127.0.0.1:1/?q"]}, "origins.web.servers[0]:"),
            ({"servers": ["http://127.0.0.1:99999"]}, "origins.web.servers[0]:"),
            ({"servers": ["http://u:p@127.0.0.1:1"]}, "origins.web.servers[0]:"),
            ({"servers": ["http://127.0.0.1:1", "http://127.0.0.1:1/"]}, "origins.web.servers[1]:"),
        ],
    )
    def test_parse_pools_names_dotted_key_when_value_is_wrong(
        self, table: dict[str, Any], dotted: str
    ) -> None:
        with pytest.raises(ConfigError) as info:
            parse_pool(table)
        assert str(info.value).startswith(dotted)
        assert "; " in str(info.value)  # what is wrong; what to do

    def test_parse_pools_names_pool_when_pool_is_not_a_table(self) -> None:
        with pytest.raises(ConfigError, match=r"^origins\.web: expected a table"):
            parse_pools({"web": ["http://127.0.0.1:1"]}, "origins")

    def test_parse_pools_names_pool_when_name_has_bad_characters(self) -> None:
        with pytest.raises(ConfigError, match=r"^origins\.a b: bad pool name"):
            parse_pools({"a b": OK_POOL}, "origins")

    @pytest.mark.parametrize(
        ("routes", "dotted"),
        [
            ([{"origin": "missing"}], "routes[0].origin: unknown pool 'missing'"),
            ([{"host": "*"}], "routes[0].origin: missing"),
            (
                [{"origin": "web"}, {"origin": "web", "prefix": "/"}],
                "routes[1].prefix: unknown key",
            ),
            ([{"origin": "web", "host": 5}], "routes[0].host: expected a string"),
            ([{"origin": "web", "host": "example.com:8080"}], "routes[0].host:"),
            ([{"origin": "web", "host": "a.*.com"}], "routes[0].host:"),
            ([{"origin": "web", "path_prefix": "api"}], "routes[0].path_prefix:"),
            ([{"origin": "web", "path_prefix": "/a?b"}], "routes[0].path_prefix:"),
            (["web"], "routes[0]: expected a table"),
        ],
    )
    def test_parse_routes_names_dotted_key_when_rule_is_wrong(
        self, routes: list[Any], dotted: str
    ) -> None:
        pools = parse_pool(OK_POOL)
        with pytest.raises(ConfigError) as info:
            parse_routes(routes, "routes", pools)
        assert str(info.value).startswith(dotted)

    def test_parse_routes_rejects_table_when_routes_is_not_an_array(self) -> None:
        with pytest.raises(ConfigError, match=r"^routes: expected an array"):
            parse_routes({"origin": "web"}, "routes", parse_pool(OK_POOL))

    def test_server_config_raises_value_error_when_built_with_bad_url(self) -> None:
        with pytest.raises(ValueError, match="scheme"):
            ServerConfig(url="gopher://127.0.0.1:70")
