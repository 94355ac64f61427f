"""edge.config.purge through edge.config.deployment.parse: admin listener, tokens, purge sync keys (issue 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config.deployment import ConfigError, parse

TOKEN = {"name": "ops", "token": "0123456789abcdef", "hosts": ["demo.local"]}


def _data(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "nodes": {"edge1": {"listen": "127.0.0.2:8080", "admin": "127.0.0.2:7080"}},
        "origins": {"web": {"servers": ["http://127.0.0.1:8000"]}},
        "routes": [{"host": "*", "origin": "web"}],
    }
    data.update(changes)
    return data


class TestAdminConfig:
    def test_parse_reads_admin_listener_tokens_and_defaults_when_valid(self) -> None:
        cfg = parse(_data(admin={"tokens": [TOKEN], "burst": 3}), "edge1")
        assert (cfg.node.admin_host, cfg.node.admin_port) == ("127.0.0.2", 7080)
        assert cfg.admin.tokens[0].hosts == ("demo.local",) and cfg.admin.burst == 3
        assert cfg.admin.purge_timeout_s == 5.0 and cfg.purge_sync.max_lag_s == 10.0

    @pytest.mark.parametrize(("admin", "message"), [
        ({"bogus": 1}, r"^admin\.bogus: unknown key"),
        ({"burst": 0}, r"^admin\.burst: expected an integer"),
        ({"rate_per_s": -1}, r"^admin\.rate_per_s: expected a number greater than 0"),
        ({"tokens": [{**TOKEN, "token": "short"}]}, r"^admin\.tokens\[0\]\.token: expected a secret"),
        ({"tokens": [{**TOKEN, "hosts": []}]}, r"^admin\.tokens\[0\]\.hosts: expected a non-empty list"),
        ({"tokens": [{**TOKEN, "role": "x"}]}, r"^admin\.tokens\[0\]\.role: unknown key"),
        ({"tokens": [TOKEN, {**TOKEN, "token": "fedcba9876543210"}]}, r"^admin\.tokens: two tokens share a name"),
    ])
    def test_parse_fails_naming_key_when_admin_value_is_bad(self, admin: dict[str, object], message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            parse(_data(admin=admin), "edge1")

    def test_parse_fails_naming_key_when_admin_address_is_bad(self) -> None:
        with pytest.raises(ConfigError, match=r"^nodes\.edge1\.admin: expected \"host:port\""):
            parse(_data(nodes={"edge1": {"listen": "127.0.0.2:8080", "admin": "nowhere"}}), "edge1")

    def test_error_never_shows_the_token_when_token_is_rejected(self) -> None:
        with pytest.raises(ConfigError) as err:
            parse(_data(admin={"tokens": [{**TOKEN, "token": "tiny-secret"}]}), "edge1")
        assert "tiny-secret" not in str(err.value)


class TestPurgeSync:
    def test_parse_reads_purge_keys_from_cluster_when_given(self) -> None:
        cluster = {"secret": "s", "purge_sync_interval_s": 0.5, "max_purge_lag_s": 3}
        cfg = parse(_data(cluster=cluster), "edge1")
        assert (cfg.purge_sync.sync_interval_s, cfg.purge_sync.max_lag_s) == (0.5, 3.0)

    def test_parse_fails_when_max_lag_is_not_longer_than_interval(self) -> None:
        with pytest.raises(ConfigError, match=r"^cluster\.max_purge_lag_s: must be longer"):
            parse(_data(cluster={"secret": "s", "purge_sync_interval_s": 2, "max_purge_lag_s": 2}), "edge1")

    def test_state_dir_defaults_under_disk_dir_and_can_be_set(self, tmp_path: Path) -> None:
        disk = {"listen": "127.0.0.2:8080", "disk_dir": str(tmp_path / "{node}")}
        assert parse(_data(nodes={"edge1": disk}), "edge1").state_dir == tmp_path / "edge1" / "purge"
        own = {**disk, "state_dir": str(tmp_path / "s-{node}")}
        assert parse(_data(nodes={"edge1": own}), "edge1").state_dir == tmp_path / "s-edge1"
        assert parse(_data(), "edge1").state_dir is None
