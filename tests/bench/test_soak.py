"""bench/load/soak.py's arithmetic: the RSS slope it reports is a least-squares fit in MiB/min."""

from __future__ import annotations

import pytest

from bench.load.soak import slope_per_min

pytestmark = pytest.mark.timeout(10)

MiB = 2**20


def test_slope_reads_one_mib_per_minute_when_rss_grows_linearly() -> None:
    samples = [(t, 100 * MiB + t * MiB // 60) for t in range(0, 600, 5)]
    assert slope_per_min(samples) == pytest.approx(1.0, rel=1e-3)


def test_slope_is_zero_when_rss_only_wobbles() -> None:
    samples = [(t, 100 * MiB + (MiB if (t // 5) % 2 else 0)) for t in range(0, 600, 5)]
    assert abs(slope_per_min(samples)) < 0.01


def test_slope_is_zero_when_there_are_too_few_samples() -> None:
    assert slope_per_min([(0, 5 * MiB)]) == 0.0
