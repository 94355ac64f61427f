"""Runs one node until a signal stops it; what each signal does.

    SIGTERM, SIGINT  graceful stop (edge.server.lifecycle): readiness 503, peers drop the node,
                     in-flight requests and fills finish within [server] drain_timeout_s, exit 0.
                     A second one cuts the drain short (requests cancelled, fills get 5 s).
    SIGHUP           reload config.toml: the file is read and validated first; a bad file keeps
                     the running config and logs why; what changed is applied without dropping
                     a connection or emptying the cache, and what needs a restart is logged
                     (edge.config.reload)
    SIGUSR1          reopen access_log_file (logrotate's postrotate); nothing on stdout

Signal handlers only queue what was asked; the main coroutine acts on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
import sys
import time
from collections.abc import Callable

from edge.app import EdgeNode
from edge.app.workers import WorkerPlan, watch_parent
from edge.config.deployment import EdgeConfig
from edge.config.errors import ConfigError

__all__ = ["serve"]

log = logging.getLogger("edge")


Reloader = Callable[[], EdgeConfig]  # reads and validates the config file again; raises ConfigError


class _Ask(enum.Enum):
    STOP = "stop"
    RELOAD = "reload"


async def serve(cfg: EdgeConfig, reload: Reloader | None = None, worker: WorkerPlan | None = None) -> int:
    """Starts the node (or one worker of it) and serves until SIGTERM/SIGINT; returns the exit code (0)."""
    node = EdgeNode(cfg, worker)
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
    loop.add_signal_handler(signal.SIGHUP, ask, _Ask.RELOAD)
    loop.add_signal_handler(signal.SIGUSR1, node.reopen_logs)  # only sets a flag for the log's thread
    parent: asyncio.Task[None] | None = None
    if worker is not None:  # edge.cli.supervisor: it waits for this, and its death stops the worker
        worker.announce_ready()
        parent = asyncio.create_task(watch_parent(worker, lambda: ask(_Ask.STOP)), name="parent")
    while await asks.get() is not _Ask.STOP:
        await _reload(node, reload)
    log.info("stopping node %s: draining", cfg.node.name)
    drain = asyncio.create_task(node.drain(), name="drain")
    try:
        await drain
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
        await node.stop()
    if parent is not None:
        parent.cancel()
    return 0


async def _reload(node: EdgeNode, reload: Reloader | None) -> None:
    """SIGHUP: reads the file again; any failure keeps the running config."""
    if reload is None:
        log.warning("SIGHUP: started from flags, not --config: nothing to reload")
        return
    try:
        new = await asyncio.to_thread(reload)  # reading the file is blocking I/O
    except ConfigError as exc:
        log.error("SIGHUP: config not reloaded, the running config stays: %s", exc)
        node.metrics.reloads.failed()
        return
    try:
        plan = await node.reload(new)
    except Exception:  # a bug while applying must not end a node that was serving fine
        log.exception("SIGHUP: applying the new config failed; parts may be half applied")
        node.metrics.reloads.failed()
        return
    if plan.failed:  # e.g. new certificates that cannot be used: the running ones stay
        node.metrics.reloads.failed()
    else:
        node.metrics.reloads.succeeded(time.time())
