"""Balancer: round robin and least outstanding over the eligible servers — pure."""

from __future__ import annotations

import pytest

from origin.balance import Balancer, panic_pick
from origin.config import Balance, OriginPoolConfig, ServerConfig

pytestmark = pytest.mark.timeout(10)

ALL = [True, True, True]
IDLE = [0, 0, 0]


class TestRoundRobin:
    def test_pick_cycles_through_servers_when_all_are_eligible(self) -> None:
        balancer = Balancer(Balance.ROUND_ROBIN)
        assert [balancer.pick(ALL, IDLE) for _ in range(4)] == [0, 1, 2, 0]

    def test_pick_skips_ineligible_server_when_its_turn_comes(self) -> None:
        balancer = Balancer(Balance.ROUND_ROBIN)
        assert [balancer.pick([True, False, True], IDLE) for _ in range(3)] == [0, 2, 0]

    def test_pick_ignores_outstanding_counts_when_round_robin(self) -> None:
        balancer = Balancer(Balance.ROUND_ROBIN)
        assert [balancer.pick(ALL, [9, 0, 0]) for _ in range(2)] == [0, 1]

    def test_pick_returns_none_when_no_server_is_eligible(self) -> None:
        assert Balancer(Balance.ROUND_ROBIN).pick([False, False], [0, 0]) is None


class TestLeastOutstanding:
    def test_pick_takes_fewest_in_flight_when_counts_differ(self) -> None:
        balancer = Balancer(Balance.LEAST_OUTSTANDING)
        assert balancer.pick(ALL, [3, 1, 2]) == 1

    def test_pick_breaks_ties_round_robin_when_counts_are_equal(self) -> None:
        balancer = Balancer(Balance.LEAST_OUTSTANDING)
        assert [balancer.pick(ALL, IDLE) for _ in range(4)] == [0, 1, 2, 0]

    def test_pick_prefers_next_in_turn_among_least_busy_when_some_tie(self) -> None:
        balancer = Balancer(Balance.LEAST_OUTSTANDING)
        assert balancer.pick(ALL, [0, 5, 0]) == 0
        assert balancer.pick(ALL, [0, 5, 0]) == 2  # the tie goes round, not always to 0

    def test_pick_skips_idle_server_when_it_is_not_eligible(self) -> None:
        balancer = Balancer(Balance.LEAST_OUTSTANDING)
        assert balancer.pick([False, True, True], [0, 4, 2]) == 2


class TestStrategyNames:
    def test_balancer_refuses_name_when_it_is_no_strategy(self) -> None:
        with pytest.raises(ValueError, match="random"):
            Balancer("random")  # type: ignore[arg-type]

    def test_pool_config_refuses_balance_when_given_a_bare_string(self) -> None:
        with pytest.raises(ValueError, match="round_robin, least_outstanding"):
            OriginPoolConfig(
                name="web",
                servers=(ServerConfig(url="http://127.0.0.1:8000"),),
                balance="round_robin",  # type: ignore[arg-type]
            )


class TestPanicPick:
    def test_picks_least_recently_failed_untried_server(self) -> None:
        assert panic_pick([False, False, False], [5, 2, 9]) == 1

    def test_prefers_never_failed_server_and_breaks_ties_by_index(self) -> None:
        assert panic_pick([False, False, False], [3, 0, 0]) == 1

    def test_skips_tried_servers_and_returns_none_when_all_were_tried(self) -> None:
        assert panic_pick([False, True, False], [4, 1, 2]) == 2
        assert panic_pick([True, True], [1, 2]) is None
