"""`[server] workers`, `--workers` and $EDGECACHE_WORKERS (issue 13)."""

from __future__ import annotations

import os

import pytest

from edge.cli.supervisor import worker_count
from edge.config.errors import ConfigError
from edge.config.server import ServerConfig, parse_server


class TestWorkersKey:
    def test_workers_is_unset_when_the_key_is_absent(self) -> None:
        assert parse_server({}).workers is None
        assert ServerConfig().workers is None

    @pytest.mark.parametrize("value", ["auto", 1, 4, "3"])
    def test_workers_reads_auto_or_a_whole_number(self, value: object) -> None:
        expected = value if value == "auto" else int(str(value))
        assert parse_server({"workers": value}).workers == expected

    @pytest.mark.parametrize("value", [0, -1, "many", 2.5, True, 5000])
    def test_workers_refuses_anything_else_naming_the_key(self, value: object) -> None:
        with pytest.raises(ConfigError, match="server.workers"):
            parse_server({"workers": value})


class TestWorkerCount:
    def test_the_flag_wins_over_the_config_and_the_environment(self) -> None:
        assert worker_count("3", 2, {"EDGECACHE_WORKERS": "5"}) == 3

    def test_the_config_wins_over_the_environment(self) -> None:
        assert worker_count(None, 2, {"EDGECACHE_WORKERS": "5"}) == 2

    def test_the_environment_is_the_default_when_neither_says(self) -> None:
        assert worker_count(None, None, {"EDGECACHE_WORKERS": "5"}) == 5

    def test_auto_is_one_worker_per_core(self) -> None:
        assert worker_count(None, None, {}) == (os.cpu_count() or 1)
        assert worker_count("auto", None, {}) == (os.cpu_count() or 1)

    def test_a_bad_flag_names_it(self) -> None:
        with pytest.raises(ConfigError, match="--workers"):
            worker_count("zero", None, {})
