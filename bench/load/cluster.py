"""Load benchmark: what a peer hop costs, and a 3-node region's hits/s under Zipf vs one node.

Starts the demo origin, then (all on loopback, nodes on 127.0.0.2-5, every request with
`Host: demo.test` so every node computes the same key):

1. hop costs: a 3-node region with hot copies off (`hot_min_hits` out of reach). Per object
   size, one key owned by node a, warmed and checked to be a hit at a; then wrk --latency
   -c8 on it at a (an owner hit) and at b (a peer hit: b asks a every time, checked first
   to be `detail=peer-a` and not a hit). CPU per request = the CPU seconds all node processes
   spent (read from /proc/PID/stat) / requests; the added p50/p99 of the hop = peer - owner.
2. Zipf: a 3-node region with hot copies at the defaults, and a lone node (no cluster, same
   cache). Per size, a key owned by a asked at b until b keeps a hot copy (checked: a hit
   at b), then wrk on it at b (a hot-copy hit). Then `--zipf-keys` keys of `--zipf-size`,
   warmed at their owners and at the lone node, are asked with Zipf(`--zipf-s`) popularity
   by three wrk processes (-c`--node-connections` each): one per node of the region (the
   load spread evenly, as a load balancer would), then all three at the lone node. Reports
   hits/s, CPU per request, the share of non-owner requests answered from hot copies
   (tier counters of /metrics) beside what the ring's rule predicts (bench/load/zipf.py).

Every run reports the load generator's own CPU (wrk, from rusage once reaped) and `other%`:
what else the machine did meanwhile (other sessions on a shared machine). Prints the tables
and the issue's targets (a peer hit <= 2.5x the CPU of an owner hit; region >= 2x one node's
hits/s), writes bench/results/cluster-<timestamp>.json, stops everything in `finally`.

    .venv/bin/python bench/load/cluster.py [--quick] [--duration S] [--sizes 1KiB,1MiB]
        [--hop-connections N] [--node-connections N] [--zipf-keys N] [--zipf-s S] [--zipf-size SIZE]
        [--workers N|auto]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cluster_nodes import (
    SITE,
    Node,
    check,
    detail,
    free_port,
    get,
    is_hit,
    keys_by_owner,
    start_nodes,
    stop_nodes,
    warm,
)
from report import machine_info, size_label
from servers import HOST, Services, busy_cpu_seconds, cpu_seconds, ensure_tools
from wrk import parse_wrk
from zipf import expected_hot_share, lua_script, served_bytes, zipf_path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
REGION = [("a", "127.0.0.2"), ("b", "127.0.0.3"), ("c", "127.0.0.4")]
LONE = [("solo", "127.0.0.5")]
PROBES = ["probe_interval_s = 1.0", "fail_after = 3"]  # tolerant of a busy machine
HOT_MIN_HITS, HOT_WINDOW_S = 20, 10.0  # the defaults (cluster.config.ClusterConfig)
PEER_OVER_OWNER_MAX = 2.5  # issue 13's targets
REGION_OVER_ONE_MIN = 2.0
_UNITS = {"GiB": 1024**3, "MiB": 1024**2, "KiB": 1024, "B": 1, "": 1}
_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def say(msg: str) -> None:
    """Prints one progress line, timestamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass(frozen=True, slots=True)
class Measure:
    """One line of a table: one wrk run, or several at once (summed)."""

    part: str  # owner-hit, peer-hit, hot-hit, zipf-region, zipf-one-node
    size: int
    rps: float
    mb_s: float
    p50_ms: float  # the worst of the wrk processes
    p99_ms: float
    requests: int
    errors: int  # socket errors + non-2xx
    wall_s: float
    node_cpu_s: dict[str, float]  # CPU seconds per node process during the run
    wrk_cpu_s: float  # the load generator's CPU seconds
    other_pct: float  # the machine's other work meanwhile; 100 = one core

    @property
    def cpu_us(self) -> float:
        """CPU microseconds of all node processes per request."""
        return 1e6 * sum(self.node_cpu_s.values()) / self.requests if self.requests else 0.0

    def us_of(self, node: str) -> float:
        return 1e6 * self.node_cpu_s.get(node, 0.0) / self.requests if self.requests else 0.0

    @property
    def wrk_pct(self) -> float:
        return 100 * self.wrk_cpu_s / self.wall_s


def parse_sizes(text: str) -> list[int]:
    """'1KiB,1MiB' -> [1024, 1048576]."""
    sizes = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(GiB|MiB|KiB|B|)\s*", part)
        if not m:
            raise SystemExit(f"bad size {part!r}; use e.g. 1KiB,1MiB")
        sizes.append(int(m.group(1)) * _UNITS[m.group(2)])
    return sizes


