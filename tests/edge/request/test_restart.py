"""How often the miss path may look a key up again, per reason (edge/request/restart.py)."""

from __future__ import annotations

import pytest

from edge.request.restart import MAX_RESTARTS, RestartReason, may_restart

pytestmark = pytest.mark.timeout(10)


def test_may_restart_allows_two_lookups_after_revalidation_when_entry_keeps_vanishing() -> None:
    assert may_restart(RestartReason.REVALIDATED, 0)
    assert may_restart(RestartReason.REVALIDATED, 1)
    assert not may_restart(RestartReason.REVALIDATED, 2)


def test_may_restart_allows_one_lookup_when_joined_fill_is_another_variant() -> None:
    assert may_restart(RestartReason.VARY_MISMATCH, 0)
    assert not may_restart(RestartReason.VARY_MISMATCH, 1)


def test_may_restart_counts_restarts_of_any_reason_when_reasons_mix() -> None:
    # a vary restart then a 304 restart: a second vary mismatch gives up
    assert may_restart(RestartReason.REVALIDATED, 1)
    assert not may_restart(RestartReason.VARY_MISMATCH, 2)


@pytest.mark.parametrize("reason", list(RestartReason))
def test_may_restart_refuses_every_reason_when_max_restarts_reached(reason: RestartReason) -> None:
    assert not may_restart(reason, MAX_RESTARTS)
