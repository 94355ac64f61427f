"""Eviction policies: LRU order, and S3-FIFO's small queue, ghost queue and main queue."""

from __future__ import annotations

import random

import pytest

from edge.store.eviction import EvictionPolicy, LRUPolicy
from edge.store.s3fifo import MAX_FREQ, S3FIFOPolicy


def k(name: str) -> bytes:
    return name.encode().ljust(16, b"\x00")


def _typed(policy: S3FIFOPolicy | LRUPolicy) -> EvictionPolicy:
    return policy  # mypy checks both satisfy the protocol


class TestLRUPolicy:
    def test_lru_evicts_least_recent_when_over_budget(self) -> None:
        policy = LRUPolicy(30)
        assert [policy.admit(k(n), 10) for n in "abc"] == [[], [], []]
        assert policy.admit(k("d"), 10) == [k("a")]
        assert policy.admit(k("e"), 20) == [k("b"), k("c")]

    def test_lru_keeps_touched_key_when_evicting(self) -> None:
        policy = LRUPolicy(30)
        for n in "abc":
            policy.admit(k(n), 10)
        policy.touch(k("a"))
        assert policy.admit(k("d"), 10) == [k("b")]
        assert k("a") in policy

    def test_lru_frees_bytes_when_key_forgotten(self) -> None:
        policy = LRUPolicy(30)
        policy.admit(k("a"), 10)
        policy.admit(k("b"), 20)
        policy.forget(k("a"))
        assert policy.used_bytes == 20 and len(policy) == 1
        assert policy.admit(k("c"), 10) == []

    def test_lru_resizes_when_tracked_key_admitted_again(self) -> None:
        policy = LRUPolicy(30)
        policy.admit(k("a"), 10)
        policy.admit(k("a"), 25)
        assert policy.used_bytes == 25 and len(policy) == 1

    @pytest.mark.parametrize("make", [LRUPolicy, S3FIFOPolicy])
    def test_policy_returns_key_itself_when_larger_than_budget(self, make: type) -> None:
        policy = _typed(make(100))
        assert policy.admit(k("huge"), 101) == [k("huge")]
        assert k("huge") not in policy and policy.used_bytes == 0


class TestS3FIFOSmallQueue:
    def test_s3fifo_admits_new_keys_to_small_queue_when_unseen(self) -> None:
        policy = S3FIFOPolicy(1000)
        policy.admit(k("a"), 10)
        assert policy.in_small(k("a")) and not policy.in_main(k("a"))

    def test_s3fifo_evicts_one_hit_wonders_from_small_queue_when_full(self) -> None:
        policy = S3FIFOPolicy(1000)  # small queue: 100 bytes, ten objects of 10
        hot = [k(f"hot{i}") for i in range(5)]
        for key in hot:
            policy.admit(key, 10)
            policy.touch(key)
        victims: list[bytes] = []
        cold = [k(f"cold{i}") for i in range(300)]
        for key in cold:
            victims += policy.admit(key, 10)
        assert all(policy.in_main(key) for key in hot)
        assert victims == cold[: len(victims)]  # oldest one-hit wonders first, FIFO
        assert all(policy.in_ghost(key) for key in victims[-50:])
        assert policy.used_bytes <= 1000

    def test_s3fifo_moves_touched_key_to_main_when_it_leaves_small(self) -> None:
        policy = S3FIFOPolicy(100)  # small queue: 10 bytes
        policy.admit(k("a"), 10)
        policy.touch(k("a"))
        for i in range(10):
            policy.admit(k(f"f{i}"), 10)
        assert policy.in_main(k("a"))
        assert policy.frequency(k("a")) == 0  # a fresh start in main


class TestS3FIFOGhostQueue:
    def test_s3fifo_readmits_to_main_when_ghost_remembers_key(self) -> None:
        policy = S3FIFOPolicy(100)
        victims: list[bytes] = []
        for i in range(12):
            victims += policy.admit(k(f"g{i}"), 10)
        assert victims[0] == k("g0") and policy.in_ghost(k("g0"))
        policy.admit(k("g0"), 10)
        assert policy.in_main(k("g0"))
        assert not policy.in_ghost(k("g0")) and not policy.in_small(k("g0"))

    def test_s3fifo_forgets_ghost_when_ghost_queue_exceeds_main_size(self) -> None:
        policy = S3FIFOPolicy(100)  # ghost remembers up to 90 bytes
        for i in range(40):
            policy.admit(k(f"g{i}"), 10)
        assert not policy.in_ghost(k("g0"))
        assert policy.in_ghost(k(f"g{40 - 11}"))

    def test_s3fifo_skips_ghost_when_key_forgotten(self) -> None:
        policy = S3FIFOPolicy(100)
        policy.admit(k("a"), 10)
        policy.forget(k("a"))
        assert k("a") not in policy and not policy.in_ghost(k("a"))
        assert policy.used_bytes == 0


class TestS3FIFOMainQueue:
    @staticmethod
    def _full_main() -> tuple[S3FIFOPolicy, list[bytes]]:
        # 100 touched keys of 10 bytes fill 1000 bytes; one more pushes 92 of them into main
        # and evicts the oldest main key.
        policy = S3FIFOPolicy(1000)
        keys = [k(f"m{i}") for i in range(100)]
        for key in keys:
            policy.admit(key, 10)
            policy.touch(key)
        assert policy.admit(k("n0"), 10) == [keys[0]]
        return policy, keys

    def test_s3fifo_evicts_oldest_main_key_when_small_queue_is_short(self) -> None:
        policy, keys = self._full_main()
        assert all(policy.in_main(key) for key in keys[1:92])

    def test_s3fifo_gives_second_chance_when_main_key_was_hit(self) -> None:
        policy, keys = self._full_main()
        policy.touch(keys[1])
        victims = policy.admit(k("n1"), 10)
        assert victims == [keys[2]]
        assert policy.in_main(keys[1]) and policy.frequency(keys[1]) == 0

    def test_s3fifo_caps_frequency_when_touched_often(self) -> None:
        policy = S3FIFOPolicy(1000)
        policy.admit(k("a"), 10)
        for _ in range(10):
            policy.touch(k("a"))
        assert policy.frequency(k("a")) == MAX_FREQ == 3

    def test_s3fifo_never_evicts_admitted_key_when_it_fills_small_queue(self) -> None:
        policy = S3FIFOPolicy(100)
        for i in range(9):
            policy.admit(k(f"x{i}"), 10)
        victims = policy.admit(k("big"), 50)  # larger than the 10-byte small queue
        assert k("big") not in victims and k("big") in policy
        assert policy.used_bytes <= 100


class TestPolicyInvariants:
    @pytest.mark.parametrize("make", [LRUPolicy, S3FIFOPolicy])
    def test_policy_tracks_bytes_exactly_when_driven_randomly(self, make: type) -> None:
        rng = random.Random(7)
        policy = _typed(make(10_000))
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
                size = rng.randrange(1, 600)
                victims = policy.admit(key, size)
                assert key not in victims
                resident[key] = size
                for victim in victims:
                    del resident[victim]
            assert policy.used_bytes == sum(resident.values()) <= 10_000
            assert len(policy) == len(resident)
