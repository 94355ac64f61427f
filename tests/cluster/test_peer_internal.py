"""PeerClient never carries a client request to a peer's internal endpoints (issue 12)."""

from __future__ import annotations

import pytest

from origin.errors import InvalidTarget
from tests.cluster.test_peer import RecordingPeer, client, close_clients, get

__all__ = ["close_clients"]  # the autouse fixture closing the clients

pytestmark = pytest.mark.timeout(10)


class TestInternalTargets:
    @pytest.mark.parametrize(
        "target",
        ["/_edge/health", "/_edge/purge", '/_edge/purges?cursor={"a":0}', "/%5Fedge/purges", "//_edge/x"],
    )
    async def test_fetch_refuses_without_sending_when_target_is_internal(self, target: str) -> None:
        async with RecordingPeer() as server:
            with pytest.raises(InvalidTarget) as caught:
                await client(server.port).fetch(get(target))
        assert server.requests == [] and not caught.value.retryable
