"""The command line: --help, config errors that name the key, refusing the pure-Python parser."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.harness import ROOT, free_port, write_config


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env or dict(os.environ))


class TestCommandLine:
    def test_help_explains_every_flag_when_asked(self) -> None:
        result = _run(["--help"])
        assert result.returncode == 0
        for flag in ("--config", "--node", "--origin", "--listen", "--memory", "--disk-dir", "--disk",
                     "--policy", "--memory-max-object", "--no-access-log", "--log-level"):
            assert flag in result.stdout

    def test_node_exits_2_naming_key_when_config_has_unknown_key(self, tmp_path: Path) -> None:
        cfg = write_config(tmp_path / "c.toml", origin_url="http://127.0.0.1:1", nodes={"n1": "127.0.0.2:1"},
                           cache={"memory_bytez": "1MiB"})
        result = _run(["--config", str(cfg), "--node", "n1"])
        assert result.returncode == 2
        assert "cache.memory_bytez: unknown key" in result.stderr

    def test_node_exits_2_naming_url_when_origin_url_is_bad(self) -> None:
        result = _run(["--origin", "ftp://nowhere", "--listen", "127.0.0.2:1"])
        assert result.returncode == 2
        assert "--origin" in result.stderr

    def test_node_refuses_to_start_when_aiohttp_runs_pure_python_parser(self, tmp_path: Path) -> None:
        env = dict(os.environ, AIOHTTP_NO_EXTENSIONS="1")
        port = free_port("127.0.0.2")
        result = _run(["--origin", "http://127.0.0.1:1", "--listen", f"127.0.0.2:{port}"], env=env)
        assert result.returncode == 1
        assert "pure-Python HTTP parser" in result.stderr

    def test_node_exits_1_with_advice_when_address_is_taken(self, tmp_path: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
            s.listen()
            port = s.getsockname()[1]
            result = _run(["--origin", "http://127.0.0.1:1", "--listen", f"127.0.0.2:{port}"])
        assert result.returncode == 1
        assert "cannot listen" in result.stderr
