"""edge.config.reload: what a SIGHUP applies live and what keeps its value until a restart."""

from __future__ import annotations

from typing import Any

import pytest

from edge.config.deployment import parse
from edge.config.reload import LiveChange, merge_live, plan_reload

pytestmark = pytest.mark.timeout(10)


def doc(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "nodes": {
            "e1": {"listen": "127.0.0.2:8080", "internal": "127.0.0.2:9080"},
            "e2": {"listen": "127.0.0.3:8080", "internal": "127.0.0.3:9080"},
        },
        "cluster": {"secret": "s3cret-s3cret"},
        "origins": {"web": {"servers": ["http://127.0.0.1:8000"]}},
        "routes": [{"host": "*", "origin": "web"}],
    }
    base.update(changes)
    return base


class TestPlan:
    def test_nothing_differs_when_the_file_is_the_same(self) -> None:
        assert plan_reload(parse(doc(), "e1"), parse(doc(), "e1")).empty

    def test_routes_and_policies_are_live_when_they_change(self) -> None:
        new = doc(routes=[{"host": "a.test", "origin": "web"}], policies=[{"default_ttl_s": 5}])
        plan = plan_reload(parse(doc(), "e1"), parse(new, "e1"))
        assert plan.live == {LiveChange.ROUTES, LiveChange.POLICIES} and plan.restart_only == ()

    def test_listen_address_and_disk_dir_need_a_restart_when_they_change(self) -> None:
        nodes = doc()["nodes"]
        nodes["e1"] = {"listen": "127.0.0.2:8081", "internal": "127.0.0.2:9080", "disk_dir": "/tmp/x"}
        plan = plan_reload(parse(doc(), "e1"), parse(doc(nodes=nodes), "e1"))
        assert set(plan.restart_only) >= {"nodes.e1.listen", "disk_dir"}

    def test_a_new_node_in_the_region_is_a_live_membership_change(self) -> None:
        nodes = {**doc()["nodes"], "e3": {"listen": "127.0.0.4:8080", "internal": "127.0.0.4:9080"}}
        plan = plan_reload(parse(doc(), "e1"), parse(doc(nodes=nodes), "e1"))
        assert plan.live == {LiveChange.MEMBERSHIP} and plan.restart_only == ()

    def test_a_new_secret_needs_a_restart_and_keeps_membership_as_is(self) -> None:
        plan = plan_reload(parse(doc(), "e1"), parse(doc(cluster={"secret": "another-secret"}), "e1"))
        assert "cluster.secret" in plan.restart_only and LiveChange.MEMBERSHIP not in plan.live


class TestMerge:
    def test_merged_config_keeps_start_bound_values_and_takes_live_ones(self) -> None:
        nodes = doc()["nodes"]
        nodes["e1"] = {"listen": "127.0.0.2:8081", "internal": "127.0.0.2:9080", "weight": 2.0}
        old = parse(doc(), "e1")
        new = parse(doc(nodes=nodes, routes=[{"host": "a.test", "origin": "web"}]), "e1")
        merged = merge_live(old, new, plan_reload(old, new).live)
        assert merged.routes == new.routes
        assert merged.node.port == 8080 and merged.node.weight == 2.0  # address kept, weight applied
        assert merged.nodes["e1"] == merged.node and merged.server == old.server
