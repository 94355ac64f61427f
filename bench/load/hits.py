"""Load benchmark: cache hits from edgecache beside nginx proxy_cache, Traffic Server and a bare
Python floor, on one machine, in one run.

Starts the demo origin, an edge node (memory tier), an nginx proxy_cache, Apache Traffic Server
(installed with apt-get when it can be; skipped with the reason otherwise) and the floor (a bare
uvloop asyncio.Protocol answering prebuilt bytes, bench/load/floor.py) in front of the same origin,
all on loopback. For each object size it warms each, checks that a repeat request is a hit, then
runs wrk against each (the order alternates per size to spread drift) and prints req/s, MB/s, p99,
the server's CPU (its processes and their children, from /proc/PID/stat), requests per server
CPU-second, wrk's CPU, and the ratios to nginx and to the floor of the same run, with the
issue's targets. The run is also written to bench/results/hits-<timestamp>.json. Everything
started is stopped in `finally`.

    .venv/bin/python bench/load/hits.py [--quick] [--duration S] [--rounds N] [--connections N]
        [--sizes 1KiB,64KiB,1MiB,8MiB] [--servers edge,nginx,ats,floor] [--nginx-workers N]
        [--edge-workers N|auto] [--ats-threads N] [--nginx-sendfile on|off] [--wait-quiet S]
        [--profile]
"""

from __future__ import annotations

import argparse
import http.client
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ats import ensure_ats, is_ats_hit, render_ats
from flamegraph import record_during_wrk
from report import (
    BUSY_PCT,
    Row,
    best_rows,
    check_targets,
    machine_info,
    print_table,
    size_label,
    write_json,
)
from servers import (
    HOST,
    Service,
    Services,
    busy_cpu_seconds,
    cpu_seconds,
    ensure_tools,
    free_port,
    render_nginx_conf,
)
from wrk import run_wrk

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
KiB = 1024
_UNITS = {"GiB": 1024**3, "MiB": 1024**2, "KiB": KiB, "B": 1, "": 1}
_READY_TIMEOUT_S = 30.0  # each server must listen within this
_WARM_TRIES = 6
_QUIET_S = 5  # --wait-quiet wants this many quiet seconds in a row
SERVERS = ("edge", "nginx", "ats", "floor")


def say(msg: str) -> None:
    """Prints one progress line, timestamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_sizes(text: str) -> list[int]:
    """'1KiB,8MiB' -> [1024, 8388608]."""
    sizes = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(GiB|MiB|KiB|B|)\s*", part)
        if not m:
            raise SystemExit(f"--sizes: bad size {part!r}; use e.g. 1KiB,64KiB,1MiB,8MiB")
        sizes.append(int(m.group(1)) * _UNITS[m.group(2)])
    return sizes


def object_path(size: int) -> str:
    """The demo origin's synthetic object of `size` bytes, cacheable for an hour."""
    return f"/obj/bench-{size}?size={size}&cc=max-age=3600"


def is_hit(server: str, headers: http.client.HTTPMessage) -> bool:
    """nginx: X-Cache-Status HIT; ats: a cH code in Via; edge and floor: `hit` in Cache-Status."""
    if server == "nginx":
        return headers.get("X-Cache-Status", "") == "HIT"
    if server == "ats":
        return is_ats_hit(headers.get("Via", ""))
    # RFC 9211 §2: the last member of Cache-Status is the cache nearest the client
    last = headers.get("Cache-Status", "").split(",")[-1]
    return "hit" in [p.strip() for p in last.split(";")[1:]]


def warm(server: str, port: int, path: str, size: int) -> bool:
    """GETs until a repeat request is a full-size hit; False if none is within a few tries."""
    for attempt in range(_WARM_TRIES):
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            got = len(resp.read())
        finally:
            conn.close()
        if resp.status != 200 or got != size:
            say(f"  {server}: GET {path} -> {resp.status}, {got} bytes (want 200, {size})")
            return False
        if attempt > 0 and is_hit(server, resp.headers):
            return True
    say(f"  {server}: no hit after {_WARM_TRIES} requests; last headers: {dict(resp.headers)}")
    return False


def _reaped_children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk's CPU, once it has been reaped
    return ru.ru_utime + ru.ru_stime


