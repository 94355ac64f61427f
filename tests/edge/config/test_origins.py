"""Strict parsing of [origins.*] (servers, timeouts, retries, balancing, health, backup)
and [[routes]]: every mistake names its dotted key."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from edge.config.errors import ConfigError
from origin.config import (
    AdmissionConfig,
    Balance,
    HealthCheckConfig,
    OriginPoolConfig,
    PassiveHealthConfig,
    RetryConfig,
    RouteRule,
    ServerConfig,
    TimeoutConfig,
)
from edge.config.origins import parse_pools, parse_routes

pytestmark = pytest.mark.timeout(10)


def rule(host: str, prefix: str, pool: str) -> RouteRule:
    return RouteRule(host=host, path_prefix=prefix, pool=pool)


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
balance = "least_outstanding"
health_path = "/healthz"
health_host = "api.example.com"
health_interval_s = 2
health_timeout_s = 1.5
healthy_after = 1
unhealthy_after = 4
passive_failures = 5
passive_cooldown_s = 30
passive_5xx = true
backup = "web"

[[routes]]
host = "API.example.com"
path_prefix = "/v1/"
origin = "api"

[[routes]]
host = "*"
origin = "web"
"""


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
        assert pools["api"].balance is Balance.LEAST_OUTSTANDING and pools["api"].backup == "web"
        assert pools["api"].health == HealthCheckConfig(
            path="/healthz",
            host="api.example.com",
            interval_s=2.0,
            timeout_s=1.5,
            healthy_after=1,
            unhealthy_after=4,
        )
        assert pools["api"].passive == PassiveHealthConfig(failures=5, cooldown_s=30.0, on_5xx=True)
        assert [s.base for s in pools["api"].servers] == [
            "http://127.0.0.1:8001",
            "https://[::1]:8443",
        ]
        assert routes == (rule("api.example.com", "/v1/", "api"), rule("*", "/", "web"))


class TestAdmission:
    def test_parse_reads_admission_limits_when_given(self) -> None:
        table = {**OK_POOL, "max_in_flight": 2, "max_queue": 0, "queue_timeout_s": 0.5}
        assert parse_pool(table)["web"].admission == AdmissionConfig(
            max_in_flight=2, max_queue=0, queue_timeout_s=0.5
        )

    def test_parse_bounds_fetches_by_default_when_keys_are_absent(self) -> None:
        admission = parse_pool(dict(OK_POOL))["web"].admission
        assert admission == AdmissionConfig()
        assert 0 < admission.max_in_flight <= 1024 and 0 < admission.max_queue <= 4096


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
            ({**OK_POOL, "balance": "random"}, "origins.web.balance: unknown balancing 'random'"),
            ({**OK_POOL, "balance": 1}, "origins.web.balance: unknown balancing 1"),
            ({**OK_POOL, "health_path": "healthz"}, "origins.web.health_path:"),
            ({**OK_POOL, "health_path": "/a b"}, "origins.web.health_path:"),
            ({**OK_POOL, "health_path": 1}, "origins.web.health_path:"),
            ({**OK_POOL, "health_host": ""}, "origins.web.health_host:"),
            ({**OK_POOL, "health_interval_s": 0}, "origins.web.health_interval_s:"),
            ({**OK_POOL, "health_timeout_s": 6}, "origins.web.health_timeout_s: 6.0 exceeds"),
            ({**OK_POOL, "healthy_after": 0}, "origins.web.healthy_after:"),
            ({**OK_POOL, "unhealthy_after": 1.5}, "origins.web.unhealthy_after:"),
            ({**OK_POOL, "passive_failures": -1}, "origins.web.passive_failures:"),
            ({**OK_POOL, "passive_cooldown_s": "5s"}, "origins.web.passive_cooldown_s:"),
            ({**OK_POOL, "passive_5xx": "yes"}, "origins.web.passive_5xx:"),
            ({**OK_POOL, "down_after_failures": 3}, "origins.web.down_after_failures: unknown"),
            ({**OK_POOL, "max_in_flight": 0}, "origins.web.max_in_flight:"),
            ({**OK_POOL, "max_in_flight": 2.5}, "origins.web.max_in_flight:"),
            ({**OK_POOL, "max_queue": -1}, "origins.web.max_queue:"),
            ({**OK_POOL, "queue_timeout_s": 0}, "origins.web.queue_timeout_s:"),
            ({**OK_POOL, "backup": "nowhere"}, "origins.web.backup: unknown pool 'nowhere'"),
            ({**OK_POOL, "backup": "web"}, "origins.web.backup: backup pools form a cycle"),
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

    def test_parse_pools_names_cycle_when_backups_loop_through_pools(self) -> None:
        pools = {
            "a": {**OK_POOL, "backup": "b"},
            "b": {**OK_POOL, "backup": "c"},
            "c": {**OK_POOL, "backup": "a"},
        }
        with pytest.raises(ConfigError, match=r"^origins\.a\.backup: .*\(a -> b -> c -> a\)"):
            parse_pools(pools, "origins")

    def test_parse_pools_accepts_backup_chain_when_it_ends(self) -> None:
        pools = parse_pools(
            {"a": {**OK_POOL, "backup": "b"}, "b": {**OK_POOL, "backup": "c"}, "c": OK_POOL},
            "origins",
        )
        assert [p.backup for p in pools.values()] == ["b", "c", None]

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


class TestBalanceNames:
    def test_unknown_balancing_fails_listing_every_valid_name_when_misspelt(self) -> None:
        with pytest.raises(ConfigError) as err:
            parse_pool({**OK_POOL, "balance": "least-outstanding"})
        assert str(err.value) == (
            "origins.web.balance: unknown balancing 'least-outstanding'; "
            'use one of "round_robin", "least_outstanding"'
        )

    @pytest.mark.parametrize("member", list(Balance))
    def test_every_balance_reads_back_as_its_member_when_named(self, member: Balance) -> None:
        assert parse_pool({**OK_POOL, "balance": member.value})["web"].balance is member


class TestValues:
    def test_pool_config_defaults_to_round_robin_without_checks_when_keys_are_absent(
        self,
    ) -> None:
        pool = parse_pool(OK_POOL)["web"]
        assert (pool.balance, pool.backup, pool.health.enabled) == (Balance.ROUND_ROBIN, None, False)
        assert pool.passive == PassiveHealthConfig(failures=3, cooldown_s=10.0, on_5xx=False)

    def test_health_config_raises_value_error_when_timeout_exceeds_interval(self) -> None:
        with pytest.raises(ValueError, match="timeout_s"):
            HealthCheckConfig(path="/h", interval_s=1.0, timeout_s=2.0)

    def test_server_netloc_keeps_host_and_port_when_url_has_trailing_slash(self) -> None:
        assert ServerConfig(url="http://127.0.0.1:8000/").netloc == "127.0.0.1:8000"
