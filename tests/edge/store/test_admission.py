"""Disk admission: admit-all, and the second-hit counting filter with its two-generation window."""

from __future__ import annotations

import pytest
import xxhash

from edge.store.admission import (
    WINDOW_PER_OBJECT,
    AdmissionMode,
    AdmitAll,
    SecondHitFilter,
    make_admission,
)


def key(i: int) -> bytes:
    return xxhash.xxh3_128_digest(f"https://example.com/{i}".encode())


class TestSecondHitFilter:
    def test_filter_refuses_first_miss_and_admits_second_when_within_window(self) -> None:
        f = SecondHitFilter(1000)
        assert not f.should_admit(key(1))
        assert f.should_admit(key(1))
        assert f.should_admit(key(1))

    def test_filter_admits_on_third_miss_when_three_hits_required(self) -> None:
        f = SecondHitFilter(1000, hits=3)
        assert [f.should_admit(key(1)) for _ in range(3)] == [False, False, True]

    def test_filter_remembers_key_for_one_more_generation_when_window_rolls(self) -> None:
        f = SecondHitFilter(100)
        f.should_admit(key(0))
        for i in range(1, 150):  # the generation rolls at 100 misses
            f.should_admit(key(i))
        assert f.count(key(0)) == 1
        assert f.should_admit(key(0))

    def test_filter_forgets_key_when_two_windows_passed(self) -> None:
        f = SecondHitFilter(100)
        f.should_admit(key(0))
        for i in range(1, 201):
            f.should_admit(key(i))
        assert f.count(key(0)) == 0
        assert not f.should_admit(key(0))

    def test_filter_window_follows_disk_object_count_when_adaptive(self) -> None:
        f = SecondHitFilter(None, min_window=100)
        assert f.window == 100
        for i in range(100):
            f.should_admit(key(i), 10_000)  # the generation rolls: next one lasts 5000 misses
        assert f.window == 5000 == 10_000 * WINDOW_PER_OBJECT
        f.should_admit(key(-1), 10_000)
        for i in range(1000, 5000):
            f.should_admit(key(i), 10_000)
        assert f.should_admit(key(-1), 10_000)  # 4000 misses later: still within the window
        for i in range(5000, 5000 + 5000):
            f.should_admit(key(i), 50)  # the disk shrank: the next window is the minimum
        assert f.window == 100

    def test_filter_keeps_previous_generation_when_counter_arrays_resize(self) -> None:
        f = SecondHitFilter(None, min_window=100)
        f.should_admit(key(0), 0)
        for i in range(1, 100):
            f.should_admit(key(i), 10_000)  # rolls into a bigger array
        assert f.count(key(0)) == 1 and f.should_admit(key(0), 10_000)

    def test_filter_admits_few_one_hit_wonders_when_keys_are_unique(self) -> None:
        f = SecondHitFilter(10_000)
        admitted = sum(f.should_admit(key(i)) for i in range(100_000))
        assert admitted < 100_000 * 0.05  # false admissions from counter collisions

    def test_filter_saturates_counters_when_key_is_very_hot(self) -> None:
        f = SecondHitFilter(10_000)
        for _ in range(300):
            f.should_admit(key(5))
        assert f.count(key(5)) == 255

    def test_filter_uses_bounded_memory_when_built(self) -> None:
        assert SecondHitFilter(50_000).memory_bytes <= 2 * 16 * 2 * 50_000

    @pytest.mark.parametrize(("window", "hits"), [(0, 2), (-1, 2), (10, 0), (10, 256)])
    def test_filter_refuses_bad_settings_when_built(self, window: int, hits: int) -> None:
        with pytest.raises(ValueError):
            SecondHitFilter(window, hits=hits)


def test_make_admission_builds_the_configured_filter() -> None:
    assert isinstance(make_admission(AdmissionMode.ALL, 10), AdmitAll)
    chosen = make_admission(AdmissionMode.SECOND_HIT, 10)
    assert isinstance(chosen, SecondHitFilter) and chosen.window == 10
    adaptive = make_admission(AdmissionMode.SECOND_HIT, 0)  # 0: the adaptive window
    assert isinstance(adaptive, SecondHitFilter) and adaptive.window == 256
    assert AdmitAll().should_admit(key(1), 0)
