"""Process management for the load benchmarks: tools, ports, services started and always stopped.

Everything here is bounded: every wait has a deadline, every started process is stopped
(terminate, then kill) by `Services.stop_all`, and nothing but loopback is ever contacted.
"""

from __future__ import annotations

import os
import shutil
import socket
import string
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Say",
    "Service",
    "Services",
    "apt_install",
    "busy_cpu_seconds",
    "cpu_seconds",
    "ensure_tools",
    "free_port",
    "render_nginx_conf",
    "tool_version",
]

Say = Callable[[str], None]
HOST = "127.0.0.1"  # every server in the bench listens on loopback only
_APT_TIMEOUT_S = 600.0
_POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
_TEMPLATE = Path(__file__).with_name("nginx.conf.tmpl")


def _apt(args: Sequence[str], say: Say) -> subprocess.CompletedProcess[str]:
    say("$ " + " ".join(args))
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=_APT_TIMEOUT_S,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        check=False,
    )


def _has_candidate(pkg: str, say: Say) -> bool:
    out = _apt(["apt-cache", "policy", pkg], say).stdout
    return any(
        line.strip().startswith("Candidate:") and "(none)" not in line for line in out.splitlines()
    )


def ensure_tools(say: Say) -> None:
    """Installs nginx and wrk with apt-get when either is missing; never starts a system service."""
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if not missing:
        say("nginx and wrk are installed")
        return
    say(f"missing: {', '.join(missing)}; installing with apt-get")
    if _apt(["apt-get", "update"], say).returncode != 0:
        raise RuntimeError("apt-get update failed")
    pkgs = []
    if "nginx" in missing:
        pkgs.append("nginx-light" if _has_candidate("nginx-light", say) else "nginx")
    if "wrk" in missing:
        pkgs.append("wrk")
    failed = apt_install(pkgs, say)
    if failed:
        raise RuntimeError(failed)
    still = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if still:
        raise RuntimeError(f"still missing after install: {', '.join(still)}")


def apt_install(pkgs: Sequence[str], say: Say) -> str | None:
    """apt-get install without recommends and without starting any service; None, or why it failed."""
    # policy-rc.d exiting 101 keeps a package's postinst from starting its system service.
    own_policy = not _POLICY_RC_D.exists()
    try:
        if own_policy:
            _POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
            _POLICY_RC_D.chmod(0o755)
        res = _apt(["apt-get", "install", "-y", "--no-install-recommends", *pkgs], say)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"apt-get install {' '.join(pkgs)} failed: {exc}"
    finally:
        if own_policy:
            _POLICY_RC_D.unlink(missing_ok=True)
    if res.returncode != 0:
        return f"apt-get install {' '.join(pkgs)} failed:\n{res.stderr[-2000:]}"
    return None


def tool_version(argv: Sequence[str]) -> str:
    """The first line a tool prints about its version (nginx -v and wrk -v print to stderr)."""
    try:
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (res.stdout + res.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def render_nginx_conf(
    prefix: Path, *, port: int, origin_port: int, workers: int, sendfile: bool
) -> str:
    """nginx.conf for a proxy_cache in `prefix`, listening on HOST:port in front of the origin."""
    return string.Template(_TEMPLATE.read_text()).substitute(
        prefix=str(prefix),
        workers=str(workers),
        sendfile="on" if sendfile else "off",
        listen=f"{HOST}:{port}",
        origin=f"{HOST}:{origin_port}",
    )


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _tree(pid: int) -> list[int]:
    """The process and all its descendants alive now (nginx's workers, edge worker processes)."""
    out, todo = [], [pid]
    while todo and len(out) < 1000:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, its descendants, and the children they reaped.

    Read from /proc/PID/stat (utime, stime, cutime, cstime), so a run's figure is the difference
    of two readings; threads are included (Traffic Server's are threads of one process).
    """
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in _tree(pid):
        try:
            # fields after the ")" of comm: state is [0], utime [11], stime [12], cutime [13],
            # cstime [14] (children that exited and were waited for: a restarted worker)
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / tick
    return total


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores, steal included)."""
    # /proc/stat "cpu" line: user nice system idle iowait irq softirq steal ...
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class Service:
    """One started process, its log file and its loopback port."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the process wrote."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout_s: float) -> None:
        """Returns once the port accepts connections; raises if the process dies or time is up."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(
            f"{self.name} not listening on {HOST}:{self.port} after {timeout_s:.0f}s:\n"
            f"{self.log_tail()}"
        )


@dataclass(slots=True)
class Services:
    """The processes of one run, in start order; stop_all stops them in reverse."""

    log_dir: Path
    cwd: Path
    started: list[Service] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], port: int, say: Say) -> Service:
        """Starts a process with its output in log_dir/<name>.log."""
        say(f"starting {name}: {' '.join(argv)}")
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                list(argv),
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # one edge process unless asked (workers = "auto" is the node's own default)
                env={**os.environ, "EDGECACHE_WORKERS": os.environ.get("EDGECACHE_WORKERS", "1")},
            )
        svc = Service(name, proc, log, port)
        self.started.append(svc)
        return svc

    def stop_all(self, say: Say, timeout_s: float = 10.0) -> None:
        """Terminates every process, then kills those still alive after timeout_s."""
        for svc in reversed(self.started):
            if svc.proc.poll() is None:
                say(f"stopping {svc.name} (pid {svc.proc.pid})")
                svc.proc.terminate()
        deadline = time.monotonic() + timeout_s
        for svc in reversed(self.started):
            try:
                svc.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"killing {svc.name} (pid {svc.proc.pid}) and its children")
                for child in _children(svc.proc.pid):  # nginx workers outlive a killed master
                    try:
                        os.kill(child, 9)
                    except OSError:
                        pass
                svc.proc.kill()
                svc.proc.wait(timeout=5)
        self.started.clear()
