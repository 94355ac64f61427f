"""Hit ratio of LRU against S3-FIFO on a Zipf trace with scans mixed in (fixed seed).

1M requests: 80% drawn from Zipf(alpha=1.0) over 100k keys, 20% from 20 one-off sequential
scans of 10k new keys each, one after every 40k Zipf requests. Object sizes are fixed per
key (1-64 KiB, seeded); the cache holds 10% of the Zipf working set's bytes. Run
`pytest bench/micro/bench_policy_hit_ratio.py -s` to see the ratios (also in extra_info).
Seed 20240601 gave: LRU 0.5425 (bytes 0.5330), S3-FIFO 0.6212 (bytes 0.6133)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from edge.store.eviction import EvictionPolicy, LRUPolicy
from edge.store.s3fifo import S3FIFOPolicy

SEED = 20240601
KEYS = 100_000
REQUESTS = 1_000_000
ALPHA = 1.0
SCAN_EVERY = 40_000  # requests between scans
SCAN_LENGTH = 10_000  # one-off keys per scan: 20 scans, 200k requests, 20% of traffic
CACHE_RATIO = 0.10


@dataclass(frozen=True, slots=True)
class Trace:
    """The request sequence (key ids) and each key's size."""

    requests: list[int]
    sizes: list[int]
    cache_bytes: int


@dataclass(frozen=True, slots=True)
class Result:
    """What one policy achieved on the trace."""

    hits: int
    requests: int
    byte_hits: int
    byte_requests: int

    @property
    def ratio(self) -> float:
        return self.hits / self.requests

    @property
    def byte_ratio(self) -> float:
        return self.byte_hits / self.byte_requests


def make_trace() -> Trace:
    rng = random.Random(SEED)
    weights = [1.0 / (rank**ALPHA) for rank in range(1, KEYS + 1)]
    ids = list(range(KEYS))
    rng.shuffle(ids)  # popularity is unrelated to key id and size
    zipf_count = REQUESTS - (REQUESTS // (SCAN_EVERY + SCAN_LENGTH)) * SCAN_LENGTH
    draws = rng.choices(ids, cum_weights=list(itertools.accumulate(weights)), k=zipf_count)
    requests: list[int] = []
    scan_id = KEYS
    for start in range(0, len(draws), SCAN_EVERY):
        requests += draws[start : start + SCAN_EVERY]
        if len(requests) < REQUESTS:
            requests += range(scan_id, scan_id + SCAN_LENGTH)
            scan_id += SCAN_LENGTH
    sizes = [rng.randrange(1024, 64 * 1024) for _ in range(scan_id)]
    working_set = sum(sizes[:KEYS])
    return Trace(requests[:REQUESTS], sizes, int(working_set * CACHE_RATIO))


def simulate(make: Callable[[int], EvictionPolicy], trace: Trace) -> Result:
    policy = make(trace.cache_bytes)
    keys = [i.to_bytes(16, "big") for i in range(len(trace.sizes))]
    sizes = trace.sizes
    hits = byte_hits = byte_requests = 0
    for i in trace.requests:
        key, size = keys[i], sizes[i]
        byte_requests += size
        if key in policy:
            policy.touch(key)
            hits += 1
            byte_hits += size
        else:
            policy.admit(key, size)
    return Result(hits, len(trace.requests), byte_hits, byte_requests)


@pytest.fixture(scope="module")
def trace() -> Trace:
    return make_trace()


@pytest.fixture(scope="module")
def lru_result(trace: Trace) -> Result:
    return simulate(LRUPolicy, trace)


def _record(benchmark: BenchmarkFixture, name: str, result: Result) -> None:
    benchmark.extra_info[f"{name}_hit_ratio"] = round(result.ratio, 4)
    benchmark.extra_info[f"{name}_byte_hit_ratio"] = round(result.byte_ratio, 4)
    print(f"\n{name}: hit ratio {result.ratio:.4f}, byte hit ratio {result.byte_ratio:.4f}")


def test_policy_hit_ratio_lru(benchmark: BenchmarkFixture, trace: Trace) -> None:
    result = benchmark.pedantic(  # type: ignore[no-untyped-call]
        simulate, args=(LRUPolicy, trace), rounds=1, iterations=1
    )
    _record(benchmark, "lru", result)
    assert 0.0 < result.ratio < 1.0


def test_policy_hit_ratio_s3fifo_beats_lru(
    benchmark: BenchmarkFixture, trace: Trace, lru_result: Result
) -> None:
    result = benchmark.pedantic(  # type: ignore[no-untyped-call]
        simulate, args=(S3FIFOPolicy, trace), rounds=1, iterations=1
    )
    _record(benchmark, "lru", lru_result)
    _record(benchmark, "s3fifo", result)
    assert result.ratio > lru_result.ratio
