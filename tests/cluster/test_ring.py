"""Ring: ownership, fallbacks, key movement and balance on 100,000 keys, weights, determinism."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter

import pytest

from cluster.ring import DEFAULT_VNODES, EmptyRingError, Ring

pytestmark = pytest.mark.timeout(60)

KEY_COUNT = 100_000


@pytest.fixture(scope="module")
def keys() -> list[bytes]:
    """100,000 random 16-byte cache ids, the same on every run."""
    rnd = random.Random(20240503)
    return [rnd.randbytes(16) for _ in range(KEY_COUNT)]


def names(count: int) -> list[str]:
    return [f"edge{i}" for i in range(1, count + 1)]


def owners(ring: Ring, keys: list[bytes]) -> list[str]:
    return [ring.owner(key) for key in keys]


class TestOwner:
    def test_owner_is_a_member_when_ring_has_nodes(self, keys: list[bytes]) -> None:
        ring = Ring(names(3))
        assert set(owners(ring, keys[:1000])) == {"edge1", "edge2", "edge3"}

    def test_owner_raises_empty_ring_error_when_ring_has_no_nodes(self) -> None:
        ring = Ring([])
        with pytest.raises(EmptyRingError):
            ring.owner(b"k" * 16)
        with pytest.raises(EmptyRingError):
            next(ring.preference(b"k" * 16))
        assert len(ring) == 0 and ring.nodes == ()

    def test_owner_is_the_only_node_when_ring_has_one(self, keys: list[bytes]) -> None:
        ring = Ring(["solo"])
        assert set(owners(ring, keys[:1000])) == {"solo"}
        assert list(ring.preference(keys[0])) == ["solo"]

    def test_owner_is_independent_of_node_order_when_same_nodes_given(
        self, keys: list[bytes]
    ) -> None:
        forward, backward = Ring(names(5)), Ring(list(reversed(names(5))))
        assert owners(forward, keys[:5000]) == owners(backward, keys[:5000])
        assert forward == backward and hash(forward) == hash(backward)

    def test_owner_is_the_same_in_another_process_when_hash_seed_differs(
        self, keys: list[bytes]
    ) -> None:
        sample = keys[:200]
        script = (
            "import sys\n"
            "from cluster.ring import Ring\n"
            "ring = Ring({'edge1': 1.0, 'edge2': 2.0, 'edge3': 1.0})\n"
            "keys = [bytes.fromhex(h) for h in sys.stdin.read().split()]\n"
            "print(' '.join(ring.owner(k) for k in keys))\n"
        )
        local = Ring({"edge1": 1.0, "edge2": 2.0, "edge3": 1.0})
        expected = " ".join(local.owner(k) for k in sample)
        for seed in ("1", "4242"):
            result = subprocess.run(
                [sys.executable, "-c", script],
                input=" ".join(k.hex() for k in sample),
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
                env={**os.environ, "PYTHONHASHSEED": seed},
            )
            assert result.stdout.strip() == expected

    def test_owner_accepts_any_key_length_when_key_is_not_a_cache_id(self) -> None:
        ring = Ring(names(3))
        assert ring.owner(b"") in ring and ring.owner(b"x" * 1000) in ring


class TestPreference:
    def test_preference_starts_with_owner_and_lists_each_node_once_when_iterated(
        self, keys: list[bytes]
    ) -> None:
        ring = Ring(names(5))
        for key in keys[:500]:
            order = list(ring.preference(key))
            assert order[0] == ring.owner(key)
            assert sorted(order) == sorted(ring.nodes)

    def test_preference_fallback_is_next_owner_when_owner_is_removed(
        self, keys: list[bytes]
    ) -> None:
        ring = Ring(names(5))
        for key in keys[:500]:
            first, second, *_ = ring.preference(key)
            assert ring.without(first).owner(key) == second


class TestMembershipChanges:
    def test_without_and_with_node_return_new_rings_when_called(self) -> None:
        ring = Ring(names(3))
        smaller = ring.without("edge2")
        bigger = ring.with_node("edge9", 2.0)
        assert ring.nodes == ("edge1", "edge2", "edge3")
        assert smaller.nodes == ("edge1", "edge3") and len(smaller) == 2
        assert bigger.nodes == ("edge1", "edge2", "edge3", "edge9")
        assert bigger.weights["edge9"] == 2.0 and "edge9" in bigger
        assert ring.without("absent") == ring

    @pytest.mark.parametrize("count", [3, 5, 10])
    def test_removal_moves_only_removed_nodes_keys_when_one_of_n_leaves(
        self, keys: list[bytes], count: int
    ) -> None:
        ring = Ring(names(count))
        before = owners(ring, keys)
        after = owners(ring.without("edge2"), keys)
        moved = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        assert all(before[i] == "edge2" for i in moved)
        assert len(moved) == before.count("edge2")  # every key of the leaver found a new home
        assert 0.5 / count <= len(moved) / KEY_COUNT <= 1.5 / count

    @pytest.mark.parametrize("count", [3, 5, 10])
    def test_addition_moves_keys_only_to_new_node_when_one_joins_n(
        self, keys: list[bytes], count: int
    ) -> None:
        ring = Ring(names(count))
        before = owners(ring, keys)
        after = owners(ring.with_node("newcomer"), keys)
        moved = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        assert all(after[i] == "newcomer" for i in moved)
        assert 0.5 / (count + 1) <= len(moved) / KEY_COUNT <= 1.5 / (count + 1)


class TestBalance:
    @pytest.mark.parametrize("count", [3, 10])
    def test_busiest_node_holds_at_most_115_percent_of_mean_when_vnodes_default(
        self, keys: list[bytes], count: int
    ) -> None:
        ring = Ring(names(count))
        assert ring.vnodes == DEFAULT_VNODES
        load = Counter(owners(ring, keys))
        assert len(load) == count
        assert max(load.values()) <= 1.15 * KEY_COUNT / count

    @pytest.mark.parametrize("prefix", ["node-", "fra", "127.0.0."])
    def test_busiest_of_ten_stays_within_115_percent_when_names_differ(
        self, keys: list[bytes], prefix: str
    ) -> None:
        ring = Ring([f"{prefix}{i}" for i in range(10)])
        load = Counter(owners(ring, keys[:50_000]))
        assert max(load.values()) <= 1.15 * 50_000 / 10

    def test_double_weight_node_gets_about_twice_the_keys_when_weighted(
        self, keys: list[bytes]
    ) -> None:
        ring = Ring({"edge1": 1.0, "edge2": 1.0, "edge3": 2.0, "edge4": 1.0})
        load = Counter(owners(ring, keys))
        mean_single = (load["edge1"] + load["edge2"] + load["edge4"]) / 3
        assert 1.8 <= load["edge3"] / mean_single <= 2.2


class TestValidation:
    @pytest.mark.parametrize("weight", [0.0, -1.0, float("nan"), float("inf")])
    def test_ring_rejects_weight_when_not_finite_positive(self, weight: float) -> None:
        with pytest.raises(ValueError, match="weight"):
            Ring({"edge1": weight})

    def test_ring_rejects_vnodes_when_below_one(self) -> None:
        with pytest.raises(ValueError, match="vnodes"):
            Ring(["edge1"], vnodes=0)
