"""Runs one node until a signal stops it; what each signal does.

    SIGTERM, SIGINT  graceful stop (edge.server.lifecycle): readiness 503, peers drop the node,
                     in-flight requests and fills finish within [server] drain_timeout_s, exit 0.
                     A second one cuts the drain short (requests cancelled, fills get 5 s).

Signal handlers only queue what was asked; the main coroutine acts on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
import sys

from edge.app import EdgeNode
from edge.config.deployment import EdgeConfig

__all__ = ["serve"]

log = logging.getLogger("edge")


class _Ask(enum.Enum):
    STOP = "stop"


async def serve(cfg: EdgeConfig) -> int:
    """Starts the node and serves until SIGTERM/SIGINT; returns the exit code (0)."""
    node = EdgeNode(cfg)
    await node.start()
    print(
        f"edgecache node {cfg.node.name} serving on http://{cfg.node.host}:{node.port}",
        file=sys.stderr,
        flush=True,
    )
    loop = asyncio.get_running_loop()
    asks: asyncio.Queue[_Ask] = asyncio.Queue(maxsize=64)
    drain: asyncio.Task[None] | None = None

    def ask(what: _Ask) -> None:
        if what is _Ask.STOP and drain is not None and not drain.done():
            log.warning("second stop signal: cutting the drain short")
            drain.cancel()
            return
        with contextlib.suppress(asyncio.QueueFull):  # a burst of signals: those queued say it
            asks.put_nowait(what)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, ask, _Ask.STOP)
    while await asks.get() is not _Ask.STOP:
        pass
    log.info("stopping node %s: draining", cfg.node.name)
    drain = asyncio.create_task(node.drain(), name="drain")
    try:
        await drain
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
        await node.stop()
    return 0
