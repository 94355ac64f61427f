"""Runs wrk against one loopback URL and reads its --latency report into a WrkResult."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

__all__ = ["WrkResult", "parse_wrk", "run_wrk"]

KiB, MiB = 1024, 1024 * 1024
_WRK_BYTES = {
    "B": 1,
    "KB": KiB,
    "MB": MiB,
    "GB": 1024 * MiB,
    "TB": 1024**4,
}  # wrk's units are binary
_WRK_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What one wrk run measured."""

    rps: float
    mb_s: float  # 10**6 bytes per second, headers included (wrk's Transfer/sec)
    p99_ms: float
    requests: int
    socket_errors: int
    non_2xx: int


def parse_wrk(out: str) -> WrkResult:
    """Reads Requests/sec, Transfer/sec, the 99% latency and error counts from wrk --latency."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    tps = re.search(r"Transfer/sec:\s+([\d.]+)([KMGT]?B)", out)
    p99 = re.search(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.MULTILINE)
    if not (rps and tps and p99):
        raise ValueError(f"cannot parse wrk output:\n{out}")
    reqs = re.search(r"(\d+) requests in", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2 = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(
        rps=float(rps.group(1)),
        mb_s=float(tps.group(1)) * _WRK_BYTES[tps.group(2)] / 1e6,
        p99_ms=float(p99.group(1)) * _WRK_SECONDS[p99.group(2)] * 1e3,
        requests=int(reqs.group(1)) if reqs else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
        non_2xx=int(non2.group(1)) if non2 else 0,
    )


def run_wrk(url: str, *, connections: int, duration_s: float, threads: int = 1) -> WrkResult:
    """One wrk run over `connections` keep-alive connections; raises if wrk fails."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s:g}s", "--latency",
            "--timeout", "10s", url]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"wrk failed ({res.returncode}): {res.stderr.strip()}")
    return parse_wrk(res.stdout)
