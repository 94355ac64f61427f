"""Where a miss is filled from and which store keeps the answer (edge/fill/route.py)."""

from __future__ import annotations

import pytest

from edge.fill.route import FillRoute, FillSource, FillStore, asks_hot, plan_fill_route

pytestmark = pytest.mark.timeout(10)


def route(
    *,
    from_peer: bool = False,
    owner: str | None = None,
    parent: str | None = None,
    stale_in: FillStore | None = None,
    hot: bool = False,
) -> FillRoute:
    return plan_fill_route(from_peer=from_peer, owner=owner, parent_owner=parent, stale_in=stale_in, is_hot=hot)


class TestLoneNode:
    def test_route_asks_origin_and_keeps_in_main_store_when_no_owner_and_no_parent(self) -> None:
        assert route() == FillRoute(FillSource.ORIGIN, None, FillStore.MAIN)

    def test_route_keeps_answer_where_stale_copy_lives_when_revalidating(self) -> None:
        assert route(stale_in=FillStore.HOT).store is FillStore.HOT

    def test_route_has_no_label_and_shares_fill_id_when_origin(self) -> None:
        plain = route()
        assert plain.label is None and not plain.own_fill


class TestRegionOwner:
    def test_route_asks_owner_and_keeps_nothing_when_key_is_not_hot(self) -> None:
        assert route(owner="edge2", parent="shield1") == FillRoute(FillSource.REGION_OWNER, "edge2", FillStore.NONE)

    def test_route_keeps_hot_copy_when_key_is_hot_here(self) -> None:
        assert route(owner="edge2", hot=True).store is FillStore.HOT

    def test_route_keeps_answer_where_stale_copy_lives_when_owner_revalidates(self) -> None:
        assert route(owner="edge2", stale_in=FillStore.MAIN, hot=True).store is FillStore.MAIN

    def test_route_labels_peer_and_takes_own_fill_id_when_owner_asked(self) -> None:
        owned = route(owner="edge2")
        assert owned.label == "peer-edge2"
        assert owned.own_fill  # a peer's request must never join a fill that waits on a peer


class TestShield:
    def test_route_asks_shield_and_keeps_in_main_store_when_this_node_owns_key(self) -> None:
        assert route(parent="shield1") == FillRoute(FillSource.SHIELD, "shield1", FillStore.MAIN)

    def test_route_never_asks_region_owner_when_request_came_from_peer(self) -> None:
        assert route(from_peer=True, owner="edge2", parent="shield1").source is FillSource.SHIELD
        assert route(from_peer=True, owner="edge2").source is FillSource.ORIGIN

    def test_route_labels_shield_and_shares_fill_id_when_shield_asked(self) -> None:
        shield = route(parent="shield1")
        assert shield.label == "shield-shield1" and not shield.own_fill


class TestAsksHot:
    def test_asks_hot_only_when_owner_asked_without_stale_copy(self) -> None:
        assert asks_hot(from_peer=False, owner="edge2", stale_in=None)
        assert not asks_hot(from_peer=False, owner="edge2", stale_in=FillStore.MAIN)
        assert not asks_hot(from_peer=False, owner=None, stale_in=None)
        assert not asks_hot(from_peer=True, owner="edge2", stale_in=None)

    @pytest.mark.parametrize("hot", [False, True])
    def test_route_ignores_hotness_when_asks_hot_says_no(self, hot: bool) -> None:
        assert route(parent="shield1", hot=hot).store is FillStore.MAIN
        assert route(owner="edge2", stale_in=FillStore.MAIN, hot=hot).store is FillStore.MAIN
