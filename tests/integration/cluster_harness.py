"""A region of real edge node processes on loopback: config, start, kill -9, restart, logs.

Each node gets its own 127.0.0.x (conftest.next_loopback) with a free public port and a
free internal (peer) port. `write_cluster_config` writes one TOML describing the nodes and
the `[cluster]` table; nodes of one test may also get different TOML files (a stale view of
the region). `Region` starts nodes in parallel, kills one with SIGKILL, restarts it from
the same config, and stops everything in `stop()` (call it from a fixture's finally).

Every client request must carry the same Host (`HOST`): the cache key includes it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from cluster.ring import DEFAULT_VNODES, Ring
from edge.request.key import make_key
from tests.integration.conftest import next_loopback
from tests.integration.harness import Proc, Reply, fetch, free_port, start_edge, write_config

__all__ = [
    "HOST", "NodeAddr", "Region", "access_lines", "allocate", "cache_detail", "get", "owner_of",
    "peer_events", "wait_until", "write_cluster_config",
]

HOST = "demo.test"  # every request to every node sends this Host: one key per URL region-wide


@dataclass(frozen=True, slots=True)
class NodeAddr:
    """One node's place in the region: its loopback address and both ports."""

    name: str
    host: str
    port: int
    internal_port: int
    region: str = "r1"
    weight: float = 1.0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def internal_url(self) -> str:
        return f"http://{self.host}:{self.internal_port}"

    def toml(self, weight: float | None = None) -> str:
        """This node's `[nodes.NAME]` table (`weight` overrides its own, for a stale view)."""
        return "\n".join([
            f"[nodes.{self.name}]",
            f'listen = "{self.host}:{self.port}"',
            f'internal = "{self.host}:{self.internal_port}"',
            f'region = "{self.region}"',
            f"weight = {weight if weight is not None else self.weight}",
            "",
        ])


def allocate(names: Iterable[str], *, region: str = "r1") -> list[NodeAddr]:
    """A NodeAddr per name, each on its own 127.0.0.x with two ports free a moment ago."""
    addrs = []
    for name in names:
        host = next_loopback()
        port = free_port(host)
        internal = free_port(host)
        while internal == port:
            internal = free_port(host)
        addrs.append(NodeAddr(name, host, port, internal, region))
    return addrs


def write_cluster_config(path: Path, *, origin_url: str, nodes: Sequence[NodeAddr], cluster: Mapping[str, Any],
                         cache: Mapping[str, Any] | None = None, coalesce: Mapping[str, Any] | None = None,
                         weights: Mapping[str, float] | None = None,
                         server: Mapping[str, Any] | None = None) -> Path:
    """Writes a config.toml for `nodes` with this `[cluster]` table; `weights` overrides some weights.

    `server` is the `[server]` table; by default only `drain_announce_s = 0`, so stopping a node
    does not wait for its peers to notice (tests of the drain itself pass their own table).
    """
    lines = ["[cluster]"] + [f"{k} = {json.dumps(v)}" for k, v in cluster.items()] + [""]
    lines += [n.toml((weights or {}).get(n.name)) for n in nodes]
    return write_config(path, origin_url=origin_url, nodes={}, cache=dict(cache or {}),
                        coalesce=dict(coalesce or {}), extra="\n".join(lines),
                        server=dict(server if server is not None else {"drain_announce_s": 0}))


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Region:
    """Edge node processes of one test; `stop()` ends all of them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, Proc] = {}
        self.addrs: dict[str, NodeAddr] = {}
        self.configs: dict[str, Path] = {}

    def start(self, config: Path, nodes: Sequence[NodeAddr]) -> None:
        """Starts these nodes of `config` in parallel; returns once every internal listener accepts."""
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            futures = {n.name: pool.submit(start_edge, config, n.name, self.log_dir) for n in nodes}
            errors = []
            for name, future in futures.items():
                try:
                    self.procs[name] = future.result()
                except RuntimeError as exc:
                    errors.append(exc)
        for n in nodes:
            self.addrs[n.name] = n
            self.configs[n.name] = config
        if errors:
            raise errors[0]
        deadline = time.monotonic() + 10
        while not all(_accepts(n.host, n.internal_port) for n in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("internal listeners did not come up within 10 s")
            time.sleep(0.02)

    def kill9(self, name: str) -> None:
        """SIGKILL: no cleanup, sockets reset by the kernel."""
        self.procs[name].kill9()

    def restart(self, name: str) -> Proc:
        """Starts a stopped or killed node again from the same config."""
        self.procs[name].stop()
        proc = start_edge(self.configs[name], name, self.log_dir)
        self.procs[name] = proc
        return proc

    def url(self, name: str) -> str:
        return self.addrs[name].url

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()


def owner_of(path: str, weights: Mapping[str, float] | Iterable[str], *, vnodes: int = DEFAULT_VNODES) -> str:
    """Which node a ring of these nodes gives the key of `http://HOST{path}` (as the nodes compute it)."""
    return Ring(weights, vnodes=vnodes).owner(make_key("http", HOST, path).id)


async def get(session: aiohttp.ClientSession, base_url: str, path: str, *,
              headers: Mapping[str, str] | None = None) -> Reply:
    """GET base_url+path with `Host: HOST` (and any extra headers)."""
    return await fetch(session, base_url + path, headers={"Host": HOST, **(headers or {})})


def cache_detail(reply: Reply) -> str | None:
    """The `detail` parameter of the edge's Cache-Status (e.g. "peer-b", "origin-fallback"), or None."""
    return reply.cache_status.get("detail")


def _log_lines(proc: Proc) -> list[str]:
    try:
        return proc.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def access_lines(proc: Proc, target: str | None = None) -> list[dict[str, Any]]:
    """The node's access-log records (one JSON line per request), optionally for one target."""
    records = []
    for line in _log_lines(proc):
        if line.startswith("{"):
            record = json.loads(line)
            if target is None or record.get("target") == target:
                records.append(record)
    return records


def peer_events(proc: Proc) -> list[tuple[str, str]]:
    """Membership flips the node logged, in order: [(peer, "down" | "healthy"), ...]."""
    events = []
    for line in _log_lines(proc):
        if "cluster.members: peer " in line:
            words = line.rsplit("peer ", 1)[1].split()
            if len(words) == 3 and words[1] == "is":
                events.append((words[0], words[2]))
    return events


async def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Polls a condition of the outside world (a log) until it holds; raises after timeout_s.

    Membership is time-based (probes every interval), so its effects can only be awaited by
    looking; the bound is what the test asserts.
    """
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        await asyncio.sleep(0.02)
