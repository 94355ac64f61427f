"""Ring micro benchmarks: owner() and preference() lookups, and a rebuild (pytest-benchmark).

owner() runs on every cache miss (and every request once the edge routes by owner), so it
must stay far below the cost of the hit path; a rebuild runs only on a membership change.
Run with `make bench-micro`.
"""

from __future__ import annotations

import itertools
import random

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from cluster.ring import DEFAULT_VNODES, Ring

KEYS = [random.Random(1).randbytes(16) for _ in range(1000)]


def _owners(ring: Ring) -> int:
    owner = ring.owner
    return len([owner(key) for key in KEYS])


@pytest.mark.parametrize("count", [3, 10, 50])
def test_owner_1000_keys(benchmark: BenchmarkFixture, count: int) -> None:
    """1,000 owner() lookups; divide the mean by 1,000 for one lookup."""
    ring = Ring([f"edge{i}" for i in range(count)])
    assert benchmark(_owners, ring) == len(KEYS)


def test_owner_1000_keys_160_vnodes(benchmark: BenchmarkFixture) -> None:
    """The same on a 10-node ring with 160 points per node, for comparison with the default."""
    ring = Ring([f"edge{i}" for i in range(10)], vnodes=160)
    assert benchmark(_owners, ring) == len(KEYS)


def test_preference_first_two(benchmark: BenchmarkFixture) -> None:
    """The owner and its first fallback, as the edge asks when the owner is down."""
    ring = Ring([f"edge{i}" for i in range(10)])
    keys = itertools.cycle(KEYS)

    def first_two() -> list[str]:
        return list(itertools.islice(ring.preference(next(keys)), 2))

    assert len(benchmark(first_two)) == 2


def test_rebuild_10_nodes(benchmark: BenchmarkFixture) -> None:
    """A new 10-node ring with the default vnode count: the cost of one membership change."""
    names = [f"edge{i}" for i in range(10)]
    ring = benchmark(Ring, names)
    assert len(ring) == 10 and ring.vnodes == DEFAULT_VNODES
