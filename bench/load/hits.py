"""Load benchmark: cache hits from edgecache beside nginx proxy_cache, same machine, same origin, one run.

Starts the demo origin, an edge node (memory tier) and an nginx proxy_cache in front of it, all on
loopback; per object size warms both, checks the second request is a hit, then runs wrk against
each (order alternating per size) and prints req/s, MB/s, p99 and the ratio to nginx, with the
issue's targets. Results also go to bench/results/hits-<timestamp>.json.

    .venv/bin/python bench/load/hits.py [--quick] [--duration S] [--connections N]
                                        [--sizes 1KiB,64KiB,1MiB,8MiB] [--nginx-workers N] [--profile]
"""

from __future__ import annotations

import argparse
import http.client
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from servers import HOST, Service, Services, cpu_seconds, ensure_tools, free_port, render_nginx_conf, tool_version

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
KiB, MiB = 1024, 1024 * 1024
_UNITS = {"KiB": KiB, "MiB": MiB, "GiB": 1024 * MiB, "B": 1, "": 1}
_WRK_BYTES = {"B": 1, "KB": KiB, "MB": MiB, "GB": 1024 * MiB, "TB": 1024**4}  # wrk's units are binary
_WRK_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# (what, object size, metric, edge/nginx ratio needed): the targets from the issue
TARGETS = [("req/s on 1 KiB", KiB, "rps", 0.8), ("MB/s on 8 MiB", 8 * MiB, "mb_s", 1.3)]


