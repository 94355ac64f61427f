"""Cold-storm benchmark: 2 regions x 3 nodes, with and without a shield region.

Starts the demo origin and six edge nodes (real processes, each on its own 127.0.0.x) twice:
once as two independent regions that both talk to the origin, once with region r1's parent
set to region r2 (the shield). Each run fires a cold storm: `--objects` new objects, each
asked `--clients` times spread over all six nodes at once (the origin answers after
`--delay` seconds so the requests overlap). Prints, per layout, the origin requests per
object (read from the demo origin's /__stats) and the client latency p50/p99, and writes
bench/results/regions-<stamp>.json.

    .venv/bin/python bench/load/regions.py [--objects 30] [--clients 24] [--delay 0.2] [--size 65536]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import aiohttp

from tests.integration.cluster_harness import HOST, NodeAddr, Region, allocate, peer_events, wait_until
from tests.integration.harness import origin_stats, start_origin, write_config

CLUSTER = {"secret": "bench-secret", "probe_interval_s": 0.3, "probe_timeout_s": 0.5, "fail_after": 3}


def say(msg: str) -> None:
    """Prints one progress line, timestamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _config(path: Path, origin_url: str, nodes: list[NodeAddr], shielded: bool) -> Path:
    lines = ["[cluster]"] + [f"{k} = {json.dumps(v)}" for k, v in CLUSTER.items()] + [""]
    lines += [n.toml() for n in nodes]
    if shielded:
        lines += ["[regions.r1]", 'parent = "r2"', ""]
    return write_config(path, origin_url=origin_url, nodes={}, extra="\n".join(lines))


def _converged(region: Region) -> bool:
    for proc in region.procs.values():
        last: dict[str, str] = {}
        for peer, state in peer_events(proc):
            last[peer] = state
        if any(state != "healthy" for state in last.values()):
            return False
    return True


async def storm(nodes: list[NodeAddr], tag: str, args: argparse.Namespace) -> list[float]:
    """Every object asked `clients` times over all nodes at once; returns the latencies (ms)."""
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000), auto_decompress=False,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def one(url: str) -> None:
            started = time.perf_counter()
            async with session.get(url, headers={"Host": HOST}) as resp:
                body = await resp.read()
                if resp.status != 200 or len(body) != args.size:
                    raise RuntimeError(f"{url}: {resp.status}, {len(body)} bytes")
            latencies.append((time.perf_counter() - started) * 1000)

        jobs = []
        for i in range(args.objects):
            path = f"/obj/{tag}-{i}?size={args.size}&cc=max-age=600&delay={args.delay}"
            for c in range(args.clients):
                jobs.append(one(nodes[c % len(nodes)].url + path))
        await asyncio.gather(*jobs)
    return latencies


async def run_layout(shielded: bool, args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    """One layout: start the nodes, storm, count origin requests, stop."""
    name = "with shield (r1 -> r2 -> origin)" if shielded else "no shield (r1, r2 -> origin)"
    say(f"layout: {name}")
    origin = start_origin(tmp / "logs")
    region = Region(tmp / f"logs-{int(shielded)}")
    try:
        nodes = allocate(["a1", "a2", "a3"], region="r1") + allocate(["b1", "b2", "b3"], region="r2")
        config = _config(tmp / f"regions-{int(shielded)}.toml", origin.url, nodes, shielded)
        say("starting 6 nodes")
        region.start(config, nodes)
        await wait_until(lambda: _converged(region), 20, "membership converged")
        tag = f"storm{int(shielded)}{int(time.time())}"
        say(f"storm: {args.objects} objects x {args.clients} clients over 6 nodes")
        started = time.perf_counter()
        latencies = await storm(nodes, tag, args)
        wall = time.perf_counter() - started
        paths = origin_stats(origin)["paths"]
        counts = [n for p, n in paths.items() if p.startswith(f"/obj/{tag}-")]
        return {
            "layout": name, "requests": len(latencies), "objects": args.objects,
            "origin_requests": sum(counts), "origin_per_object": sum(counts) / args.objects,
            "p50_ms": statistics.median(latencies), "p99_ms": _pct(latencies, 99), "wall_s": wall,
        }
    finally:
        region.stop()
        origin.stop()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=30, help="cold objects per storm (default 30)")
    parser.add_argument("--clients", type=int, default=24, help="requests per object, over all nodes (default 24)")
    parser.add_argument("--delay", type=float, default=0.2, help="origin think time in seconds (default 0.2)")
    parser.add_argument("--size", type=int, default=65536, help="object size in bytes (default 65536)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-regions-bench-") as tmp:
        for shielded in (False, True):
            rows.append(await run_layout(shielded, args, Path(tmp)))
    print()
    print(f"{'layout':34} | {'requests':>8} | {'origin/object':>13} | {'p50 ms':>8} | {'p99 ms':>8}")
    for r in rows:
        print(f"{r['layout']:34} | {r['requests']:>8} | {r['origin_per_object']:>13.2f} | "
              f"{r['p50_ms']:>8.1f} | {r['p99_ms']:>8.1f}")
    out = REPO / "bench" / "results" / f"regions-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"params": vars(args), "rows": rows}, indent=2))
    say(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
