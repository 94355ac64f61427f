"""The command line: --help, --version, check-config, config errors that name the key, start-up
errors as one line (unusable disk, bad --config), refusing the pure-Python parser."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

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


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single line the command printed on stderr (no traceback, no second line)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _quick(disk_dir: Path | str, *extra: str) -> subprocess.CompletedProcess[str]:
    """A quick-start node with a disk tier in `disk_dir`; its origin is never contacted."""
    port = free_port("127.0.0.2")
    return _run(["--origin", "http://127.0.0.1:1", "--listen", f"127.0.0.2:{port}", "--disk-dir", str(disk_dir),
                 *extra])


@contextlib.contextmanager
def _unwritable_dir(path: Path) -> Iterator[None]:
    """A directory this user really cannot create files in, restored afterwards.

    chmod 0555 stops a normal user but not root (CI runs as root), so as root the directory
    is made immutable with `chattr +i` (ext4/xfs/btrfs, CAP_LINUX_IMMUTABLE), which stops root
    too; a read-only bind mount is not available in CI. Skips when neither can be done.
    """
    path.mkdir()
    chattr = shutil.which("chattr")
    if os.geteuid() != 0:
        path.chmod(0o555)
        undo = [lambda: path.chmod(0o755)]
    elif chattr is not None and subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0:
        undo = [lambda: subprocess.run([chattr, "-i", str(path)], check=True)]
    else:
        pytest.skip("running as root without chattr +i: no way to make a directory unwritable for root")
    try:
        with pytest.raises(PermissionError):  # the stand-in really refuses writes
            (path / "probe").mkdir()
        yield
    finally:
        for step in undo:
            step()


class TestStartupErrors:
    """Issue 10: an unusable disk or config path ends in one line saying what to do, never a traceback."""

    def test_node_exits_2_when_config_path_is_a_directory(self, tmp_path: Path) -> None:
        result = _run(["--config", str(tmp_path), "--node", "n1"])
        assert result.returncode == 2
        line = _one_line_error(result)
        assert f"{tmp_path}: is a directory; pass --config with the path of the file itself" in line

    def test_node_exits_1_when_disk_dir_is_a_file(self, tmp_path: Path) -> None:
        (tmp_path / "cache").write_bytes(b"not a directory")
        cfg = write_config(tmp_path / "c.toml", origin_url="http://127.0.0.1:1",
                           nodes={"n1": f"127.0.0.2:{free_port('127.0.0.2')}"},
                           cache={"disk_dir": str(tmp_path / "cache")})
        result = _run(["--config", str(cfg), "--node", "n1"])
        assert result.returncode == 1
        line = _one_line_error(result)
        assert line == (f"edgecache: cannot start: disk tier: {tmp_path / 'cache'} is not a directory; "
                        "point disk_dir (or --disk-dir) at a directory")
        assert (tmp_path / "cache").read_bytes() == b"not a directory"

    def test_node_exits_1_when_disk_dir_cannot_be_created(self, tmp_path: Path) -> None:
        # a path under a regular file: cannot be created whoever runs the node, root included
        (tmp_path / "file").write_bytes(b"x")
        result = _quick(tmp_path / "file" / "cache")
        assert result.returncode == 1
        line = _one_line_error(result)
        assert f"creating {tmp_path / 'file' / 'cache'} failed (Not a directory)" in line
        assert "every parent of disk_dir must be a directory" in line

    def test_node_exits_1_when_disk_dir_is_not_writable(self, tmp_path: Path) -> None:
        with _unwritable_dir(tmp_path / "ro"):
            result = _quick(tmp_path / "ro")
            assert list((tmp_path / "ro").iterdir()) == []
        assert result.returncode == 1
        line = _one_line_error(result)
        assert f"writing in {tmp_path / 'ro'} failed" in line
        assert "writable by the user running the node" in line

    def test_node_exits_1_when_fsync_fails_on_disk_dir(self) -> None:
        # sysfs is a real filesystem whose fsync fails (EINVAL) for root too. The node fsyncs the
        # directory before it creates anything, so nothing is written there.
        target = Path("/sys/kernel")
        if not target.is_dir():
            pytest.skip("no sysfs mounted at /sys")
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
            pytest.skip("fsync succeeds on /sys/kernel here: no filesystem at hand whose fsync fails")
        except OSError:
            pass
        finally:
            os.close(fd)
        result = _quick(target)
        assert result.returncode == 1
        line = _one_line_error(result)
        assert "fsync of the directory /sys/kernel failed (Invalid argument)" in line
        assert "put disk_dir on a local filesystem" in line

    def test_node_exits_1_when_state_dir_cannot_be_created(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_bytes(b"x")
        listen = f"127.0.0.2:{free_port('127.0.0.2')}"
        cfg = write_config(tmp_path / "c.toml", origin_url="http://127.0.0.1:1", nodes={"n1": listen})
        text = cfg.read_text().replace(f'listen = "{listen}"',
                                       f'listen = "{listen}"\nstate_dir = "{tmp_path / "file" / "state"}"')
        cfg.write_text(text)
        result = _run(["--config", str(cfg), "--node", "n1"])
        assert result.returncode == 1
        line = _one_line_error(result)
        assert "purge state in" in line and "nodes.n1.state_dir" in line


class TestFlags:
    def test_node_exits_2_when_disk_is_given_without_disk_dir(self) -> None:
        result = _run(["--origin", "http://127.0.0.1:1", "--disk", "1GiB"])
        assert result.returncode == 2
        assert "--disk: needs --disk-dir" in result.stderr and "Traceback" not in result.stderr

    def test_node_exits_2_when_quick_start_flag_is_given_with_config(self) -> None:
        result = _run(["--config", str(ROOT / "config.toml"), "--node", "edge1", "--disk-dir", "/nonexistent"])
        assert result.returncode == 2
        assert "--disk-dir: quick-start flags do not go with --config" in result.stderr

    def test_version_prints_installed_package_version(self) -> None:
        result = _run(["--version"])
        assert result.returncode == 0
        assert result.stdout.strip() == f"edgecache {metadata.version('edgecache')}"


class TestCheckConfig:
    def test_check_config_prints_ok_and_a_line_per_node_when_config_is_valid(self) -> None:
        nodes = list(tomllib.loads((ROOT / "config.toml").read_text())["nodes"])
        result = _run(["check-config", "--config", "config.toml"])
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].startswith("config.toml: OK:") and f"{len(nodes)} node(s)" in lines[0]
        assert [line.split(":")[0].strip() for line in lines[1:]] == nodes

    def test_check_config_prints_only_that_node_when_node_is_given(self) -> None:
        result = _run(["check-config", "--config", "config.toml", "--node", "edge2"])
        assert result.returncode == 0, result.stderr
        assert [line.split(":")[0].strip() for line in result.stdout.splitlines()[1:]] == ["edge2"]
        assert "listen 127.0.0.3:8080" in result.stdout

    @pytest.mark.parametrize(("cache", "origin", "expected"), [
        ({"policy": "lfu"}, {}, "cache.policy: unknown eviction policy 'lfu'; use one of \"gdsf\", \"s3fifo\", \"lru\""),
        ({}, {"balance": "random"},
         "origins.demo.balance: unknown balancing 'random'; use one of \"round_robin\", \"least_outstanding\""),
    ])
    def test_check_config_exits_2_naming_key_and_choices_when_a_choice_is_unknown(
            self, tmp_path: Path, cache: dict[str, str], origin: dict[str, str], expected: str) -> None:
        cfg = write_config(tmp_path / "c.toml", origin_url="http://127.0.0.1:1", nodes={"n1": "127.0.0.2:1"},
                           cache=cache, origin=origin)
        result = _run(["check-config", "--config", str(cfg)])
        assert result.returncode == 2 and result.stdout == ""
        assert _one_line_error(result) == f"edgecache: config error: {expected}"

    def test_check_config_exits_2_when_node_is_unknown(self) -> None:
        result = _run(["check-config", "--config", "config.toml", "--node", "nope"])
        assert result.returncode == 2
        assert "nodes.nope: no such node" in _one_line_error(result)

    def test_help_documents_check_config_and_version(self) -> None:
        result = _run(["--help"])
        assert "check-config --config FILE [--node NAME]" in result.stdout and "--version" in result.stdout
