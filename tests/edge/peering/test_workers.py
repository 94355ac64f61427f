"""The owner-worker choice (issue 13): every worker process of a machine computes the same owner."""

from __future__ import annotations

import collections

import pytest

from edge.peering.workers import Siblings, owner_worker
from edge.rules.key import make_key


def _ids(n: int) -> list[bytes]:
    return [make_key("http", "example.test", f"/object/{i}").id for i in range(n)]


class TestOwnerWorker:
    def test_owner_worker_is_zero_when_there_is_one_worker(self) -> None:
        assert {owner_worker(key, 1) for key in _ids(100)} == {0}

    def test_owner_worker_is_a_function_of_the_id_alone(self) -> None:
        ids = _ids(200)
        assert [owner_worker(k, 4) for k in ids] == [owner_worker(bytes(k), 4) for k in ids]

    @pytest.mark.parametrize("count", [2, 3, 8])
    def test_owner_worker_spreads_keys_evenly_when_there_are_several_workers(self, count: int) -> None:
        shares = collections.Counter(owner_worker(k, count) for k in _ids(20_000))
        assert set(shares) == set(range(count))
        expected = 20_000 / count
        assert all(abs(n - expected) < 0.1 * expected for n in shares.values()), shares

    def test_owner_worker_reads_the_second_half_of_the_id(self) -> None:
        key = bytes(8) + (5).to_bytes(8, "little")
        assert owner_worker(key, 3) == 5 % 3
        assert owner_worker(b"\xff" * 8 + key[8:], 3) == 5 % 3


class TestSiblings:
    def test_siblings_owner_is_none_for_the_keys_this_worker_owns(self) -> None:
        view = Siblings(index=1, count=3, clients={})
        for key in _ids(300):
            owner = owner_worker(key, 3)
            assert view.owner(key) == (None if owner == 1 else owner)

    def test_siblings_refuse_an_index_outside_the_count(self) -> None:
        with pytest.raises(ValueError):
            Siblings(index=3, count=3, clients={})
