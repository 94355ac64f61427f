"""Purge benchmark: propagation latency across 2 regions x 3 nodes, and a 100,000-object tag purge.

1. Propagation (real processes on 127.0.0.0/8): six edge nodes in regions r1 and r2 (memory
   tier, no access log) in front of an in-process origin. Each of `--purges` URL purges is sent
   to a node's admin API in turn; the API answers 200 only once every node has journaled it
   (fsync) and applied it, so the POST round trip is "API call -> applied on every node".
   Prints p50/p99/max. Nodes journal to a tmpdir (tmpfs or disk: it says which).
2. Tag purge (in process, one MemoryStore behind a TieredStore and an Invalidator): stores
   `--objects` objects carrying one tag plus as many without it, purges the tag and reports
   the time apply() takes (what the API waits for), the background sweep until every tagged
   object is gone, and the cost of the lazy check on a lookup while the rule is pending.

    .venv/bin/python bench/load/purge.py [--purges 50] [--objects 100000] [--skip-cluster]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import aiohttp

from cluster.purge import Purge, PurgeKind
from edge.purge.invalidate import Invalidator
from edge.rules.key import make_key
from edge.store.entry import EntryMeta
from edge.store.memory import MemoryStore
from edge.store.tiered import TieredStore
from tests.integration.purge_harness import HOST, NodeSpec, PurgeCluster, VersionedOrigin


def say(msg: str) -> None:
    """Prints one progress line, timestamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _fstype(path: str) -> str:
    """The file system type under path (ext4, tmpfs...), for the report."""
    out = subprocess.run(["df", "--output=fstype", path], capture_output=True, text=True, check=False).stdout
    return out.split()[-1] if out.split() else "?"


async def propagation(purges: int) -> None:
    """Six nodes, two regions: POST /purge round trips until all six acknowledged."""
    with tempfile.TemporaryDirectory(prefix="edge-purge-bench-") as tmp:
        fs = await asyncio.to_thread(_fstype, tmp)
        origin = await VersionedOrigin().start()
        specs = [NodeSpec(f"n{i}", "r1" if i <= 3 else "r2", disk=True) for i in range(1, 7)]
        cluster = PurgeCluster(Path(tmp), origin, specs, rate_per_s=1000.0, burst=1000)
        try:
            say("starting 6 nodes (2 regions x 3)")
            await cluster.start()
            async with aiohttp.ClientSession() as session:
                for i in range(20):  # warm: every node holds some objects to purge
                    for spec in specs:
                        await cluster.get(session, spec.name, f"/v/warm{i}")
                # let every node finish its first catch-up round with every peer
                await asyncio.sleep(1.0)
                latencies: list[float] = []
                for i in range(purges):
                    node = specs[i % len(specs)].name
                    started = time.perf_counter()
                    status, answer = await cluster.purge(session, node, {"url": f"http://{HOST}/v/warm{i % 20}"})
                    elapsed = time.perf_counter() - started
                    if status != 200 or len(answer["acked"]) != 6:
                        raise SystemExit(f"purge {i} via {node}: {status} {answer}")
                    latencies.append(elapsed * 1000)
        finally:
            await cluster.close()
            await origin.close()
    say(f"propagation, {purges} URL purges round-robin over 6 nodes (journal on {fs}, fsync per node):")
    print(f"    API call -> journaled + applied on all 6 nodes: p50 {statistics.median(latencies):.1f} ms, "
          f"p99 {_pct(latencies, 99):.1f} ms, max {max(latencies):.1f} ms, mean {statistics.fmean(latencies):.1f} ms")


def _meta(i: int, tagged: bool) -> EntryMeta:
    key = make_key("http", HOST, f"/obj/{i}?t={int(tagged)}")
    return EntryMeta(key=key.id, url=key.url, status=200, headers=(("Content-Type", "text/plain"),),
                     request_time=0.0, response_time=time.time(), initial_age_s=0.0, lifetime_s=3600.0,
                     tags=("release-42",) if tagged else ("other",))


async def tag_purge(objects: int, soft: bool) -> None:
    """One tag purge over `objects` tagged objects (and as many untagged) in a memory store."""
    memory = MemoryStore(max_bytes=4 << 30, max_object_bytes=1 << 20)
    store = TieredStore(memory)
    for i in range(objects):
        for tagged in (True, False):
            memory.put(_meta(i, tagged), b"x" * 64)
    inv = Invalidator([store])
    inv.start()
    probe = _meta(objects - 1, True)
    try:
        purge = Purge("bench", 1, PurgeKind.TAG, "release-42", HOST, soft, time.time())
        started = time.perf_counter()
        await inv.apply(purge, 1)
        applied = time.perf_counter() - started
        # the lazy check a lookup pays while the rule is pending
        checks = 100_000
        t0 = time.perf_counter()
        for _ in range(checks):
            inv.check(probe, 0.0)
        per_check_us = (time.perf_counter() - t0) / checks * 1e6
        await inv.wait_swept()
        swept = time.perf_counter() - started
    finally:
        await inv.close()
    left = sum(1 for m in store.entries() if "release-42" in m.tags and (not soft or not m.invalidated))
    kind = "soft" if soft else "hard"
    say(f"tag purge ({kind}) of {objects:,} tagged objects among {2 * objects:,} in memory (in process):")
    print(f"    apply() (what the API waits for): {applied * 1e6:.0f} us; lazy check while pending: "
          f"{per_check_us:.2f} us/lookup; sweep done after {swept:.3f} s "
          f"({objects / swept:,.0f} objects/s); tagged objects left valid: {left}")


def main() -> int:
    """Runs the benchmark and prints the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--purges", type=int, default=50)
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--skip-cluster", action="store_true", help="only the in-process tag purge")
    args = parser.parse_args()
    if not args.skip_cluster:
        asyncio.run(propagation(args.purges))
    asyncio.run(tag_purge(args.objects, soft=False))
    asyncio.run(tag_purge(args.objects, soft=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