def p50_ms(out: str) -> float:
    m = re.search(r"^\s*50(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    if not m:
        raise ValueError(f"no 50% line in wrk output:\n{out}")
    return float(m.group(1)) * _SECONDS[m.group(2)] * 1e3


def run_wrks(
    part: str, size: int, runs: list[tuple[Node, str, int, Path | None]], duration_s: float, nodes: list[Node]
) -> Measure:
    """One wrk per (node, path, connections, script) at once; sums req/s and MB/s, worst p50/p99."""
    say(f"  {part}: " + ", ".join(f"wrk -c{c} -> {n.name}" for n, _, c, _ in runs))
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0 = {n.name: cpu_seconds(n.pid) for n in nodes}
    busy0, t0 = busy_cpu_seconds(), time.monotonic()
    procs = []
    for node, path, conns, script in runs:
        argv = ["wrk", "-t1", f"-c{conns}", f"-d{duration_s:g}s", "--latency", "--timeout", "10s"]
        argv += ["-s", str(script)] if script is not None else ["-H", f"Host: {SITE}"]
        argv.append(f"http://{node.host}:{node.port}{path}")
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=duration_s + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {err.strip()}")
        outs.append(out)
    wall = time.monotonic() - t0
    node_s = {n.name: cpu_seconds(n.pid) - cpu0[n.name] for n in nodes}
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_s = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    results = [parse_wrk(o) for o in outs]
    m = Measure(
        part=part,
        size=size,
        rps=sum(r.rps for r in results),
        mb_s=sum(r.mb_s for r in results),
        p50_ms=max(p50_ms(o) for o in outs),
        p99_ms=max(r.p99_ms for r in results),
        requests=sum(r.requests for r in results),
        errors=sum(r.socket_errors + r.non_2xx for r in results),
        wall_s=wall,
        node_cpu_s=node_s,
        wrk_cpu_s=wrk_s,
        other_pct=max(0.0, 100 * (busy_cpu_seconds() - busy0 - sum(node_s.values()) - wrk_s) / wall),
    )
    say(
        f"    {m.rps:,.0f} req/s, p50 {m.p50_ms:.2f} ms, p99 {m.p99_ms:.2f} ms, nodes {m.cpu_us:.0f} us/req "
        f"({', '.join(f'{k} {100 * v / wall:.0f}%' for k, v in node_s.items())}), wrk {m.wrk_pct:.0f}%, "
        f"other {m.other_pct:.0f}%, errors {m.errors}"
    )
    return m


def hop_costs(args: argparse.Namespace, tmp: Path, procs: Services, oport: int) -> list[Measure]:
    """Part 1: owner hits and peer hits of one key per size, hot copies off."""
    say("part 1: a 3-node region without hot copies")
    region = start_nodes(procs, tmp, "hop", oport, REGION, [*PROBES, "hot_min_hits = 1000000000"], say)
    nodes, rows = list(region.values()), []
    for size in args.sizes:
        say(f"size {size_label(size)}: a key owned by a, checked a hit at a and a peer fill at b")
        key = keys_by_owner(region, size, "hop")["a"]
        check(region["a"], key, size, hit=True, via=None)
        check(region["b"], key, size, hit=False, via="peer-a")
        rows.append(
            run_wrks(
                "owner-hit", size, [(region["a"], key, args.hop_connections, None)], args.duration, nodes
            )
        )
        rows.append(
            run_wrks("peer-hit", size, [(region["b"], key, args.hop_connections, None)], args.duration, nodes)
        )
        check(region["b"], key, size, hit=False, via="peer-a")  # still no local copy at b
    stop_nodes(procs, "hop-", say)
    return rows


def zipf_load(
    args: argparse.Namespace, tmp: Path, procs: Services, oport: int
) -> tuple[list[Measure], dict[str, float]]:
    """Part 2: hot-copy hits per size, then the Zipf load on the region and on a lone node."""
    say("part 2: a 3-node region with hot copies (defaults) and a lone node")
    region = start_nodes(procs, tmp, "zipf", oport, REGION, PROBES, say)
    lone = start_nodes(procs, tmp, "solo", oport, LONE, None, say)
    nodes, solo, rows = list(region.values()), lone["solo"], []
    for size in args.sizes:
        say(f"size {size_label(size)}: a key owned by a, asked at b until b keeps a hot copy")
        key = keys_by_owner(region, size, "hot")["a"]
        # each worker process counts its own requests toward a hot key: ask enough for every worker
        check(region["b"], key, size, hit=True, via=None, tries=4 * HOT_MIN_HITS + 5)
        rows.append(
            run_wrks("hot-hit", size, [(region["b"], key, args.hop_connections, None)], args.duration, nodes)
        )
    size = args.zipf_size
    paths = [zipf_path(size, r) for r in range(1, args.zipf_keys + 1)]
    say(f"zipf: warming {len(paths)} keys of {size_label(size)} at their owners (via a) and at the lone node")
    warm(region["a"], paths)
    warm(solo, paths)
    status, _, cs = get(region["b"], paths[-1])
    if status != 200 or not (is_hit(cs) or (detail(cs) or "").startswith("peer-")):
        raise RuntimeError(f"zipf key {paths[-1]} at b: {status} {cs!r}; wanted a hit or a peer hit")
    scripts = []
    for i in range(3):
        script = tmp / f"zipf-{i}.lua"
        script.write_text(lua_script(size, args.zipf_keys, args.zipf_s, seed=1000 + i, host=SITE))
        scripts.append(script)
    conns = args.node_connections
    spread = [(n, "/", conns, s) for n, s in zip(nodes, scripts, strict=True)]
    run_wrks("zipf-settle", size, spread, 2.0, nodes)
    before = {n.name: served_bytes(n.host, n.admin_port) for n in nodes}
    rows.append(run_wrks("zipf-region", size, spread, args.duration, nodes))
    after = {n.name: served_bytes(n.host, n.admin_port) for n in nodes}
    rows.append(
        run_wrks("zipf-one-node", size, [(solo, "/", conns, s) for s in scripts], args.duration, [solo])
    )
    delta = {t: sum(after[n][t] - before[n].get(t, 0.0) for n in after) for t in after["a"]}
    non_owner = delta.get("hot", 0.0) + delta.get("peer", 0.0)
    node_rps = rows[-2].rps / len(nodes)
    share = {
        "hot_share_measured": delta.get("hot", 0.0) / non_owner if non_owner else 0.0,
        "hot_share_expected": expected_hot_share(
            args.zipf_keys, args.zipf_s, node_rps, HOT_MIN_HITS, min(HOT_WINDOW_S, 2.0 + args.duration)
        ),
        "served_fraction": {t: v / max(1.0, sum(delta.values())) for t, v in delta.items()},
    }
    return rows, share


def print_tables(rows: list[Measure], sizes: list[int], share: dict[str, float]) -> dict[str, object]:
    """Prints the three tables and the targets; returns the ratios."""
    by = {(r.part, r.size): r for r in rows}
    out: dict[str, object] = {}
    head = (
        f"{'size':>7} | {'hit':<22} | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'node us/req':>11} | "
        f"{'a / b us':>11} | {'wrk cpu%':>8} | {'other%':>6} | errors"
    )
    print("\nCPU per hit (all node processes, /proc/PID/stat), one key, wrk -c8 on one node")
    print(head + "\n" + "-" * len(head))
    for size in sizes:
        for part, label in (
            ("owner-hit", "owner (local hit)"),
            ("peer-hit", "peer hit (b asks a)"),
            ("hot-hit", "hot copy (b keeps a's)"),
        ):
            r = by[(part, size)]
            print(
                f"{size_label(size):>7} | {label:<22} | {r.rps:>8,.0f} | {r.p50_ms:>7.2f} | "
                f"{r.p99_ms:>7.2f} | "
                f"{r.cpu_us:>11.1f} | {r.us_of('a'):>5.1f}/{r.us_of('b'):<5.1f} | {r.wrk_pct:>8.0f} | "
                f"{r.other_pct:>6.0f} | {r.errors}"
            )
        own, peer, hot = by[("owner-hit", size)], by[("peer-hit", size)], by[("hot-hit", size)]
        ratio = {
            "peer_over_owner_cpu": peer.cpu_us / own.cpu_us,
            "hot_over_owner_cpu": hot.cpu_us / own.cpu_us,
            "added_p50_ms": peer.p50_ms - own.p50_ms,
            "added_p99_ms": peer.p99_ms - own.p99_ms,
        }
        out[size_label(size)] = ratio
        verdict = "met" if ratio["peer_over_owner_cpu"] <= PEER_OVER_OWNER_MAX else "NOT met"
        print(
            f"{'':>7}   peer hit = {ratio['peer_over_owner_cpu']:.2f}x the CPU of an owner hit (target <= "
            f"{PEER_OVER_OWNER_MAX}x: {verdict}); hot copy {ratio['hot_over_owner_cpu']:.2f}x; the hop adds "
            f"p50 {ratio['added_p50_ms']:+.2f} ms, p99 {ratio['added_p99_ms']:+.2f} ms"
        )
    zsize = rows[-1].size
    reg, one = by[("zipf-region", zsize)], by[("zipf-one-node", zsize)]
    print(
        f"\nZipf load ({size_label(one.size)}): 3 wrk -t1 with a Zipf script, one per region node "
        "vs all three on a lone node"
    )
    head2 = (
        f"{'run':<24} | {'hits/s':>8} | {'p99 ms':>7} | {'nodes cpu%':>10} | {'node us/req':>11} | "
        f"{'wrk cpu%':>8} | {'other%':>6} | errors"
    )
    print(head2 + "\n" + "-" * len(head2))
    for r, label in ((reg, "region, 3 nodes"), (one, "one node (no cluster)")):
        print(
            f"{label:<24} | {r.rps:>8,.0f} | {r.p99_ms:>7.2f} | "
            f"{100 * sum(r.node_cpu_s.values()) / r.wall_s:>10.0f} "
            f"| {r.cpu_us:>11.1f} | {r.wrk_pct:>8.0f} | {r.other_pct:>6.0f} | {r.errors}"
        )
    out["region_over_one"] = reg.rps / one.rps if one.rps else 0.0
    verdict = "met" if out["region_over_one"] >= REGION_OVER_ONE_MIN else "NOT met"
    print(
        f"region / one node: {out['region_over_one']:.2f}x hits/s "
        f"(target >= {REGION_OVER_ONE_MIN}x: {verdict})"
    )
    print(
        f"non-owner requests answered from hot copies: {100 * share['hot_share_measured']:.1f}% "
        f"(the ring's rule predicts {100 * share['hot_share_expected']:.1f}%); bytes served by tier: "
        + ", ".join(f"{t} {100 * v:.1f}%" for t, v in share["served_fraction"].items() if v)
    )
    out.update(share)
    return out


def run(args: argparse.Namespace, tmp: Path, procs: Services) -> int:
    """Starts the origin, runs both parts, prints and writes the results."""
    if shutil.which("wrk") is None:
        ensure_tools(say)
    oport = start_origin(procs)
    rows = hop_costs(args, tmp, procs, oport)
    zipf_rows, share = zipf_load(args, tmp, procs, oport)
    rows += zipf_rows
    ratios = print_tables(rows, args.sizes, share)
    print(
        "node us/req: CPU microseconds of all edge processes per request; a / b: of node a and b alone. "
        "wrk cpu%: the load generator (100 = one core). other%: the rest of the machine meanwhile "
        "(other sessions on a shared machine: high values disturb every figure)."
    )
    out = RESULTS / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    params = dict(vars(args))
    out.write_text(
        json.dumps(
            {
                "machine": machine_info(),
                "params": params,
                "ratios": ratios,
                "results": [{**asdict(r), "cpu_us": r.cpu_us} for r in rows],
            },
            indent=2,
        )
        + "\n"
    )
    say(f"wrote {out.relative_to(REPO)}")
    return 0 if all(r.errors == 0 for r in rows) else 1


def start_origin(procs: Services) -> int:
    """The demo origin on 127.0.0.1; returns its port."""
    port = free_port(HOST)
    svc = procs.start(
        "origin", [sys.executable, "-m", "origin.demo", "--listen", f"{HOST}:{port}"], port, say
    )
    svc.wait_ready(30.0)
    return port


def build_parser() -> argparse.ArgumentParser:
    """The command line; --help explains every flag."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    p.add_argument("--quick", action="store_true", help="3 s runs (overrides --duration)")
    p.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes("1KiB,1MiB"),
        help="object sizes of the one-key runs, comma-separated (default 1KiB,1MiB)",
    )
    p.add_argument("--hop-connections", type=int, default=8, help="wrk connections, one-key runs (8)")
    p.add_argument("--node-connections", type=int, default=16, help="connections of each Zipf wrk (16)")
    p.add_argument("--zipf-keys", type=int, default=1000, help="keys of the Zipf load (1000)")
    p.add_argument("--zipf-s", type=float, default=1.0, help="Zipf exponent (1.0)")
    p.add_argument(
        "--workers",
        default="1",
        help="worker processes per node, a number or auto (default 1: one process per node, as the "
        "earlier runs; set through $EDGECACHE_WORKERS, which a config without workers = follows)",
    )
    p.add_argument(
        "--zipf-size", type=lambda t: parse_sizes(t)[0], default=1024, help="Zipf object size (1KiB)"
    )
    return p


def main() -> int:
    """Runs the benchmark end to end; always stops what it started and removes its tmpdir."""
    args = build_parser().parse_args()
    if args.quick:
        args.duration = 3.0
    os.environ["EDGECACHE_WORKERS"] = args.workers  # the nodes' config leaves workers unset
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
