"""Purge integration harness: a versioned origin, a TCP fault proxy, and a multi-region cluster of processes.

`VersionedOrigin` runs in the test's event loop on 127.0.0.1: GET /v/<name> answers
"<name> version <n>" with a matching ETag, so a test bumps `versions[name]` to simulate a
deploy and can tell every body apart; a name in `gates` sends its first chunk and waits for
the gate before the rest (a slow fill without timers). It records If-None-Match per request.

`FaultProxy` forwards TCP from a 127.0.0.1 port to a node's internal listener; `cut()`
closes every open connection and refuses new ones, `heal()` lets traffic through again. We
use it instead of iptables (needs root, touches the host) and instead of SIGSTOP (a stopped
node cannot show that it revalidates while cut off). Each node process gets its own
config file, so only the cut-off node's peer links go through proxies: its peers reach it
via its proxy, and it reaches each of them via one. Its public and origin traffic is direct.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.integration.conftest import next_loopback
from tests.integration.harness import Proc, Reply, fetch, free_port, start_edge

__all__ = ["DEMO_TOKEN", "HOST", "TOKEN", "FaultProxy", "NodeSpec", "PurgeCluster", "VersionedOrigin", "wait_for"]

HOST = "demo.local"
TOKEN = "ops-token-0123456789abcdef"  # may purge every host
DEMO_TOKEN = "demo-only-token-0123456789"  # may purge other.test only


class VersionedOrigin:
    """An origin whose objects change when the test says so."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}
        self.tags: dict[str, str] = {}  # name -> Surrogate-Key value
        self.cache_control = "max-age=300"
        self.gates: dict[str, asyncio.Event] = {}  # name -> released by the test mid-body
        self.started: dict[str, asyncio.Event] = {}  # name -> set once a gated body has begun
        self.requests: list[tuple[str, str | None]] = []  # (name, If-None-Match) per request
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def body(self, name: str, version: int | None = None) -> bytes:
        """The body the origin sends for `name` at `version` (default: the current one)."""
        v = self.versions.get(name, 1) if version is None else version
        return (f"{name} version {v}\n" * 64).encode()

    def count(self, name: str, *, conditional: bool | None = None) -> int:
        """Requests the origin got for name (only conditional ones, or only plain ones)."""
        return sum(1 for n, inm in self.requests
                   if n == name and (conditional is None or (inm is not None) == conditional))

    async def start(self) -> VersionedOrigin:
        app = web.Application()
        app.router.add_get("/v/{name}", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        for gate in self.gates.values():
            gate.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        inm = request.headers.get("If-None-Match")
        self.requests.append((name, inm))
        version = self.versions.get(name, 1)
        headers = {"ETag": f'"{name}-v{version}"', "Cache-Control": self.cache_control}
        if name in self.tags:
            headers["Surrogate-Key"] = self.tags[name]
        if inm == headers["ETag"]:
            return web.Response(status=304, headers=headers)
        body = self.body(name)
        if name not in self.gates:
            return web.Response(body=body, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[:100])
        self.started.setdefault(name, asyncio.Event()).set()
        await self.gates[name].wait()
        await response.write(body[100:])
        await response.write_eof()
        return response


class FaultProxy:
    """A TCP forwarder on 127.0.0.1 that can cut every connection through it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port("127.0.0.1")
        self.is_cut = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    def cut(self) -> None:
        """Closes every connection through the proxy and refuses new ones."""
        self.is_cut = True
        for writer in list(self._writers):
            writer.transport.abort()

    def heal(self) -> None:
        """Lets traffic through again."""
        self.is_cut = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # every exit aborts both sockets, cancellation at server close included (a transport
        # left to the garbage collector is a ResourceWarning, an error in this suite)
        up_writer: asyncio.StreamWriter | None = None
        pipes: list[asyncio.Task[None]] = []
        try:
            if self.is_cut:
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return
            for w in (writer, up_writer):
                self._writers.add(w)
            pipes = [asyncio.create_task(self._pipe(reader, up_writer)),
                     asyncio.create_task(self._pipe(up_reader, writer))]
            self._tasks.update(pipes)
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()
            for task in pipes:
                task.cancel()
                self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.is_cut:
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return


@dataclass
class NodeSpec:
    """One node of the test deployment."""

    name: str
    region: str
    disk: bool = False
    host: str = field(default_factory=next_loopback)

    def __post_init__(self) -> None:
        self.port = free_port(self.host)
        self.internal = free_port(self.host)
        self.admin = free_port(self.host)

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin}"


class PurgeCluster:
    """Writes one config per node, starts and restarts the node processes, and talks to them."""

    def __init__(self, tmp: Path, origin: VersionedOrigin, specs: Iterable[NodeSpec], *,
                 faulty: Iterable[str] = (), max_lag_s: float = 2.0, sync_s: float = 0.3,
                 rate_per_s: float = 50.0, burst: int = 100, access_log: bool = False,
                 cluster_extra: dict[str, int | float] | None = None) -> None:
        self.tmp = tmp
        self.origin = origin
        self.specs = {s.name: s for s in specs}
        self.faulty = set(faulty)
        self.max_lag_s = max_lag_s
        self._sync_s = sync_s
        self._rate = (rate_per_s, burst)
        self._access_log = access_log
        self._cluster_extra = dict(cluster_extra or {})  # more `[cluster]` keys, e.g. hot_min_hits
        self.procs: dict[str, Proc] = {}
        self.proxies: dict[tuple[str, str], FaultProxy] = {}  # (from, to) -> proxy, for faulty links

    async def start(self) -> PurgeCluster:
        for a in self.specs.values():
            for b in self.specs.values():
                if a.name != b.name and (a.name in self.faulty or b.name in self.faulty):
                    self.proxies[(a.name, b.name)] = await FaultProxy((b.host, b.internal)).start()
        for name in self.specs:
            await self.start_node(name)
        return self

    async def start_node(self, name: str) -> Proc:
        config = self._write_config(name)
        proc = await asyncio.to_thread(start_edge, config, name, self.tmp / "logs")
        self.procs[name] = proc
        return proc

    async def close(self) -> None:
        for proc in self.procs.values():
            await asyncio.to_thread(proc.stop)
        for proxy in self.proxies.values():
            await proxy.close()

    def cut(self, name: str, *, heal: bool = False) -> None:
        """Cuts (or heals) every peer link of the node."""
        for (a, b), proxy in self.proxies.items():
            if name in (a, b):
                proxy.heal() if heal else proxy.cut()

    def _internal_seen_by(self, me: str, other: NodeSpec) -> str:
        proxy = self.proxies.get((me, other.name))
        return f"127.0.0.1:{proxy.port}" if proxy is not None else f"{other.host}:{other.internal}"

    def _write_config(self, me: str) -> Path:
        lines = [f"access_log = {str(self._access_log).lower()}", "", "[cluster]", 'secret = "purge-test-secret"',
                 f"purge_sync_interval_s = {self._sync_s}", f"max_purge_lag_s = {self.max_lag_s}",
                 "probe_interval_s = 0.2", "probe_timeout_s = 0.3",
                 *(f"{k} = {v}" for k, v in self._cluster_extra.items()), "",
                 "[admin]", "purge_timeout_s = 2.0", f"rate_per_s = {self._rate[0]}", f"burst = {self._rate[1]}",
                 "[[admin.tokens]]", 'name = "ops"', f'token = "{TOKEN}"', 'hosts = ["*"]',
                 "[[admin.tokens]]", 'name = "other"', f'token = "{DEMO_TOKEN}"', 'hosts = ["other.test"]', ""]
        for spec in self.specs.values():
            internal = f"{spec.host}:{spec.internal}" if spec.name == me else self._internal_seen_by(me, spec)
            lines += [f"[nodes.{spec.name}]", f'listen = "{spec.host}:{spec.port}"', f'internal = "{internal}"',
                      f'admin = "{spec.host}:{spec.admin}"', f'region = "{spec.region}"']
            if spec.disk:
                lines.append(f'disk_dir = "{self.tmp / ("cache-" + spec.name)}"')
            lines.append("")
        lines += ["[origins.demo]", f'servers = ["{self.origin.url}"]', "",
                  "[[routes]]", 'host = "*"', 'path_prefix = "/"', 'origin = "demo"', ""]
        path = self.tmp / f"{me}.toml"
        path.write_text("\n".join(lines))
        return path

    # -- talking to nodes -----------------------------------------------------------------
    async def get(self, session: aiohttp.ClientSession, name: str, path: str) -> Reply:
        spec = self.specs[name]
        return await fetch(session, f"http://{spec.host}:{spec.port}{path}", headers={"Host": HOST})

    async def purge(self, session: aiohttp.ClientSession, name: str, body: object,
                    token: str = TOKEN) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with session.post(self.specs[name].admin_url + "/purge", data=data,
                                headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, json.loads(await r.text())

    async def status(self, session: aiohttp.ClientSession, name: str) -> dict[str, Any]:
        async with session.get(self.specs[name].admin_url + "/status",
                               headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            return dict(await r.json())


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 15.0) -> None:
    """Polls `check` until it is true (real processes: there is no event to wait on)."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        await asyncio.sleep(0.05)
