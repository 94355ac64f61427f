"""cProfile of the hit path: the listener of bench_hit_path.py fed one keep-alive request 100k times.

Prints the functions by their own time, then (without cProfile's overhead) the best per-hit
CPU time of the edge's protocol beside the bare-protocol floor, over 40 alternating batches.

    .venv/bin/python bench/micro/profile_hit_path.py [--requests N] [--top N]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_hit_path as bench  # (a sibling module, not a package)


def best_per_call(call: object, request: bytes, batch: int, batches: int) -> float:
    """The fastest batch's CPU seconds per call (thread time: other processes do not count)."""
    best = float("inf")
    for _ in range(batches):
        t0 = time.thread_time()
        for _ in range(batch):
            call(request)  # type: ignore[operator]
        best = min(best, (time.thread_time() - t0) / batch)
    return best


async def main(requests: int, top: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proto, transport = bench._edge_protocol(asyncio.get_running_loop(), Path(tmp))
        feed, request = proto.data_received, bench.REQUEST
        for _ in range(1000):  # warm the interpreter's specialisation and the prebuilt response
            feed(request)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(requests):
            feed(request)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(top)
        floor = bench.BareProtocol(bench.NullTransport()).data_received
        edge_s = bare_s = float("inf")
        for _ in range(40):
            edge_s = min(edge_s, best_per_call(feed, request, 2000, 1))
            bare_s = min(bare_s, best_per_call(floor, request, 2000, 1))
        print(f"per hit: edge {edge_s * 1e6:.2f} µs, bare floor {bare_s * 1e6:.2f} µs "
              f"({edge_s / bare_s:.1f}x)")
        assert transport.written > 1024 * requests  # every request was a hit, not the slow path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.top))
