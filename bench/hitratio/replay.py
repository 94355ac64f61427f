"""Trace-driven hit-ratio benchmark: CDN-like traces through the node's stores, beside plain LRU.

For each trace (alpha x seed) it replays every request through each tier configuration in
process (bench/hitratio/model.py: the node's own policy and admission objects, exact) and
prints object and byte miss ratio, the RAM share of hits and the disk write volume. With
--http it also replays a spatial sample of the first trace through a running node (the demo
origin and an edge node on loopback, real files) and beside it the same sample in process,
to show the two agree. Budgets: --memory-share and --disk-share of the trace's working set.

    .venv/bin/python bench/hitratio/replay.py [--requests N] [--alphas 0.7,0.9,1.1]
        [--seeds 7,11,23] [--configs lru,defaults,...] [--http] [--http-rate R]

Traces are generated with ../shared/traces/gen_trace.py into --trace-dir (reused if present).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model import KiB, MiB, TierModel, TierSpec
from traces import GENERATOR, Trace, generate, load, sample

from edge.store.admission import AdmissionMode

SECOND = AdmissionMode.SECOND_HIT
RESULTS = Path(__file__).resolve().parents[1] / "results"

UNITS = {"k": KiB, "m": MiB}


def parse_spec(name: str) -> TierSpec:
    """`defaults`, or POLICY-CAP[-2hit-WINDOW][@DISK]: e.g. lru-8m, gdsf-64k-2hit-auto@lfuda.

    POLICY (lru, s3fifo, gdsf) is the memory tier's; DISK (lru, s3fifo, lfuda) the disk
    tier's, by default LRU under "lru" and S3-FIFO otherwise. WINDOW: misses (2k = 2000),
    or "auto" for the node's adaptive window (as many misses as the disk holds objects).
    """
    if name == "defaults":
        return TierSpec.defaults()
    name, _, disk_policy = name.partition("@")
    full = f"{name}@{disk_policy}" if disk_policy else name
    parts = name.split("-")
    if parts[0] not in ("lru", "s3fifo", "gdsf") or len(parts) not in (2, 4):
        raise ValueError(name)
    cap = int(parts[1][:-1]) * UNITS[parts[1][-1]]
    disk = disk_policy or ("lru" if parts[0] == "lru" else "s3fifo")
    if disk not in ("lru", "s3fifo", "lfuda"):
        raise ValueError(full)
    if len(parts) == 2:
        return TierSpec(full, parts[0], disk, cap)
    if parts[2] != "2hit":
        raise ValueError(name)
    window = (
        0 if parts[3] == "auto" else int(parts[3].removesuffix("k")) * (1000 if parts[3][-1] == "k" else 1)
    )
    return TierSpec(full, parts[0], disk, cap, SECOND, window)


BASELINE = "lru-8m"  # plain LRU in both tiers, every fill on disk, the old 8 MiB memory cap
DEFAULT_CONFIGS = "lru-8m,s3fifo-8m,s3fifo-256k,gdsf-256k,gdsf-64k,gdsf-64k-2hit-10k,defaults"


def say(msg: str) -> None:
    """One progress line on stderr, timestamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def replay(trace: Trace, spec: TierSpec, memory_bytes: int, disk_bytes: int, label: str) -> TierModel:
    """Replays the whole trace through one configuration, with a progress line every 10 %."""
    model = TierModel(spec, memory_bytes=memory_bytes, disk_bytes=disk_bytes)
    step = max(1, len(trace) // 10)
    request = model.request
    ids, sizes = trace.ids, trace.sizes
    started = time.monotonic()
    for start in range(0, len(trace), step):
        for i in range(start, min(start + step, len(trace))):
            request(ids[i], sizes[i])
        done = min(start + step, len(trace))
        t = model.tally
        say(
            f"  {label} {spec.name}: {done}/{len(trace)} requests, object miss {t.object_miss:.3f}, "
            f"{done / max(1e-9, time.monotonic() - started):,.0f} req/s"
        )
    return model


def row(name: str, model: TierModel, lru: TierModel | None) -> str:
    t = model.tally
    delta = ""
    if lru is not None:
        lt = lru.tally
        delta = f"{t.object_miss - lt.object_miss:+9.3f} {t.byte_miss - lt.byte_miss:+9.3f}"
    return (
        f"{name:<22} {t.object_miss:9.3f} {t.byte_miss:9.3f} {t.ram_share:9.3f} "
        f"{t.disk_write_bytes / 2**30:11.2f} {delta}"
    )


HEADER = (
    f"{'config':<22} {'obj miss':>9} {'byte miss':>9} {'RAM share':>9} {'disk GiB wr':>11} "
    f"{'d obj/LRU':>9} {'d byte/LRU':>9}"
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=1_500_000, help="trace length (objects scale with it)")
    p.add_argument("--alphas", default="0.9", help="comma-separated Zipf alphas (default 0.9)")
    p.add_argument("--seeds", default="7", help="comma-separated trace seeds (default 7)")
    p.add_argument("--configs", default=DEFAULT_CONFIGS, help=parse_spec.__doc__)
    p.add_argument("--memory-share", type=float, default=0.01, help="memory tier / working set (0.01)")
    p.add_argument("--disk-share", type=float, default=0.10, help="disk tier / working set (0.10)")
    p.add_argument("--trace-dir", type=Path, default=Path("/tmp/edgecache-traces"))
    p.add_argument("--generator", type=Path, default=GENERATOR, help="path of gen_trace.py")
    p.add_argument("--http", action="store_true", help="also replay a sample through a running node")
    p.add_argument("--http-rate", type=float, default=0.005, help="spatial sampling rate for --http")
    p.add_argument("--http-configs", default="lru-8m,defaults", help="configurations replayed over HTTP")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.configs.split(",")
    try:
        specs = {n: parse_spec(n) for n in [BASELINE, *names, *args.http_configs.split(",")]}
    except (ValueError, KeyError) as exc:
        print(f"bad config name {exc}; {parse_spec.__doc__}", file=sys.stderr)
        return 2
    names = [BASELINE, *(n for n in names if n != BASELINE)]
    args.trace_dir.mkdir(parents=True, exist_ok=True)
    tables: list[str] = []
    first: Trace | None = None
    for alpha in (float(a) for a in args.alphas.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            say(f"trace alpha={alpha} seed={seed} requests={args.requests}: generating/loading")
            path = generate(
                args.trace_dir, alpha=alpha, seed=seed, requests=args.requests, generator=args.generator
            )
            trace = load(path)
            first = first or trace
            memory_bytes = int(trace.working_set_bytes * args.memory_share)
            disk_bytes = int(trace.working_set_bytes * args.disk_share)
            say(
                f"{trace.name}: {len(trace)} requests, "
                f"working set {trace.working_set_bytes / 2**30:.2f} GiB, "
                f"memory {memory_bytes / MiB:.1f} MiB, disk {disk_bytes / MiB:.1f} MiB"
            )
            results = {n: replay(trace, specs[n], memory_bytes, disk_bytes, trace.name) for n in names}
            lines = [f"\n{trace.name} (in process, every request)", HEADER]
            lines += [row(n, results[n], None if n == BASELINE else results[BASELINE]) for n in names]
            tables.append("\n".join(lines))
            print(tables[-1], flush=True)
    if args.http and first is not None:
        from http_replay import compare  # the node, the origin and aiohttp: only when asked

        picked = sample(first, args.http_rate)
        tables.append(compare(picked, [specs[n] for n in args.http_configs.split(",")], args, say))
        print(tables[-1], flush=True)
    summary = "\n\n".join(tables)
    summary += f"\n\nmemory {args.memory_share:.0%} + disk {args.disk_share:.0%} of each trace's working set"
    print(summary)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"hitratio-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"argv": sys.argv, "report": summary.splitlines()}, indent=1) + "\n")
    say(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
