"""edge.config.deployment: the TOML file becomes frozen dataclasses; every mistake names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config.deployment import ConfigError, Eviction, load, load_all, parse, parse_size, quickstart

BASE = {
    "nodes": {"edge1": {"listen": "127.0.0.2:8080"}},
    "origins": {"web": {"servers": ["http://127.0.0.1:8000"]}},
    "routes": [{"host": "*", "origin": "web"}],
}


def _with(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {**BASE}
    data.update(changes)
    return data


class TestParse:
    def test_parse_selects_node_when_config_is_valid(self) -> None:
        cfg = parse(BASE, "edge1")
        assert (cfg.node.host, cfg.node.port) == ("127.0.0.2", 8080)
        assert cfg.routes[0].pool == "web"
        assert cfg.disk_dir is None

    def test_parse_fails_naming_key_when_top_level_key_unknown(self) -> None:
        with pytest.raises(ConfigError, match=r"^config\.bogus: unknown key"):
            parse(_with(bogus=1), "edge1")

    def test_parse_fails_naming_key_when_cache_key_unknown(self) -> None:
        with pytest.raises(ConfigError, match=r"^cache\.memroy_bytes: unknown key"):
            parse(_with(cache={"memroy_bytes": 1}), "edge1")

    def test_parse_fails_naming_key_when_size_malformed(self) -> None:
        with pytest.raises(ConfigError, match=r"^cache\.memory_bytes: expected a size"):
            parse(_with(cache={"memory_bytes": "lots"}), "edge1")

    def test_parse_fails_naming_key_when_timeout_has_wrong_type(self) -> None:
        with pytest.raises(ConfigError, match=r"^coalesce\.head_timeout_s: expected a non-negative number"):
            parse(_with(coalesce={"head_timeout_s": "soon"}), "edge1")

    def test_parse_fails_naming_node_when_node_unknown(self) -> None:
        with pytest.raises(ConfigError, match=r"^nodes\.edge9: no such node.*known nodes: edge1"):
            parse(BASE, "edge9")

    def test_parse_fails_naming_key_when_listen_malformed(self) -> None:
        with pytest.raises(ConfigError, match=r"^nodes\.edge1\.listen: expected"):
            parse(_with(nodes={"edge1": {"listen": "8080"}}), "edge1")

    def test_parse_fails_when_route_names_missing_pool(self) -> None:
        with pytest.raises(ConfigError, match=r"routes\[0\]"):
            parse(_with(routes=[{"host": "*", "origin": "nope"}]), "edge1")

    def test_parse_fails_when_no_route_configured(self) -> None:
        with pytest.raises(ConfigError, match=r"^routes: no route"):
            parse(_with(routes=[]), "edge1")

    def test_parse_fails_naming_key_when_origin_url_bad(self) -> None:
        with pytest.raises(ConfigError, match=r"origins\.web\.servers\[0\]"):
            parse(_with(origins={"web": {"servers": ["ftp://x"]}}), "edge1")

    def test_parse_fails_listing_policies_when_eviction_policy_unknown(self) -> None:
        with pytest.raises(ConfigError) as err:
            parse(_with(cache={"policy": "lfu"}), "edge1")
        assert str(err.value) == "cache.policy: unknown eviction policy 'lfu'; use one of \"gdsf\", \"s3fifo\", \"lru\""

    @pytest.mark.parametrize("member", list(Eviction))
    def test_parse_reads_eviction_policy_as_member_when_named(self, member: Eviction) -> None:
        assert parse(_with(cache={"policy": member.value}), "edge1").cache.policy is member

    def test_parse_names_cluster_key_when_cluster_value_out_of_range(self) -> None:
        with pytest.raises(ConfigError, match=r"^cluster\.vnodes: vnodes must be >= 1$"):
            parse(_with(cluster={"secret": "s", "vnodes": 0}), "edge1")

    def test_disk_dir_substitutes_node_name_when_template_given(self) -> None:
        cfg = parse(_with(cache={"disk_dir": "/var/cache/{node}"}), "edge1")
        assert cfg.disk_dir == Path("/var/cache/edge1")


class TestSizes:
    @pytest.mark.parametrize(("text", "value"), [
        (1024, 1024), ("256MiB", 256 * 1024**2), ("2GiB", 2 * 1024**3), ("64KiB", 65536), ("1MB", 10**6),
        ("512", 512),
    ])
    def test_parse_size_reads_units_when_given(self, text: object, value: int) -> None:
        assert parse_size(text, "x") == value

    @pytest.mark.parametrize("bad", [-1, "1 parsec", True, 1.5, "MiB"])
    def test_parse_size_rejects_value_when_malformed(self, bad: object) -> None:
        with pytest.raises(ConfigError, match="^x: "):
            parse_size(bad, "x")


class TestLoad:
    def test_load_reads_repository_config_when_node_exists(self) -> None:
        cfg = load(Path(__file__).resolve().parents[3] / "config.toml", "edge1")
        assert cfg.pools and cfg.routes

    def test_load_explains_syntax_error_when_toml_invalid(self, tmp_path: Path) -> None:
        bad = tmp_path / "bad.toml"
        bad.write_text("[nodes\n")
        with pytest.raises(ConfigError, match="not valid TOML"):
            load(bad, "edge1")

    def test_load_says_what_to_do_when_file_missing(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="pass --config"):
            load(tmp_path / "missing.toml", "edge1")

    def test_load_says_what_to_do_when_path_is_a_directory(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"is a directory; pass --config with the path of the file itself"):
            load(tmp_path, "edge1")

    def test_load_says_what_to_do_when_file_is_not_text(self, tmp_path: Path) -> None:
        binary = tmp_path / "c.toml"
        binary.write_bytes(b"\xff\xfe\x00binary")
        with pytest.raises(ConfigError, match="not UTF-8 text"):
            load(binary, "edge1")

    def test_load_all_validates_every_node_when_file_has_several(self) -> None:
        path = Path(__file__).resolve().parents[3] / "config.toml"
        cfgs = load_all(path)
        assert list(cfgs) == list(cfgs["edge1"].nodes) and len(cfgs) > 1
        assert all(cfg.node.name == name for name, cfg in cfgs.items())

    def test_load_all_fails_naming_nodes_when_none_configured(self, tmp_path: Path) -> None:
        empty = tmp_path / "c.toml"
        empty.write_text('[[routes]]\norigin = "web"\n')
        with pytest.raises(ConfigError, match=r"^nodes: no node configured"):
            load_all(empty)


def test_quickstart_forwards_every_path_when_built_from_flags() -> None:
    cfg = quickstart(origin="http://127.0.0.1:8000", listen="127.0.0.1:8081")
    assert cfg.routes[0].host == "*" and cfg.routes[0].path_prefix == "/"
    assert cfg.node.port == 8081


class TestPeerTimeouts:
    def test_peer_timeouts_are_derived_from_origins_and_regions_when_unset(self) -> None:
        data = _with(
            nodes={
                "e1": {"listen": "127.0.0.2:8080", "internal": "127.0.0.2:9080", "region": "edge"},
                "e2": {"listen": "127.0.0.3:8080", "internal": "127.0.0.3:9080", "region": "edge"},
                "s1": {"listen": "127.0.0.4:8080", "internal": "127.0.0.4:9080", "region": "shield"},
            },
            origins={"web": {"servers": ["http://127.0.0.1:8000"], "first_byte_timeout_s": 8.0}},
            regions={"edge": {"parent": "shield"}},
            cluster={"secret": "s", "peer_deadline_margin_s": 0.25},
        )
        cluster = parse(data, "e1").cluster
        assert cluster is not None
        assert cluster.peer_timeouts.first_byte_s == 8.0 + 2 * 0.25  # owner, then shield
        assert cluster.peer_deadline_margin_s == 0.25

    def test_peer_first_byte_timeout_is_kept_when_configured(self) -> None:
        data = _with(
            nodes={
                "e1": {"listen": "127.0.0.2:8080", "internal": "127.0.0.2:9080"},
                "e2": {"listen": "127.0.0.3:8080", "internal": "127.0.0.3:9080"},
            },
            cluster={"secret": "s", "peer_first_byte_timeout_s": 2.0},
        )
        cluster = parse(data, "e1").cluster
        assert cluster is not None and cluster.peer_timeouts.first_byte_s == 2.0


class TestCachePolicyAndAdmission:
    @pytest.mark.parametrize("name", ["gdsf", "s3fifo", "lru"])
    def test_parse_accepts_policy_when_known(self, name: str) -> None:
        assert parse(_with(cache={"policy": name}), "edge1").cache.policy == name

    def test_parse_fails_naming_key_when_admission_unknown(self) -> None:
        with pytest.raises(ConfigError, match=r"^cache\.disk_admission: expected"):
            parse(_with(cache={"disk_admission": "sometimes"}), "edge1")

    @pytest.mark.parametrize("window", [-5, "many", True, 1.5])
    def test_parse_fails_naming_key_when_admission_window_not_a_count(self, window: object) -> None:
        with pytest.raises(ConfigError, match=r"^cache\.disk_admission_window: expected a number"):
            parse(_with(cache={"disk_admission_window": window}), "edge1")

    def test_parse_reads_admission_when_given(self) -> None:
        raw = {"disk_admission": "second_hit", "disk_admission_window": 500}
        cache = parse(_with(cache=raw), "edge1").cache
        assert (cache.disk_admission, cache.disk_admission_window) == ("second_hit", 500)

    def test_quickstart_keeps_cache_choices_when_given(self) -> None:
        from edge.config.deployment import CacheConfig

        cfg = quickstart(
            origin="http://127.0.0.1:8000",
            listen="127.0.0.2:8080",
            memory_bytes=1 << 20,
            cache=CacheConfig(policy="lru", memory_max_object_bytes=4096),
        )
        assert (cfg.cache.policy, cfg.cache.memory_max_object_bytes, cfg.cache.memory_bytes) == (
            "lru",
            4096,
            1 << 20,
        )

    def test_memory_cap_follows_disk_tier_when_not_configured(self) -> None:
        cache = parse(BASE, "edge1").cache
        assert cache.memory_max_object_bytes is None
        assert cache.memory_object_cap(has_disk=True) == 64 * 1024
        assert cache.memory_object_cap(has_disk=False) == 8 * 1024 * 1024

    def test_memory_cap_is_the_configured_one_when_given(self) -> None:
        cache = parse(_with(cache={"memory_max_object_bytes": "256KiB"}), "edge1").cache
        assert cache.memory_object_cap(has_disk=True) == cache.memory_object_cap(has_disk=False) == 256 * 1024