def measure(args: argparse.Namespace, svc: Service, size: int, hit: bool) -> Row:
    """One wrk run against one server, with the server's and the rest of the machine's CPU."""
    say(f"  wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration:g}s -> {svc.name}")
    cpu0, busy0, wrk0 = cpu_seconds(svc.proc.pid), busy_cpu_seconds(), _reaped_children_cpu()
    t0 = time.monotonic()
    url = f"http://{HOST}:{svc.port}{object_path(size)}"
    r = run_wrk(url, connections=args.connections, duration_s=args.duration,
                threads=args.wrk_threads)
    wall = time.monotonic() - t0
    server_s = cpu_seconds(svc.proc.pid) - cpu0
    wrk_s = _reaped_children_cpu() - wrk0
    # Anything else busy meanwhile (another test suite, a build) makes the numbers meaningless.
    other_s = busy_cpu_seconds() - busy0 - server_s - wrk_s
    row = Row(size=size, server=svc.name, hit_verified=hit, rps=r.rps, mb_s=r.mb_s,
              p99_ms=r.p99_ms, cpu_pct=100 * server_s / wall, wrk_pct=100 * wrk_s / wall,
              other_pct=max(0.0, 100 * other_s / wall), requests=r.requests,
              socket_errors=r.socket_errors, non_2xx=r.non_2xx,
              req_per_cpu_s=r.requests / server_s if server_s > 0 else 0.0)
    say(f"    {r.rps:,.0f} req/s, {r.mb_s:,.1f} MB/s, p99 {r.p99_ms:.2f} ms, "
        f"server cpu {row.cpu_pct:.0f}% ({row.req_per_cpu_s:,.0f} req per cpu-s), "
        f"wrk cpu {row.wrk_pct:.0f}%, "
        f"other {row.other_pct:.0f}%, errors {r.socket_errors}, non-2xx {r.non_2xx}")
    return row


def edge_command(args: argparse.Namespace, tmp: Path, port: int, origin_port: int) -> list[str]:
    """The edge's command line: the quick start with --edge-workers worker processes (default 1)."""
    return [sys.executable, "-m", "edge", "--origin", f"http://{HOST}:{origin_port}",
            "--listen", f"{HOST}:{port}", "--memory", "1GiB", "--no-access-log",
            "--log-level", "WARNING", "--workers", str(args.edge_workers or 1)]


def start_servers(args: argparse.Namespace, tmp: Path, procs: Services,
                  origin_port: int) -> dict[str, Service]:
    """Starts the servers asked for; one that fails or is unavailable is reported and left out."""
    eport, nport, aport, fport = free_port(), free_port(), free_port(), free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(render_nginx_conf(tmp, port=nport, origin_port=origin_port,
                                      workers=args.nginx_workers,
                                      sendfile=args.nginx_sendfile == "on"))
    argv = {
        "edge": (edge_command(args, tmp, eport, origin_port), eport),
        "nginx": (["nginx", "-e", str(tmp / "error.log"), "-p", str(tmp), "-c", str(conf),
                   "-g", "daemon off;"], nport),
        "floor": ([sys.executable, str(Path(__file__).with_name("floor.py")),
                   "--listen", f"{HOST}:{fport}"], fport),
    }
    if "ats" in args.servers:
        skipped = ensure_ats(say)
        if skipped:
            say(f"  Traffic Server skipped: {skipped}")
        else:
            argv["ats"] = (render_ats(tmp, port=aport, origin_port=origin_port,
                                      threads=args.ats_threads), aport)
    servers: dict[str, Service] = {}
    for name in args.servers:
        if name not in argv:
            continue
        cmd, port = argv[name]
        try:
            svc = procs.start(name, cmd, port, say)
            svc.wait_ready(_READY_TIMEOUT_S)
        except (OSError, RuntimeError) as exc:
            say(f"  {name} did not start; going on without it: {exc}")
            continue
        servers[name] = svc
        say(f"  {name} listening on {HOST}:{port}")
    return servers


def wait_quiet(limit_s: float) -> None:
    """Reports the machine's load; waits up to limit_s for other work to stay below BUSY_PCT."""
    deadline, polls, quiet_s = time.monotonic() + limit_s, 0, 0
    while True:
        busy0, t0 = busy_cpu_seconds(), time.monotonic()
        time.sleep(1.0)
        load = 100 * (busy_cpu_seconds() - busy0) / (time.monotonic() - t0)
        quiet_s = quiet_s + 1 if load <= BUSY_PCT else 0
        # quiet means quiet for a few seconds in a row, not one lull between two test files
        if quiet_s >= _QUIET_S or time.monotonic() >= deadline:
            break
        if load > BUSY_PCT and polls % 10 == 0:
            say(f"  machine busy ({load:.0f}% CPU used by other work); waiting (--wait-quiet)")
        polls += 1
    note = "" if load <= BUSY_PCT else ": other work is running, the numbers will be noisy"
    say(f"  machine load before the run: {load:.0f}% CPU{note}")


