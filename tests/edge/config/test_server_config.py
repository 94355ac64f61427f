"""edge.config.server: `[server]` timeouts and caps, defaults and mistakes naming their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config.deployment import ConfigError, load, parse
from edge.config.server import ServerConfig, parse_server

pytestmark = pytest.mark.timeout(10)

BASE = {
    "nodes": {"edge1": {"listen": "127.0.0.2:8080"}},
    "origins": {"web": {"servers": ["http://127.0.0.1:8000"]}},
    "routes": [{"host": "*", "origin": "web"}],
}


class TestServerSection:
    def test_absent_section_gives_safe_defaults(self) -> None:
        cfg = parse(BASE, "edge1").server
        assert cfg == ServerConfig()
        assert 0 < cfg.head_timeout_s <= cfg.idle_timeout_s < cfg.send_timeout_s < cfg.request_timeout_s
        assert cfg.body_min_rate > 0 and cfg.access_log_buffer_lines > 0

    def test_values_are_read_when_given(self) -> None:
        cfg = parse(
            {**BASE, "server": {"head_timeout_s": 2, "max_connections": 500, "body_min_rate": 0}}, "edge1"
        ).server
        assert (cfg.head_timeout_s, cfg.max_connections, cfg.body_min_rate) == (2.0, 500, 0.0)

    def test_access_log_format_is_json_unless_combined_is_chosen(self) -> None:
        assert parse(BASE, "edge1").server.access_log_format == "json"
        chosen = parse({**BASE, "server": {"access_log_format": "combined"}}, "edge1").server
        assert chosen.access_log_format == "combined"

    @pytest.mark.parametrize(
        ("table", "message"),
        [
            ({"head_timout_s": 1}, r"^server\.head_timout_s: unknown key"),
            ({"idle_timeout_s": 0}, r"^server\.idle_timeout_s: must be greater than 0"),
            ({"send_timeout_s": -1}, r"^server\.send_timeout_s: expected a non-negative number"),
            ({"max_connections": 1.5}, r"^server\.max_connections: expected a whole number"),
            ({"max_connections_per_ip": True}, r"^server\.max_connections_per_ip: expected a whole number"),
            ({"access_log_buffer_lines": 0},
             r"^server\.access_log_buffer_lines: expected a whole number >= 1"),
            ({"access_log_format": "apache"}, r'^server\.access_log_format: expected "json" or "combined"'),
        ],
    )
    def test_mistake_names_its_key(self, table: dict[str, object], message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            parse_server(table)

    def test_shipped_config_toml_documents_every_key_with_its_default(self) -> None:
        root = Path(__file__).resolve().parents[3]
        cfg = load(root / "config.toml", "edge1").server
        assert cfg == ServerConfig()


class TestDrainKeys:
    def test_drain_defaults_are_30s_derived_announce_and_the_edge_ready_path(self) -> None:
        cfg = parse(BASE, "edge1").server
        assert (cfg.drain_timeout_s, cfg.drain_announce_s, cfg.ready_path) == (30.0, None, "/_edge/ready")

    def test_drain_keys_are_read_when_given(self) -> None:
        cfg = parse_server({"drain_timeout_s": 5, "drain_announce_s": 0, "ready_path": "/healthz"})
        assert (cfg.drain_timeout_s, cfg.drain_announce_s, cfg.ready_path) == (5.0, 0.0, "/healthz")

    @pytest.mark.parametrize("path", ["healthz", "/ready?x=1", 5])
    def test_ready_path_that_is_not_a_path_names_the_key(self, path: object) -> None:
        with pytest.raises(ConfigError, match="server.ready_path"):
            parse_server({"ready_path": path})
