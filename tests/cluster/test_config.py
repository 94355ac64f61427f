"""Peer timeouts derived along the chain: each hop waits longer than the hop behind it — pure."""

from __future__ import annotations

import pytest

from cluster.config import ClusterConfig, OriginBudget, chain_timeouts, max_hops
from origin.config import OriginPoolConfig, RetryConfig, ServerConfig, TimeoutConfig

pytestmark = pytest.mark.timeout(10)


def pool(
    name: str, servers: int = 1, *, attempts: int = 2, backup: str | None = None, **t: float
) -> OriginPoolConfig:
    return OriginPoolConfig(
        name=name,
        servers=tuple(ServerConfig(url=f"http://127.0.0.1:{9000 + i}") for i in range(servers)),
        retry=RetryConfig(attempts=attempts),
        timeouts=TimeoutConfig(**t),
        backup=backup,
    )


class TestOriginBudget:
    def test_one_server_pool_gets_one_first_byte_timeout_when_retries_need_another_server(self) -> None:
        pools = {"web": pool("web", first_byte_s=10.0)}
        assert OriginBudget.of_pool("web", pools) == OriginBudget(10.0, 10.0, 60.0)

    def test_retries_on_other_servers_add_up_but_stay_within_total(self) -> None:
        pools = {"a": pool("a", 3, attempts=3, first_byte_s=10.0, total_s=25.0)}
        assert OriginBudget.of_pool("a", pools).head_s == 25.0

    def test_backup_pool_adds_its_own_budget_when_configured(self) -> None:
        pools = {"a": pool("a", backup="b", first_byte_s=4.0), "b": pool("b", first_byte_s=3.0, total_s=30.0)}
        assert OriginBudget.of_pool("a", pools) == OriginBudget(7.0, 10.0, 90.0)


class TestChain:
    def test_max_hops_is_one_when_region_has_no_parent(self) -> None:
        assert max_hops({"r1": None}) == 1 and max_hops({}) == 1

    def test_max_hops_counts_every_ancestor_region_when_shielded(self) -> None:
        assert max_hops({"edge": "shield", "shield": "core", "core": None, "other": None}) == 3

    def test_chain_timeouts_outlast_slowest_pool_by_a_margin_per_hop(self) -> None:
        budgets = (OriginBudget(10.0, 10.0, 60.0), OriginBudget(4.0, 20.0, 30.0))
        assert chain_timeouts(budgets, 2, 0.5) == (11.0, 21.0, 61.0)

    def test_chained_derives_unset_timeouts_from_origin_pools_and_regions(self) -> None:
        config = ClusterConfig(secret="s").chained(
            {"web": pool("web", first_byte_s=12.0)}, {"edge": "shield", "shield": None}
        )
        timeouts = config.peer_timeouts
        # the inversion (5 s edge wait in front of a 10 s origin wait) cannot happen
        assert (timeouts.first_byte_s, timeouts.idle_s, timeouts.total_s) == (13.0, 11.0, 61.0)
        assert timeouts.first_byte_s > 12.0

    def test_chained_keeps_timeouts_when_config_sets_them(self) -> None:
        config = ClusterConfig(secret="s", peer_first_byte_timeout_s=1.5).chained(
            {"web": pool("web", first_byte_s=12.0)}, {"r1": None}
        )
        assert config.peer_timeouts.first_byte_s == 1.5 and config.peer_timeouts.idle_s == 10.5

    def test_peer_timeouts_outlast_default_origin_when_not_chained(self) -> None:
        timeouts = ClusterConfig(secret="s").peer_timeouts
        assert timeouts.first_byte_s > TimeoutConfig().first_byte_s

    @pytest.mark.parametrize("key", ["peer_first_byte_timeout_s", "peer_deadline_margin_s"])
    def test_config_rejects_non_positive_timeout_when_given(self, key: str) -> None:
        with pytest.raises(ValueError, match=key):
            ClusterConfig(secret="s", **{key: 0.0})  # type: ignore[arg-type]
