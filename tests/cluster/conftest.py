"""Fixtures for the cluster tests: the aiohttp `session` the origin tests use as well.

The peer client's tests run on both event loops the node can use, asyncio's and uvloop
(production): their transports differ (flow control, close ordering).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop

from tests.origin.servers import session

__all__ = ["session"]

_BOTH_LOOPS = ("test_peer.py", "test_peer_pool.py", "test_peer_internal.py")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if item.path.name in _BOTH_LOOPS:
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}
