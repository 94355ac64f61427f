"""The supervisor: runs one node as N worker processes and keeps them running (docs/workers.md).

`python -m edge ...` with more than one worker becomes this parent process. It never serves
a request and never runs the node's event loop; it
- takes the disk directory's lock for the whole machine (edge.store.dirlock) before any
  worker opens the directory;
- makes one listening loopback socket per worker (its sibling listener) and keeps them, so a
  restarted worker is found at the same port;
- starts every worker as `python -m edge <the same arguments>` with its WorkerPlan in the
  environment, in a session of its own (a terminal's Ctrl-C reaches the supervisor only);
- waits for every worker to say it serves (a byte on the ready pipe); a worker that fails
  before its first start ends the whole node with its exit code (a port in use: 1);
- restarts a worker that dies, after a backoff (0.5 s doubling to 10 s, reset after 30 s
  up); the disk tier survives it (edge.store.shared);
- relays SIGHUP (reload) and SIGUSR1 (reopen logs) to every worker, and on SIGTERM/SIGINT
  stops restarting, relays SIGTERM (a second one is relayed too: the drain is cut short) and
  waits for the workers to drain, killing what is left after drain_timeout_s + 30 s.
Each worker holds the read end of a pipe whose write end only the supervisor holds: if the
supervisor is killed, the workers see the pipe end and drain (edge.app.workers.watch_parent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Mapping, Sequence

from edge.app import StartupError
from edge.app.stores import lock_disk_dir
from edge.app.workers import ENV, WorkerPlan
from edge.config.deployment import EdgeConfig
from edge.config.errors import ConfigError
from edge.config.server import parse_workers

__all__ = ["supervise", "worker_count", "worker_plan"]

log = logging.getLogger("edge.supervisor")

ENV_COUNT = "EDGECACHE_WORKERS"  # the worker count when neither --workers nor [server] workers says
_FIRST_BACKOFF_S, _MAX_BACKOFF_S, _STEADY_S = 0.5, 10.0, 30.0
_KILL_AFTER_DRAIN_S = 30.0  # beyond drain_timeout_s, before what is left gets SIGKILL


def worker_count(flag: str | None, configured: int | str | None, env: Mapping[str, str]) -> int:
    """How many workers: --workers, else [server] workers, else $EDGECACHE_WORKERS, else auto (cores)."""
    if flag is not None:
        value: object = parse_workers(flag, "--workers")
    elif configured is not None:
        value = configured
    else:
        value = parse_workers(env.get(ENV_COUNT, "auto"), f"${ENV_COUNT}")
    return max(1, os.cpu_count() or 1) if value == "auto" else int(str(value))


def worker_plan(env: Mapping[str, str]) -> WorkerPlan | None:
    """This process's plan when a supervisor started it, else None."""
    text = env.get(ENV)
    if not text:
        return None
    try:
        return WorkerPlan.decode(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _fixed_ports(cfg: EdgeConfig) -> str | None:
    """Workers share their listeners' ports, so none of them may be 0 (each would get its own)."""
    node = cfg.node
    where = f"nodes.{node.name}"
    if node.port == 0:
        return f"{where}.listen (or --listen): port 0 with several workers; give a fixed port"
    if node.tls_host is not None and node.tls_port == 0:
        return f"{where}.tls: port 0 with several workers; give a fixed port"
    if node.internal_host is not None and node.internal_port == 0:
        return f"{where}.internal: port 0 with several workers; give a fixed port"
    return None


def supervise(argv: Sequence[str], cfg: EdgeConfig, count: int) -> int:
    """Runs the node as `count` workers until SIGTERM/SIGINT; returns the exit code."""
    problem = _fixed_ports(cfg)
    if problem is not None:
        print(f"edgecache: config error: {problem}", file=sys.stderr)
        return 2
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        sockets.append(sock)
    try:
        import uvloop

        return uvloop.run(_Supervisor(list(argv), cfg, sockets).run())
    except KeyboardInterrupt:
        return 0
    finally:
        for sock in sockets:
            sock.close()


class _Supervisor:
    """The running supervisor: one task per worker keeps it running."""

    def __init__(self, argv: list[str], cfg: EdgeConfig, sockets: list[socket.socket]) -> None:
        self._argv = argv
        self._cfg = cfg
        self._sockets = sockets
        self._count = len(sockets)
        self._secret = secrets.token_hex(16)
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._ready: set[int] = set()  # workers that said they serve since their last start
        self._started = asyncio.Event()  # every worker has served once, or one failed first
        self._stopping = asyncio.Event()
        self._failure: int | None = None  # exit code of a worker that failed before it ever served
        self._parent_r, self._parent_w = os.pipe()
        self._ready_r, self._ready_w = os.pipe()

    async def run(self) -> int:
        lock = None
        if self._cfg.disk_dir is not None:
            try:  # one lock for the machine's workers: another node on the directory is refused
                lock = await lock_disk_dir(self._cfg.disk_dir)
            except StartupError as exc:
                print(f"edgecache: cannot start: {exc}", file=sys.stderr)
                return 1
        try:
            return await self._run()
        finally:
            if lock is not None:
                lock.release()

    async def _run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        for sig in (signal.SIGHUP, signal.SIGUSR1):
            loop.add_signal_handler(sig, self._relay, sig)
        os.set_blocking(self._ready_r, False)
        loop.add_reader(self._ready_r, self._on_ready)
        keepers = [asyncio.create_task(self._keep(i), name=f"worker-{i}") for i in range(self._count)]
        try:
            await self._started.wait()
            if self._failure is None:
                node = self._cfg.node
                print(
                    f"edgecache node {node.name} serving on http://{node.host}:{node.port} "
                    f"with {self._count} workers",
                    file=sys.stderr,
                    flush=True,
                )
            await self._stopping.wait()
            self._relay(signal.SIGTERM)
            grace = self._cfg.server.drain_timeout_s + _KILL_AFTER_DRAIN_S
            _, left = await asyncio.wait(keepers, timeout=grace)
            if left:
                log.error("%d workers still running %.0fs after SIGTERM: killing them", len(left), grace)
                self._relay(signal.SIGKILL)
                await asyncio.wait(left, timeout=10.0)
        finally:
            loop.remove_reader(self._ready_r)
            for task in keepers:
                task.cancel()
            for fd in (self._parent_r, self._parent_w, self._ready_r, self._ready_w):
                os.close(fd)
        return self._failure or 0

    def _stop(self) -> None:
        if self._stopping.is_set():
            log.warning("second stop signal: telling the workers to cut their drain short")
            self._relay(signal.SIGTERM)
        self._stopping.set()
        self._started.set()

    def _relay(self, sig: int) -> None:
        for proc in self._procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)

    def _on_ready(self) -> None:
        try:
            data = os.read(self._ready_r, 4096)
        except BlockingIOError:
            return
        self._ready.update(data)
        if len(self._ready) >= self._count:
            self._started.set()

    async def _spawn(self, index: int) -> asyncio.subprocess.Process:
        sock = self._sockets[index]
        plan = WorkerPlan(
            index=index,
            count=self._count,
            secret=self._secret,
            ports=tuple(s.getsockname()[1] for s in self._sockets),
            listen_fd=sock.fileno(),
            parent_fd=self._parent_r,
            ready_fd=self._ready_w,
        )
        env = {**os.environ, ENV: plan.encode()}
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "edge",
            *self._argv,
            env=env,
            pass_fds=(sock.fileno(), self._parent_r, self._ready_w),
            start_new_session=True,
        )

    async def _keep(self, index: int) -> None:
        """Runs worker `index`, restarting it when it dies, until the node stops."""
        loop = asyncio.get_running_loop()
        backoff = _FIRST_BACKOFF_S
        served_once = False
        while not self._stopping.is_set():
            self._ready.discard(index)
            proc = self._procs[index] = await self._spawn(index)
            began = loop.time()
            code = await proc.wait()
            served_once = served_once or index in self._ready
            if self._stopping.is_set():
                return
            if not served_once:  # it never started: a restart would fail the same way
                log.error("worker %d exited with %d before it served; stopping the node", index, code)
                self._failure = code if code > 0 else 1
                self._stop()
                return
            if loop.time() - began > _STEADY_S:
                backoff = _FIRST_BACKOFF_S
            log.error("worker %d exited with %d; restarting it in %.1fs", index, code, backoff)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._stopping.wait()
            backoff = min(backoff * 2, _MAX_BACKOFF_S)
