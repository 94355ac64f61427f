"""Load benchmark: a 3-node region's hit throughput vs one node, and the latency a peer hop adds.

Starts the demo origin and a 3-node region (nodes a, b, c on 127.0.0.2-4, each with its own
internal listener; `hot_min_hits` set out of reach so a non-owner never keeps a copy). Every
request sends `Host: demo.test`, so every node computes the same key. For each object size:

1. one key per node, owned by that node (found by asking: a non-owner names the owner in
   `Cache-Status: ...; detail=peer-<owner>`), warmed and checked to be a hit at its owner;
2. region: three wrk processes at once, one per node on the key it owns (-t1 -c32 each),
   summed; one node: one wrk (-c64) on node a alone (b and c idle);
3. peer hop: wrk --latency (-c8) on node a's key at a (a local hit) and at b (b asks a for
   every request, checked first to be `detail=peer-a` and not a hit): p50/p99 and what
   the hop adds.

Prints both tables with the ratios and writes bench/results/cluster-<timestamp>.json.
Everything started is stopped in `finally`; nothing but loopback is contacted.

    .venv/bin/python bench/load/cluster.py [--quick] [--duration S] [--sizes 1KiB,1MiB]
        [--node-connections N] [--single-connections N] [--hop-connections N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from report import machine_info, size_label
from servers import Service, Services, busy_cpu_seconds, cpu_seconds, ensure_tools
from wrk import WrkResult, parse_wrk

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
SITE = "demo.test"  # the Host of every request: one cache key per URL across the region
NODES = (("a", "127.0.0.2"), ("b", "127.0.0.3"), ("c", "127.0.0.4"))
SECRET = "bench-cluster-secret"
_READY_TIMEOUT_S = 30.0
_UNITS = {"GiB": 1024**3, "MiB": 1024**2, "KiB": 1024, "B": 1, "": 1}
_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def say(msg: str) -> None:
    """Prints one progress line, timestamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass(frozen=True, slots=True)
class Node:
    """One node of the benchmark region."""

    name: str
    host: str
    port: int
    internal_port: int


@dataclass(frozen=True, slots=True)
class Measure:
    """One line of a table: one wrk run (or three at once, summed)."""

    part: str  # "region", "one-node", "owner-hit", "peer-hop"
    size: int
    rps: float
    mb_s: float
    p50_ms: float
    p99_ms: float  # region: the worst of the three nodes
    node_cpu_pct: float  # CPU of all edge nodes during the run; 100 = one core
    other_pct: float  # CPU used meanwhile by anything else (wrk included)
    requests: int
    errors: int  # socket errors + non-2xx


def parse_sizes(text: str) -> list[int]:
    """'1KiB,1MiB' -> [1024, 1048576]."""
    sizes = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(GiB|MiB|KiB|B|)\s*", part)
        if not m:
            raise SystemExit(f"--sizes: bad size {part!r}; use e.g. 1KiB,1MiB")
        sizes.append(int(m.group(1)) * _UNITS[m.group(2)])
    return sizes


def free_port(host: str) -> int:
    """A port free on `host` a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def write_config(path: Path, origin_port: int, nodes: list[Node]) -> Path:
    """The region's config.toml: memory-only nodes, no hot copies, probes that tolerate start-up."""
    lines = ["access_log = false", "", "[cluster]", f'secret = "{SECRET}"', "probe_interval_s = 1.0",
             "fail_after = 3", "hot_min_hits = 1000000000", "",
             "[cache]", 'memory_bytes = "1GiB"', "",
             "[origins.demo]", f'servers = ["http://127.0.0.1:{origin_port}"]', "",
             "[[routes]]", 'host = "*"', 'path_prefix = "/"', 'origin = "demo"', ""]
    for n in nodes:
        lines += [f"[nodes.{n.name}]", f'listen = "{n.host}:{n.port}"', f'internal = "{n.host}:{n.internal_port}"',
                  'region = "bench"', ""]
    path.write_text("\n".join(lines))
    return path


def wait_listening(svc: Service, host: str, port: int) -> None:
    """Returns once host:port accepts; raises if the process exits or time runs out."""
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if svc.proc.poll() is not None:
            raise RuntimeError(f"{svc.name} exited with {svc.proc.returncode}:\n{svc.log_tail()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{svc.name} not listening on {host}:{port}:\n{svc.log_tail()}")


