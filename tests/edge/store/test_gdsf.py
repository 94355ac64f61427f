"""GDSFPolicy: priority = clock + frequency / size, lowest first, the clock rising to each victim."""

from __future__ import annotations

import random

import pytest

from edge.store.eviction import EvictionPolicy
from edge.store.gdsf import GDSFPolicy


def k(name: str) -> bytes:
    return name.encode().ljust(16, b"\x00")


def _typed(policy: GDSFPolicy) -> EvictionPolicy:
    return policy  # mypy checks GDSFPolicy satisfies the protocol


class TestGDSFRanking:
    def test_gdsf_evicts_largest_when_frequencies_equal(self) -> None:
        policy = GDSFPolicy(100)
        policy.admit(k("big"), 50)
        policy.admit(k("small1"), 10)
        policy.admit(k("small2"), 10)
        assert policy.admit(k("small3"), 40) == [k("big")]
        assert policy.used_bytes == 60

    def test_gdsf_keeps_frequent_large_key_when_small_keys_are_cold(self) -> None:
        policy = GDSFPolicy(100)
        policy.admit(k("big"), 50)
        for _ in range(9):
            policy.touch(k("big"))  # 10 hits on 50 bytes beat 1 hit on 10 bytes
        policy.admit(k("a"), 10)
        policy.admit(k("b"), 40)
        victims = policy.admit(k("c"), 10)
        assert k("big") in policy and victims == [k("b")]  # H: b 1/40 < a 1/10 < big 10/50

    def test_gdsf_evicts_oldest_when_priorities_tie(self) -> None:
        policy = GDSFPolicy(30)
        for name in "abc":
            policy.admit(k(name), 10)
        assert policy.admit(k("d"), 10) == [k("a")]

    def test_gdsf_rejects_newcomer_when_every_resident_outranks_it(self) -> None:
        policy = GDSFPolicy(100)
        for i in range(10):
            policy.admit(k(f"s{i}"), 10)
            policy.touch(k(f"s{i}"))
        assert policy.admit(k("segment"), 60) == [k("segment")]
        assert k("segment") not in policy and len(policy) == 10 and policy.used_bytes == 100

    def test_gdsf_counts_frequency_when_touched(self) -> None:
        policy = GDSFPolicy(100)
        policy.admit(k("a"), 10)
        policy.touch(k("a"))
        policy.touch(k("a"))
        assert policy.frequency(k("a")) == 3
        assert policy.priority(k("a")) == pytest.approx(3 / 10)
        policy.touch(k("unknown"))  # ignored
        assert policy.frequency(k("unknown")) == 0 and policy.priority(k("unknown")) is None


class TestGDSFByteHits:
    def test_lfuda_ignores_size_when_pricing_by_bytes(self) -> None:
        policy = GDSFPolicy(100, byte_hits=True)  # H = L + frequency: LFU with dynamic aging
        policy.admit(k("big"), 60)
        policy.touch(k("big"))
        policy.admit(k("small"), 30)
        assert policy.admit(k("other"), 30) == [k("small")]  # fewer hits, whatever its size
        assert policy.priority(k("big")) == pytest.approx(2.0)


class TestGDSFAging:
    def test_gdsf_raises_clock_to_victim_priority_when_evicting(self) -> None:
        policy = GDSFPolicy(20)
        policy.admit(k("a"), 10)
        policy.admit(k("b"), 10)
        policy.admit(k("c"), 10)
        assert policy.clock == pytest.approx(1 / 10)
        assert policy.priority(k("c")) == pytest.approx(1 / 10)  # priced before the eviction

    def test_gdsf_evicts_formerly_hot_key_when_new_keys_keep_getting_hits(self) -> None:
        policy = GDSFPolicy(100)
        policy.admit(k("old"), 10)
        for _ in range(4):
            policy.touch(k("old"))  # H = 5/10, fixed until touched again
        evicted_at = None
        for i in range(200):
            key = k(f"n{i}")
            victims = policy.admit(key, 10)
            policy.touch(key)  # each newcomer earns H = clock + 2/10
            if k("old") in victims:
                evicted_at = i
                break
        assert evicted_at is not None  # the rising clock overtook its stale priority
        assert policy.clock >= 5 / 10

    def test_gdsf_reprices_from_current_clock_when_touched(self) -> None:
        policy = GDSFPolicy(20)
        policy.admit(k("a"), 10)
        policy.admit(k("b"), 10)
        policy.admit(k("c"), 10)  # evicts a, clock 0.1
        policy.touch(k("b"))
        assert policy.priority(k("b")) == pytest.approx(policy.clock + 2 / 10)