def say(msg: str) -> None:
    """Prints one progress line, timestamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*(KiB|MiB|GiB|B|)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use e.g. 1KiB, 64KiB, 8MiB")
    return int(m.group(1)) * _UNITS[m.group(2)]


def size_label(n: int) -> str:
    for unit, mult in (("MiB", MiB), ("KiB", KiB)):
        if n >= mult and n % mult == 0:
            return f"{n // mult} {unit}"
    return f"{n} B"


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
    """Reads Requests/sec, Transfer/sec, the 99% latency line and error counts from wrk --latency."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    tps = re.search(r"Transfer/sec:\s+([\d.]+)([KMGT]?B)", out)
    p99 = re.search(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M)
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
        non_2xx=int(non2.group(1)) if non2 else 0)


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: one server at one size."""

    size: int
    server: str
    hit_verified: bool
    rps: float
    mb_s: float
    p99_ms: float
    cpu_pct: float  # the server's CPU during the run (nginx: master + workers); 100 = one core
    requests: int
    socket_errors: int
    non_2xx: int


def is_hit(server: str, headers: http.client.HTTPMessage) -> bool:
    if server == "nginx":
        return headers.get("X-Cache-Status", "") == "HIT"
    # RFC 9211 §2: the last member of Cache-Status is the cache nearest the client
    last = headers.get("Cache-Status", "").split(",")[-1]
    return "hit" in [p.strip() for p in last.split(";")[1:]]


def warm(server: str, port: int, path: str, size: int) -> bool:
    """GETs until a repeat request is a hit (at most 6 tries); False if none is."""
    for attempt in range(6):
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body_len = len(resp.read())
        finally:
            conn.close()
        if resp.status != 200 or body_len != size:
            say(f"  {server}: GET {path} -> {resp.status}, {body_len} bytes (want 200, {size})")
            return False
        if attempt > 0 and is_hit(server, resp.headers):
            return True
    say(f"  {server}: no hit after 6 requests; last headers: {dict(resp.headers)}")
    return False


def wrk(args: argparse.Namespace, port: int, path: str, duration: float) -> WrkResult:
    argv = ["wrk", "-t1", f"-c{args.connections}", f"-d{duration:g}s", "--latency", "--timeout", "10s",
            f"http://{HOST}:{port}{path}"]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"wrk failed ({res.returncode}): {res.stderr.strip()}")
    return parse_wrk(res.stdout)


def measure(args: argparse.Namespace, svc: Service, size: int, path: str, hit: bool) -> Row:
    say(f"  wrk -t1 -c{args.connections} -d{args.duration:g}s against {svc.name} ({size_label(size)})")
    cpu0, t0 = cpu_seconds(svc.proc.pid), time.monotonic()
    r = wrk(args, svc.port, path, args.duration)
    cpu_pct = 100 * (cpu_seconds(svc.proc.pid) - cpu0) / (time.monotonic() - t0)
    say(f"    {r.rps:,.0f} req/s, {r.mb_s:,.1f} MB/s, p99 {r.p99_ms:.2f} ms, cpu {cpu_pct:.0f}%"
        + (f", {r.socket_errors} socket errors" if r.socket_errors else "")
        + (f", {r.non_2xx} non-2xx" if r.non_2xx else ""))
    return Row(size, svc.name, hit, r.rps, r.mb_s, r.p99_ms, cpu_pct, r.requests, r.socket_errors, r.non_2xx)


def ratio(rows: list[Row], size: int, metric: str) -> float | None:
    by = {r.server: getattr(r, metric) for r in rows if r.size == size}
    return by["edge"] / by["nginx"] if "edge" in by and by.get("nginx") else None


def print_table(rows: list[Row]) -> None:
    head = f"{'size':>7} | {'server':<6} | {'req/s':>9} | {'MB/s':>8} | {'p99 ms':>7} | {'cpu%':>4} | " \
           f"{'req/s x':>7} | {'MB/s x':>6} | notes"
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        rr, mr = ratio(rows, r.size, "rps"), ratio(rows, r.size, "mb_s")
        notes = [] if r.hit_verified else ["NOT VERIFIED AS HIT"]
        notes += [f"{r.socket_errors} sock err"] if r.socket_errors else []
        notes += [f"{r.non_2xx} non-2xx"] if r.non_2xx else []
        show = r.server == "edge" and rr is not None
        print(f"{size_label(r.size):>7} | {r.server:<6} | {r.rps:>9,.0f} | {r.mb_s:>8,.1f} | {r.p99_ms:>7.2f} | "
              f"{r.cpu_pct:>4.0f} | {f'{rr:.2f}' if show and rr else '':>7} | "
              f"{f'{mr:.2f}' if show and mr else '':>6} | {', '.join(notes)}")


def check_targets(rows: list[Row]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    print("\ntargets (edge vs nginx):")
    for what, size, metric, need in TARGETS:
        got = ratio(rows, size, metric)
        verdict = "not measured" if got is None else ("met" if got >= need else "NOT met")
        print(f"  {what}: >= {need}x nginx: {'-' if got is None else f'{got:.2f}x'} -> {verdict}")
        out.append({"target": what, "needed_ratio": need, "ratio": got, "verdict": verdict})
    return out


def machine_info() -> dict[str, str]:
    def ver(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown")
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "kernel": platform.release(),
            "python": platform.python_version(), "uvloop": ver("uvloop"), "aiohttp": ver("aiohttp"),
            "httptools": ver("httptools"), "nginx": tool_version(["nginx", "-v"]),
            "wrk": tool_version(["wrk", "-v"])}


def profile_edge(args: argparse.Namespace, edge: Service, path: str, stamp: str) -> None:
    """Records a py-spy flame graph of the edge during an extra 1 KiB run (not in the table)."""
    pyspy = Path(sys.executable).parent / "py-spy"
    if not pyspy.exists():
        say("installing py-spy into the venv")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"], timeout=300, check=False)
    if not pyspy.exists():
        say("py-spy could not be installed; skipping the profile")
        return
    out = RESULTS / f"profile-edge-1KiB-{stamp}.svg"
    say(f"profiling edge (pid {edge.proc.pid}) with py-spy during an extra {args.duration:g}s 1 KiB run")
    spy = subprocess.Popen([str(pyspy), "record", "--pid", str(edge.proc.pid), "--duration",
                            f"{int(args.duration)}", "--rate", "250", "--nonblocking", "--format",
                            "flamegraph", "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        r = wrk(args, edge.port, path, args.duration)
        say(f"  profiled run: {r.rps:,.0f} req/s (py-spy sampling slows it; not in the table)")
        spy_out = spy.communicate(timeout=args.duration + 30)[0].decode(errors="replace")
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait(timeout=5)
    if spy.returncode == 0 and out.exists():
        say(f"  flame graph: {out.relative_to(REPO)}")
    else:
        say(f"  py-spy failed ({spy.returncode}; it needs ptrace): {spy_out.strip()[-500:]}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0, help="seconds of wrk per server and size (10)")
    p.add_argument("--quick", action="store_true", help="3 s runs (overrides --duration)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    p.add_argument("--sizes", default="1KiB,64KiB,1MiB,8MiB", help="object sizes, comma-separated")
    p.add_argument("--nginx-workers", type=int, default=1, help="nginx worker_processes (1: edge is one process)")
    p.add_argument("--profile", action="store_true", help="py-spy flame graph of the edge on 1 KiB hits")
    return p


def run(args: argparse.Namespace, tmp: Path, procs: Services) -> int:
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    say("step 1: tools")
    ensure_tools(say)
    info = machine_info()
    for k, v in info.items():
        say(f"  {k}: {v}")
    say("step 2: demo origin")
    oport, eport, nport = free_port(), free_port(), free_port()
    origin = procs.start("origin", [sys.executable, "-m", "origin.demo", "--listen", f"{HOST}:{oport}"], oport, say)
    origin.wait_ready(30)
    say("step 3: edge and nginx")
    servers: dict[str, Service] = {}
    conf = tmp / "nginx.conf"
    conf.write_text(render_nginx_conf(tmp, port=nport, origin_port=oport, workers=args.nginx_workers))
    candidates = [
        ("edge", [sys.executable, "-m", "edge", "--origin", f"http://{HOST}:{oport}", "--listen",
                  f"{HOST}:{eport}", "--memory", "1GiB", "--no-access-log", "--log-level", "WARNING"], eport),
        ("nginx", ["nginx", "-e", str(tmp / "error.log"), "-p", str(tmp), "-c", str(conf),
                   "-g", "daemon off;"], nport)]
    for name, argv, port in candidates:
        try:
            svc = procs.start(name, argv, port, say)
            svc.wait_ready(30)
            servers[name] = svc
            say(f"  {name} listening on {HOST}:{port}")
        except RuntimeError as exc:
            say(f"  {name} did not start; going on without it: {exc}")
    if not servers:
        return 1
    say("step 4: warm, verify hits, wrk")
    rows: list[Row] = []
    for i, size in enumerate(sizes):
        path = f"/obj/bench-{size}?size={size}&cc=max-age=3600"
        say(f"size {size_label(size)}: {path}")
        order = sorted(servers, reverse=i % 2 == 1)  # edge first on even sizes, nginx first on odd
        hits = {name: warm(name, servers[name].port, path, size) for name in order}
        for name in order:
            say(f"  {name}: {'hit verified' if hits[name] else 'HIT NOT VERIFIED'}")
        for name in order:
            rows.append(measure(args, servers[name], size, path, hits[name]))
    say("step 5: results")
    print_table(rows)
    targets = check_targets(rows)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"hits-{stamp}.json"
    params = {"duration_s": args.duration, "connections": args.connections, "wrk_threads": 1,
              "nginx_workers": args.nginx_workers, "edge_memory": "1GiB", "sizes": sizes}
    out.write_text(json.dumps({"machine": info, "params": params, "targets": targets,
                               "results": [asdict(r) for r in rows]}, indent=2) + "\n")
    say(f"wrote {out.relative_to(REPO)}")
    if args.profile and "edge" in servers and KiB in sizes:
        profile_edge(args, servers["edge"], f"/obj/bench-{KiB}?size={KiB}&cc=max-age=3600", stamp)
    ok = len(servers) == 2 and all(r.hit_verified and not r.socket_errors and not r.non_2xx for r in rows)
    return 0 if ok else 1


def main() -> int:
    """Runs the benchmark end to end; always stops what it started and removes its tmpdir."""
    args = build_parser().parse_args()
    if args.quick:
        args.duration = 3.0
    tmp = Path(tempfile.mkdtemp(prefix="edgecache-bench-"))
    procs = Services(log_dir=tmp, cwd=REPO)
    try:
        return run(args, tmp, procs)
    finally:
        say("step 6: stopping everything")
        procs.stop_all(say)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