def get(node: Node, path: str) -> tuple[int, int, str]:
    """GET with Host: SITE; (status, body bytes, Cache-Status)."""
    conn = http.client.HTTPConnection(node.host, node.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": SITE})
        resp = conn.getresponse()
        return resp.status, len(resp.read()), resp.headers.get("Cache-Status", "")
    finally:
        conn.close()


def detail(cache_status: str) -> str | None:
    m = re.search(r"detail=([^;,\s]+)", cache_status.split(",")[-1])  # this node's member (RFC 9211: last)
    return m.group(1) if m else None


def is_hit(cache_status: str) -> bool:
    return "hit" in [p.strip() for p in cache_status.split(",")[-1].split(";")[1:]]


def keys_by_owner(nodes: dict[str, Node], size: int) -> dict[str, str]:
    """A path per node that the node owns: node a's answer names every other owner."""
    found: dict[str, str] = {}
    for i in range(200):
        path = f"/obj/cluster-bench-{size}-{i}?size={size}&cc=max-age=3600"
        status, _, cs = get(nodes["a"], path)
        if status != 200:
            raise RuntimeError(f"GET {path} at a -> {status}")
        d = detail(cs)
        owner = d.removeprefix("peer-") if d and d.startswith("peer-") else "a"
        found.setdefault(owner, path)
        if len(found) == len(nodes):
            return found
    raise RuntimeError(f"no key for every node among 200 (found {found})")


def check(node: Node, path: str, size: int, *, hit: bool, via: str | None) -> None:
    """Asks twice; the second answer must be `hit` or not, and name `via` as its source."""
    for _ in range(2):
        status, got, cs = get(node, path)
    if status != 200 or got != size or is_hit(cs) != hit or (not hit and detail(cs) != via):
        raise RuntimeError(f"{node.name} {path}: {status}, {got} bytes, Cache-Status {cs!r}; "
                           f"wanted {'a hit' if hit else f'a fill via {via}'}")


def wrk_argv(node: Node, path: str, connections: int, duration_s: float) -> list[str]:
    return ["wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--latency", "--timeout", "10s",
            "-H", f"Host: {SITE}", f"http://{node.host}:{node.port}{path}"]


def p50_ms(out: str) -> float:
    m = re.search(r"^\s*50(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    if not m:
        raise ValueError(f"no 50% line in wrk output:\n{out}")
    return float(m.group(1)) * _SECONDS[m.group(2)] * 1e3


def run_wrks(part: str, size: int, runs: list[tuple[Node, str, int]], duration_s: float,
             pids: list[int]) -> Measure:
    """Runs one wrk per (node, path, connections) at once; sums req/s and MB/s, worst p50/p99."""
    say(f"  {part}: " + ", ".join(f"wrk -c{c} -> {n.name}" for n, _, c in runs))
    cpu0, busy0, t0 = sum(cpu_seconds(p) for p in pids), busy_cpu_seconds(), time.monotonic()
    procs = [subprocess.Popen(wrk_argv(n, path, c, duration_s), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for n, path, c in runs]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=duration_s + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {err.strip()}")
        outs.append(out)
    wall = time.monotonic() - t0
    node_s = sum(cpu_seconds(p) for p in pids) - cpu0
    results: list[WrkResult] = [parse_wrk(o) for o in outs]
    m = Measure(part=part, size=size, rps=sum(r.rps for r in results), mb_s=sum(r.mb_s for r in results),
                p50_ms=max(p50_ms(o) for o in outs), p99_ms=max(r.p99_ms for r in results),
                node_cpu_pct=100 * node_s / wall,
                other_pct=max(0.0, 100 * (busy_cpu_seconds() - busy0 - node_s) / wall),
                requests=sum(r.requests for r in results),
                errors=sum(r.socket_errors + r.non_2xx for r in results))
    say(f"    {m.rps:,.0f} req/s, {m.mb_s:,.1f} MB/s, p50 {m.p50_ms:.2f} ms, p99 {m.p99_ms:.2f} ms, "
        f"nodes cpu {m.node_cpu_pct:.0f}%, errors {m.errors}")
    return m


def print_tables(rows: list[Measure], sizes: list[int]) -> dict[str, dict[str, float]]:
    """Prints throughput and hop-latency tables; returns the ratios per size."""
    by = {(r.part, r.size): r for r in rows}
    ratios: dict[str, dict[str, float]] = {}
    head = f"{'size':>7} | {'run':<26} | {'req/s':>9} | {'MB/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'nodes cpu%':>10} | errors"
    print("\nhit throughput: 3-node region (3 wrk -c32, one per node, each on the key it owns) vs one node (wrk -c64)")
    print(head + "\n" + "-" * len(head))
    for size in sizes:
        for part, label in (("region", "region, 3 nodes (sum)"), ("one-node", "one node")):
            r = by[(part, size)]
            print(f"{size_label(size):>7} | {label:<26} | {r.rps:>9,.0f} | {r.mb_s:>8,.1f} | {r.p50_ms:>7.2f} | "
                  f"{r.p99_ms:>7.2f} | {r.node_cpu_pct:>10.0f} | {r.errors}")
        reg, one = by[("region", size)], by[("one-node", size)]
        ratios[size_label(size)] = {"region_over_one_rps": reg.rps / one.rps if one.rps else 0.0}
        print(f"{'':>7}   region / one node: {ratios[size_label(size)]['region_over_one_rps']:.2f}x req/s")
    print("\npeer hop: the same key at its owner (local hit) and at a non-owner (fetches from the owner)")
    print(head + "\n" + "-" * len(head))
    for size in sizes:
        for part, label in (("owner-hit", "owner (local hit)"), ("peer-hop", "non-owner (peer hop)")):
            r = by[(part, size)]
            print(f"{size_label(size):>7} | {label:<26} | {r.rps:>9,.0f} | {r.mb_s:>8,.1f} | {r.p50_ms:>7.2f} | "
                  f"{r.p99_ms:>7.2f} | {r.node_cpu_pct:>10.0f} | {r.errors}")
        own, hop = by[("owner-hit", size)], by[("peer-hop", size)]
        added = {"added_p50_ms": hop.p50_ms - own.p50_ms, "added_p99_ms": hop.p99_ms - own.p99_ms,
                 "hop_over_owner_p50": hop.p50_ms / own.p50_ms if own.p50_ms else 0.0,
                 "hop_over_owner_rps": hop.rps / own.rps if own.rps else 0.0}
        ratios[size_label(size)].update(added)
        print(f"{'':>7}   the hop adds p50 {added['added_p50_ms']:+.2f} ms ({added['hop_over_owner_p50']:.1f}x), "
              f"p99 {added['added_p99_ms']:+.2f} ms; req/s {added['hop_over_owner_rps']:.2f}x of the owner's")
    print("nodes cpu%: all three edge processes together (100 = one core); the machine's cores are shared "
          "by the nodes, the origin and wrk.")
    return ratios


def run(args: argparse.Namespace, tmp: Path, procs: Services) -> int:
    """Starts origin and region, measures each size, prints and writes the results."""
    say("step 1: tools")
    if shutil.which("wrk") is None:
        ensure_tools(say)
    say("step 2: demo origin and a 3-node region")
    oport = free_port("127.0.0.1")
    origin = procs.start("origin", [sys.executable, "-m", "origin.demo", "--listen", f"127.0.0.1:{oport}"], oport, say)
    wait_listening(origin, "127.0.0.1", oport)
    nodes = {name: Node(name, host, free_port(host), free_port(host)) for name, host in NODES}
    conf = write_config(tmp / "region.toml", oport, list(nodes.values()))
    started = {n.name: procs.start(f"edge-{n.name}", [sys.executable, "-m", "edge", "--config", str(conf),
                                                      "--node", n.name, "--no-access-log", "--log-level", "WARNING"],
                                   n.port, say) for n in nodes.values()}
    for n in nodes.values():
        wait_listening(started[n.name], n.host, n.port)
        wait_listening(started[n.name], n.host, n.internal_port)
    pids = [svc.proc.pid for svc in started.values()]
    rows: list[Measure] = []
    for size in args.sizes:
        say(f"size {size_label(size)}: keys, warm-up and checks")
        keys = keys_by_owner(nodes, size)
        for name, path in keys.items():
            check(nodes[name], path, size, hit=True, via=None)
        check(nodes["b"], keys["a"], size, hit=False, via="peer-a")
        rows.append(run_wrks("region", size, [(nodes[n], keys[n], args.node_connections) for n in nodes],
                             args.duration, pids))
        rows.append(run_wrks("one-node", size, [(nodes["a"], keys["a"], args.single_connections)],
                             args.duration, pids))
        rows.append(run_wrks("owner-hit", size, [(nodes["a"], keys["a"], args.hop_connections)], args.duration, pids))
        rows.append(run_wrks("peer-hop", size, [(nodes["b"], keys["a"], args.hop_connections)], args.duration, pids))
        check(nodes["b"], keys["a"], size, hit=False, via="peer-a")  # still no local copy at b
    ratios = print_tables(rows, args.sizes)
    out = RESULTS / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    params = {"duration_s": args.duration, "sizes": args.sizes, "node_connections": args.node_connections,
              "single_connections": args.single_connections, "hop_connections": args.hop_connections,
              "wrk_threads": 1, "nodes": 3, "hot_min_hits": 1_000_000_000, "edge_memory": "1GiB"}
    out.write_text(json.dumps({"machine": machine_info(), "params": params, "ratios": ratios,
                               "results": [asdict(r) for r in rows]}, indent=2) + "\n")
    say(f"wrote {out.relative_to(REPO)}")
    return 0 if all(r.errors == 0 for r in rows) else 1


def build_parser() -> argparse.ArgumentParser:
    """The command line; --help explains every flag."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    p.add_argument("--quick", action="store_true", help="3 s runs (overrides --duration)")
    p.add_argument("--sizes", type=parse_sizes, default=parse_sizes("1KiB,1MiB"),
                   help="object sizes, comma-separated (default 1KiB,1MiB)")
    p.add_argument("--node-connections", type=int, default=32, help="wrk connections per node, region run (32)")
    p.add_argument("--single-connections", type=int, default=64, help="wrk connections, one-node run (64)")
    p.add_argument("--hop-connections", type=int, default=8, help="wrk connections, peer-hop latency runs (8)")
    return p


def main() -> int:
    """Runs the benchmark end to end; always stops what it started and removes its tmpdir."""
    args = build_parser().parse_args()
    if args.quick:
        args.duration = 3.0
    tmp = Path(tempfile.mkdtemp(prefix="edgecache-bench-cluster-"))
    procs = Services(log_dir=tmp, cwd=REPO)
    try:
        return run(args, tmp, procs)
    finally:
        say("stopping everything")
        procs.stop_all(say)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
