"""Real processes on loopback: the demo origin and edge nodes, started from a generated TOML.

Every address is in 127.0.0.0/8; each edge node gets its own 127.0.0.x. Processes are
killed in `stop()` (called from fixtures' finally), so a failing test never leaks one.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Proc", "free_port", "start_origin", "start_edge", "write_config", "origin_stats", "reset_origin"]

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free on `host` a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """A started process and where it listens."""

    name: str
    popen: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stops the process (SIGTERM, then SIGKILL after 10 s)."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)

    def kill9(self) -> None:
        """kill -9: no cleanup at all."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def log(self) -> str:
        """What the process printed so far (for assertion messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def _wait_ready(proc: Proc) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log()}")
        try:
            with socket.create_connection((proc.host, proc.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    proc.kill9()
    raise RuntimeError(f"{proc.name} did not listen on {proc.host}:{proc.port} in {READY_TIMEOUT_S}s:\n{proc.log()}")


def _spawn(name: str, args: list[str], host: str, port: int, log_dir: Path) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    out = open(log_path, "ab")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    popen = subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    out.close()
    proc = Proc(name, popen, host, port, log_path)
    _wait_ready(proc)
    return proc


def start_origin(log_dir: Path, *, host: str = "127.0.0.1", root: Path | None = None) -> Proc:
    """Starts the demo origin (`python -m origin.demo`)."""
    port = free_port(host)
    args = ["-m", "origin.demo", "--listen", f"{host}:{port}"]
    if root is not None:
        args += ["--root", str(root)]
    return _spawn(f"origin-{port}", args, host, port, log_dir)


def write_config(path: Path, *, origin_url: str, nodes: dict[str, str], cache: dict[str, Any] | None = None,
                 coalesce: dict[str, Any] | None = None, origin: dict[str, Any] | None = None,
                 extra: str = "") -> Path:
    """Writes a config.toml for the given nodes (name → "host:port")."""
    lines = ["access_log = true", ""]
    for name, listen in nodes.items():
        lines += [f"[nodes.{name}]", f'listen = "{listen}"', ""]
    lines.append("[cache]")
    for k, v in (cache or {}).items():
        lines.append(f"{k} = {json.dumps(v)}")
    lines += ["", "[coalesce]"]
    for k, v in (coalesce or {}).items():
        lines.append(f"{k} = {json.dumps(v)}")
    lines += ["", "[origins.demo]", f'servers = ["{origin_url}"]']
    for k, v in (origin or {}).items():
        lines.append(f"{k} = {json.dumps(v)}")
    lines += ["", "[[routes]]", 'host = "*"', 'path_prefix = "/"', 'origin = "demo"', "", extra]
    path.write_text("\n".join(lines))
    return path


def start_edge(config: Path, node: str, log_dir: Path) -> Proc:
    """Starts one edge node of `config` as its own process."""
    import tomllib

    data = tomllib.loads(config.read_text())
    host, _, port = data["nodes"][node]["listen"].rpartition(":")
    return _spawn(f"edge-{node}", ["-m", "edge", "--config", str(config), "--node", node], host, int(port), log_dir)


def origin_stats(origin: Proc) -> dict[str, Any]:
    """The demo origin's request counters (GET /__stats)."""
    with urllib.request.urlopen(origin.url + "/__stats", timeout=10) as r:
        return dict(json.load(r))


def reset_origin(origin: Proc) -> None:
    """Zeroes the demo origin's counters."""
    req = urllib.request.Request(origin.url + "/__reset", method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()