def run(args: argparse.Namespace, tmp: Path, procs: Services) -> int:
    """Steps 1-5; returns the exit code (1 if anything was missing, not a hit, or errored)."""
    say("step 1: tools (nginx, wrk; Traffic Server when asked for)")
    ensure_tools(say)
    info = machine_info()
    for k, v in info.items():
        say(f"  {k}: {v}")
    wait_quiet(args.wait_quiet)
    say("step 2: demo origin")
    oport = free_port()
    cmd = [sys.executable, "-m", "origin.demo", "--listen", f"{HOST}:{oport}"]
    procs.start("origin", cmd, oport, say).wait_ready(_READY_TIMEOUT_S)
    say(f"step 3: {' and '.join(args.servers)}")
    servers = start_servers(args, tmp, procs, oport)
    if not servers:
        return 1
    say("step 4: per size: warm, verify hits, wrk")
    rows: list[Row] = []
    for i, size in enumerate(args.sizes):
        say(f"size {size_label(size)}: {object_path(size)}")
        hits = {name: warm(name, servers[name].port, object_path(size), size) for name in servers}
        say("  " + ", ".join(f"{n}: {'hit' if h else 'HIT NOT VERIFIED'}" for n, h in hits.items()))
        for rnd in range(args.rounds):
            # the order alternates per size and round, so drift does not favour one server
            order = sorted(servers, reverse=(i + rnd) % 2 == 1)
            rows += [measure(args, servers[name], size, hits[name]) for name in order]
    say("step 5: results" + (f" (best of {args.rounds} rounds)" if args.rounds > 1 else ""))
    table = sorted(best_rows(rows), key=lambda r: (r.size, SERVERS.index(r.server)))
    print_table(table)
    targets = check_targets(table)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"hits-{stamp}.json"
    params: dict[str, object] = {
        "duration_s": args.duration, "rounds": args.rounds, "connections": args.connections,
        "wrk_threads": args.wrk_threads, "nginx_workers": args.nginx_workers,
        "edge_workers": args.edge_workers, "ats_threads": args.ats_threads,
        "nginx_sendfile": args.nginx_sendfile,
        "edge_memory": "1GiB", "sizes": args.sizes, "servers": list(servers)}
    write_json(out, machine=info, params=params, targets=targets, rows=table, runs=rows)
    say(f"wrote {out.relative_to(REPO)}")
    if args.profile and "edge" in servers:
        profile(args, servers["edge"], stamp)
    clean = all(r.hit_verified and not r.socket_errors and not r.non_2xx for r in rows)
    # a server asked for but left out is an error, except Traffic Server when it cannot be had
    missing = [n for n in args.servers if n not in servers and n != "ats"]
    return 0 if clean and not missing else 1


def profile(args: argparse.Namespace, edge: Service, stamp: str) -> None:
    """An extra 1 KiB run under py-spy; its numbers stay out of the table (sampling costs)."""
    out = RESULTS / f"profile-edge-1KiB-{stamp}.svg"
    say(f"profile: py-spy on edge (pid {edge.proc.pid}), extra {args.duration:g}s 1 KiB run")
    warm("edge", edge.port, object_path(KiB), KiB)
    url = f"http://{HOST}:{edge.port}{object_path(KiB)}"
    r = record_during_wrk(edge.proc.pid, url, out, connections=args.connections,
                          duration_s=args.duration, say=say)
    if r is not None:
        say(f"  {r.rps:,.0f} req/s under py-spy; flame graph: {out.relative_to(REPO)}")


def _workers(text: str) -> str:
    if text != "auto" and not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError("a count of at least 1, or auto")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The command line; --help explains every flag."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0,
                   help="seconds of wrk per server and size (default 10)")
    p.add_argument("--quick", action="store_true", help="3 s runs (overrides --duration)")
    p.add_argument("--wrk-threads", type=int, default=1,
                   help="wrk threads (default 1; the machine has 2 cores, the server needs one)")
    p.add_argument("--rounds", type=int, default=1,
                   help="alternating wrk runs per server and size; the table shows the best "
                   "(default 1; use 3 on a shared machine)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--sizes", type=parse_sizes, default=parse_sizes("1KiB,64KiB,1MiB,8MiB"),
                   help="object sizes, comma-separated (default 1KiB,64KiB,1MiB,8MiB)")
    p.add_argument("--servers", type=lambda s: [x for x in SERVERS if x in s.split(",")],
                   default=list(SERVERS),
                   help="which to measure: edge,nginx,ats,floor (default all; ats = Apache Traffic "
                   "Server, skipped with the reason when it cannot be installed; floor = a bare "
                   "uvloop Protocol answering prebuilt bytes, bench/load/floor.py)")
    p.add_argument("--nginx-workers", type=int, default=1,
                   help="nginx worker_processes (default 1: the edge is one process)")
    p.add_argument("--edge-workers", type=_workers, default=None, metavar="N|auto",
                   help="edge worker processes sharing one cache (--workers N or auto; default 1)")
    p.add_argument("--ats-threads", type=int, default=1,
                   help="Traffic Server exec threads (default 1, like one nginx worker)")
    # Measured here: sendfile off is nginx's faster setting on loopback (1 KiB ~1.5x, 8 MiB
    # ~1.3x: one writev per response, bigger segments for wrk), so it is the default baseline.
    p.add_argument("--nginx-sendfile", choices=["on", "off"], default="off",
                   help="nginx sendfile (default off, nginx's faster setting on this box)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="wait up to S seconds for other work on the machine to stop (default 0)")
    p.add_argument("--profile", action="store_true",
                   help="then record a py-spy flame graph of the edge serving 1 KiB hits")
    return p


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
