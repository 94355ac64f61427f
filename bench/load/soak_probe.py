"""Runs `python -m edge` under tracemalloc, writing a snapshot every few seconds (for soak.py).

SOAK_TRACEMALLOC_DIR: where snapshots go (snap-0001.bin, ...); SOAK_TRACEMALLOC_EVERY_S: how
often (default 30). The remaining arguments are the node's. Bench use only: tracemalloc makes
every allocation slower.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _snapshots(out: Path, every_s: float) -> None:
    n = 0
    while True:
        time.sleep(every_s)
        n += 1
        tracemalloc.take_snapshot().dump(str(out / f"snap-{n:04d}.bin"))


if __name__ == "__main__":
    tracemalloc.start(12)
    out = Path(os.environ["SOAK_TRACEMALLOC_DIR"])
    every = float(os.environ.get("SOAK_TRACEMALLOC_EVERY_S", "30"))
    threading.Thread(target=_snapshots, args=(out, every), daemon=True).start()
    sys.argv = ["edge", *sys.argv[1:]]
    runpy.run_module("edge", run_name="__main__", alter_sys=True)
