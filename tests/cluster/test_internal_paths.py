"""Internal endpoint targets, however spelt (issue 12)."""

from __future__ import annotations

import pytest

from cluster.internal_paths import is_internal_target
from cluster.members import HEALTH_PATH
from cluster.purge_wire import PURGE_PATH, PURGES_PATH


class TestIsInternalTarget:
    @pytest.mark.parametrize(
        "target",
        [
            HEALTH_PATH, PURGE_PATH, PURGES_PATH + '?cursor={"a":0}', "/_edge", "/_edge/", "/_EDGE/purges",
            "//_edge/purges", "/x/../_edge/purges", "/%5Fedge/purges", "/%5fedge%2Fpurges", "/%255Fedge/purges",
            "/_edge;x/purges", "/.//_edge/health", "\\_edge\\health", "/_edge%3Bx/purges", "/a/%2E%2E/_edge/purge",
        ],
    )
    def test_is_internal_when_some_reading_reaches_edge_prefix(self, target: str) -> None:
        assert is_internal_target(target)

    @pytest.mark.parametrize("target", ["/", "/_edges/x", "/edge/purge", "/a/_edge/purge", "/x?next=/_edge/purge"])
    def test_is_not_internal_when_path_is_elsewhere(self, target: str) -> None:
        assert not is_internal_target(target)
