"""Fixtures for the origin tests: an aiohttp session, and the demo origin with a client on it.

`origin` is a demo origin counting requests with ArrivalStats; a module that needs another
demo origin (e.g. one serving a static site) overrides `origin`, and `http` follows it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from origin.demo.server import DemoOrigin, start_demo_origin
from tests.origin.servers import ArrivalStats, session

__all__ = ["http", "origin", "session"]


@pytest.fixture
async def origin() -> AsyncIterator[DemoOrigin]:
    server = await start_demo_origin(stats=ArrivalStats())
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def http(origin: DemoOrigin) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=origin.url) as session:
        yield session