class TestGDSFBookkeeping:
    def test_gdsf_returns_key_itself_when_larger_than_budget(self) -> None:
        policy = _typed(GDSFPolicy(100))
        assert policy.admit(k("huge"), 101) == [k("huge")]
        assert k("huge") not in policy and policy.used_bytes == 0

    def test_gdsf_resizes_and_counts_hit_when_tracked_key_admitted_again(self) -> None:
        policy = GDSFPolicy(100)
        policy.admit(k("a"), 10)
        assert policy.admit(k("a"), 25) == []
        assert policy.used_bytes == 25 and len(policy) == 1 and policy.frequency(k("a")) == 2

    def test_gdsf_frees_bytes_without_moving_clock_when_forgotten(self) -> None:
        policy = GDSFPolicy(100)
        policy.admit(k("a"), 10)
        policy.forget(k("a"))
        policy.forget(k("a"))
        assert policy.used_bytes == 0 and len(policy) == 0 and policy.clock == 0.0

    def test_gdsf_keeps_heap_bounded_when_touched_many_times(self) -> None:
        policy = GDSFPolicy(100)
        policy.admit(k("a"), 10)
        policy.admit(k("b"), 10)
        for _ in range(10_000):
            policy.touch(k("a"))
        assert len(policy._heap) <= 2 * len(policy) + 64

    def test_gdsf_tracks_bytes_exactly_when_driven_randomly(self) -> None:
        rng = random.Random(11)
        policy = GDSFPolicy(10_000)
        resident: dict[bytes, int] = {}
        for _ in range(20_000):
            key = k(f"r{rng.randrange(300)}")
            action = rng.random()
            if action < 0.5 and key in resident:
                policy.touch(key)
            elif action < 0.55:
                policy.forget(key)
                resident.pop(key, None)
            else:
                size = rng.randrange(1, 3000)
                victims = policy.admit(key, size)
                resident[key] = size
                for victim in victims:
                    del resident[victim]
            assert policy.used_bytes == sum(resident.values()) <= 10_000
            assert len(policy) == len(resident)
            assert all(key in policy for key in resident)

    def test_gdsf_evicts_same_keys_as_eager_reference_when_driven_randomly(self) -> None:
        # A plain-Python GDSF that re-prices eagerly and scans for the minimum: the lazy heap
        # must pick the same victims (ties broken by the order keys were last pushed).
        rng = random.Random(3)
        policy = GDSFPolicy(5_000)
        prio: dict[bytes, float] = {}
        freq: dict[bytes, int] = {}
        size: dict[bytes, int] = {}
        clock = 0.0
        for _ in range(5_000):
            key = k(f"e{rng.randrange(200)}")
            if key in prio:
                policy.touch(key)
                freq[key] += 1
                prio[key] = clock + freq[key] / size[key]
                continue
            n = rng.randrange(1, 800)
            victims = policy.admit(key, n)
            prio[key], freq[key], size[key] = clock + 1 / n, 1, n
            expected = []
            while sum(size.values()) > 5_000:
                low = min(prio.values())
                lowest = [v for v in prio if prio[v] == low and v in victims]
                assert lowest, "the policy kept a key with the minimum H and evicted another"
                victim = lowest[0]
                clock = low
                expected.append(victim)
                del prio[victim], freq[victim], size[victim]
            assert sorted(victims) == sorted(expected)
            assert policy.clock == clock
