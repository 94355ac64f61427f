"""The steps of a stop that need no node: stop accepting, wait for work, close what start opened."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

import aiohttp

from edge.fill.coalesce import Coalescer
from edge.purge.invalidate import Invalidator
from edge.server.accesslog import AccessLog
from edge.server.connections import Connections
from edge.store.dirlock import DirLock
from edge.store.tiered import TieredStore
from origin.pool import OriginPool

__all__ = ["close_resources", "finish_fills", "stop_accepting", "wait_closed", "wait_requests"]

log = logging.getLogger("edge.app")


def stop_accepting(servers: Iterable[asyncio.Server | None], conns: Iterable[Connections | None]) -> None:
    """Listeners stop accepting; idle connections close now, busy ones after their answer."""
    for server in servers:
        if server is not None:
            server.close()  # stop accepting; open connections stay
    for each in conns:
        if each is not None:
            each.drain()  # idle ones closed now, busy ones after their answer


async def wait_requests(tasks: set[asyncio.Task[None]], timeout_s: float) -> None:
    """Lets request tasks run for up to timeout_s; says how many were still running after."""
    if tasks:
        _, running = await asyncio.wait(list(tasks), timeout=max(0.0, timeout_s))
        if running:
            log.warning("drain timeout: cutting off %d requests still running", len(running))


async def finish_fills(coalescer: Coalescer, grace_s: float) -> None:
    """Lets running fills finish and commit for up to grace_s, then abandons the rest."""
    left = await coalescer.drain(grace_s)
    if left:
        log.info("abandoning %d fills still running after %.1fs", left, grace_s)


async def close_resources(
    *,
    invalidator: Invalidator | None,
    coalescer: Coalescer | None,
    pools: Mapping[str, OriginPool],
    session: aiohttp.ClientSession | None,
    store: TieredStore | None,
    access_log: AccessLog | None,
    dir_lock: DirLock | None,
) -> None:
    """Closes what start opened, in this order; each may be absent when start stopped early."""
    if invalidator is not None:
        await invalidator.close()
    if coalescer is not None:
        await coalescer.close()
    for pool in pools.values():
        await pool.close()
    if session is not None:
        await session.close()
    if store is not None:
        await store.close()
    if access_log is not None:
        access_log.close()
    if dir_lock is not None:
        dir_lock.release()


async def wait_closed(server: asyncio.Server, deadline_s: float) -> None:
    """Waits for a closed listener to finish closing, at most deadline_s."""
    try:
        async with asyncio.timeout(deadline_s):
            await server.wait_closed()
    except TimeoutError:
        log.warning("listener did not close within %.0fs", deadline_s)
