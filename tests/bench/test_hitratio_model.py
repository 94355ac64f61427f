"""bench/hitratio's in-process model makes exactly the node's TieredStore decisions.

A generated trace (small sizes, small budgets, so it runs in seconds) is replayed through a
real TieredStore (MemoryStore + DiskStore with real files in tmp_path) and through the model
side by side; every request must be served from the same tier by both.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from edge.store import diskfile
from edge.store.admission import make_admission
from edge.store.disk import DiskStore
from edge.store.memory import MemoryStore
from edge.store.tiered import TieredStore
from tests.edge.store.store_contract import body_of, make_meta, put

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "hitratio"))

from model import Served, TierModel, TierSpec, make_policy
from replay import parse_spec

KiB = 1024


def _trace(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    names = [f"o{i}" for i in range(400)]
    sizes = {
        name: rng.choice([rng.randrange(KiB, 16 * KiB), rng.randrange(40 * KiB, 200 * KiB)]) for name in names
    }
    weights = [1 / (rank + 1) ** 0.9 for rank in range(len(names))]
    picks = rng.choices(names, weights=weights, k=n)
    return [(name, sizes[name]) for name in picks]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("config", ["lru-8m", "s3fifo-64k", "gdsf-32k-2hit-auto", "gdsf-64k-2hit-300"])
async def test_model_serves_every_request_from_same_tier_as_tiered_store(tmp_path: Path, config: str) -> None:
    spec: TierSpec = parse_spec(config)
    memory_bytes, disk_bytes = 400 * KiB, 3000 * KiB
    memory = MemoryStore(
        max_bytes=memory_bytes,
        max_object_bytes=spec.memory_max_object_bytes,
        policy=make_policy(spec.memory_policy, memory_bytes),
    )
    disk = await DiskStore.open(
        tmp_path,
        max_bytes=disk_bytes,
        max_object_bytes=1 << 30,
        policy=make_policy(spec.disk_policy, disk_bytes),
    )
    store = TieredStore(memory, disk, admission=make_admission(spec.admission, spec.admission_window))
    model = TierModel(spec, memory_bytes=memory_bytes, disk_bytes=disk_bytes)
    try:
        outcomes: list[Served] = []
        for name, size in _trace(3000, seed=5):
            meta = make_meta(name)
            expected = model.request(meta.key, size, head=diskfile.reserve_bytes(meta))
            if memory.peek(meta.key) is not None:
                got = Served.MEMORY
            else:
                hit = await store.lookup(meta.key)
                got = Served.ORIGIN if hit is None else Served.DISK
                if hit is not None:
                    await hit.close()
                else:
                    await put(store, meta, body_of(size), chunk=64 * KiB)
            if got is Served.MEMORY:
                assert await store.lookup(meta.key) is not None  # the tiered store's own count
            assert got is expected, f"request {len(outcomes)} ({name}, {size} bytes)"
            outcomes.append(got)
        assert {Served.MEMORY, Served.DISK, Served.ORIGIN} <= set(outcomes)  # every path ran
        assert store.disk_write_bytes == model.tally.disk_write_bytes
    finally:
        await store.close()
